"""Which operator kind a module class or a function is: the tables the registry starts from.

The tracer sees modules (``nn.Conv2d``), functions (``torch.flatten``, ``operator.add``) and
tensor methods (``x.view``). All of them are mapped here to one normalised kind, the key of a
cost rule (`costmodel.rules.Registry` looks module classes up through their MRO). Anything not
listed becomes ``"unknown"``: it is reported and warned about, never costed as free.
"""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

MODULE_KINDS: dict[type, str] = {
    nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv",
    nn.ConvTranspose1d: "conv_transpose", nn.ConvTranspose2d: "conv_transpose",
    nn.ConvTranspose3d: "conv_transpose",
    nn.Linear: "linear",
    nn.BatchNorm1d: "batchnorm", nn.BatchNorm2d: "batchnorm", nn.BatchNorm3d: "batchnorm",
    nn.LayerNorm: "layernorm", nn.GroupNorm: "groupnorm",
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardtanh: "hardtanh", nn.LeakyReLU: "leaky_relu",
    nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu", nn.GELU: "gelu", nn.Tanh: "tanh", nn.Softmax: "softmax",
    nn.MaxPool1d: "maxpool", nn.MaxPool2d: "maxpool", nn.MaxPool3d: "maxpool",
    nn.AvgPool1d: "avgpool", nn.AvgPool2d: "avgpool", nn.AvgPool3d: "avgpool",
    nn.AdaptiveAvgPool1d: "adaptive_avgpool", nn.AdaptiveAvgPool2d: "adaptive_avgpool",
    nn.AdaptiveAvgPool3d: "adaptive_avgpool",
    nn.AdaptiveMaxPool2d: "adaptive_maxpool",
    nn.Flatten: "reshape", nn.Unflatten: "reshape", nn.Identity: "identity",
    nn.Dropout: "dropout", nn.Dropout2d: "dropout", nn.Dropout1d: "dropout",
    nn.Upsample: "upsample",
    nn.Dropout3d: "dropout", nn.AlphaDropout: "dropout",
    nn.LSTM: "rnn", nn.GRU: "rnn", nn.RNN: "rnn",
    nn.Embedding: "embedding", nn.LogSoftmax: "softmax",
    nn.MultiheadAttention: "mha",
}

# Classes libraries write themselves (no common base to look up): stochastic depth.
MODULE_NAME_KINDS: dict[str, str] = {"DropPath": "drop_path", "StochasticDepth": "drop_path"}

FUNCTION_KINDS: dict[object, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu",
    F.relu6: "relu6", F.hardtanh: "hardtanh", F.leaky_relu: "leaky_relu",
    F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu", F.gelu: "gelu",
    torch.tanh: "tanh", F.tanh: "tanh", F.softmax: "softmax", torch.softmax: "softmax",
    operator.add: "add", torch.add: "add", operator.iadd: "add",
    operator.sub: "add", torch.sub: "add",
    operator.mul: "mul", torch.mul: "mul", operator.imul: "mul",
    torch.cat: "cat", torch.concat: "cat",
    torch.flatten: "reshape", torch.reshape: "reshape", torch.squeeze: "reshape",
    torch.unsqueeze: "reshape", operator.getitem: "getitem",
    torch.mean: "mean", torch.sum: "mean",
    operator.gt: "compare", operator.lt: "compare", operator.ge: "compare",
    operator.le: "compare", operator.eq: "compare", operator.ne: "compare",
    F.adaptive_avg_pool2d: "adaptive_avgpool", F.avg_pool2d: "avgpool",
    F.max_pool2d: "maxpool", F.dropout: "dropout", F.interpolate: "upsample",
    F.conv2d: "conv", F.linear: "linear", F.conv1d: "conv", F.conv3d: "conv",
    F.batch_norm: "batchnorm", F.layer_norm: "layernorm", F.group_norm: "groupnorm",
    F.embedding: "embedding", F.dropout1d: "dropout", F.dropout2d: "dropout",
    operator.matmul: "matmul", torch.matmul: "matmul", torch.bmm: "matmul", torch.mm: "matmul",
    torch.einsum: "einsum", torch.baddbmm: "baddbmm",
    F.scaled_dot_product_attention: "sdpa",
    F.log_softmax: "softmax", torch.log_softmax: "softmax",
    torch.chunk: "split", torch.split: "split", torch.unbind: "split",
    torch.transpose: "reshape", torch.permute: "reshape", torch.stack: "cat",
    operator.truediv: "div", torch.div: "div", operator.neg: "add",
    F.adaptive_avg_pool1d: "adaptive_avgpool", F.avg_pool1d: "avgpool",
    F.max_pool1d: "maxpool",
    torch.zeros: "constant", torch.ones: "constant", torch.arange: "constant",
    torch.full: "constant", torch.empty: "constant", torch.zeros_like: "constant",
    torch.ones_like: "constant", torch.tensor: "constant",
    torch.addmm: "addmm", torch.addcmul: "addcmul", F.normalize: "normalize",
    torch.norm: "norm", torch.linalg.vector_norm: "norm", torch.pow: "pow",
    operator.pow: "pow", torch.sin: "sin", torch.cos: "cos", torch.exp: "exp",
    torch.rsqrt: "rsqrt", torch.cumsum: "cumsum", F.pad: "pad", torch.roll: "roll",
    torch.abs: "abs", operator.abs: "abs",
}

