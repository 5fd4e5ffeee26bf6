"""THE registry of cost formulas: one `Rule` per operator kind, every column in one place.

A `Rule`'s fields are named after the cost table's columns, so a column's formula is one hop
away: ``forward_macs``, ``backward_input_macs``, ``backward_weight_macs``,
``forward_other_ops``, ``backward_other_ops``, and what the op keeps for backward under each
memory convention (``saved_pytorch``, ``saved_paper``; see `Saved`).

* ``forward_macs``: multiply-accumulates of the forward pass, whole batch.
  conv: N·Cout·Hout·Wout · (Cin/groups)·kh·kw  (= out_numel · prod(weight.shape[1:]));
  transposed conv: N·Cin·Hin·Win · (Cout/groups)·kh·kw; linear: out_numel · in_features.
  Everything else has no MACs (bias additions, BatchNorm, pooling, element-wise ops are
  counted separately as other ops).
* ``backward_input_macs``: a MAC layer's input gradient is the transposed operation, exactly
  its forward MACs, paid only where the layer's input needs a gradient.
* ``backward_weight_macs``: the forward MACs times the fraction of weight channels updated.
* ``forward_other_ops``: elementary operations that are not MACs — one per output element for
  element-wise ops (activations, add, mul, bias add), two per element for an inference-mode
  norm (scale and shift), the window size per output element for pooling, one per input
  element for reductions; views cost nothing.
* ``backward_other_ops``: each op on the gradient path costs its forward other ops again; a
  bias (or norm shift) gradient and a norm scale gradient cost one op per output element.

FLOPs, where shown, are 2 × MACs (a multiply and an add), the convention of
``torch.utils.flop_counter``; they do not include other ops.

The registry maps module classes (looked up through the class's MRO, so a subclass of
``nn.Conv2d`` is a conv), functions and tensor methods to kinds (`costmodel.kinds`), and kinds
to rules. `register_rule` adds a user's own module (duplicates refused); `Registry.with_rules`
gives a copy with per-call overrides (``ttplan.profile(..., rules={MyBlock: Rule(...)})``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .errors import SpecError
from .graph import OpNode, _numel
from .kinds import FUNCTION_KINDS, METHOD_KINDS, MODULE_KINDS, MODULE_NAME_KINDS
from .opinfo import measured_key
from .options import FP32_BYTES

# Kinds whose backward needs no stored value for the *input* gradient at all under `paper`
# and whose forward produces a new buffer only when the input is still needed elsewhere.
ELEMENTWISE_ACTIVATIONS = frozenset({"relu", "relu6", "hardtanh", "leaky_relu", "hardswish",
                                     "hardsigmoid", "sigmoid", "silu", "gelu", "tanh"})
RELU_FAMILY = frozenset({"relu", "relu6", "hardtanh", "leaky_relu"})  # derivative = a 1-bit mask
VIEW_KINDS = frozenset({"reshape", "identity", "getitem", "split"})
# Gates per hidden unit of a recurrent layer (its weight_ih is gates·H × input).
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# Products that add a first operand (beta·input + a·b): the multiplied operands are inputs 1, 2.
ADD_PRODUCT_KINDS = frozenset({"baddbmm", "addmm"})
# Modules whose saved set is measured per situation with one flag for all their inputs.
MODULE_PROBED_KINDS = frozenset({"rnn", "mha"})


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


def _matmul_operands(node: OpNode) -> tuple[tuple, tuple]:
    """The two multiplied operands' shapes (baddbmm's are its last two inputs)."""
    if node.kind in ADD_PRODUCT_KINDS:
        return node.in_shapes[-2], node.in_shapes[-1]
    shapes = list(node.in_shapes) + [tuple(node.attrs.get("other_shape", ()))]
    return shapes[0], shapes[1]


def matmul_macs(node: OpNode) -> int:
    """matmul / @ / bmm / mm / baddbmm: every output element sums K products, K the
    contracted size (the first operand's last dimension)."""
    a, _ = _matmul_operands(node)
    return node.out_numel * int(a[-1]) if a else 0


def einsum_macs(node: OpNode) -> int:
    """A two-operand einsum: one product per combination of all the equation's indices."""
    sizes = node.attrs.get("index_sizes") or {}
    return _prod(sizes.values()) if sizes else 0


def _sdpa_operands(node: OpNode) -> tuple[list, list]:
    """Shapes of q, k, v and the graph input each one is (an index of `node.inputs`): the
    call's own operands when recorded (sdpa(x, x, x) is one graph input three times)."""
    shapes = node.attrs.get("qkv_shapes")
    if shapes and len(shapes) == 3:
        return [tuple(s) for s in shapes], list(node.attrs.get("qkv_inputs") or [0, 1, 2])
    return (list(node.in_shapes) + [()] * 3)[:3], [0, 1, 2]


def sdpa_macs(node: OpNode) -> int:
    """Q·Kᵀ (N·H·L·S·E) plus P·V (N·H·L·S·Ev): q is N…×L×E, k N…×S×E, v N…×S×Ev."""
    (q, k, v), _ = _sdpa_operands(node)
    if not (q and k and v):
        return 0
    rows = _prod(q[:-1])  # N·H·L
    return rows * int(k[-2]) * int(q[-1]) + rows * int(k[-2]) * int(v[-1])


def rnn_macs(node: OpNode) -> int:
    """LSTM/GRU/RNN: per layer and direction, N·T·G·H·(I_l + H): the input and the hidden
    projection of every time step (G gates: 4 LSTM, 3 GRU, 1 RNN; I_l the layer's input size,
    H·directions above the first layer). Gate products and non-linearities are other ops."""
    return sum(rnn_layer_macs(node))


def rnn_layer_macs(node: OpNode) -> list[int]:
    """[input-projection MACs, hidden-projection MACs] summed over layers and directions."""
    a = node.attrs
    gates, hidden = RNN_GATES.get(node.op, 1), int(a.get("hidden_size", 0))
    layers, dirs = int(a.get("num_layers", 1)), 2 if a.get("bidirectional") else 1
    x = node.in_shapes[0]
    steps = _prod(x[:-1])  # N·T
    first_in = int(x[-1])
    input_macs = hidden_macs = 0
    for layer in range(layers):
        size_in = first_in if layer == 0 else hidden * dirs
        input_macs += dirs * steps * gates * hidden * size_in
        hidden_macs += dirs * steps * gates * hidden * hidden
    return [input_macs, hidden_macs]


# ---- backward MACs -------------------------------------------------------------------------

def no_backward_macs(node: OpNode, g: Grad) -> int:
    return 0


def transposed_input_grad(forward: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """The input gradient of a MAC layer: the transposed op, as many MACs as the forward."""
    def backward_input_macs(node: OpNode, g: Grad) -> int:
        return forward(node) if g.input(0) else 0
    return backward_input_macs


def channel_weight_grad(forward: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """The weight gradient of a MAC layer: the forward MACs of the updated channels."""
    def backward_weight_macs(node: OpNode, g: Grad) -> int:
        return round(forward(node) * g.weight_fraction) if g.weight else 0
    return backward_weight_macs


def _product_inputs(node: OpNode) -> tuple[int, int]:
    """The graph inputs the two multiplied operands are (x @ x: the same one twice)."""
    first = 1 if node.kind in ADD_PRODUCT_KINDS else 0
    return first, first if node.attrs.get("operands_same") else first + 1


def matmul_input_grads(node: OpNode, g: Grad) -> int:
    """Each multiplied operand that needs a gradient costs one more product of the forward's
    size (dA = dC·Bᵀ, dB = Aᵀ·dC), whatever is broadcast."""
    a, b = _product_inputs(node)
    count = int(g.input(a)) + int(g.input(b))
    forward = matmul_macs(node) if node.kind != "einsum" else einsum_macs(node)
    return count * forward


def sdpa_input_grads(node: OpNode, g: Grad) -> int:
    """dV = Pᵀ·dO (S·L·Ev per head) if v needs it; dP = dO·Vᵀ (L·S·Ev) if q or k does;
    dQ = dS·K (L·S·E) if q does; dK = dSᵀ·Q (S·L·E) if k does."""
    (q, k, v), where = _sdpa_operands(node)
    rows, s = _prod(q[:-1]), int(k[-2])
    e, ev = int(q[-1]), int(v[-1])
    dq, dk, dv = (i is not None and g.input(i) for i in where)
    dmask = any(g.input(i) for i in range(len(node.inputs)) if i not in where)  # a bias mask
    return rows * s * (ev * (int(dv) + int(dq or dk or dmask)) + e * (int(dq) + int(dk)))


def rnn_input_grads(node: OpNode, g: Grad) -> int:
    """Back-propagation through time: the hidden state's gradient every step (all layers'
    hidden projections) and the inputs of the layers above the first, whenever any gradient
    passes; the first layer's input projection only when the input needs a gradient."""
    input_macs, hidden_macs = rnn_layer_macs(node)
    a = node.attrs
    dirs = 2 if a.get("bidirectional") else 1
    first = dirs * _prod(node.in_shapes[0][:-1]) * RNN_GATES.get(node.op, 1) \
        * int(a.get("hidden_size", 0)) * int(node.in_shapes[0][-1])
    return hidden_macs + (input_macs - first) + (first if g.input(0) else 0)


def rnn_weight_grads(node: OpNode, g: Grad) -> int:
    """dW_ih and dW_hh: as many MACs as the forward projections."""
    return rnn_macs(node) if g.weight else 0


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


def copied_elements(node: OpNode) -> int:
    """`contiguous` / `clone`: one copy per element when it allocates, nothing when it
    returns its (already contiguous) input."""
    return 0 if node.attrs.get("aliases_input") is not None else node.out_numel


def per_output_rows_softmax(node: OpNode) -> int:
    """Fused attention's non-MAC work: the softmax over N·H·L·S scores (one op each)."""
    (q, k, _), _ = _sdpa_operands(node)
    return _prod(q[:-1]) * int(k[-2]) if q and k else 0


def embedding_grad_ops(node: OpNode, g: Grad) -> int:
    """The weight gradient scatters one row per looked-up index: one add per output element."""
    return node.out_numel if g.weight else 0


def rnn_other_ops(node: OpNode) -> int:
    """Gate non-linearities and products: G + 3 per hidden unit and step (a count, not MACs)."""
    a = node.attrs
    dirs = 2 if a.get("bidirectional") else 1
    steps = _prod(node.in_shapes[0][:-1])
    return steps * dirs * int(a.get("num_layers", 1)) * (RNN_GATES.get(node.op, 1) + 3) * \
        int(a.get("hidden_size", 0))


def bias_add(node: OpNode) -> int:
    return node.out_numel if node.bias_numel else 0


def bias_grad_ops(node: OpNode, g: Grad) -> int:
    """A MAC layer's backward other ops: its bias gradient sums the output gradient."""
    return node.out_numel if g.bias else 0


def on_gradient_path(forward_ops: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """Backward other ops of a non-MAC op: its forward ops again where a gradient passes
    through it, plus one op per output element for a scale and for a shift gradient."""
    def backward_other_ops(node: OpNode, g: Grad) -> int:
        ops = forward_ops(node) if any(g.inputs) else 0
        return ops + node.out_numel * (int(g.weight) + int(g.bias))
    return backward_other_ops


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
        saved += [Saved(("extra", "save_mean"), FP32_BYTES * channels),
                  Saved(("extra", "save_invstd"), FP32_BYTES * channels)]
    return saved


def pt_groupnorm(node, g):
    n = node.in_shapes[0][0]
    groups = node.attrs.get("num_groups", 1)
    return [Saved(("in", 0), category="input"), Saved(("extra", "mean"), FP32_BYTES * n * groups),
            Saved(("extra", "rstd"), FP32_BYTES * n * groups)]


def pt_layernorm(node, g):
    normalized = node.attrs.get("normalized_shape") or ()
    rows = node.in_numel(0) // max(1, _prod(normalized) if normalized else node.in_shapes[0][-1])
    # NativeLayerNormBackward0 keeps the input as given: a strided view (a slice x[:, 0:1], a
    # permute) keeps its whole storage, no copy (measured, notes/pytorch_saved_tensors.md).
    return [Saved(("in", 0), category="input"), Saved(("extra", "mean"), FP32_BYTES * rows),
            Saved(("extra", "rstd"), FP32_BYTES * rows)]


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
    if not g.training_mode or not drop_probability(node):
        return []  # p = 0 returns its input: no mask (measured)
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


def _operand_saved(node, i: int, category="mask") -> Saved:
    """A matmul operand as bmm/mm keeps it: the operand's own storage when expanding and
    folding its batch dimensions is a view, else the contiguous copy made in the forward
    (`operand_copied`, measured on the real tensors while tracing)."""
    copied = node.attrs.get("operand_copied") or []
    if i < len(copied) and copied[i]:
        return Saved(("extra", f"operand{i}_copy"), int(copied[i]), category)
    return Saved(("in", i), category=category)


def pt_matmul(node, g):
    # mm/bmm keep each operand only for the other operand's gradient (measured).
    a, b = _product_inputs(node)
    saved = []
    if g.input(b) and a < len(node.inputs):
        saved.append(_operand_saved(node, a))
    if g.input(a) and b < len(node.inputs):
        saved.append(_operand_saved(node, b))
    return saved


def pt_measured(node, g):
    """Ops whose saved set was measured while tracing, per situation (einsum's folding,
    oneDNN's LSTM workspace): {"wbx": [...]} keyed by weight/bias/input needing gradients."""
    table = node.attrs.get("measured_saved") or {}
    flags = (any(g.inputs),) if node.kind in MODULE_PROBED_KINDS else g.inputs
    key = measured_key(g.weight, g.bias, flags)
    saved = []
    for source, nbytes in table.get(key, []):
        if source == "new":
            saved.append(Saved(("extra", f"measured{len(saved)}"), int(nbytes)))
        elif source == "out":
            saved.append(Saved(("out",)))
        else:
            saved.append(Saved(("in", int(source))))
    return saved


def pt_measured_if_any(node, g):
    """Views keep nothing; indexing with tensors keeps what was measured on its call."""
    return pt_measured(node, g) if "measured_saved" in node.attrs else []


def pt_sdpa(node, g):
    # Modules in eval mode (`ttplan train`) run no dropout: without a mask, the flash path.
    eval_flash = not g.training_mode and not node.attrs.get("attn_mask")
    if "measured_saved" in node.attrs and not eval_flash:
        # Dropout or an attention mask: PyTorch takes the math path (scaled q, kᵀ, the
        # probabilities, the dropout mask, v), measured on the real call while tracing.
        return pt_measured(node, g)
    # The CPU flash-attention kernel keeps q, k, v, the output and a float32 logsumexp of
    # N·H·L, whichever input needs a gradient (measured; dropout_p > 0 takes another path).
    (q, _, _), where = _sdpa_operands(node)
    rows = _prod(q[:-1]) if q else 0
    saved = [Saved(("in", i)) for i in sorted({i for i in where if i is not None})
             if i < len(node.inputs)]
    return saved + [Saved(("out",)), Saved(("extra", "logsumexp"), FP32_BYTES * rows)]


def pt_div(node, g):
    # DivBackward0 keeps the divisor for the dividend's gradient, both for the divisor's.
    if len(node.inputs) < 2:
        return []
    if g.input(1):
        return [Saved(("in", 0)), Saved(("in", 1))]
    return [Saved(("in", 1))] if g.input(0) else []


def pt_embedding(node, g):
    # EmbeddingBackward0 keeps the indices (int64) for the weight gradient.
    return [Saved(("in", 0))] if g.weight and node.inputs else []


def pt_drop_path(node, g):
    # x * mask / keep: MulBackward0 keeps the per-sample mask (N×1×…, float) when x needs a
    # gradient; identity when p = 0 or not training.
    if not g.training_mode or not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), node.out_shape[0] * node.dtype_bytes)]


def drop_probability(node) -> float:
    a = node.attrs
    p = a.get("p", a.get("drop_prob", a.get("dropout_p", 0.0)))
    return float(p or 0.0)


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
    if not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), math.ceil(node.out_numel / 8))]


