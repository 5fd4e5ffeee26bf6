"""Formula pieces more than one operator family uses.

Other ops (elementary operations that are not MACs): one per output element for element-wise
ops, two for scale-and-shift, one per input element for reductions; views cost nothing.
Saved tensors: what the op keeps for backward when its autograd node exists (``g.any``);
parameters and buffers are not activations and are left out. Under ``pytorch`` they are what
eager autograd keeps on PyTorch 2.13 (checked against saved_tensors_hooks in tests); under
``paper`` what appendix A.4's ideal engine keeps.
"""

from __future__ import annotations

import math

from ..graph import OpNode, _numel
from ..opinfo import measured_key
from .rule import Grad, Rule, Saved


def prod(values) -> int:
    return math.prod(int(v) for v in values)


# ---- other ops -----------------------------------------------------------------------------

def per_output_x2(node: OpNode) -> int:
    """Scale and shift (an inference-mode norm), or two products per element."""
    return 2 * node.out_numel


def per_input(node: OpNode) -> int:
    """A reduction: one op per input element."""
    return sum(_numel(s) for s in node.in_shapes)


def free(node: OpNode) -> int:
    return 0


def no_backward_other_ops(node: OpNode, g: Grad) -> int:
    return 0


def bias_add(node: OpNode) -> int:
    return node.out_numel if node.bias_numel else 0


# ---- saved tensors -------------------------------------------------------------------------

def pt_saves_input(node, g):
    return [Saved(("in", 0))]


def pt_saves_output(node, g):
    return [Saved(("out",))]


def paper_saves_input_for_its_gradient(node, g):
    """A smooth function's derivative needs its input, and only for the input's gradient."""
    return [Saved(("in", 0))] if g.input(0) else []


def computed_weight(node, g, kept: bool) -> list:
    """A weight computed at every call (torch.nn.utils' parametrizations or its older
    weight_norm / spectral_norm / pruning hooks): the layer keeps it, when `kept`, as a tensor
    of its own, not a parameter. When its originals train, what computing it keeps
    (`module_calls._computed_weight_attrs`): a parametrization's, measured when traced; the
    older spectral_norm's sigma = u · (W v) and, in train mode (where it updates them),
    copies of u and v (in eval mode the buffers themselves, model state); a pruning mask
    nothing (a buffer); weight_norm its norm per output channel (measured on 2.13,
    notes/pytorch_saved_tensors.md)."""
    if "weight" not in node.attrs.get("parametrized", ()):
        return []
    out = [Saved(("extra", "computed_weight"), node.weight_numel * node.dtype_bytes)] \
        if kept else []
    if not g.weight or node.attrs.get("pruned"):
        return out
    attrs = node.attrs
    if "parametrization_saved_bytes" in attrs:
        nbytes = attrs["parametrization_saved_bytes"]
    elif "spectral_norm" in attrs:
        nbytes = (1 + (sum(attrs["spectral_norm"]) if g.training_mode else 0)) \
            * node.dtype_bytes
    elif node.weight_shape:
        nbytes = int(node.weight_shape[0]) * node.dtype_bytes
    else:
        return out
    if nbytes:
        out.append(Saved(("extra", "computed_weight_saved"), nbytes))
    return out


def autocast_operands(node, keep_input: bool, keep_weight: bool) -> list | None:
    """What a MAC layer under torch.autocast keeps (None when not under it): its input as
    cast (a new tensor of the autocast dtype when the input had another, else the input) and
    its weight's cast (always a new tensor), as asked."""
    cast = node.attrs.get("autocast_bytes")
    if not cast:
        return None
    out = []
    if keep_input:
        out.append(Saved(("extra", "autocast_input"), node.in_numel(0) * cast, "input")
                   if node.attrs.get("autocast_casts_input") else
                   Saved(("in", 0), category="input"))
    if keep_weight:
        out.append(Saved(("extra", "autocast_weight"), node.weight_numel * cast))
    return out


def layer_input(g: Grad) -> Saved:
    """A layer's input kept for all its gradients: B4 (input) when its weights are updated,
    else B3 (what the input gradient needs)."""
    return Saved(("in", 0), category="input" if g.weight else "mask")


def paper_mac_layer(node, g):
    """A.4: a MAC layer keeps its input (the selected channels) for the weight gradient;
    bias and input gradients need no stored activation."""
    if not g.weight:
        return []
    return [Saved(("in", 0), category="input", fraction=g.input_fraction)]


def mac_layer_rule(forward_macs, saved_pytorch) -> Rule:
    """A layer with a weight: gradients are the transposed op, one op per output for a bias."""
    return Rule(forward_macs, bias_add, saved_pytorch, paper_mac_layer, mac_layer=True)


def _measured(node, g, input_flags) -> list:
    """What autograd kept on the traced call in this situation: ``measured_saved`` is
    {"wbx…": [(source, nbytes)]}, keyed by weight/bias/inputs needing gradients;
    ``measured_saved_eval``, where a module keeps something else in eval mode (no dropout),
    is read when the modules run in eval mode."""
    table = (not g.training_mode and node.attrs.get("measured_saved_eval")) or \
        node.attrs.get("measured_saved") or {}
    saved = []
    for source, nbytes in table.get(measured_key(g.weight, g.bias, input_flags), []):
        if source == "new":
            saved.append(Saved(("extra", f"measured{len(saved)}"), int(nbytes)))
        elif source == "out":
            saved.append(Saved(("out",)))
        else:
            saved.append(Saved(("in", int(source))))
    return saved


def pt_measured(node, g):
    """Ops whose saved set depends on a kernel's internals (einsum's folding), measured per
    situation while tracing, one flag per input."""
    return _measured(node, g, g.inputs)


def pt_measured_module(node, g):
    """Modules measured with one flag for all their inputs (oneDNN's recurrent workspace,
    MultiheadAttention's internal path)."""
    return _measured(node, g, (any(g.inputs),))
