"""Tensor products without a weight of their own: matmul (``@``, bmm, mm), einsum, and the
products that add a first operand (addmm, baddbmm: beta·input + a·b).

Forward MACs: every output element sums K products, K the contracted size (the first
multiplied operand's last dimension); a two-operand einsum one product per combination of
all the equation's indices. Backward: each multiplied operand that needs a gradient costs one
more product of the forward's size (dA = dC·Bᵀ, dB = Aᵀ·dC), whatever is broadcast; there is no
weight gradient. What each keeps: each operand for the other operand's gradient.
"""

from __future__ import annotations

import operator
from typing import Callable

import torch

from ..graph import OpNode
from .common import free, no_backward_other_ops, prod, pt_measured
from .rule import NO_BACKWARD_MACS, Grad, Operator, Rule, Saved, on_gradient_path, per_output

# Products that add a first operand: the multiplied operands are inputs 1 and 2.
ADD_PRODUCT_KINDS = frozenset({"baddbmm", "addmm"})


def _multiplied_shapes(node: OpNode) -> tuple[tuple, tuple]:
    """The two multiplied operands' shapes (baddbmm's are its last two inputs)."""
    if node.kind in ADD_PRODUCT_KINDS:
        return node.in_shapes[-2], node.in_shapes[-1]
    shapes = list(node.in_shapes) + [tuple(node.attrs.get("other_shape", ()))]
    return shapes[0], shapes[1]


def matmul_macs(node: OpNode) -> int:
    a, _ = _multiplied_shapes(node)
    return node.out_numel * int(a[-1]) if a else 0


def einsum_macs(node: OpNode) -> int:
    sizes = node.attrs.get("index_sizes") or {}
    return prod(sizes.values()) if sizes else 0


def multiplied_inputs(node: OpNode) -> tuple[int, int]:
    """The graph inputs the two multiplied operands are (x @ x: the same one twice)."""
    first = 1 if node.kind in ADD_PRODUCT_KINDS else 0
    return first, first if node.attrs.get("operands_same") else first + 1


def operand_grads(forward: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """One product of the forward's size per multiplied operand that needs a gradient."""
    def backward_input_macs(node: OpNode, g: Grad) -> int:
        a, b = multiplied_inputs(node)
        return (int(g.input(a)) + int(g.input(b))) * forward(node)
    return backward_input_macs


def _operand_saved(node, i: int) -> Saved:
    """A matmul operand as bmm/mm keeps it: the operand's own storage when expanding and
    folding its batch dimensions is a view, else the contiguous copy made in the forward
    (`operand_copied`, measured on the real tensors while tracing)."""
    copied = node.attrs.get("operand_copied") or []
    if i < len(copied) and copied[i]:
        return Saved(("extra", f"operand{i}_copy"), int(copied[i]))
    return Saved(("in", i))


def pt_matmul(node, g):
    # mm/bmm keep each operand only for the other operand's gradient (measured).
    a, b = multiplied_inputs(node)
    saved = []
    if g.input(b) and a < len(node.inputs):
        saved.append(_operand_saved(node, a))
    if g.input(a) and b < len(node.inputs):
        saved.append(_operand_saved(node, b))
    return saved


def paper_matmul(node, g):
    """A.4 keeps what a product's gradient needs: each operand for the other's gradient."""
    a, b = multiplied_inputs(node)
    saved = []
    if g.input(b):
        saved.append(Saved(("in", a)))
    if g.input(a):
        saved.append(Saved(("in", b)))
    return saved


MATMUL = Rule(matmul_macs, free, pt_matmul, paper_matmul,
              backward_input_macs=operand_grads(matmul_macs),
              backward_weight_macs=NO_BACKWARD_MACS, backward_other_ops=no_backward_other_ops)

# The product, plus one op per output element for the added term (and for its gradient).
ADD_PRODUCT = Rule(matmul_macs, per_output, pt_matmul, paper_matmul,
                   backward_input_macs=operand_grads(matmul_macs),
                   backward_weight_macs=NO_BACKWARD_MACS,
                   backward_other_ops=on_gradient_path(per_output))

# einsum's saved set depends on how it folds the equation into bmm: measured per call.
EINSUM = Rule(einsum_macs, free, pt_measured, paper_matmul,
              backward_input_macs=operand_grads(einsum_macs),
              backward_weight_macs=NO_BACKWARD_MACS, backward_other_ops=no_backward_other_ops)

OPERATORS = (
    Operator("matmul", MATMUL,
             functions=(operator.matmul, torch.matmul, torch.bmm, torch.mm),
             methods=("matmul", "__matmul__", "bmm", "mm")),
    Operator("baddbmm", ADD_PRODUCT, functions=(torch.baddbmm,), methods=("baddbmm",)),
    Operator("addmm", ADD_PRODUCT, functions=(torch.addmm,), methods=("addmm",)),
    Operator("einsum", EINSUM, functions=(torch.einsum,)),
)