def paper_drop_path(node, g):
    if not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), math.ceil(node.out_shape[0] / 8))]


def paper_matmul(node, g):
    """A.4 keeps what a product's gradient needs: each operand for the other's gradient."""
    a, b = _product_inputs(node)
    saved = []
    if g.input(b):
        saved.append(Saved(("in", a)))
    if g.input(a):
        saved.append(Saved(("in", b)))
    return saved


def paper_sdpa(node, g):
    """An engine without recomputation keeps q, k, v and the attention probabilities
    (N·H·L·S), as the explicit softmax(q·kᵀ)·v would."""
    if not g.any:
        return []
    (q, k, _), where = _sdpa_operands(node)
    probs = _prod(q[:-1]) * int(k[-2])
    return [Saved(("in", i)) for i in sorted({i for i in where if i is not None})] + [
        Saved(("extra", "probabilities"), probs * node.dtype_bytes)]


def paper_rnn(node, g):
    """A.4-style: the layer input and, per step, the gate activations (G·H per sample and
    direction per layer) and the cell state, which the gradient of every gate needs."""
    if not g.any:
        return []
    a = node.attrs
    dirs = 2 if a.get("bidirectional") else 1
    steps = _prod(node.in_shapes[0][:-1])
    per_step = (RNN_GATES.get(node.op, 1) + 1) * int(a.get("hidden_size", 0))
    kept = steps * dirs * int(a.get("num_layers", 1)) * per_step * node.dtype_bytes
    return [Saved(("in", 0), category="input" if g.weight else "mask"),
            Saved(("extra", "gates"), kept)]


