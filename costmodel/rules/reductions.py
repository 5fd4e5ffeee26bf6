"""Reductions and scans: mean/sum, vector norms, ``F.normalize``, cumsum. No MACs; a reduction
costs one op per input element."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..graph import _numel
from .common import paper_saves_input_for_its_gradient, per_input, per_output_x2, prod
from .rule import Operator, Rule, Saved


def pt_norm(node, g):
    # LinalgVectorNormBackward0 keeps the input and the norm.
    return [Saved(("in", 0)), Saved(("out",))]


def _reduced_numel(node) -> int:
    """Elements left after reducing over the call's `dim` (F.normalize: dim=1 by default)."""
    dims = node.attrs.get("dim", 1)
    dims = dims if isinstance(dims, list) else [dims]
    shape = node.in_shapes[0] if node.in_shapes else node.out_shape
    reduced = prod(shape[int(d)] for d in dims) if shape else 1
    return _numel(shape) // max(1, reduced)


def pt_normalize(node, g):
    # x / max(‖x‖, eps): the norm keeps x and ‖x‖, the division its divisor (the clamped
    # norm, a fresh tensor of the reduced shape).
    small = _reduced_numel(node) * node.dtype_bytes
    return [Saved(("in", 0)), Saved(("extra", "norm"), small),
            Saved(("extra", "clamped_norm"), small)]


OPERATORS = (
    # A sum costs what a mean costs (the division is folded into the count's constant).
    Operator("mean", Rule(forward_other_ops=per_input),
             functions=(torch.mean, torch.sum), methods=("mean", "sum")),
    Operator("norm", Rule(forward_other_ops=per_input, saved_pytorch=pt_norm,
                          saved_paper=paper_saves_input_for_its_gradient),
             functions=(torch.norm, torch.linalg.vector_norm), methods=("norm",)),
    Operator("normalize", Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_normalize,
                               saved_paper=paper_saves_input_for_its_gradient),
             functions=(F.normalize,)),
    # CumsumBackward0 keeps nothing: its gradient is a reversed cumsum.
    Operator("cumsum", Rule(), functions=(torch.cumsum,), methods=("cumsum",)),
)
