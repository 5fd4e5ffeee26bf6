"""Operators that move data without arithmetic: views (reshape, permute, slicing, split),
copies (contiguous, clone, cat, pad, roll) and dtype/device casts. They cost no MACs and,
except a copy that allocates, no other ops."""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from .common import free, pt_measured
from .rule import Operator, Rule, Saved

# Kinds whose result shares its input's storage (memory counts the storage once).
VIEW_KINDS = frozenset({"reshape", "identity", "getitem", "split"})


def copied_elements(node: OpNode) -> int:
    """`contiguous` / `clone`: one copy per element when it allocates, nothing when it
    returns its (already contiguous) input."""
    return 0 if node.attrs.get("aliases_input") is not None else node.out_numel


def pt_getitem(node, g):
    """A view keeps nothing; indexing with tensors keeps what was measured on its call; a
    pool's indices (`pool_indices`) are what the pool's backward keeps, counted here as a
    tensor of the graph so that MaxUnpool reading them keeps the same storage."""
    if node.attrs.get("pool_indices"):
        return [Saved(("out",))]
    return pt_measured(node, g) if "measured_saved" in node.attrs else []


MOVES_NOTHING = Rule(forward_other_ops=free)

OPERATORS = (
    Operator("reshape", MOVES_NOTHING, modules=(nn.Flatten, nn.Unflatten),
             functions=(torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
                        torch.transpose, torch.permute),
             methods=("view", "reshape", "flatten", "squeeze", "unsqueeze", "permute",
                      "transpose", "expand", "expand_as", "t", "view_as", "reshape_as",
                      "unflatten")),
    # Casts are free at the activation width ttplan counts in.
    Operator("identity", MOVES_NOTHING, modules=(nn.Identity,),
             methods=("to", "float", "type_as", "int", "long", "bool", "half", "double",
                      "type")),
    Operator("getitem", Rule(forward_other_ops=free, saved_pytorch=pt_getitem),
             functions=(operator.getitem,), methods=("__getitem__",)),
    Operator("split", MOVES_NOTHING, functions=(torch.chunk, torch.split, torch.unbind),
             methods=("chunk", "split", "unbind", "tensor_split")),
    Operator("contiguous", Rule(forward_other_ops=copied_elements),
             methods=("contiguous", "clone")),
    Operator("cat", MOVES_NOTHING, functions=(torch.cat, torch.concat, torch.stack)),
    Operator("pad", MOVES_NOTHING, functions=(F.pad,)),  # a copy into a larger buffer
    Operator("roll", MOVES_NOTHING, functions=(torch.roll,), methods=("roll",)),
)