# ---- nn.MultiheadAttention ------------------------------------------------------------------

def _mha_sizes(node: OpNode) -> tuple[int, int, int, int, int, int]:
    """(query rows N·L, key rows N·S, S, E, kdim, vdim) of a MultiheadAttention call."""
    a = node.attrs
    shapes = a.get("mha_shapes") or {}
    q = shapes.get("query") or list(node.in_shapes[0])
    k = shapes.get("key") or q
    seq_dim = 1 if a.get("batch_first") and len(k) == 3 else 0
    return (_prod(q[:-1]), _prod(k[:-1]), int(k[seq_dim]), int(a.get("embed_dim", q[-1])),
            int(a.get("kdim") or q[-1]), int(a.get("vdim") or q[-1]))


def mha_projection_macs(node: OpNode) -> tuple[int, int]:
    """(input projections, output projection): q, k, v projected to E (rows·E·size_in each),
    and the attention output projected E → E."""
    rows_q, rows_k, _, e, kdim, vdim = _mha_sizes(node)
    return rows_q * e * e + rows_k * e * (kdim + vdim), rows_q * e * e


def mha_attention_macs(node: OpNode) -> int:
    """Q·Kᵀ and P·V over all heads: 2·N·L·S·E (heads × head_dim = E)."""
    rows_q, _, s, e, _, _ = _mha_sizes(node)
    return 2 * rows_q * s * e


