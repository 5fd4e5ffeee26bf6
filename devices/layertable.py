"""Per-layer device tables: every layer of a model timed alone at its real shapes.

`measure_layers(module, graph)` times each operator of a traced graph that it can run on its
own (a leaf module call; the functional `add`, `mul` and `scaled_dot_product_attention`) in
each pass a training step may run:

  forward      under torch.no_grad()
  input_grad   the gradient of its input(s) only (parameters frozen)
  weight_grad  the gradient of its weight only (input without gradient)
  bias_grad    the gradient of its bias only

Each row: {layer, kind (cost kind, `cost_kind`), pass, batch_size, macs, elements, cpu_s, wall_s,
spread}. `macs` are the pass's MACs from the cost model (forward, backward_input,
backward_weight), `elements` the input and output elements the pass reads and writes
(memory traffic), and the seconds are per call.

Timing (a person can trust it): one warm-up call, then `repeats` repeats, each of as many
calls as take at least `min_repeat_s`; the table keeps the median per call of the repeats and
their spread ((max - min) / median). Process CPU time (time.process_time) is the primary
clock: with OMP_NUM_THREADS=1 it is what the computation itself costs, whatever else shares the
machine; wall time is recorded beside it. Views (reshape, getitem, flatten) are not timed: they
cost a call, priced by the elementwise kind's per-call term.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ttplan.costmodel.graph import NORM_KINDS
from ttplan.costmodel.memory import is_depthwise
from ttplan.costmodel.rules.attention import mha_sizes
from ttplan.costmodel.rules.recurrent import RNN_GATES

PASSES = ("forward", "input_grad", "weight_grad", "bias_grad", "sparse_weight_grad",
          "joint_grad")
# A norm layer's backward is one native call (native_batch_norm_backward, layer norm's, group
# norm's) that returns the gradients asked of it together: on this host (torch 2.13, eval-mode
# BatchNorm2d of 64-160 channels, BatchNorm1d, LayerNorm, GroupNorm) the input's, scale's and
# shift's gradients together took 1.07-1.33x the costliest of them alone (3.5-7 us more),
# where the three timed apart add up to 2.3-2.7x it. So a norm's parameters' gradients beside
# its input's are one pass, `joint_grad`: what the call asked for all of them takes beyond the
# input's gradient alone, timed so (a row per norm layer); its scale's and shift's without
# its input's: the scale's pass alone, else the shift's (notes/device_time_model.md §30).
ONE_CALL_KINDS = frozenset({"norm"})
# A checkpointed call's forward run again in the backward (costmodel.checkpointing): a pass
# of a step's own (not the prototypes' forward), never timed alone: priced as the forward.
RECOMPUTE = "recompute"
# Activations whose time per element is far from an add's or a ReLU's (one thread here, per
# element forward / input gradient: ReLU, add 0.15 / 0.3-0.5 ns; SiLU, GELU, sigmoid ~0.4 /
# 0.5-1.2; tanh 2.9 / 0.35; PReLU 0.15 / 6.7, its slopes' gradient a reduction per channel;
# notes §21): each a kind of its own, timed by the kind sweep. Tables measured before price
# them as elementwise (KIND_FAMILY, FALLBACK). Activations without a rule of the cost model
# (priced from their own call: "derived") are kinds by their operator's name where they cost
# far from an add (DERIVED_KINDS; per element forward / input gradient, batch 4 x 32 x 32 x
# 32: ELU, SELU, CELU 0.9 / 0.4 ns, Softplus 1.1 / 0.4, Mish 3.2 / 3.6, InstanceNorm 1.45 /
# 0.34, against an add's 0.09 / 0.09; notes §22); any other derived operator is elementwise.
ACTIVATION_KINDS = ("gelu", "silu", "sigmoid", "tanh", "prelu", "elu", "mish", "softplus")
# Operators of the elementwise family that run a reduction or several kernels per call, each
# far from an add (per call, one thread, against what the elementwise kind priced them at:
# softmax forward 3.5-13x, RMSNorm 3-5x forward and 4-9x input gradient, nearest upsampling
# 19-28x forward, bilinear 21-51x forward and 20x input gradient; notes §24): kinds of their
# own, timed by the kind sweep, by the rule's kind (softmax, upsample by its mode) or, derived,
# by the operator's name (InstanceNorm, RMSNorm). Tables measured before price them as
# elementwise.
# Functions a model calls that cost far from an add too (per call alone at 1 x 64 x 28 x 28,
# 4 x 32 x 16 x 16 and 1 x 196 x 128, one thread, against the elementwise kind's price:
# var/std forward 45-93x, F.normalize 2.7-3.5x forward and 3.5-5.4x input gradient,
# torch.where 4-8x with its condition, exp 4-5x forward, glu up to 10x, clamp's input gradient
# 4-8.5x; a channels-first LayerNorm written with var ran 24-29 % over its prediction;
# notes §25): kinds by the function's name (FUNCTION_KINDS), timed by the sweep's
# `OperatorCell`s.
FUNCTION_KINDS = {"var": "var", "std": "var", "var_mean": "var", "std_mean": "var",
                  "normalize": "normalize", "where": "where", "masked_fill": "where",
                  "exp": "exp", "glu": "glu", "clamp": "clamp", "clip": "clamp",
                  "clamp_min": "clamp", "clamp_max": "clamp"}
OPERATOR_KINDS = ("instance_norm", "rms_norm", "softmax", "upsample_nearest", "upsample_linear",
                  "var", "normalize", "where", "exp", "glu", "clamp")
ELEMENTWISE_FAMILY_KINDS = ACTIVATION_KINDS + OPERATOR_KINDS
DERIVED_KINDS = {"elu": "elu", "selu": "elu", "celu": "elu", "mish": "mish",
                 "softplus": "softplus", "instance_norm": "instance_norm",
                 **{f"instancenorm{d}d": "instance_norm" for d in (1, 2, 3)},
                 "rms_norm": "rms_norm", "rmsnorm": "rms_norm"}
SPARSE_FRACTION = 0.5  # the channel fraction the sparse weight gradient is timed at
COST_KINDS = ("conv", "conv_native", "conv_dilated", "pointwise", "depthwise", "depthwise_large",
              "conv1d", "conv1d_native", "conv1d_dilated", "conv_transpose",
              "conv_transpose_native", "linear", "sdpa", "mha", "lstm", "rnn", "rnn_cell",
              "maxpool", "avgpool", "norm", "elementwise", "view", "index") \
    + ELEMENTWISE_FAMILY_KINDS
# Kinds whose function has a term per MAC; a pool's "MACs" are its window taps (the cost
# model's forward_other_ops: output elements x window). A padded 3 x 3 max pool took ~2.8 ns
# per tap here, 100x what an elementwise layer of its size is priced at (notes §20).
MAC_COST_KINDS = ("conv", "conv_native", "conv_dilated", "pointwise", "depthwise",
                  "depthwise_large", "conv1d", "conv1d_native", "conv1d_dilated",
                  "conv_transpose", "conv_transpose_native", "linear", "sdpa", "mha", "lstm",
                  "rnn", "rnn_cell", "maxpool", "avgpool")
# PyTorch's CPU convolution picks its kernels per call (aten's ConvParams::use_mkldnn, float32):
# oneDNN, unless the batch is 1 and the input holds at most NATIVE_INPUT_ELEMENTS elements,
# when a dense conv runs PyTorch's own im2col + matrix product (`_slow_conv2d_forward` and
# `_backward`); grouped convs and kernels larger than 3 in both dimensions always run oneDNN,
# and a 1 x 1 conv of stride and dilation 1 always its own path on one thread (the pointwise
# kind); a strided or dilated 1 x 1 conv (a ResNet's downsampling shortcut) is picked as a
# dense conv is (at batch 4 oneDNN: 46-53 us for a 24-48 or 48-96 channel stride-2 shortcut,
# the pointwise kind's function 16-23; notes §24). Checked op by op
# with torch.profiler on torch 2.13 (20,480 elements native, 21,120 oneDNN; batch 2 oneDNN; a
# transposed conv alike, natively `slow_conv_transpose2d`). A conv on the native path cost
# 27-38 ps per MAC at batch 1 against 16-25 ps for oneDNN; one function for both had a
# ResNet's deep 3 x 3 convs 24-38 % low (notes §20). A dilated conv on that path runs
# `slow_conv_dilated2d` (1-D too), 55-66 ps per MAC against 28-29 for the same conv undilated
# (notes §24): `conv_dilated`, `conv1d_dilated`. So the native path is a kind apart
# (`conv_native`, `conv1d_native`, `conv_transpose_native`) at batch 1, and its oneDNN kind
# beyond (`priced_kind`).
NATIVE_INPUT_ELEMENTS = 20480
NATIVE_AT_BATCH_1 = {"conv_native": "conv", "conv1d_native": "conv1d", "conv_dilated": "conv",
                     "conv1d_dilated": "conv1d",
                     "conv_transpose_native": "conv_transpose"}
# Windowed pools only, max and average apart (~2.4-3.5 against ~0.8-1.6 ns per tap): an
# adaptive (global) pool is a reduction, priced as elementwise. A 1-D max pool is not in the
# sweep: without gradients PyTorch runs it on a path ~10x faster than in training.
POOL_KINDS = frozenset({"maxpool", "avgpool"})
# Kinds with no parameters: timed and priced for their forward and input gradient only.
PARAMETER_FREE_KINDS = POOL_KINDS | {"sdpa"} | (frozenset(ELEMENTWISE_FAMILY_KINDS) - {"prelu"})
# A recurrent layer's backward runs through every time step whichever gradient it is asked
# for: its weight gradient alone costs about what its input gradient does, and a training step
# runs them in one backward. So it is timed, and priced, as one backward pass: `weight_grad`
# (every weight and bias together) when it is updated, `input_grad` when only its input needs
# a gradient. An LSTM is a kind apart from GRU and plain RNN layers: on this CPU PyTorch runs
# it as one fused kernel (oneDNN), the others step by step, each step a few kernel calls and
# autograd nodes whose fixed cost does not grow with the batch: their function has a term per
# gate step (`gate_step_s` x `gate_steps`), beside the per-sample ones (notes §18, §19).
RECURRENT_KINDS = frozenset({"lstm", "rnn"})
# nn.MultiheadAttention likewise: any of its gradients (input, projection weights or biases)
# runs the backward through its softmax and both products; its bias gradient alone measured
# 0.6-0.95x its weight gradient (notes §20). One backward pass, as the recurrent layers'.
WHOLE_BACKWARD_KINDS = RECURRENT_KINDS | {"mha", "rnn_cell"}  # a cell's: its gates' too
# Of those, the kinds whose biases alone cost their whole weight backward (a recurrent layer's
# run through time; attention's softmax and products). A cell's biases alone need its gates'
# backward, not its products' weight gradient: priced as its input gradient.
BIAS_RUNS_WEIGHT_BACKWARD = RECURRENT_KINDS | {"mha"}
# A depthwise conv whose kernel is larger than 3 x 3 (5 x 5, 7 x 7): its weight gradient runs
# on another, slower path than 3 x 3's (this host's zoo tables: ~0.64 ns per MAC against
# 0.02 beyond the fixed cost; notes/device_time_model.md §12), so it is a kind of its own.
# Tables measured before the split call it `depthwise`; a table's kind and the run's are the
# same kind when their families are (devices.owntable).
LARGE_KERNEL_AREA = 9
# An LSTMCell / GRUCell / RNNCell call (one time step, a Python loop around it) runs two
# products and then its gates' activations and the state's update as separate kernels (and
# as many autograd nodes): priced as one linear layer, a 12-step LSTMCell model's forward was
# 117 us against 237 measured (notes/device_time_model.md §23). A kind of its own, timed by
# the kind sweep; tables measured before price it as linear.
# 1-D convs, transposed convs, nn.MultiheadAttention and windowed pools are kinds of their
# own, timed by the kind sweep: priced by a 2-D conv's, a linear layer's and an elementwise
# layer's functions they were off by -99 to +347 % per pass (notes §20); the native-path kinds
# split from conv, conv1d and conv_transpose. Tables measured before called them by these
# families.
KIND_FAMILY = {"depthwise_large": "depthwise", "conv1d": "conv", "conv_transpose": "linear",
               "mha": "linear", "sdpa": "linear", "rnn_cell": "linear", "maxpool": "elementwise",
               "avgpool": "elementwise",
               "conv_native": "conv", "conv1d_native": "conv", "conv_dilated": "conv",
               "conv1d_dilated": "conv",
               "conv_transpose_native": "linear", "index": "view",
               **dict.fromkeys(ELEMENTWISE_FAMILY_KINDS, "elementwise")}
# Matrix products without weights (costmodel.rules.products): their time follows their MACs
# as a linear layer's does (einsum, addmm and baddbmm were priced as elementwise before).
# scaled_dot_product_attention is a kind of its own (`sdpa`: two products and a softmax in one
# fused kernel): fitted with the linear layers, the sweep's attention calls came out 22-53 %
# low and its linear layers 20-87 % high at batch 4, and a model's own products, priced by the
# linear kind, 1.4-1.65x high (notes §24). Tables measured before call it linear.
PRODUCT_KINDS = frozenset({"matmul", "addmm", "baddbmm", "einsum"})
VIEW_KINDS = frozenset({"reshape", "identity", "getitem", "split", "flatten", "dropout",
                        "parameter", "cat"})
# Of those, the ones whose backward writes elements: a slice's or an index's gradient is the
# input zero-filled with the gradient written in, split's and unbind's gradients are stacked,
# expand's summed over what it expanded. The others' backward moves no data (a view of the
# gradient; cat's: slices of it). Both forwards are a call (no table times a view).
INDEX_KINDS = frozenset({"getitem", "split"})
INDEX_OPS = frozenset({"expand", "expand_as"})
VIEW_COST_KINDS = frozenset({"view", "index"})
_FUNCTIONS = {"add": torch.add, "mul": torch.mul,
              "sdpa": F.scaled_dot_product_attention}


def cost_kind(node) -> str:
    """The cost function a layer's time follows (its shape's MACs and elements)."""
    if node.kind == "conv":
        kernel = node.weight_shape[2:] if node.weight_shape else ()
        if is_depthwise(node):
            large = math.prod(int(k) for k in kernel) > LARGE_KERNEL_AREA
            return "depthwise_large" if large else "depthwise"
        if all(int(k) == 1 for k in kernel) and len(kernel) == 2 and _unit(node, "stride") \
                and _unit(node, "dilation"):
            return "pointwise"
        kind = "conv1d" if len(kernel) == 1 else "conv"
        if not runs_native(node):
            return kind
        return f"{kind}_native" if _unit(node, "dilation") else f"{kind}_dilated"
    if node.kind == "rnn":
        return "lstm" if recurrent_gates(node) == 4 else "rnn"
    if node.kind == "conv_transpose":
        return "conv_transpose_native" if runs_native(node) else "conv_transpose"
    if node.kind in ("mha", "sdpa") or node.kind in POOL_KINDS or node.kind in ACTIVATION_KINDS:
        return node.kind
    if node.kind == "rnn_cell":  # one time step: two products and the gates' several kernels
        return "rnn_cell"
    if node.kind == "softmax":  # log_softmax too
        return "softmax"
    function = str(node.op).lower().removesuffix("_")  # masked_fill_ costs as masked_fill
    if function in FUNCTION_KINDS:  # nn.GLU too
        return FUNCTION_KINDS[function]
    if node.kind == "upsample":  # linear, bilinear, bicubic, trilinear: an interpolation
        mode = str(node.attrs.get("mode", "nearest"))
        return "upsample_linear" if mode.endswith(("linear", "cubic")) else "upsample_nearest"
    if node.kind == "linear" or node.kind in PRODUCT_KINDS:
        return "linear"
    if node.kind in NORM_KINDS:
        return "norm"
    if node.kind in VIEW_KINDS:
        return "index" if node.kind in INDEX_KINDS or str(node.op) in INDEX_OPS else "view"
    if node.kind == "derived":  # a module's class name or a function's
        return DERIVED_KINDS.get(str(node.op).lower(), "elementwise")
    return "elementwise"


def _unit(node, attr: str) -> bool:
    """Whether a conv's stride (or dilation) is 1 in every dimension (absent: the default)."""
    value = node.attrs.get(attr, 1)
    return all(int(v) == 1 for v in (value if isinstance(value, (list, tuple)) else [value]))


