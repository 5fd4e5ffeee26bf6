"""Pooling and resampling: max/average pooling (fixed and adaptive), ``nn.Upsample`` /
``F.interpolate``. No MACs: a fixed window costs its size per output element, an adaptive one
one op per input element, upsampling one per output element."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from .common import per_input, prod, pt_saves_input
from .rule import Operator, Rule, Saved


def pool_window(node: OpNode) -> int:
    kernel = node.attrs.get("kernel_size", 1)
    window = prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel) ** max(
        1, len(node.out_shape) - 2)
    return node.out_numel * window


def pt_maxpool(node, g):
    # its int64 indices too: as a tensor of the graph when it returns them (their getitem
    # node keeps them, rules/views.pt_getitem), else as a tensor of its own
    if node.attrs.get("indices_node"):
        return [Saved(("in", 0))]
    return [Saved(("in", 0)), Saved(("extra", "indices"), 8 * node.out_numel)]


def paper_maxpool(node, g):
    return [Saved(("extra", "argmax"), node.out_numel)] if g.input(0) else []  # 1-byte index


def pt_adaptive_avgpool(node, g):
    # adaptive_avg_pool2d to 1×1 is computed as a mean (nothing saved); otherwise the input.
    if all(d == 1 for d in node.out_shape[2:]):
        return []
    return [Saved(("in", 0))]


OPERATORS = (
    Operator("maxpool", Rule(forward_other_ops=pool_window, saved_pytorch=pt_maxpool,
                             saved_paper=paper_maxpool),
             modules=(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
             functions=(F.max_pool1d, F.max_pool2d)),
    Operator("adaptive_maxpool", Rule(forward_other_ops=per_input, saved_pytorch=pt_maxpool,
                                      saved_paper=paper_maxpool),
             modules=(nn.AdaptiveMaxPool2d,)),
    # The average's derivative is a constant: `paper` keeps nothing.
    Operator("avgpool", Rule(forward_other_ops=pool_window, saved_pytorch=pt_saves_input),
             modules=(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
             functions=(F.avg_pool1d, F.avg_pool2d)),
    Operator("adaptive_avgpool", Rule(forward_other_ops=per_input,
                                      saved_pytorch=pt_adaptive_avgpool),
             modules=(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
             functions=(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)),
    Operator("upsample", Rule(), modules=(nn.Upsample,), functions=(F.interpolate,)),
)