def mha_macs(node: OpNode) -> int:
    return sum(mha_projection_macs(node)) + mha_attention_macs(node)


def mha_input_grads(node: OpNode, g: Grad) -> int:
    """Every gradient of a MultiheadAttention call (its weights, biases or input) goes back
    through the output projection (rows·E·E) and the attention (dV, dP, dQ, dK: 4·N·L·S·E);
    the input projections' input gradient only when the input needs one."""
    into, out = mha_projection_macs(node)
    return out + 2 * mha_attention_macs(node) + (into if g.input(0) else 0)


def mha_weight_grads(node: OpNode, g: Grad) -> int:
    return round(sum(mha_projection_macs(node)) * g.weight_fraction) if g.weight else 0


def mha_other_ops(node: OpNode) -> int:
    """The softmax over N·heads·L·S scores."""
    rows_q, _, s, _, _, _ = _mha_sizes(node)
    return rows_q * int(node.attrs.get("num_heads", 1)) * s


def paper_mha(node, g):
    """A.4-style: the input (for the projections' weight gradient), q, k, v, the attention
    probabilities and the attention output (for the output projection's)."""
    if not g.any:
        return []
    rows_q, rows_k, s, e, _, _ = _mha_sizes(node)
    heads = int(node.attrs.get("num_heads", 1))
    kept = (2 * rows_q * e + 2 * rows_k * e + rows_q * heads * s) * node.dtype_bytes
    return [Saved(("in", 0), category="input" if g.weight else "mask"),
            Saved(("extra", "qkv_probabilities_output"), kept)]