def runs_native(node) -> bool:
    """Whether PyTorch runs this dense (not 1 x 1) conv, or transposed conv, on its native
    path at the batch it was traced at (NATIVE_INPUT_ELEMENTS)."""
    kernel = [int(k) for k in node.weight_shape[2:]]
    if int(node.attrs.get("groups", 1) or 1) > 1 or (len(kernel) == 2 and min(kernel) > 3) \
            or len(kernel) > 2 or not node.in_shapes:
        return False
    x = node.in_shapes[0]
    return int(x[0]) == 1 and math.prod(x) <= NATIVE_INPUT_ELEMENTS


def priced_kind(kind: str, batch: int) -> str:
    """The kind a layer of `kind` (its kind at batch 1) runs as at `batch`: beyond batch 1 a
    conv on the native path runs oneDNN."""
    return NATIVE_AT_BATCH_1.get(kind, kind) if batch > 1 else kind


def recurrent_gates(node) -> int | None:
    """Gates per hidden unit of a recurrent layer (LSTM 4, GRU 3, RNN 1): the cost model's
    `RNN_GATES` of its class."""
    return RNN_GATES.get(node.op)


def gate_steps(node) -> int:
    """The step-by-step work of a recurrent layer for a batch, whatever the batch size: time
    steps x layers x directions x (gates + 1), the kernels a step runs one after another (a
    product per gate, then the state's update); 0 for any other layer. Per time step a plain
    RNN (1 gate) took 0.45-0.53x a GRU's (3 gates) on this CPU, forward and backward, against
    2 / 4 (notes §19)."""
    if node.kind != "rnn" or not node.in_shapes:
        return 0
    x, a = node.in_shapes[0], node.attrs
    length = x[0] if len(x) < 3 or not a.get("batch_first") else x[1]
    return int(length) * int(a.get("num_layers", 1)) * (2 if a.get("bidirectional") else 1) \
        * ((recurrent_gates(node) or 1) + 1)


