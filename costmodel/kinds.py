"""What the tracer needs to know about a call target besides its kind.

Which kind a module class, function or tensor method is lives with its cost rule, in the one
registry (`costmodel.rules`: each family module lists its operators' keys beside their
formulas). Here: tensor attributes that are operators, which calls write into their first
operand, and a target's printable name.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

# Tensor attributes that are tensors (x.T, x.mT); every other attribute is not an operator.
TENSOR_ATTRIBUTE_KINDS: dict[str, str] = {"T": "reshape", "mT": "reshape", "data": "identity"}

# Method names that modify their first operand in place.
INPLACE_METHODS = frozenset({"relu_", "add_", "sub_", "mul_", "div_", "clamp_", "sigmoid_",
                             "tanh_", "masked_fill_", "__iadd__", "__isub__", "__imul__",
                             "__itruediv__"})
INPLACE_FUNCTIONS = frozenset({operator.iadd, operator.isub, operator.imul, operator.itruediv,
                               F.relu_, torch.relu_})


def function_name(target) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", repr(target))