# ---- element-wise and reduction operators (saved sets measured, notes/) ---------------------

def pt_pow(node, g):
    # PowBackward0 (scalar exponent) keeps the base; PowBackward1 (tensor exponent) keeps
    # base, exponent and result.
    # PowBackward2 (scalar base, 2 ** x) keeps the exponent and the result.
    if node.attrs.get("scalar_base"):
        return [Saved(("in", 0)), Saved(("out",))]
    if not node.attrs.get("tensor_exponent"):
        return [Saved(("in", 0))]
    return [Saved(("in", 0)), Saved(("in", min(1, len(node.inputs) - 1))), Saved(("out",))]


def pt_norm(node, g):
    # LinalgVectorNormBackward0 keeps the input and the norm.
    return [Saved(("in", 0)), Saved(("out",))]


def _reduced_numel(node) -> int:
    dims = node.attrs.get("dim", 1)
    dims = dims if isinstance(dims, list) else [dims]
    shape = node.in_shapes[0] if node.in_shapes else node.out_shape
    reduced = _prod(shape[int(d)] for d in dims) if shape else 1
    return _numel(shape) // max(1, reduced)


def pt_normalize(node, g):
    # x / max(‖x‖, eps): the norm keeps x and ‖x‖, the division its divisor (the clamped
    # norm, a fresh tensor of the reduced shape).
    small = _reduced_numel(node) * node.dtype_bytes
    return [Saved(("in", 0)), Saved(("extra", "norm"), small),
            Saved(("extra", "clamped_norm"), small)]


