"""``nn.Linear`` / ``F.linear``: out_numel · in_features MACs (every output element sums
in_features products); backward as any MAC layer (the transposed op, the updated channels)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from .common import autocast_operands, computed_weight, mac_layer_rule
from .rule import Operator, Saved


def linear_macs(node: OpNode) -> int:
    return node.out_numel * node.weight_shape[1]


def pt_linear(node, g):
    """addmm/mm keep the input only to form the weight gradient: the input itself, or the
    contiguous copy made when flattening its leading dimensions is not a view."""
    # a computed weight (weight_norm) is a tensor of its own, kept for the input's gradient
    cast = autocast_operands(node, keep_input=g.weight, keep_weight=g.input(0))
    if cast is not None:  # under autocast addmm runs on casts of both
        return cast
    weight = computed_weight(node, g, kept=g.input(0))
    if not g.weight:
        return weight
    if not node.attrs.get("input_flattens_as_view", True):
        return [Saved(("extra", "contiguous_input"), node.in_numel(0) * node.dtype_bytes,
                      "input")] + weight
    return [Saved(("in", 0), category="input")] + weight


OPERATORS = (
    Operator("linear", mac_layer_rule(linear_macs, pt_linear),
             modules=(nn.Linear,), functions=(F.linear,)),
)
