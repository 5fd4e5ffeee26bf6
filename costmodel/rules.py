"""THE registry of cost formulas, one `Rule` per operator kind.

Every count ttplan reports comes from here and nowhere else:

* ``forward_macs``: multiply-accumulates of the forward pass, whole batch.
  conv: N·Cout·Hout·Wout · (Cin/groups)·kh·kw  (= out_numel · prod(weight.shape[1:]));
  transposed conv: N·Cin·Hin·Win · (Cout/groups)·kh·kw; linear: out_numel · in_features.
  Everything else has no MACs (bias additions, BatchNorm, pooling, element-wise ops are
  counted separately as ``other_ops``).
* backward MACs (only for MAC layers): the input gradient costs exactly the forward MACs (it is
  the transposed operation) and is paid only where the layer's input needs a gradient; the
  weight gradient costs the forward MACs times the fraction of weight channels updated.
* ``other_ops``: elementary operations that are not MACs — one per output element for
  element-wise ops (activations, add, mul, bias add), two per element for an inference-mode
  norm (scale and shift), the window size per output element for pooling, one per input
  element for reductions; views cost nothing. In backward, each op on the gradient path costs
  the same again, and a bias gradient costs one add per output-gradient element.
* what the op keeps for backward, under each memory convention (see `Saved`).

FLOPs, where shown, are 2 × MACs (a multiply and an add), the convention of
``torch.utils.flop_counter``; they do not include ``other_ops``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .graph import OpNode, _numel

# Kinds whose backward needs no stored value for the *input* gradient at all under `paper`
# and whose forward produces a new buffer only when the input is still needed elsewhere.
ELEMENTWISE_ACTIVATIONS = frozenset({"relu", "relu6", "hardtanh", "leaky_relu", "hardswish",
                                     "hardsigmoid", "sigmoid", "silu", "gelu", "tanh"})
RELU_FAMILY = frozenset({"relu", "relu6", "hardtanh", "leaky_relu"})  # derivative = a 1-bit mask
VIEW_KINDS = frozenset({"reshape", "identity", "getitem"})


@dataclass(frozen=True)
class Grad:
    """Which gradients exist at one operator in a training configuration."""

    inputs: tuple[bool, ...]  # does input i need a gradient (depends on a trainable parameter)?
    weight: bool = False  # is the weight (or norm scale) updated?
    bias: bool = False  # is the bias (or norm shift) updated?
    weight_fraction: float = 1.0  # fraction of the weight's channels updated
    input_fraction: float = 1.0  # fraction of the input a partial weight update must keep
    training_mode: bool = True  # BatchNorm batch statistics / dropout active (pytorch only)

    @property
    def any(self) -> bool:
        return self.weight or self.bias or any(self.inputs)

    def input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i]


@dataclass(frozen=True)
class Saved:
    """A tensor kept for backward. `source` is ("in", i), ("out",) or ("extra", name);
    `nbytes` is the size of an "extra" tensor; an "in"/"out" tensor is kept whole (at the
    activation width) unless `fraction` says only part of its channels is needed.
    `category` is "input" (B4: inputs of layers whose weights are updated) or "mask" (B3:
    what non-linearities, pooling and products need for their derivative)."""

    source: tuple
    nbytes: int | None = None
    category: str = "mask"
    fraction: float = 1.0  # part of an "in"/"out" tensor kept (selected input channels)


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


# ---- MACs ------------------------------------------------------------------------------

def conv_macs(node: OpNode) -> int:
    return node.out_numel * _prod(node.weight_shape[1:])


def conv_transpose_macs(node: OpNode) -> int:
    return node.in_numel(0) * _prod(node.weight_shape[1:])


def linear_macs(node: OpNode) -> int:
    return node.out_numel * node.weight_shape[1]


def no_macs(node: OpNode) -> int:
    return 0


# ---- other ops ---------------------------------------------------------------------------

def per_output(node: OpNode) -> int:
    return node.out_numel


def per_output_x2(node: OpNode) -> int:
    return 2 * node.out_numel


def per_input(node: OpNode) -> int:
    return sum(_numel(s) for s in node.in_shapes)


def pool_window(node: OpNode) -> int:
    kernel = node.attrs.get("kernel_size", 1)
    window = _prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel) ** max(
        1, len(node.out_shape) - 2)
    return node.out_numel * window


def free(node: OpNode) -> int:
    return 0


def bias_add(node: OpNode) -> int:
    return node.out_numel if node.bias_numel else 0


# ---- saved for backward: `pytorch` (eager autograd, PyTorch 2.13) --------------------------
# Each function returns what the autograd node keeps when it exists (grad.any); parameters and
# buffers are not activations and are left out. Checked against saved_tensors_hooks in tests.

def pt_conv(node, g):
    # ConvolutionBackward0 saves input and weight together, whatever requires grad.
    return [Saved(("in", 0), category="input")]


def _input_copied(node) -> bool:
    if node.kind == "linear":
        return not node.attrs.get("input_flattens_as_view", True)
    return not node.attrs.get("inputs_contiguous", [True])[0]


def _saved_input(node, category="mask") -> Saved:
    """The input as the kernel keeps it: itself, or the contiguous copy made of a strided one."""
    if _input_copied(node):
        return Saved(("extra", "contiguous_input"), node.in_numel(0) * node.dtype_bytes, category)
    return Saved(("in", 0), category=category)


def pt_linear(node, g):
    # addmm/mm keep the input only to form the weight gradient.
    return [_saved_input(node, "input")] if g.weight else []


def pt_batchnorm(node, g):
    channels = node.in_shapes[0][1] if len(node.in_shapes[0]) > 1 else 1
    saved = [Saved(("in", 0), category="input")]
    if g.training_mode:  # batch mean and inverse std, fp32, one per channel
        saved += [Saved(("extra", "save_mean"), 4 * channels),
                  Saved(("extra", "save_invstd"), 4 * channels)]
    return saved


def pt_groupnorm(node, g):
    n = node.in_shapes[0][0]
    groups = node.attrs.get("num_groups", 1)
    return [Saved(("in", 0), category="input"), Saved(("extra", "mean"), 4 * n * groups),
            Saved(("extra", "rstd"), 4 * n * groups)]


def pt_layernorm(node, g):
    normalized = node.attrs.get("normalized_shape") or ()
    rows = node.in_numel(0) // max(1, _prod(normalized) if normalized else node.in_shapes[0][-1])
    return [_saved_input(node, "input"), Saved(("extra", "mean"), 4 * rows),
            Saved(("extra", "rstd"), 4 * rows)]


def pt_saves_output(node, g):
    return [Saved(("out",))]


def pt_saves_input(node, g):
    return [Saved(("in", 0))]


def pt_relu(node, g):
    return [Saved(("out",))]  # relu_ too: its result is the input's storage, no copy


def pt_leaky_relu(node, g):
    return [Saved(("out",))] if node.attrs.get("inplace") else [Saved(("in", 0))]


def pt_saves_input_copied_inplace(node, g):
    # hardtanh_ (ReLU6(inplace=True)), hardswish_, silu_ copy their input before writing over
    # it: in-place saves nothing (measured on 2.13, see notes/pytorch_saved_tensors.md).
    if node.attrs.get("inplace"):
        return [Saved(("extra", "input_copy"), node.in_numel(0) * node.dtype_bytes)]
    return [Saved(("in", 0))]


def pt_maxpool(node, g):
    return [Saved(("in", 0)), Saved(("extra", "indices"), 8 * node.out_numel)]  # int64 indices


def pt_mul(node, g):
    saved = []
    if g.input(0) and len(node.in_shapes) > 1:
        saved.append(Saved(("in", 1)))
    if g.input(1):
        saved.append(Saved(("in", 0)))
    return saved


def pt_dropout(node, g):
    if not g.training_mode:
        return []
    # A float mask (0 or 1/(1-p)): per element for Dropout, per channel for Dropout2d/1d.
    mask_numel = node.out_numel
    if node.op in ("Dropout1d", "Dropout2d", "Dropout3d"):
        mask_numel = node.out_shape[0] * node.out_shape[1]
    return [Saved(("extra", "mask"), mask_numel * node.dtype_bytes)]


def pt_adaptive_avgpool(node, g):
    # adaptive_avg_pool2d to 1×1 is computed as a mean (nothing saved); otherwise the input.
    if all(d == 1 for d in node.out_shape[2:]):
        return []
    return [Saved(("in", 0))]


def pt_nothing(node, g):
    return []


# ---- saved for backward: `paper` (appendix A.4's ideal engine, BN folded) -----------------

def paper_mac_layer(node, g):
    if not g.weight:
        return []  # bias and input gradients need no stored activation
    return [Saved(("in", 0), category="input", fraction=g.input_fraction)]


def paper_norm(node, g):
    return [Saved(("in", 0), category="input")] if g.weight else []


def paper_relu_mask(node, g):
    return [Saved(("extra", "mask"), math.ceil(node.in_numel(0) / 8))] if g.input(0) else []


def paper_smooth_activation(node, g):
    return [Saved(("in", 0))] if g.input(0) else []


def paper_maxpool(node, g):
    return [Saved(("extra", "argmax"), node.out_numel)] if g.input(0) else []  # 1-byte index


def paper_layer_or_group_norm(node, g):
    return [Saved(("in", 0), category="input" if g.weight else "mask")] if g.any else []


def paper_dropout(node, g):
    return [Saved(("extra", "mask"), math.ceil(node.out_numel / 8))] if g.input(0) else []


# ---- the registry ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    forward_macs: Callable[[OpNode], int]
    other_ops: Callable[[OpNode], int]
    saved_pytorch: Callable[[OpNode, Grad], list]
    saved_paper: Callable[[OpNode, Grad], list]
    mac_layer: bool = False  # input/weight gradients cost MACs
    elementwise: bool = False  # `paper` engine computes it in place when its input dies


def _rule(fwd=no_macs, ops=per_output, pt=pt_nothing, paper=pt_nothing, mac=False, ew=False):
    return Rule(fwd, ops, pt, paper, mac, ew)


RULES: dict[str, Rule] = {
    "input": _rule(ops=free),
    "conv": _rule(conv_macs, bias_add, pt_conv, paper_mac_layer, mac=True),
    "conv_transpose": _rule(conv_transpose_macs, bias_add, pt_conv, paper_mac_layer, mac=True),
    "linear": _rule(linear_macs, bias_add, pt_linear, paper_mac_layer, mac=True),
    "batchnorm": _rule(ops=per_output_x2, pt=pt_batchnorm, paper=paper_norm, ew=True),
    "groupnorm": _rule(ops=per_output_x2, pt=pt_groupnorm, paper=paper_layer_or_group_norm),
    "layernorm": _rule(ops=per_output_x2, pt=pt_layernorm, paper=paper_layer_or_group_norm),
    "relu": _rule(pt=pt_relu, paper=paper_relu_mask, ew=True),
    "relu6": _rule(pt=pt_saves_input_copied_inplace, paper=paper_relu_mask, ew=True),
    "hardtanh": _rule(pt=pt_saves_input_copied_inplace, paper=paper_relu_mask, ew=True),
    "leaky_relu": _rule(pt=pt_leaky_relu, paper=paper_relu_mask, ew=True),
    "hardswish": _rule(pt=pt_saves_input_copied_inplace, paper=paper_smooth_activation, ew=True),
    "hardsigmoid": _rule(pt=pt_saves_input, paper=paper_smooth_activation, ew=True),
    "silu": _rule(pt=pt_saves_input_copied_inplace, paper=paper_smooth_activation, ew=True),
    "gelu": _rule(pt=pt_saves_input, paper=paper_smooth_activation, ew=True),
    "sigmoid": _rule(pt=pt_saves_output, paper=paper_smooth_activation, ew=True),
    "tanh": _rule(pt=pt_saves_output, paper=paper_smooth_activation, ew=True),
    "softmax": _rule(pt=pt_saves_output, paper=paper_smooth_activation),
    "maxpool": _rule(ops=pool_window, pt=pt_maxpool, paper=paper_maxpool),
    "adaptive_maxpool": _rule(ops=per_input, pt=pt_maxpool, paper=paper_maxpool),
    "avgpool": _rule(ops=pool_window, pt=pt_saves_input),
    "adaptive_avgpool": _rule(ops=per_input, pt=pt_adaptive_avgpool),
    "mean": _rule(ops=per_input),
    "add": _rule(ew=True),
    "mul": _rule(pt=pt_mul, paper=pt_mul, ew=True),
    "cat": _rule(ops=free),
    "reshape": _rule(ops=free),
    "identity": _rule(ops=free),
    "getitem": _rule(ops=free),
    "dropout": _rule(pt=pt_dropout, paper=paper_dropout, ew=True),
    "upsample": _rule(),
    "compare": _rule(),
}


def rule_for(kind: str) -> Rule | None:
    """The rule of a kind, or None for an operator ttplan does not know (reported, never 0)."""
    return RULES.get(kind)