# Layers the kind sweep has none of, priced by the function of the kind `cost_kind` gives
# them: what they are, said beside the prediction (notes/device_time_model.md §18).
STAND_INS = {"conv_1d_3d": "Conv3d, priced as a 2-D conv"}


def stand_in(node) -> str | None:
    """The STAND_INS key of a layer no sweep times and another kind's function prices."""
    if node.kind == "conv" and node.weight_shape and len(node.weight_shape) == 5:
        return "conv_1d_3d"
    return None


def pass_elements(node) -> int:
    """Elements a pass of the layer reads and writes: its inputs and its output; a stacked
    recurrent layer's further layers each read the output sequence of the one before and
    write their own (the sweep's recurrent layers have one)."""
    elements = node.distinct_in_numel + math.prod(node.out_shape)
    if node.kind == "rnn":
        elements += 2 * (node.attrs.get("num_layers", 1) - 1) * math.prod(node.out_shape)
    if node.kind == "mha":  # and its attention weights, heads x L x S per sample (softmax)
        elements += attention_elements(node)
    return int(elements)


def attention_elements(node) -> int:
    """Elements of an attention module's weights (softmax over keys): N x heads x L x S."""
    rows_q, _, keys, *_ = mha_sizes(node)
    return int(rows_q * keys * int(node.attrs.get("num_heads", 1)))


