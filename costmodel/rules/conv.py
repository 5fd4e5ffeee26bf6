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
from .common import autocast_operands, computed_weight, mac_layer_rule, prod
from .rule import Operator, Saved


def conv_macs(node: OpNode) -> int:
    return node.out_numel * prod(node.weight_shape[1:])


def conv_transpose_macs(node: OpNode) -> int:
    return node.in_numel(0) * prod(node.weight_shape[1:])


def padded_input_numel(node: OpNode) -> int:
    """Elements of the input after the module pads it itself (``padding_mode`` reflect,
    replicate, circular: ``F.pad`` then a conv with no padding); 0 for zero padding."""
    a = node.attrs
    if a.get("padding_mode", "zeros") == "zeros" or not node.in_shapes:
        return 0
    shape = list(node.in_shapes[0])
    spatial = len(node.weight_shape) - 2
    padding, dilation = a.get("padding", 0), a.get("dilation", [1] * spatial)
    for i in range(spatial):
        if padding == "same":
            total = int(dilation[i]) * (int(node.weight_shape[2 + i]) - 1)
        elif padding == "valid":
            total = 0
        else:
            total = 2 * int(padding[i] if isinstance(padding, (list, tuple)) else padding)
        shape[len(shape) - spatial + i] += total
    return prod(shape)


def pt_conv(node, g):
    # ConvolutionBackward0 saves input and weight together, whatever requires grad; a conv
    # that pads with another mode saves the padded copy instead of its input.
    cast = autocast_operands(node, keep_input=True, keep_weight=True)
    if cast is not None:  # under autocast it runs on casts of its input and weight
        return cast
    padded = padded_input_numel(node)
    weight = computed_weight(node, g, kept=True)  # the conv keeps its weight in every case
    if padded:
        return [Saved(("extra", "padded_input"), padded * node.dtype_bytes,
                      category="input")] + weight
    return [Saved(("in", 0), category="input")] + weight


OPERATORS = (
    Operator("conv", mac_layer_rule(conv_macs, pt_conv),
             modules=(nn.Conv1d, nn.Conv2d, nn.Conv3d),
             functions=(F.conv1d, F.conv2d, F.conv3d)),
    Operator("conv_transpose", mac_layer_rule(conv_transpose_macs, pt_conv),
             modules=(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
)
