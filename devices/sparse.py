"""Channel-sparse weight gradients: compute the selected channels' gradient, nothing more.

Masking a dense weight gradient (planner.policy.apply) gives the right update but pays for every
channel's gradient. Here a conv2d or linear layer whose policy selects some channels runs
through an `autograd.Function` whose backward computes:

* the input gradient in full, when the input needs one (the transposed operation, as usual);
* the weight gradient of the selected channels only, from the output gradient sliced to
  those channels (axis 0, output channels) or the input sliced to them (axis 1, input
  channels): one `aten.convolution_backward` asking for the weight gradient alone (what
  `torch.nn.grad.conv2d_weight` calls, here with a contiguous placeholder weight, for which
  the CPU picks its fast kernels) or one matrix product; the other channels' gradient is
  zero, as the policy's mask would make it;
* for a pointwise conv (1x1, stride 1, no padding, one group) both gradients are batched
  matrix products over the pixels: PyTorch's CPU backward of such a conv goes through
  im2col buffers it zeroes and accumulates, which cost more than the product on small maps;
* the bias gradient in full (a policy updates a bias whole).

The backward MACs of the weight gradient are then the forward MACs times the fraction of
channels selected: what the cost model's `backward_weight_macs` counts.

What is kept for backward is what PyTorch's own ConvolutionBackward0 keeps (the input, and the
weight, a parameter), and for linear the input (as a 2-D view of its storage, or the contiguous
copy `addmm` would make of a strided one): so the `pytorch` convention's saved bytes apply
unchanged.

Layers this cannot serve (Conv1d/3d, transposed convs, padding modes other than zeros, string
padding) keep the dense, masked gradient: `install_sparse_layers` reports which ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ttplan.costmodel.config import LayerUpdate


class SparseConv2dFunction(torch.autograd.Function):
    """conv2d whose weight gradient covers `layer.index` along `layer.axis` of the weight only."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        ctx.save_for_backward(x, weight)
        ctx.layer = layer
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        layer = ctx.layer
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gradients = _pointwise_gradients if layer.pointwise else _conv_gradients
        grad_x, grad_w = gradients(grad_out, x, weight, layer, need_x, need_w)
        grad_b = grad_out.sum(dim=(0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b, None


def _pointwise_gradients(grad_out, x, weight, layer, need_x: bool, need_w: bool):
    """A 1x1 conv is a matrix product per sample: no im2col, no kernel choice."""
    grad_x = grad_w = None
    n, k_out, h, w = grad_out.shape
    # (n, channels, pixels); for one sample plain matrices, for mm's lower overhead
    g = grad_out.reshape(n, k_out, h * w) if n > 1 else grad_out.reshape(k_out, h * w)
    flat = x.reshape(n, x.shape[1], h * w) if n > 1 else x.reshape(x.shape[1], h * w)
    channels = g.dim() - 2
    if need_x:
        grad_x = torch.matmul(weight.reshape(k_out, -1).T, g).reshape(x.shape)
    if need_w:
        if layer.axis == 0:
            part = torch.matmul(g.index_select(channels, layer.index), flat.transpose(-1, -2))
        else:
            part = torch.matmul(g, flat.index_select(channels, layer.index).transpose(-1, -2))
        part = part.sum(0) if n > 1 else part
        grad_w = _scatter(weight, layer, part.reshape(layer.part_shape))
    return grad_x, grad_w


def _conv_gradients(grad_out, x, weight, layer, need_x: bool, need_w: bool):
    grad_x = grad_w = None
    if need_x:
        grad_x = _convolution_backward(grad_out, x, weight, layer, layer.groups, True)
    if need_w:
        if layer.axis == 0:
            g = grad_out.index_select(1, layer.index)
            xs = x if layer.inputs is None else x.index_select(1, layer.inputs)
        else:
            g, xs = grad_out, x.index_select(1, layer.inputs)
        part = _convolution_backward(g, xs, layer.placeholder, layer, layer.part_groups, False)
        grad_w = _scatter(weight, layer, part)
    return grad_x, grad_w


def _scatter(weight, layer, part):
    """The full-size weight gradient: `part` at the selected channels, zero elsewhere."""
    return weight.new_zeros(weight.shape).index_copy_(layer.axis, layer.index, part)


def _convolution_backward(grad_out, x, weight, layer, groups, input_grad: bool):
    """One gradient of conv2d(x, weight): the input's, or the weight's (`weight` then only
    gives the gradient's shape: it is not read)."""
    grads = _CONVOLUTION_BACKWARD(grad_out, x, weight, None, layer.stride, layer.padding,
                                  layer.dilation, False, [0, 0], groups,
                                  [True, False, False] if input_grad else [False, True, False])
    return grads[0] if input_grad else grads[1]


_CONVOLUTION_BACKWARD = torch.ops.aten.convolution_backward.default


class SparseConv2d:
    """What the backward of one channel-sparse conv2d needs, worked out once when installed:
    the selected channels, and the input channels and groups of their weight gradient."""

    def __init__(self, module: nn.Conv2d, channels: Sequence[int], axis: int):
        self.stride, self.padding = list(module.stride), list(module.padding)
        self.dilation, self.groups = list(module.dilation), module.groups
        self.axis = axis
        self.index = torch.tensor(sorted(channels), dtype=torch.long)
        out_channels, in_per_group, kh, kw = module.weight.shape
        k = len(self.index)
        self.pointwise = (kh, kw) == (1, 1) and self.stride == [1, 1] \
            and self.padding == [0, 0] and self.groups == 1
        self.inputs = None
        self.part_groups = self.groups
        if axis == 0:
            self.part_shape = (k, in_per_group, kh, kw)
            if self.groups > 1:
                # Each selected output channel reads its own group's inputs: gather those input
                # channels per selected channel and let every selected channel be its own group
                # (for a depthwise conv, just the selected input channels).
                group_of = torch.div(self.index, out_channels // self.groups,
                                     rounding_mode="floor")
                self.inputs = (group_of[:, None] * in_per_group
                               + torch.arange(in_per_group)).reshape(-1)
                self.part_groups = k
        else:  # the selected input channels of every group, all output channels
            self.part_shape = (out_channels, k, kh, kw)
            self.inputs = (torch.arange(self.groups)[:, None] * in_per_group
                           + self.index).reshape(-1)
        # Only its shape is used; a contiguous one, for which the CPU picks its fast kernels.
        self.placeholder = module.weight.new_empty(self.part_shape)


class SparseLinearFunction(torch.autograd.Function):
    """linear whose weight gradient covers `channels` along `axis` of the weight only."""

    @staticmethod
    def forward(ctx, x, weight, bias, channels, axis):
        flat = x.reshape(-1, x.shape[-1])  # a view, or the copy addmm makes of a strided input
        ctx.save_for_backward(flat, weight)
        ctx.x_shape = x.shape
        ctx.channels, ctx.axis = channels, axis
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        flat, weight = ctx.saved_tensors
        grad_flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_flat @ weight).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = weight.new_zeros(weight.shape)
            if ctx.axis == 0:
                part = grad_flat.index_select(1, ctx.channels).T @ flat
            else:
                part = grad_flat.T @ flat.index_select(1, ctx.channels)
            grad_w.index_copy_(ctx.axis, ctx.channels, part)
        if ctx.needs_input_grad[2]:
            grad_b = grad_flat.sum(dim=0)
        return grad_x, grad_w, grad_b, None, None


def supports_sparse(module: nn.Module) -> bool:
    """Whether `module` can run through the sparse functions above."""
    # Subclasses that keep the layer's own forward are that layer; one that overrides it
    # computes something else.
    if isinstance(module, nn.Linear):
        return type(module).forward is nn.Linear.forward
    return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def sparse_forward(module: nn.Module, channels: Sequence[int], axis: int):
    """A forward for `module` (see `supports_sparse`) with the channel-sparse backward."""
    if isinstance(module, nn.Linear):
        index = torch.tensor(sorted(channels), dtype=torch.long)

        def forward(x):
            return SparseLinearFunction.apply(x, module.weight, module.bias, index, axis)
    else:
        layer = SparseConv2d(module, channels, axis)

        def forward(x):
            return SparseConv2dFunction.apply(x, module.weight, module.bias, layer)
    return forward


@contextlib.contextmanager
def install_sparse_layers(model: nn.Module, updates: dict[str, LayerUpdate]
                          ) -> Iterator[tuple[list[str], list[str]]]:
    """Route every layer whose weight update selects some channels through the sparse backward
    while the context is open. Yields (sparse layer names, partial layers left dense) and
    restores the modules' own forwards on exit."""
    modules = dict(model.named_modules())
    sparse, dense = [], []
    for name, update in updates.items():
        module = modules.get(name)
        if not update.weight or update.channels is None or module is None:
            continue
        (sparse if supports_sparse(module) else dense).append(name)
    try:
        for name in sparse:
            update = updates[name]
            modules[name].forward = sparse_forward(modules[name], update.channels,
                                                   update.channel_axis)
        yield sparse, dense
    finally:
        for name in sparse:
            modules[name].__dict__.pop("forward", None)
