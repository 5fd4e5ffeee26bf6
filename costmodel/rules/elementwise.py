"""Element-wise arithmetic and maths: add/sub/neg, mul, div, masked_fill, comparisons, pow, sin,
cos, abs, exp, rsqrt, addcmul (in place too: x.mul_(y), x /= y, masked_fill_). One other op
per output element (addcmul two), no MACs: a product of two activations is counted as an op
here, as torch.utils.flop_counter does.

Saved sets are measured (notes/pytorch_saved_tensors.md); where the ``paper`` engine needs the
same tensors as autograd, one function serves both conventions.
"""

from __future__ import annotations

import operator

import torch

from .common import (paper_saves_input_for_its_gradient, per_output_x2, pt_saves_input,
                     pt_saves_output)
from .rule import Operator, Rule, Saved


def paper_mul(node, g):
    # Each factor is kept for the other factor's gradient.
    saved = []
    if g.input(0) and len(node.in_shapes) > 1:
        saved.append(Saved(("in", 1)))
    if g.input(1):
        saved.append(Saved(("in", 0)))
    return saved


def copy_of_x(node) -> Saved:
    """x.mul_(y), x /= y with y needing a gradient: autograd keeps a copy of x made before the
    write (y's gradient needs x's old values; measured, 2.13)."""
    return Saved(("extra", "self_copy"), node.in_numel(0) * node.dtype_bytes)


def pt_mul(node, g):
    # MulBackward0 keeps each factor for the other factor's gradient (x: a copy when written
    # in place).
    saved = paper_mul(node, g)
    if g.input(1) and node.attrs.get("inplace"):
        saved[-1] = copy_of_x(node)
    return saved


def paper_div(node, g):
    # The divisor is kept for the dividend's gradient, both for the divisor's; a scalar
    # divided by x (c / x): its derivative -c / x² needs x.
    if node.attrs.get("scalar_dividend"):
        return [Saved(("in", 0))] if g.input(0) else []
    if len(node.inputs) < 2:
        return []
    if g.input(1):
        return [Saved(("in", 0)), Saved(("in", 1))]
    return [Saved(("in", 1))] if g.input(0) else []


def pt_div(node, g):
    # DivBackward0 keeps what `paper_div` says (x: a copy when written in place). c / x runs
    # as x.reciprocal() * c: ReciprocalBackward0 keeps the reciprocal, a tensor of its own
    # (measured, 2.13).
    if node.attrs.get("scalar_dividend"):
        return [Saved(("extra", "reciprocal"), node.out_numel * node.dtype_bytes)] \
            if g.input(0) else []
    saved = paper_div(node, g)
    if g.input(1) and node.attrs.get("inplace"):
        saved[0] = copy_of_x(node)
    return saved


def pt_pow(node, g):
    # PowBackward0 (scalar exponent) keeps the base; PowBackward1 (tensor exponent) keeps
    # base, exponent and result; PowBackward2 (scalar base, 2 ** x) the exponent and result.
    if node.attrs.get("scalar_base"):
        return [Saved(("in", 0)), Saved(("out",))]
    if not node.attrs.get("tensor_exponent"):
        return [Saved(("in", 0))]
    return [Saved(("in", 0)), Saved(("in", min(1, len(node.inputs) - 1))), Saved(("out",))]


def pt_masked_fill(node, g):
    # MaskedFillBackward0 keeps the mask for the input's gradient; a mask the model holds as
    # a buffer is not an activation (nothing counted), one computed in the forward is.
    mask = node.attrs.get("mask_input")
    return [Saved(("in", mask))] if g.input(0) and mask is not None else []


def pt_addcmul(node, g):
    # AddcmulBackward0 (input + value·t1·t2) keeps t2 for t1's gradient and t1 for t2's.
    saved = []
    if g.input(1) and len(node.inputs) > 2:
        saved.append(Saved(("in", 2)))
    if g.input(2) and len(node.inputs) > 2:
        saved.append(Saved(("in", 1)))
    return saved


def smooth(saved_pytorch) -> Rule:
    """A smooth function of one tensor: `paper` keeps its input for its derivative."""
    return Rule(saved_pytorch=saved_pytorch, saved_paper=paper_saves_input_for_its_gradient)


COMPARISONS = ("gt", "lt", "ge", "le", "eq", "ne")

OPERATORS = (
    # Subtraction and negation are additions for cost: one op per element, nothing kept.
    Operator("add", Rule(elementwise=True),
             functions=(operator.add, torch.add, operator.iadd, operator.sub, torch.sub,
                        operator.isub, operator.neg),
             methods=("add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_",
                      "__sub__", "__isub__", "__neg__", "__rsub__")),
    Operator("mul", Rule(saved_pytorch=pt_mul, saved_paper=paper_mul, elementwise=True),
             functions=(operator.mul, torch.mul, operator.imul),
             methods=("mul", "mul_", "__mul__", "__imul__", "__rmul__")),
    Operator("div", Rule(saved_pytorch=pt_div, saved_paper=paper_div, elementwise=True),
             functions=(operator.truediv, operator.itruediv, torch.div),
             methods=("div", "div_", "__truediv__", "__itruediv__", "__rtruediv__", "__rdiv__")),
    Operator("masked_fill", Rule(saved_pytorch=pt_masked_fill, saved_paper=pt_masked_fill,
                                 elementwise=True),
             functions=(torch.masked_fill,), methods=("masked_fill", "masked_fill_")),
    # Comparisons give boolean tensors: no gradient flows through them (data-dependent
    # control flow in models that only the hooks tracer can follow).
    Operator("compare", Rule(),
             functions=tuple(getattr(operator, name) for name in COMPARISONS),
             methods=COMPARISONS + tuple(f"__{name}__" for name in COMPARISONS)),
    Operator("pow", smooth(pt_pow), functions=(torch.pow, operator.pow),
             methods=("pow", "__pow__", "__rpow__")),
    Operator("sin", smooth(pt_saves_input), functions=(torch.sin,), methods=("sin",)),
    Operator("cos", smooth(pt_saves_input), functions=(torch.cos,), methods=("cos",)),
    Operator("abs", smooth(pt_saves_input), functions=(torch.abs, operator.abs),
             methods=("abs", "__abs__")),
    Operator("exp", smooth(pt_saves_output), functions=(torch.exp,), methods=("exp",)),
    Operator("rsqrt", smooth(pt_saves_output), functions=(torch.rsqrt,), methods=("rsqrt",)),
    Operator("addcmul", Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_addcmul,
                             saved_paper=pt_addcmul),
             functions=(torch.addcmul,), methods=("addcmul",)),
)