# Tensor methods seen as fx call_method targets or through __torch_function__.
METHOD_KINDS: dict[str, str] = {
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "add": "add", "add_": "add", "__add__": "add", "__iadd__": "add", "__radd__": "add",
    "sub": "add", "__sub__": "add",
    "mul": "mul", "mul_": "mul", "__mul__": "mul", "__imul__": "mul", "__rmul__": "mul",
    "view": "reshape", "reshape": "reshape", "flatten": "reshape", "squeeze": "reshape",
    "unsqueeze": "reshape", "contiguous": "contiguous", "__getitem__": "getitem",
    "permute": "reshape", "transpose": "reshape", "expand": "reshape", "expand_as": "reshape",
    "t": "reshape", "view_as": "reshape", "reshape_as": "reshape", "unflatten": "reshape",
    "chunk": "split", "split": "split", "unbind": "split", "tensor_split": "split",
    "matmul": "matmul", "__matmul__": "matmul", "bmm": "matmul", "mm": "matmul",
    "baddbmm": "baddbmm", "log_softmax": "softmax",
    "div": "div", "__truediv__": "div", "__neg__": "add", "__rsub__": "add",
    "to": "identity", "float": "identity", "type_as": "identity", "clone": "contiguous",
    "int": "identity", "long": "identity", "bool": "identity", "half": "identity",
    "double": "identity", "type": "identity",
    "mean": "mean", "sum": "mean", "clamp": "hardtanh", "clamp_": "hardtanh",
    "addmm": "addmm", "addcmul": "addcmul", "norm": "norm", "pow": "pow", "__pow__": "pow",
    "sin": "sin", "cos": "cos", "exp": "exp", "rsqrt": "rsqrt", "cumsum": "cumsum",
    "roll": "roll", "abs": "abs", "__abs__": "abs", "__rpow__": "pow",
    # Comparisons give boolean tensors: no gradient flows through them (data-dependent
    # control flow in models that only the hooks tracer can follow).
    "gt": "compare", "lt": "compare", "ge": "compare", "le": "compare", "eq": "compare",
    "ne": "compare", "__gt__": "compare", "__lt__": "compare", "__ge__": "compare",
    "__le__": "compare", "__eq__": "compare", "__ne__": "compare",
}

# Tensor attributes that are tensors (x.T, x.mT); every other attribute is not an operator.
TENSOR_ATTRIBUTE_KINDS: dict[str, str] = {"T": "reshape", "mT": "reshape", "data": "identity"}

# Method names that modify their first operand in place.
INPLACE_METHODS = frozenset({"relu_", "add_", "mul_", "clamp_", "__iadd__", "__imul__"})
INPLACE_FUNCTIONS = frozenset({operator.iadd, operator.imul, F.relu_, torch.relu_})


def function_name(target) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", repr(target))
