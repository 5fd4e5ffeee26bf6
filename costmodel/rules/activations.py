"""Activations and softmax: one other op per output element, no MACs.

What ``pytorch`` keeps differs per function (the input, the output, or a copy made before an
in-place write; measured on 2.13, notes/pytorch_saved_tensors.md). The ``paper`` engine keeps a
1-bit mask for the ReLU family (their derivative is 0 or a constant) and the input for smooth
functions, and computes them in place when the input dies (``elementwise``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import paper_saves_input_for_its_gradient, pt_saves_input, pt_saves_output
from .rule import Operator, Rule, Saved


def pt_relu(node, g):
    return [Saved(("out",))]  # relu_ too: its result is the input's storage, no copy


def pt_leaky_relu(node, g):
    return [Saved(("out",))] if node.attrs.get("inplace") else [Saved(("in", 0))]


def pt_saves_input_copied_inplace(node, g):
    # hardtanh_ (ReLU6(inplace=True)), hardswish_, silu_ copy their input before writing over
    # it: in-place saves nothing (measured on 2.13, see notes/pytorch_saved_tensors.md).
    if node.attrs.get("inplace"):
        return [Saved(("extra", "input_copy"), node.in_numel(0) * node.dtype_bytes)]
    return [Saved(("in", 0))]


def paper_relu_mask(node, g):
    return [Saved(("extra", "mask"), math.ceil(node.in_numel(0) / 8))] if g.input(0) else []


def _prelu_slope_grad(g) -> bool:
    """Is PReLU's slope updated: the module's weight, or F.prelu's second operand."""
    return g.weight or g.input(1)


def pt_prelu(node, g):
    # _prelu_kernel keeps its input and the slope (a parameter) for every gradient (2.13).
    return [Saved(("in", 0), category="input" if _prelu_slope_grad(g) else "mask")]


def paper_prelu(node, g):
    """The slope's gradient needs the input; the input's alone a 1-bit sign mask."""
    if _prelu_slope_grad(g):
        return [Saved(("in", 0), category="input")]
    return paper_relu_mask(node, g)


def activation(saved_pytorch, saved_paper=paper_saves_input_for_its_gradient) -> Rule:
    return Rule(saved_pytorch=saved_pytorch, saved_paper=saved_paper, elementwise=True)


OPERATORS = (
    Operator("relu", activation(pt_relu, paper_relu_mask), modules=(nn.ReLU,),
             functions=(F.relu, torch.relu, F.relu_), methods=("relu", "relu_")),
    Operator("relu6", activation(pt_saves_input_copied_inplace, paper_relu_mask),
             modules=(nn.ReLU6,), functions=(F.relu6,)),
    # clamp is hardtanh with other bounds: the same kernel, the same saved input.
    Operator("hardtanh", activation(pt_saves_input_copied_inplace, paper_relu_mask),
             modules=(nn.Hardtanh,), functions=(F.hardtanh,), methods=("clamp", "clamp_")),
    Operator("leaky_relu", activation(pt_leaky_relu, paper_relu_mask),
             modules=(nn.LeakyReLU,), functions=(F.leaky_relu,)),
    # A learned slope per channel (or one): updatable like a norm's scale.
    Operator("prelu", activation(pt_prelu, paper_prelu), modules=(nn.PReLU,),
             functions=(F.prelu,), methods=("prelu",)),
    Operator("hardswish", activation(pt_saves_input_copied_inplace),
             modules=(nn.Hardswish,), functions=(F.hardswish,)),
    Operator("hardsigmoid", activation(pt_saves_input),
             modules=(nn.Hardsigmoid,), functions=(F.hardsigmoid,)),
    Operator("silu", activation(pt_saves_input_copied_inplace),
             modules=(nn.SiLU,), functions=(F.silu,)),
    Operator("gelu", activation(pt_saves_input), modules=(nn.GELU,), functions=(F.gelu,)),
    Operator("sigmoid", activation(pt_saves_output), modules=(nn.Sigmoid,),
             functions=(torch.sigmoid, F.sigmoid), methods=("sigmoid", "sigmoid_")),
    Operator("tanh", activation(pt_saves_output), modules=(nn.Tanh,),
             functions=(torch.tanh, F.tanh), methods=("tanh", "tanh_")),
    # Not element-wise: every output depends on its whole row (log_softmax too).
    Operator("softmax", Rule(saved_pytorch=pt_saves_output,
                             saved_paper=paper_saves_input_for_its_gradient),
             modules=(nn.Softmax, nn.LogSoftmax),
             functions=(F.softmax, torch.softmax, F.log_softmax, torch.log_softmax),
             methods=("softmax", "log_softmax")),
)
