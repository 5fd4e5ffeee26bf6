"""Operators without a rule of their own (kind "derived"): their MACs come from an
operator-level count on the traced call (torch.utils.flop_counter: FLOPs / 2), what they keep
from autograd on that call, per situation. Never costed as free: an operator neither ruled
nor derivable stays "unknown" and is reported."""

from __future__ import annotations

from ..graph import OpNode
from .common import pt_measured
from .rule import NO_BACKWARD_MACS, Grad, Operator, Rule, on_gradient_path


def derived_macs(node: OpNode) -> int:
    return int(node.attrs.get("derived_macs", 0))


def derived_other_ops(node: OpNode) -> int:
    """A call without counted MACs is taken as element-wise: one op per output element."""
    return 0 if derived_macs(node) else node.out_numel


def derived_input_grads(node: OpNode, g: Grad) -> int:
    """A product's gradient with respect to each operand is one more product of its size."""
    return derived_macs(node) * sum(1 for x in g.inputs if x)


OPERATORS = (
    Operator("derived", Rule(derived_macs, derived_other_ops, pt_measured, pt_measured,
                             backward_input_macs=derived_input_grads,
                             backward_weight_macs=NO_BACKWARD_MACS,
                             backward_other_ops=on_gradient_path(derived_other_ops))),
)