def pt_addcmul(node, g):
    # AddcmulBackward0 (input + value·t1·t2) keeps t2 for t1's gradient and t1 for t2's.
    saved = []
    if g.input(1) and len(node.inputs) > 2:
        saved.append(Saved(("in", 2)))
    if g.input(2) and len(node.inputs) > 2:
        saved.append(Saved(("in", 1)))
    return saved


# ---- operators without a rule: derived from the traced call ---------------------------------

def derived_macs(node: OpNode) -> int:
    """MACs an operator-level count (torch.utils.flop_counter: FLOPs / 2) gave for the call."""
    return int(node.attrs.get("derived_macs", 0))


def derived_other_ops(node: OpNode) -> int:
    return 0 if derived_macs(node) else node.out_numel


def derived_input_grads(node: OpNode, g: Grad) -> int:
    """A product's gradient with respect to each operand is one more product of its size."""
    return derived_macs(node) * sum(1 for x in g.inputs if x)


# ---- the registry ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """How one operator kind costs. Unset backward fields follow from the forward ones: a MAC
    layer's input and weight gradients from its forward MACs, other ops on the gradient path."""

    forward_macs: Callable[[OpNode], int] = no_macs
    forward_other_ops: Callable[[OpNode], int] = per_output
    saved_pytorch: Callable[[OpNode, Grad], list] = pt_nothing
    saved_paper: Callable[[OpNode, Grad], list] = pt_nothing
    mac_layer: bool = False  # input/weight gradients cost MACs
    elementwise: bool = False  # `paper` engine computes it in place when its input dies
    backward_input_macs: Callable[[OpNode, Grad], int] | None = None
    backward_weight_macs: Callable[[OpNode, Grad], int] | None = None
    backward_other_ops: Callable[[OpNode, Grad], int] | None = None

    def __post_init__(self) -> None:
        derived = {
            "backward_input_macs": transposed_input_grad(self.forward_macs)
            if self.mac_layer else no_backward_macs,
            "backward_weight_macs": channel_weight_grad(self.forward_macs)
            if self.mac_layer else no_backward_macs,
            "backward_other_ops": bias_grad_ops if self.mac_layer
            else on_gradient_path(self.forward_other_ops),
        }
        for name, formula in derived.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, formula)


def _mac_rule(forward, pt, paper=paper_mac_layer):
    return Rule(forward, bias_add, pt, paper, mac_layer=True)


# One rule for ADD_PRODUCT_KINDS: the product's MACs and saved operands, plus one op per output
# element for the added term (and on the gradient path, its gradient).
_ADD_PRODUCT_RULE = Rule(matmul_macs, per_output, pt_matmul, paper_matmul,
                         backward_input_macs=matmul_input_grads,
                         backward_weight_macs=no_backward_macs,
                         backward_other_ops=on_gradient_path(per_output))

