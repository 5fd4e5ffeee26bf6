"""Normalisation layers: BatchNorm, GroupNorm, LayerNorm (modules and functions).

No MACs: the scale and shift are two other ops per output element; their gradients one op per
output element each (the `Rule` default on the gradient path). BatchNorm is element-wise for
the ``paper`` engine, which folds it into the preceding layer.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..options import FP32_BYTES
from .common import layer_input, per_output_x2, prod
from .rule import Operator, Rule, Saved


def pt_batchnorm(node, g):
    channels = node.in_shapes[0][1] if len(node.in_shapes[0]) > 1 else 1
    saved = [Saved(("in", 0), category="input")]
    if g.training_mode:  # batch mean and inverse std, fp32, one per channel
        saved += [Saved(("extra", "save_mean"), FP32_BYTES * channels),
                  Saved(("extra", "save_invstd"), FP32_BYTES * channels)]
    return saved


def _input_and_statistics(rows: int) -> list:
    """The input, and a float32 mean and reciprocal std per normalised row."""
    return [Saved(("in", 0), category="input"), Saved(("extra", "mean"), FP32_BYTES * rows),
            Saved(("extra", "rstd"), FP32_BYTES * rows)]


def pt_groupnorm(node, g):
    return _input_and_statistics(node.in_shapes[0][0] * node.attrs.get("num_groups", 1))


def pt_layernorm(node, g):
    normalized = node.attrs.get("normalized_shape") or ()
    rows = node.in_numel(0) // max(1, prod(normalized) if normalized else node.in_shapes[0][-1])
    # NativeLayerNormBackward0 keeps the input as given: a strided view (a slice x[:, 0:1], a
    # permute) keeps its whole storage, no copy (measured, notes/pytorch_saved_tensors.md).
    return _input_and_statistics(rows)


def paper_batchnorm(node, g):
    """Folded into the layer before it: only its own scale's gradient needs the input."""
    return [Saved(("in", 0), category="input")] if g.weight else []


def paper_layer_or_group_norm(node, g):
    """Not foldable (statistics per sample): the input serves every gradient."""
    return [layer_input(g)] if g.any else []


OPERATORS = (
    Operator("batchnorm", Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_batchnorm,
                               saved_paper=paper_batchnorm, elementwise=True),
             modules=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
             functions=(F.batch_norm,)),
    Operator("groupnorm", Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_groupnorm,
                               saved_paper=paper_layer_or_group_norm),
             modules=(nn.GroupNorm,), functions=(F.group_norm,)),
    Operator("layernorm", Rule(forward_other_ops=per_output_x2, saved_pytorch=pt_layernorm,
                               saved_paper=paper_layer_or_group_norm),
             modules=(nn.LayerNorm,), functions=(F.layer_norm,)),
)
