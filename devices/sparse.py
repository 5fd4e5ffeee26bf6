"""Channel-sparse weight gradients: compute the selected channels' gradient, nothing more.

Masking a dense weight gradient (planner.apply) gives the right update but pays for every
channel's gradient. Here a conv2d or linear layer whose policy selects some channels runs
through an `autograd.Function` whose backward computes:

* the input gradient in full, when the input needs one (the transposed operation, as usual);
* the weight gradient of the selected channels only, from the output gradient sliced to
  those channels (axis 0, output channels) or the input sliced to them (axis 1, input
  channels): one `aten.convolution_backward` asking for the weight gradient alone (what
  `torch.nn.grad.conv2d_weight` calls, here with a contiguous placeholder weight, for which
  the CPU picks its fast kernels) or one matrix product; the other channels' gradient is
  zero, as the policy's mask would make it;
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
    """conv2d whose weight gradient covers `channels` along `axis` of the weight only."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, channels, axis):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation, groups)
        ctx.channels, ctx.axis = channels, axis
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _convolution_backward(grad_out, x, weight, ctx.geometry, input_grad=True)
        if ctx.needs_input_grad[1]:
            grad_w = weight.new_zeros(weight.shape)
            part = _conv_weight_part(x, weight, grad_out, ctx.channels, ctx.axis, ctx.geometry)
            grad_w.index_copy_(ctx.axis, ctx.channels, part)
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


def _convolution_backward(grad_out, x, weight, geometry, input_grad: bool, groups=None):
    """One gradient of conv2d(x, weight): the input's, or the weight's (`weight` then only
    gives the gradient's shape: it is not read)."""
    stride, padding, dilation, own_groups = geometry
    mask = (True, False, False) if input_grad else (False, True, False)
    grads = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, stride, padding, dilation, False, [0, 0],
        own_groups if groups is None else groups, list(mask))
    return grads[0] if input_grad else grads[1]


def _conv_weight_part(x, weight, grad_out, channels, axis, geometry):
    """The weight gradient restricted to `channels` (a LongTensor) along `axis`."""
    out_channels, in_per_group, kh, kw = weight.shape
    groups = geometry[3]
    k = len(channels)
    if axis == 0:
        grad_sel = grad_out.index_select(1, channels)
        if groups == 1:
            return _convolution_backward(grad_sel, x, weight.new_empty(k, in_per_group, kh, kw),
                                         geometry, input_grad=False)
        # Each selected output channel reads its own group's inputs: gather those input
        # channels per selected channel and let every selected channel be its own group (for a
        # depthwise conv this is just the selected input channels).
        out_per_group = out_channels // groups
        group_of = torch.div(channels, out_per_group, rounding_mode="floor")
        inputs = (group_of[:, None] * in_per_group + torch.arange(in_per_group)).reshape(-1)
        return _convolution_backward(grad_sel, x.index_select(1, inputs),
                                     weight.new_empty(k, in_per_group, kh, kw), geometry,
                                     input_grad=False, groups=k)
    # axis 1: the selected input channels of every group, all output channels.
    inputs = (torch.arange(groups)[:, None] * in_per_group + channels).reshape(-1)
    return _convolution_backward(grad_out, x.index_select(1, inputs),
                                 weight.new_empty(out_channels, k, kh, kw), geometry,
                                 input_grad=False)


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
    index = torch.tensor(sorted(channels), dtype=torch.long)
    if isinstance(module, nn.Linear):
        def forward(x):
            return SparseLinearFunction.apply(x, module.weight, module.bias, index, axis)
    else:
        def forward(x):
            return SparseConv2dFunction.apply(x, module.weight, module.bias, module.stride,
                                              module.padding, module.dilation, module.groups,
                                              index, axis)
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
