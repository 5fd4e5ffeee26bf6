"""Where values enter the graph: the model's inputs, parameters read as tensors, and tensors
made from nothing (torch.zeros, arange, …). They cost nothing and keep nothing."""

from __future__ import annotations

import torch

from .common import free, no_backward_other_ops
from .rule import Operator, Rule

OPERATORS = (
    Operator("input", Rule(forward_other_ops=free)),
    # A parameter's own gradient is counted at the operator that uses it.
    Operator("parameter", Rule(forward_other_ops=free,
                               backward_other_ops=no_backward_other_ops)),
    Operator("constant", Rule(forward_other_ops=free),
             functions=(torch.zeros, torch.ones, torch.arange, torch.full, torch.empty,
                        torch.zeros_like, torch.ones_like, torch.tensor)),
)