# ------------------------------------------------------------------------------ timing

def time_call(fn, *, repeats: int = 5, min_repeat_s: float = 0.002) -> dict:
    """{cpu_s, wall_s, spread, calls}: medians per call over `repeats` repeats (one warm-up)."""
    fn()  # warm-up: first-call allocations and kernel selection
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    inner = max(1, min(1000, math.ceil(min_repeat_s / once)))
    cpu, wall = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        cpu.append((time.process_time() - c0) / inner)
        wall.append((time.perf_counter() - w0) / inner)
    median = statistics.median(cpu)
    spread = (max(cpu) - min(cpu)) / median if median > 0 else 0.0
    return {"cpu_s": median, "wall_s": statistics.median(wall), "spread": spread,
            "calls": inner * repeats}


def machine_load() -> dict:
    """The 1-minute load average and the cores, to warn when the machine is busy."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"load_1min": load, "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}


_REFERENCE = None


def speed_reference() -> float:
    """Process CPU seconds of a fixed small workload (a 3x3 convolution of 32 channels on
    28 x 28, forward and backward): the machine's speed now, to compare with its speed when
    it was calibrated (on a shared VM the same run's CPU time moved by 1.0-1.7x in minutes)."""
    global _REFERENCE
    if _REFERENCE is None:
        gen = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(32, 32, 3, padding=1)
        x = torch.randn(1, 32, 28, 28, generator=gen, requires_grad=True)
        _REFERENCE = (conv, x)
    conv, x = _REFERENCE

    def step():
        conv(x).sum().backward()

    return time_call(step, repeats=5, min_repeat_s=0.002)["cpu_s"]


def busy_warning(load: dict) -> str | None:
    if load["load_1min"] is not None and load["cores"] and load["load_1min"] > load["cores"]:
        # one warning line within 100 columns even at load 999.99 on 128 cores
        return (f"the machine is busy (load {load['load_1min']:.2f} on {load['cores']} cores): "
                "wall times inflated; trust process CPU time")
    return None


# ------------------------------------------------------------------------------ layers

def _inputs(node, generator, fn=None) -> list[torch.Tensor]:
    """Inputs of `node`'s shapes: an embedding's are ids of its table, others Gaussian."""
    if isinstance(fn, (nn.Embedding, nn.EmbeddingBag)):
        return [torch.randint(fn.num_embeddings, tuple(s), generator=generator)
                for s in node.in_shapes[:1]]
    return [torch.randn(tuple(s), generator=generator) for s in node.in_shapes]


class SelfAttention(nn.Module):
    """nn.MultiheadAttention called as a model calls it, its output only: one input is
    query, key and value (self-attention), two are query and key-value, three each its own."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, *xs):
        q, k, v = (xs * 3)[:3] if len(xs) == 1 else (xs[0], xs[1], xs[-1])
        return self.attention(q, k, v, need_weights=False)[0]


class OperatorCell(nn.Module):
    """A kind sweep's cell of one function a model calls (FUNCTION_KINDS): `forward` calls
    `fn` on the cell's input, as a model would; `alone` is what measure_layers times for the
    function's node, called on that node's tensor inputs (a condition or mask among them is
    compared with 0 inside: not differentiable, as a model's is not)."""

    def __init__(self, op: str, fn, alone=None):
        super().__init__()
        self.op, self.fn, self.alone = op, fn, alone or fn

    def forward(self, x):
        return self.fn(x)


def _callable(node, modules: dict):
    if node.kind == "mha" and node.module is not None and node.module in modules:
        return SelfAttention(modules[node.module]).eval()
    cell = modules.get(node.block) if node.module is None else None
    if isinstance(cell, OperatorCell) and str(node.op) == cell.op:
        return cell.alone
    if node.module is not None and node.kind not in VIEW_KINDS:
        module = modules.get(node.module)
        if module is not None and not list(module.children()):
            if getattr(module, "inplace", False):  # alone, its input may require a gradient
                module = copy.copy(module)
                module.inplace = False
            return module.eval()
    if node.module is None and node.kind in _FUNCTIONS and node.in_shapes:
        return _FUNCTIONS[node.kind]
    return None


def timed_macs(row: dict, pass_name: str, kind: str) -> int:
    """An input or weight gradient does the forward's MACs (a transposed product of the same
    size), whether or not a configuration asks for it (the first layer's input gradient); a
    fused attention's input gradient, timed for its query, key and value, twice them (four
    products against the forward's two: the cost model's `backward_input_macs` when all
    three need one, as a model's attention does)."""
    if pass_name in ("bias_grad", "joint_grad"):  # reductions over elements
        return 0
    return forward_work_count(row, kind) * (2 if pass_name == "input_grad" and kind == "sdpa"
                                            else 1)


def forward_work_count(row: dict, kind: str) -> int:
    """The count a kind's per-MAC term multiplies: a pool's window taps, else its MACs."""
    return row["forward_other_ops"] if kind in POOL_KINDS else row["forward_macs"]


def _sparse_timing(fn, xs, grad_out, repeats, min_repeat_s) -> dict | None:
    """The runner's channel-sparse weight gradient (devices.sparse) of SPARSE_FRACTION of the
    output channels, or None for a layer it does not serve."""
    from .sparse import sparse_forward, supports_sparse

    if not isinstance(fn, nn.Module) or not supports_sparse(fn) or len(xs) != 1:
        return None
    channels = range(max(1, round(SPARSE_FRACTION * fn.weight.shape[0])))
    forward = sparse_forward(fn, list(channels), 0)
    weight = fn.weight
    weight.requires_grad_(True)
    try:
        y = forward(xs[0])
        return time_call(lambda: torch.autograd.grad(y, [weight], grad_out, retain_graph=True),
                         repeats=repeats, min_repeat_s=min_repeat_s)
    finally:
        weight.requires_grad_(False)


class FirstOutput(nn.Module):
    """A recurrent layer's output sequence, not its final state: what a model goes on with,
    and what is timed."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *xs):
        return self.layer(*xs)[0]


def _gradient_groups(params: dict, kind: str) -> list[tuple[str, list]]:
    """(pass, parameters) timed: the weight, then the bias; an RNN's weights (weight_ih_l0,
    weight_hh_l0, ...) and biases together as one weight gradient (WHOLE_BACKWARD_KINDS)."""
    def named(prefix: str, name: str) -> bool:  # weight, weight_ih_l0, in_proj_weight
        leaf = name.rsplit(".", 1)[-1]
        return leaf == prefix or leaf.startswith(prefix + "_") or leaf.endswith("_" + prefix)

    weights = [p for n, p in params.items() if named("weight", n)]
    biases = [p for n, p in params.items() if named("bias", n)]
    if kind in WHOLE_BACKWARD_KINDS:
        return [("weight_grad", weights + biases)] if weights + biases else []
    return [(name, group) for name, group in (("weight_grad", weights), ("bias_grad", biases))
            if group]


def weight_elements(node) -> int:
    """Weight elements of a layer: a weight gradient reduces over them once per sample."""
    return int(math.prod(node.weight_shape)) if node.weight_shape else 0


# A 1 x 1 conv's forward and input gradient on a small map cost per MAC as if the map had at
# least MIN_POSITIONS positions: oneDNN's 1 x 1 kernel works on blocks of positions, per
# sample. Measured on this host's zoo tables (torch 2.13, AVX-512): 42-76 ps per MAC on maps of
# 36-2,304 positions, 177-253 on 3 x 3 maps, at batch 1 and 4 alike; one function linear in
# MACs priced the zoo's 1 x 1 forwards 35 % low in sum and an EfficientNet-style net's large
# maps 31-36 % high. The MACs a map short of the floor adds (`short_macs`) are a term of their own
# (`short_mac_s`); 40-64 fitted the zoo alike, 48 kept (notes/device_time_model.md §30).
# Depthwise and dense k x k convs showed no such floor (the same fit made them no better).
MIN_POSITIONS = 48
SHORT_MAP_PASSES = frozenset({("pointwise", "forward"), ("pointwise", "input_grad")})


def positions(node) -> int:
    """Output positions per sample of a 2-D conv (its map's H x W); 0 for any other layer."""
    if node.kind != "conv" or not node.weight_shape or len(node.weight_shape) != 4:
        return 0
    return int(math.prod(node.out_shape[2:]))


def short_macs(kind: str, pass_name: str, macs: float, at_positions: int) -> float:
    """The MACs a pass on a map of `at_positions` positions (per sample) pays beyond its own
    below the MIN_POSITIONS floor: macs x (MIN_POSITIONS / positions - 1); 0 where no floor
    applies (SHORT_MAP_PASSES) or the positions are unknown (tables written before)."""
    pass_name = "forward" if pass_name == RECOMPUTE else pass_name  # the forward, run again
    if (kind, pass_name) not in SHORT_MAP_PASSES or not 0 < at_positions < MIN_POSITIONS:
        return 0.0
    return macs * (MIN_POSITIONS / at_positions - 1.0)


def _gradient_timing(fn, args, wrt, grad_out, kind: str, forward: dict, repeats: int,
                     min_repeat_s: float) -> dict:
    """time_call of the gradient of fn(*args) for `wrt`. A recurrent layer's forward with
    gradients records every time step's operations for its backward (a GRU's: 1.7x its
    no-gradient forward on this CPU, an LSTM's 1.1x; notes §19), which a training step pays:
    it is timed with its backward, less the no-gradient `forward` priced as its own pass."""
    if kind in WHOLE_BACKWARD_KINDS:
        t = time_call(lambda: torch.autograd.grad(fn(*args), wrt, grad_out),
                      repeats=repeats, min_repeat_s=min_repeat_s)
        return dict(t, cpu_s=max(t["cpu_s"] - forward["cpu_s"], 0.0),
                    wall_s=max(t["wall_s"] - forward["wall_s"], 0.0))
    y = fn(*args)
    # allow_unused: an OperatorCell's condition or mask is an input it does not differentiate
    return time_call(lambda: torch.autograd.grad(y, wrt, grad_out, retain_graph=True,
                                                 allow_unused=True),
                     repeats=repeats, min_repeat_s=min_repeat_s)


def _joint_timing(fn, xs, params, grad_out, input_grad: dict, repeats: int,
                 min_repeat_s: float) -> dict:
    """A ONE_CALL_KINDS layer's gradients of its input and every parameter in one backward,
    less its input's gradient alone (`input_grad`): what its parameters add to that call."""
    inputs = [x.detach().requires_grad_() for x in xs]
    for p in params:
        p.requires_grad_(True)
    t = _gradient_timing(fn, inputs, inputs + params, grad_out, "", {}, repeats, min_repeat_s)
    for p in params:
        p.requires_grad_(False)
    return dict(t, cpu_s=max(t["cpu_s"] - input_grad["cpu_s"], 0.0),
                wall_s=max(t["wall_s"] - input_grad["wall_s"], 0.0))


def measure_layers(module: nn.Module, graph, full_rows: dict, *, repeats: int = 5,
                   min_repeat_s: float = 0.002, model_name: str = "") -> list[dict]:
    """One row per (timed layer, pass) at the graph's input shape (its batch size).
    `full_rows`: {layer: cost row} of the graph with every layer updated (pytorch convention),
    for the passes' MACs."""
    modules = dict(module.named_modules())
    generator = torch.Generator().manual_seed(0)
    batch = int(graph.input_shape[0])
    out = []
    for node in graph.ops():
        fn = _callable(node, modules)
        if fn is None or node.name not in full_rows:
            continue
        kind = cost_kind(node)
        try:
            xs = _inputs(node, generator, fn)
            # a wrapper's (FirstOutput, SelfAttention) and an attention's projections too
            params = dict(fn.named_parameters()) if isinstance(fn, nn.Module) else {}
            # an RNN returns (output, state), an LSTMCell (h, c): what the model goes on with
            if kind in RECURRENT_KINDS or isinstance(fn, nn.LSTMCell):
                fn = FirstOutput(fn)
            with torch.no_grad():
                y = fn(*xs)
            if not isinstance(y, torch.Tensor):
                continue
        except Exception:  # a layer that does not run alone: priced by its kind's function
            continue
        grad_out = torch.ones_like(y)
        timings = {}
        with torch.no_grad():
            timings["forward"] = time_call(lambda: fn(*xs), repeats=repeats,
                                           min_repeat_s=min_repeat_s)
        for p in params.values():
            p.requires_grad_(False)
        if all(x.is_floating_point() for x in xs):  # ids pass no gradient on
            inputs = [x.detach().requires_grad_() for x in xs]
            timings["input_grad"] = _gradient_timing(fn, inputs, inputs, grad_out, kind,
                                                     timings["forward"], repeats, min_repeat_s)
        for pass_name, group in _gradient_groups(params, kind):
            for p in group:
                p.requires_grad_(True)
            timings[pass_name] = _gradient_timing(fn, xs, group, grad_out, kind,
                                                  timings["forward"], repeats, min_repeat_s)
            for p in group:
                p.requires_grad_(False)
        if kind in ONE_CALL_KINDS and "input_grad" in timings and params:
            timings["joint_grad"] = _joint_timing(fn, xs, list(params.values()), grad_out,
                                                  timings["input_grad"], repeats, min_repeat_s)
        sparse = _sparse_timing(fn, xs, grad_out, repeats, min_repeat_s)
        if sparse is not None:
            timings["sparse_weight_grad"] = sparse
        for p in params.values():
            p.requires_grad_(True)
        steps, at = gate_steps(node), positions(node)
        for pass_name, t in timings.items():
            out.append({"model": model_name, "layer": node.name, "kind": kind,
                        "pass": pass_name, "batch_size": batch,
                        "macs": int(timed_macs(full_rows[node.name], pass_name, kind)
                                    * (SPARSE_FRACTION if pass_name.startswith("sparse") else 1)),
                        "elements": pass_elements(node),
                        "weights": weight_elements(node) * batch * (
                            SPARSE_FRACTION if pass_name.startswith("sparse") else 1)
                        if pass_name.endswith("weight_grad") else 0,
                        "cpu_s": t["cpu_s"], "wall_s": t["wall_s"],
                        "spread": round(t["spread"], 4),
                        **({"gate_steps": steps} if steps else {}),
                        **({"positions": at} if at else {})})
    return out