RULES: dict[str, Rule] = {
    "input": Rule(forward_other_ops=free),
    "conv": _mac_rule(conv_macs, pt_conv),
    "conv_transpose": _mac_rule(conv_transpose_macs, pt_conv),
    "linear": _mac_rule(linear_macs, pt_linear),
    "batchnorm": Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_batchnorm,
                      saved_paper=paper_norm, elementwise=True),
    "groupnorm": Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_groupnorm,
                      saved_paper=paper_layer_or_group_norm),
    "layernorm": Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_layernorm,
                      saved_paper=paper_layer_or_group_norm),
    "relu": Rule(saved_pytorch=pt_relu, saved_paper=paper_relu_mask, elementwise=True),
    "relu6": Rule(saved_pytorch=pt_saves_input_copied_inplace, saved_paper=paper_relu_mask,
                  elementwise=True),
    "hardtanh": Rule(saved_pytorch=pt_saves_input_copied_inplace, saved_paper=paper_relu_mask,
                     elementwise=True),
    "leaky_relu": Rule(saved_pytorch=pt_leaky_relu, saved_paper=paper_relu_mask,
                       elementwise=True),
    "hardswish": Rule(saved_pytorch=pt_saves_input_copied_inplace,
                      saved_paper=paper_smooth_activation, elementwise=True),
    "hardsigmoid": Rule(saved_pytorch=pt_saves_input, saved_paper=paper_smooth_activation,
                        elementwise=True),
    "silu": Rule(saved_pytorch=pt_saves_input_copied_inplace,
                 saved_paper=paper_smooth_activation, elementwise=True),
    "gelu": Rule(saved_pytorch=pt_saves_input, saved_paper=paper_smooth_activation,
                 elementwise=True),
    "sigmoid": Rule(saved_pytorch=pt_saves_output, saved_paper=paper_smooth_activation,
                    elementwise=True),
    "tanh": Rule(saved_pytorch=pt_saves_output, saved_paper=paper_smooth_activation,
                 elementwise=True),
    "softmax": Rule(saved_pytorch=pt_saves_output, saved_paper=paper_smooth_activation),
    "maxpool": Rule(forward_other_ops=pool_window, saved_pytorch=pt_maxpool,
                    saved_paper=paper_maxpool),
    "adaptive_maxpool": Rule(forward_other_ops=per_input, saved_pytorch=pt_maxpool,
                             saved_paper=paper_maxpool),
    "avgpool": Rule(forward_other_ops=pool_window, saved_pytorch=pt_saves_input),
    "adaptive_avgpool": Rule(forward_other_ops=per_input, saved_pytorch=pt_adaptive_avgpool),
    "mean": Rule(forward_other_ops=per_input),
    "add": Rule(elementwise=True),
    "mul": Rule(saved_pytorch=pt_mul, saved_paper=pt_mul, elementwise=True),
    "cat": Rule(forward_other_ops=free),
    "reshape": Rule(forward_other_ops=free),
    "identity": Rule(forward_other_ops=free),
    "getitem": Rule(forward_other_ops=free, saved_pytorch=pt_measured_if_any),
    "dropout": Rule(saved_pytorch=pt_dropout, saved_paper=paper_dropout, elementwise=True),
    "drop_path": Rule(saved_pytorch=pt_drop_path, saved_paper=paper_drop_path,
                      elementwise=True),
    "upsample": Rule(),
    "compare": Rule(),
    "div": Rule(saved_pytorch=pt_div, saved_paper=pt_div, elementwise=True),
    "split": Rule(forward_other_ops=free),
    "contiguous": Rule(forward_other_ops=copied_elements),
    "constant": Rule(forward_other_ops=free),
    "parameter": Rule(forward_other_ops=free, backward_other_ops=no_backward_macs),
    "matmul": Rule(matmul_macs, free, pt_matmul, paper_matmul,
                   backward_input_macs=matmul_input_grads,
                   backward_weight_macs=no_backward_macs, backward_other_ops=no_backward_macs),
    "baddbmm": _ADD_PRODUCT_RULE,
    "einsum": Rule(einsum_macs, free, pt_measured, paper_matmul,
                   backward_input_macs=matmul_input_grads,
                   backward_weight_macs=no_backward_macs, backward_other_ops=no_backward_macs),
    "sdpa": Rule(sdpa_macs, per_output_rows_softmax, pt_sdpa, paper_sdpa,
                 backward_input_macs=sdpa_input_grads, backward_weight_macs=no_backward_macs),
    "embedding": Rule(forward_other_ops=free, saved_pytorch=pt_embedding,
                      backward_other_ops=embedding_grad_ops),
    "rnn": Rule(rnn_macs, rnn_other_ops, pt_measured, paper_rnn, mac_layer=True,
                backward_input_macs=rnn_input_grads, backward_weight_macs=rnn_weight_grads,
                backward_other_ops=bias_grad_ops),
    "mha": Rule(mha_macs, mha_other_ops, pt_measured, paper_mha, mac_layer=True,
                backward_input_macs=mha_input_grads, backward_weight_macs=mha_weight_grads,
                backward_other_ops=on_gradient_path(mha_other_ops)),
    "addmm": _ADD_PRODUCT_RULE,
    "addcmul": Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_addcmul,
                    saved_paper=pt_addcmul),
    "norm": Rule(forward_other_ops=per_input, saved_pytorch=pt_norm,
                 saved_paper=paper_smooth_activation),
    "normalize": Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_normalize,
                      saved_paper=paper_smooth_activation),
    "pow": Rule(saved_pytorch=pt_pow, saved_paper=paper_smooth_activation),
    "sin": Rule(saved_pytorch=pt_saves_input, saved_paper=paper_smooth_activation),
    "cos": Rule(saved_pytorch=pt_saves_input, saved_paper=paper_smooth_activation),
    "abs": Rule(saved_pytorch=pt_saves_input, saved_paper=paper_smooth_activation),
    "exp": Rule(saved_pytorch=pt_saves_output, saved_paper=paper_smooth_activation),
    "rsqrt": Rule(saved_pytorch=pt_saves_output, saved_paper=paper_smooth_activation),
    "cumsum": Rule(),  # CumsumBackward0 keeps nothing: its gradient is a reversed cumsum
    "pad": Rule(forward_other_ops=free),  # a copy into a larger buffer; keeps nothing
    "roll": Rule(forward_other_ops=free),  # a permutation of elements; keeps nothing
    # No rule of its own: what it keeps is read from autograd on the traced call, per
    # situation (which inputs need a gradient), and its MACs are counted on the operator.
    "derived": Rule(derived_macs, derived_other_ops, pt_measured, pt_measured,
                    backward_input_macs=derived_input_grads,
                    backward_weight_macs=no_backward_macs,
                    backward_other_ops=on_gradient_path(derived_other_ops)),
}


