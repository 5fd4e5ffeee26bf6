"""Convolutions: ``nn.Conv1d/2d/3d``, ``F.conv*`` and transposed convolutions.

Forward MACs, whole batch: every output element sums (Cin/groups)·kh·kw products, so
conv = N·Cout·Hout·Wout · (Cin/groups)·kh·kw = out_numel · prod(weight.shape[1:]); a transposed
conv scatters every *input* element over (Cout/groups)·kh·kw outputs: in_numel ·
prod(weight.shape[1:]). Backward (``mac_layer``): the input gradient is the transposed op, as
many MACs as the forward; the weight gradient the forward MACs of the updated channels.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..graph import OpNode
from .common import mac_layer_rule, prod
from .rule import Operator, Saved


def conv_macs(node: OpNode) -> int:
    return node.out_numel * prod(node.weight_shape[1:])


def conv_transpose_macs(node: OpNode) -> int:
    return node.in_numel(0) * prod(node.weight_shape[1:])


def pt_conv(node, g):
    # ConvolutionBackward0 saves input and weight together, whatever requires grad.
    return [Saved(("in", 0), category="input")]


OPERATORS = (
    Operator("conv", mac_layer_rule(conv_macs, pt_conv),
             modules=(nn.Conv1d, nn.Conv2d, nn.Conv3d),
             functions=(F.conv1d, F.conv2d, F.conv3d)),
    Operator("conv_transpose", mac_layer_rule(conv_transpose_macs, pt_conv),
             modules=(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
)
