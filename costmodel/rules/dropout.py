"""Dropout and stochastic depth (DropPath): one op per output element, no MACs; what is kept
is the random mask, and nothing at all when p = 0 or the module is not training."""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F

from .rule import Operator, Rule, Saved


def drop_probability(node) -> float:
    a = node.attrs
    p = a.get("p", a.get("drop_prob", a.get("dropout_p", 0.0)))
    return float(p or 0.0)


def pt_dropout(node, g):
    if not g.training_mode or not drop_probability(node):
        return []  # p = 0 returns its input: no mask (measured)
    # A float mask (0 or 1/(1-p)): per element for Dropout, per channel for Dropout2d/1d.
    mask_numel = node.out_numel
    if node.op in ("Dropout1d", "Dropout2d", "Dropout3d"):
        mask_numel = node.out_shape[0] * node.out_shape[1]
    return [Saved(("extra", "mask"), mask_numel * node.dtype_bytes)]


def paper_dropout(node, g):
    if not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), math.ceil(node.out_numel / 8))]  # 1 bit per element


def pt_drop_path(node, g):
    # x * mask / keep: MulBackward0 keeps the per-sample mask (N×1×…, float) when x needs a
    # gradient; identity when p = 0 or not training.
    if not g.training_mode or not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), node.out_shape[0] * node.dtype_bytes)]


def paper_drop_path(node, g):
    if not g.input(0) or not drop_probability(node):
        return []
    return [Saved(("extra", "mask"), math.ceil(node.out_shape[0] / 8))]  # 1 bit per sample


OPERATORS = (
    Operator("dropout", Rule(saved_pytorch=pt_dropout, saved_paper=paper_dropout,
                             elementwise=True),
             modules=(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout),
             functions=(F.dropout, F.dropout1d, F.dropout2d)),
    # Each library writes its own DropPath class (no common base): known by class name.
    Operator("drop_path", Rule(saved_pytorch=pt_drop_path, saved_paper=paper_drop_path,
                               elementwise=True),
             module_names=("DropPath", "StochasticDepth")),
)