class Registry:
    """Kinds of modules, functions and tensor methods, and the rule of each kind."""

    def __init__(self, rules: dict[str, Rule], modules: dict[type, str],
                 functions: dict[object, str], methods: dict[str, str]):
        self.rules, self.modules = dict(rules), dict(modules)
        self.functions, self.methods = dict(functions), dict(methods)

    def rule_for(self, kind: str) -> Rule | None:
        """The rule of a kind, or None for an operator ttplan does not know (reported, never 0)."""
        return self.rules.get(kind)

    def module_kind(self, module: nn.Module) -> str:
        """The kind of the nearest class in the module's MRO that has one."""
        for cls in type(module).__mro__:
            kind = self.modules.get(cls)
            if kind is not None:
                return kind
        return self._named_kind(module) or "unknown"

    @staticmethod
    def _named_kind(module: nn.Module) -> str | None:
        """Kinds known by class name only (each library writes its own DropPath)."""
        for cls in type(module).__mro__:
            if cls.__name__ in MODULE_NAME_KINDS:
                return MODULE_NAME_KINDS[cls.__name__]
        return None

    def is_leaf(self, module: nn.Module) -> bool:
        """Is a module one operator? Yes when its class (or a base class whose `forward` it
        keeps) has a kind; a subclass with its own forward is traced into."""
        for cls in type(module).__mro__:
            if cls in self.modules:
                return type(module).forward is cls.forward or cls is type(module)
        return self._named_kind(module) is not None

    def function_kind(self, target) -> str:
        if isinstance(target, str):
            return self.methods.get(target, "unknown")
        return self.functions.get(target, "unknown")

    def register(self, key, rule: Rule, kind: str | None = None, *, replace_ok=False) -> str:
        """Give `key` (an nn.Module subclass, a function, or a kind name) the rule `rule`;
        returns the kind. Refuses a key or kind that already has one unless `replace_ok`."""
        if not isinstance(rule, Rule):
            raise SpecError(f"a cost rule must be a ttplan Rule, not {type(rule).__name__}")
        if isinstance(key, str):
            kind, table = key, None
        elif isinstance(key, type) and issubclass(key, nn.Module):
            kind, table = kind or f"{key.__module__}.{key.__qualname__}", self.modules
        elif callable(key):
            kind = kind or f"{getattr(key, '__module__', '')}.{getattr(key, '__qualname__', key)}"
            table = self.functions
        else:
            raise SpecError(f"cannot register a cost rule for {key!r}: give an nn.Module "
                            "subclass, a function or a kind name")
        if not replace_ok:
            if table is not None and key in table:
                raise SpecError(f"{_label(key)} already has a cost rule (kind {table[key]!r})")
            if kind in self.rules:
                raise SpecError(f"kind {kind!r} already has a cost rule")
        if table is not None:
            table[key] = kind
        self.rules[kind] = rule
        return kind

    def with_rules(self, overrides: dict | None) -> Registry:
        """A copy in which `overrides` {module class | function | kind: Rule} take precedence."""
        if not overrides:
            return self
        copy = Registry(self.rules, self.modules, self.functions, self.methods)
        for key, rule in overrides.items():
            copy.register(key, rule, replace_ok=True)
        return copy


def _label(key) -> str:
    return getattr(key, "__qualname__", None) or repr(key)


REGISTRY = Registry(RULES, MODULE_KINDS, FUNCTION_KINDS, METHOD_KINDS)


def register_rule(key, rule: Rule, kind: str | None = None) -> str:
    """Price a module class, function or kind of your own everywhere ttplan costs a model.
    Refuses anything that already has a rule (use ``rules=`` of `profile` to override)."""
    return REGISTRY.register(key, rule, kind)


def rule_for(kind: str) -> Rule | None:
    """The default registry's rule of a kind."""
    return REGISTRY.rule_for(kind)


def registry_of(graph) -> Registry:
    """The registry a graph was traced with."""
    return graph.rules if graph.rules is not None else REGISTRY


__all__ = ["Grad", "Saved", "Rule", "Registry", "REGISTRY", "register_rule", "rule_for",
           "registry_of"]
