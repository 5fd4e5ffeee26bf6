"""Probe which tensors eager PyTorch autograd saves for backward, per operator and per
requires-grad situation. Prints the markdown tables used in notes/pytorch_saved_tensors.md.

Run from the repo root:  python notes/probe_saved_tensors.py

Each op runs inside `Probe`, which turns the model input into a fresh leaf whose
requires_grad we choose, so "input requires grad" can be set without a preceding op that
would save tensors of its own. Relations of each saved tensor to the op are found by storage
address: in (op input), out (op output), in=out (in-place op), y (second operand),
param / buffer (excluded from the count), new (a fresh storage: stats, indices, masks, copies).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ttplan.costmodel.measure import measure_saved_bytes, saved_bytes_by_graph_walk  # noqa: E402


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class Probe(nn.Module):
    """Runs `op` on a leaf input with chosen requires_grad; remembers storage addresses."""

    def __init__(self, op: nn.Module | Callable, x_rg: bool, y: torch.Tensor | None = None,
                 y_rg: bool = False, inplace: bool = False):
        super().__init__()
        self.op = op
        self.x_rg, self.y_rg, self.inplace = x_rg, y_rg, inplace
        self.y = y  # plain attribute, not a buffer: it plays an activation, so it is counted
        self.ptrs: dict[str, int] = {}
        self.keep: tuple = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leaf = x.detach().requires_grad_(self.x_rg)
        # An in-place op may not modify a leaf that requires grad; clone (saves nothing).
        inp = leaf.clone() if self.inplace else leaf
        self.ptrs = {"in": _ptr(inp)}
        if self.y is None:
            out = self.op(inp)
            self.keep = (inp, out)
        else:
            y = self.y.detach().requires_grad_(self.y_rg)
            self.ptrs["y"] = _ptr(y)
            out = self.op(inp, y)
            self.keep = (inp, y, out)
        self.ptrs["out"] = _ptr(out)
        return out


def _relation(ptr: int, kind: str, ptrs: dict[str, int]) -> str:
    if kind in ("parameter", "buffer"):
        return "param" if kind == "parameter" else "buffer"
    names = [k for k, v in ptrs.items() if v == ptr]
    if "in" in names and "out" in names:
        return "in=out"
    return names[0] if names else "new"


def _dtype(d: torch.dtype) -> str:
    return str(d).replace("torch.", "")


def run(op, x: torch.Tensor, x_rg: bool, *, y=None, y_rg=False, inplace=False,
        train=True, freeze="none") -> tuple[str, str, int]:
    """Returns (saved list, grad_fn names, counted bytes) for one situation.

    freeze: "none" (all params trainable), "all", or "weight" (only biases trainable).
    """
    probe = Probe(op, x_rg, y, y_rg, inplace)
    probe.train(train)
    for name, p in probe.named_parameters():
        p.requires_grad_(freeze == "none" or (freeze == "weight" and name.endswith("bias")))
    m = measure_saved_bytes(probe, x)
    assert m.unattributed_alive == 0, "graph walk missed a saved tensor"
    assert m.saved_bytes == m.packed_bytes, "a dead branch in a single-op probe?"
    items, fns = [], []
    for r in m.records:
        rel = _relation(r.storage_ptr, r.kind, probe.ptrs)
        shape = "x".join(map(str, r.shape)) or "scalar"
        size = "" if rel in ("param", "buffer") else f", {r.storage_nbytes} B"
        items.append(f"`{r.saved_name}` {shape} {_dtype(r.dtype)} ({rel}{size})")
        if r.grad_fn not in fns:
            fns.append(r.grad_fn)
    probe.keep = ()
    # Independent count (after the relations: it reruns the probe and overwrites its ptrs):
    # a fresh forward with no hooks, saved tensors read off the graph.
    assert saved_bytes_by_graph_walk(probe, x) == m.saved_bytes, "hook and walk disagree"
    return ("; ".join(items) or "nothing", ", ".join(fns) or "-", m.saved_bytes)


def table(title: str, rows: list[tuple[str, tuple[str, str, int]]], note: str = "") -> None:
    print(f"\n### {title}\n")
    if note:
        print(note + "\n")
    print("| situation | saved (name shape dtype (relation, storage bytes)) | node | counted B |")
    print("|---|---|---|---:|")
    for sit, (items, fns, nbytes) in rows:
        print(f"| {sit} | {items} | {fns} | {nbytes} |")


def weighted(title: str, make: Callable[[], nn.Module], x: torch.Tensor, train: bool = True,
             note: str = "") -> None:
    """The four situations (a)-(d) for an op with parameters, plus bias-only (e), (f)."""
    torch.manual_seed(0)
    rows = [
        ("(a) W train, x rg", run(make(), x, True, train=train)),
        ("(b) W train, x no rg", run(make(), x, False, train=train)),
        ("(c) W frozen, x rg", run(make(), x, True, train=train, freeze="all")),
        ("(d) W frozen, x no rg", run(make(), x, False, train=train, freeze="all")),
    ]
    if any(n.endswith("bias") for n, _ in make().named_parameters()):
        rows += [
            ("(e) only bias train, x no rg", run(make(), x, False, train=train,
                                                  freeze="weight")),
            ("(f) only bias train, x rg", run(make(), x, True, train=train, freeze="weight")),
        ]
    table(title, rows, note)


def weightless(title: str, make: Callable[[], nn.Module | Callable], x: torch.Tensor,
               inplace: bool = False, train: bool = True, note: str = "") -> None:
    rows = [
        ("x rg", run(make(), x, True, inplace=inplace, train=train)),
        ("x no rg", run(make(), x, False, inplace=inplace, train=train)),
    ]
    table(title, rows, note)


def binary(title: str, op: Callable, x: torch.Tensor, y: torch.Tensor, inplace=False,
           note: str = "") -> None:
    rows = [
        ("x rg, y rg", run(op, x, True, y=y, y_rg=True, inplace=inplace)),
        ("x rg, y no rg", run(op, x, True, y=y, y_rg=False, inplace=inplace)),
        ("x no rg, y rg", run(op, x, False, y=y, y_rg=True, inplace=inplace)),
        ("none rg", run(op, x, False, y=y, y_rg=False, inplace=inplace)),
    ]
    table(title, rows, note)


class Lambda(nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *a):
        return self.fn(*a)


class TransposedLinear(nn.Module):
    """Linear applied to a non-contiguous 3-D view (N x C x L -> N x L x C)."""

    def __init__(self, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(16, 5, bias=bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.lin(t.transpose(1, 2))


def aten_calls(fn: Callable[[], object]) -> list[str]:
    """aten ops run by `fn`, logged below autograd with no saved-tensor hooks installed."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: list[str] = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(str(func.overloadpacket.__name__))
            return func(*args, **(kwargs or {}))

    with Log():
        fn()
    return calls


def chain(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act,
                         nn.Conv2d(8, 8, 3, padding=1, bias=False))


def main() -> None:
    torch.manual_seed(0)
    x4 = torch.randn(2, 4, 6, 6)  # 288 float32 = 1152 B
    print(f"Measured with torch {torch.__version__}, CPU. Op input x: {tuple(x4.shape)} float32 = "
          f"{x4.numel() * 4} B unless noted.")

    print("\n## Ops with parameters")
    weighted("Conv2d(4, 8, 3, padding=1), bias", lambda: nn.Conv2d(4, 8, 3, padding=1), x4)
    weighted("Conv2d(4, 8, 3, padding=1, bias=False)",
             lambda: nn.Conv2d(4, 8, 3, padding=1, bias=False), x4)
    weighted("Conv2d depthwise (4, 4, 3, groups=4)",
             lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), x4)
    weighted("Conv2d grouped (4, 8, 3, groups=2)",
             lambda: nn.Conv2d(4, 8, 3, padding=1, groups=2), x4)
    weighted("Conv2d 1x1 stride 2 (4, 8, 1, stride=2)",
             lambda: nn.Conv2d(4, 8, 1, stride=2), x4)
    weighted("ConvTranspose2d(4, 2, 2, stride=2)", lambda: nn.ConvTranspose2d(4, 2, 2, stride=2),
             x4)
    weighted("Linear(16, 5), 2-D input 3x16 (192 B)", lambda: nn.Linear(16, 5),
             torch.randn(3, 16))
    weighted("Linear(16, 5, bias=False), 2-D input 3x16 (192 B)",
             lambda: nn.Linear(16, 5, bias=False), torch.randn(3, 16))
    weighted("Linear(16, 5), 3-D input 2x3x16 (384 B)", lambda: nn.Linear(16, 5),
             torch.randn(2, 3, 16))
    weighted("Linear(16, 5, bias=False), 3-D input 2x3x16 (384 B)",
             lambda: nn.Linear(16, 5, bias=False), torch.randn(2, 3, 16))
    weighted("Linear(16, 5), 3-D non-contiguous input: x 2x16x3 transposed to 2x3x16",
             lambda: TransposedLinear(), torch.randn(2, 16, 3))
    weighted("Linear(16, 5, bias=False), 3-D non-contiguous input (transposed)",
             lambda: TransposedLinear(bias=False), torch.randn(2, 16, 3))
    weighted("BatchNorm2d(4), train mode", lambda: nn.BatchNorm2d(4), x4)
    weighted("BatchNorm2d(4), eval mode", lambda: nn.BatchNorm2d(4), x4, train=False)
    table("BatchNorm2d(4, affine=False)", [
        ("train, x rg", run(nn.BatchNorm2d(4, affine=False), x4, True)),
        ("train, x no rg", run(nn.BatchNorm2d(4, affine=False), x4, False)),
        ("eval, x rg", run(nn.BatchNorm2d(4, affine=False), x4, True, train=False)),
    ])
    weighted("BatchNorm1d(4), train, input 6x4 (96 B)", lambda: nn.BatchNorm1d(4),
             torch.randn(6, 4))
    weighted("BatchNorm1d(4), train, input 2x4x5 (160 B)", lambda: nn.BatchNorm1d(4),
             torch.randn(2, 4, 5))
    weighted("BatchNorm1d(4), eval, input 6x4 (96 B)", lambda: nn.BatchNorm1d(4),
             torch.randn(6, 4), train=False)
    weighted("LayerNorm(16), input 2x3x16 (384 B)", lambda: nn.LayerNorm(16),
             torch.randn(2, 3, 16))
    weighted("LayerNorm([4, 6, 6]) over C,H,W", lambda: nn.LayerNorm([4, 6, 6]), x4)
    weighted("GroupNorm(2, 4)", lambda: nn.GroupNorm(2, 4), x4)

    print("\n## Ops without parameters")
    weightless("ReLU", lambda: nn.ReLU(), x4)
    weightless("ReLU(inplace=True)", lambda: nn.ReLU(inplace=True), x4, inplace=True)
    weightless("ReLU6", lambda: nn.ReLU6(), x4)
    weightless("ReLU6(inplace=True)  (aten hardtanh_)", lambda: nn.ReLU6(inplace=True), x4,
               inplace=True)
    weightless("F.relu6(x)  (aten relu6)", lambda: Lambda(F.relu6), x4)
    weightless("Hardswish", lambda: nn.Hardswish(), x4)
    weightless("Hardswish(inplace=True)", lambda: nn.Hardswish(inplace=True), x4, inplace=True)
    weightless("Hardsigmoid", lambda: nn.Hardsigmoid(), x4)
    weightless("Sigmoid", lambda: nn.Sigmoid(), x4)
    weightless("SiLU", lambda: nn.SiLU(), x4)
    weightless("SiLU(inplace=True)", lambda: nn.SiLU(inplace=True), x4, inplace=True)
    weightless("GELU", lambda: nn.GELU(), x4)
    weightless("GELU(approximate='tanh')", lambda: nn.GELU(approximate="tanh"), x4)
    weightless("Tanh", lambda: nn.Tanh(), x4)
    weightless("LeakyReLU(0.1)", lambda: nn.LeakyReLU(0.1), x4)
    weightless("LeakyReLU(0.1, inplace=True)", lambda: nn.LeakyReLU(0.1, inplace=True), x4,
               inplace=True)
    weightless("MaxPool2d(2)", lambda: nn.MaxPool2d(2), x4)
    weightless("MaxPool2d(3, stride=2, padding=1)", lambda: nn.MaxPool2d(3, 2, 1), x4)
    weightless("AvgPool2d(2)", lambda: nn.AvgPool2d(2), x4)
    weightless("AdaptiveAvgPool2d(1)", lambda: nn.AdaptiveAvgPool2d(1), x4)
    weightless("AdaptiveAvgPool2d(2)", lambda: nn.AdaptiveAvgPool2d(2), x4)
    weightless("AdaptiveAvgPool2d((1, 2))", lambda: nn.AdaptiveAvgPool2d((1, 2)), x4)
    weightless("AdaptiveMaxPool2d(1)", lambda: nn.AdaptiveMaxPool2d(1), x4)
    weightless("torch.flatten(x, 1)", lambda: nn.Flatten(), x4)
    weightless("x.view(2, -1)", lambda: Lambda(lambda t: t.view(2, -1)), x4)
    weightless("x.reshape(2, -1)", lambda: Lambda(lambda t: t.reshape(2, -1)), x4)
    weightless("x.transpose(1, 2).reshape(2, -1)  (reshape copies)",
               lambda: Lambda(lambda t: t.transpose(1, 2).reshape(2, -1)), x4)
    weightless("x.mean((2, 3))", lambda: Lambda(lambda t: t.mean((2, 3))), x4)
    weightless("x.mean((2, 3), keepdim=True)",
               lambda: Lambda(lambda t: t.mean((2, 3), keepdim=True)), x4)
    weightless("Dropout(0.5), train mode", lambda: nn.Dropout(0.5), x4)
    weightless("Dropout(0.5), eval mode", lambda: nn.Dropout(0.5), x4, train=False)
    weightless("Dropout2d(0.5), train mode", lambda: nn.Dropout2d(0.5), x4)
    weightless("Softmax(dim=1)", lambda: nn.Softmax(dim=1), x4)
    weightless("LogSoftmax(dim=1)", lambda: nn.LogSoftmax(dim=1), x4)
    weightless("F.interpolate(scale_factor=2, mode='nearest')",
               lambda: Lambda(lambda t: F.interpolate(t, scale_factor=2, mode="nearest")), x4)
    weightless("F.interpolate(scale_factor=2, mode='bilinear')",
               lambda: Lambda(lambda t: F.interpolate(t, scale_factor=2, mode="bilinear")), x4)

    print("\n## Two-operand ops (x and y both 'activations'; y counted)")
    y_same = torch.randn(2, 4, 6, 6)
    y_se = torch.randn(2, 4, 1, 1)  # 8 float32 = 32 B
    binary("x + y (operator.add)", Lambda(lambda a, b: a + b), x4, y_same)
    binary("x += y (in-place add_)", Lambda(lambda a, b: a.add_(b)), x4, y_same, inplace=True)
    binary("torch.cat([x, y], 1)", Lambda(lambda a, b: torch.cat([a, b], 1)), x4, y_same)
    binary("x * y, same shape", Lambda(lambda a, b: a * b), x4, y_same)
    binary("x * s, s 2x4x1x1 (SE-style broadcast)", Lambda(lambda a, b: a * b), x4, y_se)
    binary("x *= s (in-place mul_, SE-style)", Lambda(lambda a, b: a.mul_(b)), x4, y_se,
           inplace=True)

    print("\n## Chains: Conv(4->8, no bias) -> BN(8) -> act -> Conv(8->8, no bias), "
          "all trainable, x 2x4x6x6 no rg")
    print("\nEach 2x8x6x6 activation is 2304 B.\n")
    print("| act | counted B | saved by the act |")
    print("|---|---:|---|")
    acts = [("ReLU6()", nn.ReLU6()), ("ReLU6(inplace=True)", nn.ReLU6(inplace=True)),
            ("ReLU()", nn.ReLU()), ("ReLU(inplace=True)", nn.ReLU(inplace=True)),
            ("Hardswish()", nn.Hardswish()), ("Hardswish(inplace=True)",
                                              nn.Hardswish(inplace=True)),
            ("SiLU()", nn.SiLU()), ("Identity()", nn.Identity())]
    for name, act in acts:
        m = measure_saved_bytes(chain(act).train(), x4)
        assert saved_bytes_by_graph_walk(chain(act).train(), x4) == m.saved_bytes
        fns = m.by_grad_fn()
        act_items = [f"`{r.saved_name}` ({r.grad_fn}, storage#{r.storage_index})"
                     for r in m.records if r.grad_fn not in
                     ("ConvolutionBackward0", "NativeBatchNormBackward0")]
        print(f"| {name} | {m.saved_bytes} | {'; '.join(act_items) or '-'} |  ")
        del fns

    print("\n## In-place ops that copy their input first (aten calls, no hooks installed)\n")
    print("Input: a non-leaf 2x4x6x6 tensor that requires grad; `y` 2x4x1x1 requires grad.\n")
    print("| call | aten ops dispatched |")
    print("|---|---|")
    base = torch.randn(2, 4, 6, 6, requires_grad=True)
    s_rg = torch.randn(2, 4, 1, 1, requires_grad=True)
    s_no = torch.randn(2, 4, 1, 1)
    cases = [("F.relu(t, inplace=True)", lambda t: F.relu(t, inplace=True)),
             ("F.relu6(t, inplace=True)", lambda t: F.relu6(t, inplace=True)),
             ("F.hardtanh(t, 0, 6, inplace=True)", lambda t: F.hardtanh(t, 0.0, 6.0, True)),
             ("F.hardswish(t, inplace=True)", lambda t: F.hardswish(t, inplace=True)),
             ("F.silu(t, inplace=True)", lambda t: F.silu(t, inplace=True)),
             ("F.leaky_relu(t, 0.1, inplace=True)", lambda t: F.leaky_relu(t, 0.1, True)),
             ("t.add_(y), y rg", lambda t: t.add_(s_rg)),
             ("t.mul_(y), y rg", lambda t: t.mul_(s_rg)),
             ("t.mul_(y), y not rg", lambda t: t.mul_(s_no))]
    for name, fn in cases:
        t = base * 1  # outside the log: the mul is not part of the call
        calls = [c for c in aten_calls(lambda: fn(t)) if c != "detach"]
        print(f"| `{name}` | {', '.join(calls)} |")


class FirstOutput(nn.Module):
    """A recurrent layer's output sequence (its parameters stay the model's)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]


class SelfAttentionOutput(nn.Module):
    """nn.MultiheadAttention(x, x, x)'s output (its parameters stay the model's)."""

    def __init__(self, layer: nn.Module, need_weights: bool):
        super().__init__()
        self.layer, self.need_weights = layer, need_weights

    def forward(self, x):
        return self.layer(x, x, x, need_weights=self.need_weights)[0]


def library_ops() -> None:
    """Ops of library-style models (matmul family, attention, splits, recurrent layers)."""
    torch.manual_seed(0)
    print(f"Measured with torch {torch.__version__}, CPU.")
    print("\n## Matmul family and attention (x = first operand, y = second)")
    a4, b4 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 5, 6)
    binary("x @ y, 4-D (2,3,4,5) @ (2,3,5,6)", Lambda(lambda p, q: p @ q), a4, b4)
    binary("torch.matmul 3-D @ 2-D (2,4,5) @ (5,6) (folded to mm)",
           Lambda(torch.matmul), torch.randn(2, 4, 5), torch.randn(5, 6))
    binary("torch.bmm (2,4,5) @ (2,5,6)", Lambda(torch.bmm), torch.randn(2, 4, 5),
           torch.randn(2, 5, 6))
    binary("q @ k.transpose(-2, -1), (2,3,4,5) each", Lambda(lambda p, q: p @ q.transpose(-2, -1)),
           torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    binary("x @ y with x a permuted view (B,N,H,D)->(B,H,N,D) (the fold copies x)",
           Lambda(lambda p, q: p.permute(0, 2, 1, 3) @ q), torch.randn(2, 4, 3, 5),
           torch.randn(2, 3, 5, 6))
    binary("x @ y with y broadcast over the batch (1,3,5,6) (the expand copies y)",
           Lambda(lambda p, q: p @ q), a4, torch.randn(1, 3, 5, 6))
    binary("einsum('bhij,bhjk->bhik')", Lambda(lambda p, q: torch.einsum("bhij,bhjk->bhik", p, q)),
           a4, b4)
    binary("torch.baddbmm(zeros, x, y)", Lambda(lambda p, q: torch.baddbmm(
        torch.zeros(2, 4, 6), p, q)), torch.randn(2, 4, 5), torch.randn(2, 5, 6))
    binary("F.scaled_dot_product_attention(x, y, y)", Lambda(
        lambda p, q: F.scaled_dot_product_attention(p, q, q)), a4, torch.randn(2, 3, 4, 5))
    binary("F.scaled_dot_product_attention(x, y, y), x permuted (non-contiguous)", Lambda(
        lambda p, q: F.scaled_dot_product_attention(p.transpose(1, 2), q, q)),
        torch.randn(2, 4, 3, 5), torch.randn(2, 3, 4, 5))
    binary("x / y", Lambda(lambda p, q: p / q), torch.randn(2, 3, 4), torch.randn(2, 3, 4))

    print("\n## Views, copies, splits, dropout p = 0 (x 2x3x4x5 = 480 B)")
    weightless("softmax(-1)", lambda: Lambda(lambda t: t.softmax(-1)), a4)
    weightless("GELU(approximate='tanh')", lambda: nn.GELU(approximate="tanh"), a4)
    weightless("permute(0, 2, 3, 1)", lambda: Lambda(lambda t: t.permute(0, 2, 3, 1)), a4)
    weightless("permute(0, 2, 3, 1).contiguous()  (a copy, nothing saved)",
               lambda: Lambda(lambda t: t.permute(0, 2, 3, 1).contiguous()), a4)
    weightless("chunk(3, 1), outputs multiplied", lambda: Lambda(
        lambda t: t.chunk(3, 1)[0] * t.chunk(3, 1)[1]), a4)
    weightless("unbind(1)[0] * unbind(1)[1]", lambda: Lambda(
        lambda t: t.unbind(1)[0] * t.unbind(1)[1]), a4)
    weightless("Dropout(0.0), train", lambda: nn.Dropout(0.0), a4)
    weightless("F.dropout(x, 0.0, training=True)", lambda: Lambda(
        lambda t: F.dropout(t, 0.0, True)), a4)
    weightless("drop path p=0.2: x * mask(N,1,1,1) / keep", lambda: Lambda(
        lambda t: t * t.new_empty(t.shape[0], 1, 1, 1).bernoulli_(0.8).div_(0.8)), a4)

    print("\n## Recurrent layers (input 2x3x5, hidden 7, batch_first)\n")
    print("| layer | situation | saved (grad_fn.name: bytes, new storages) | counted B |")
    print("|---|---|---|---:|")
    for cell in (nn.LSTM, nn.GRU):
        for label, freeze in (("all train", "none"), ("bias only", "weight")):
            torch.manual_seed(0)
            layer = FirstOutput(cell(5, 7, batch_first=True))
            for name, p in layer.named_parameters():
                p.requires_grad_(freeze == "none" or "bias" in name)
            m = measure_saved_bytes(layer.train(), torch.randn(2, 3, 5))
            items: dict[str, int] = {}
            for r in m.records:
                if r.alive and r.kind not in ("parameter", "buffer"):
                    key = f"{r.grad_fn}.{r.saved_name}"
                    items[key] = items.get(key, 0) + r.nbytes
            text = "; ".join(f"{k}: {v}" for k, v in items.items())
            print(f"| {cell.__name__} | {label} | {text} | {m.saved_bytes} |")


def construct_ops() -> None:
    """Ops of issue 17's constructs: GRN, XCA, GPT-2 Conv1D, positional encodings, shifted
    windows, SDPA's training paths, LayerNorm on a slice, nn.MultiheadAttention."""
    torch.manual_seed(0)
    print(f"Measured with torch {torch.__version__}, CPU.")
    x4, x3 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4)
    print("\n## Element-wise, reductions, views (x 2x3x4x5 = 480 B unless said)")
    for title, fn in (("torch.sin", torch.sin), ("torch.cos", torch.cos),
                      ("torch.exp", torch.exp), ("torch.rsqrt", torch.rsqrt),
                      ("x.pow(2)", lambda t: t.pow(2)), ("torch.cumsum(x, 1)",
                                                          lambda t: torch.cumsum(t, 1)),
                      ("F.pad(x, (1, 1, 1, 1))", lambda t: F.pad(t, (1, 1, 1, 1))),
                      ("torch.roll(x, (1, 1), (2, 3))", lambda t: torch.roll(t, (1, 1), (2, 3))),
                      ("x.norm(p=2, dim=(1, 2), keepdim=True)",
                       lambda t: t.norm(p=2, dim=(1, 2), keepdim=True)),
                      ("F.normalize(x, dim=-1)", lambda t: F.normalize(t, dim=-1))):
        weightless(title, lambda fn=fn: Lambda(fn), x4)
    print("\n## Products with a bias (x = first multiplied operand, y = second)")
    binary("torch.addcmul(b (5,), x (2,3,4,5), y (5,))  (GRN: x + b + w·x·n)",
           Lambda(lambda p, q: torch.addcmul(torch.zeros(5), p, q)), x4, torch.randn(5))
    binary("torch.addmm(b (6,), x (4,5), y (5,6))  (GPT-2 Conv1D)",
           Lambda(lambda p, q: torch.addmm(torch.zeros(6), p, q)), torch.randn(4, 5),
           torch.randn(5, 6))
    print("\n## SDPA in training (q = x, k = v = y, 2x2x6x8 each)")
    q, kv = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    binary("dropout_p = 0.1 (math path)", Lambda(
        lambda p, r: F.scaled_dot_product_attention(p, r, r, dropout_p=0.1)), q, kv)
    binary("attn_mask = a (2,6,6) constant (math path)", Lambda(
        lambda p, r: F.scaled_dot_product_attention(p, r, r, attn_mask=torch.zeros(2, 6, 6))),
        q, kv)
    print("\n## LayerNorm(4) on strided views of x 2x3x4")
    weighted("LayerNorm on x[:, 0:1] (a slice: keeps the whole storage of x)",
             lambda: nn.Sequential(Lambda(lambda t: t[:, 0:1]), nn.LayerNorm(4)), x3)
    weighted("LayerNorm on x.transpose(0, 1) (no copy: keeps x's storage)",
             lambda: nn.Sequential(Lambda(lambda t: t.transpose(0, 1)), nn.LayerNorm(4)), x3)
    print("\n## nn.MultiheadAttention(8, 2, batch_first=True), q = k = v = x 2x5x8 (320 B)")
    x = torch.randn(2, 5, 8)
    # need_weights=True (explicit softmax, head-averaged weights) is left out: its dead
    # weights branch makes this script's graph-walk cross-check disagree; the tracer measures
    # every call as made, against the pack hook (tests/test_construct_models.py).
    weighted("need_weights=False (SDPA inside)", lambda: SelfAttentionOutput(
        nn.MultiheadAttention(8, 2, batch_first=True), False), x)


def torch_nn_ops() -> None:
    """Stock torch.nn modules: nn.PReLU, nn.MultiheadAttention with dropout in train and in
    eval mode (`ttplan train` runs modules in eval mode), nn.RMSNorm (traced into
    F.rms_norm)."""
    torch.manual_seed(0)
    print(f"Measured with torch {torch.__version__}, CPU.")
    print("\n## nn.PReLU(8) on x 2x8x3x3 (576 B)")
    weighted("nn.PReLU(8)", lambda: nn.PReLU(8), torch.randn(2, 8, 3, 3))
    print("\n## nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True), x 2x5x8 (320 B)")
    x = torch.randn(2, 5, 8)
    for train in (True, False):
        weighted(f"{'train' if train else 'eval'} mode, need_weights=False",
                 lambda: SelfAttentionOutput(nn.MultiheadAttention(8, 2, dropout=0.1,
                                                                   batch_first=True), False),
                 x, train=train)
    print("\n## nn.RMSNorm(4) on x 2x3x4 (96 B)")
    weighted("nn.RMSNorm(4)", lambda: nn.RMSNorm(4), torch.randn(2, 3, 4))


def in_place_ops() -> None:
    """Tensor methods that write into their first operand (timm's drop path and LayerScale,
    masks filled in place), a scalar divided by a tensor, and a result that needs no
    gradient (new_empty): what autograd keeps, and whether a gradient reaches the result."""
    torch.manual_seed(0)
    print(f"Measured with torch {torch.__version__}, CPU.")
    x4, g = torch.randn(2, 3, 4, 5), torch.randn(5)
    print("\n## Written in place (x 2x3x4x5 = 480 B, y (5,) = 20 B)")
    binary("x.mul_(y)  (LayerScale(inplace=True))", Lambda(lambda p, q: p.mul_(q)), x4, g,
           inplace=True)
    binary("x.div_(y)", Lambda(lambda p, q: p.div_(q.abs() + 1)), x4, g, inplace=True)
    binary("x.sub_(y)", Lambda(lambda p, q: p.sub_(q)), x4, g, inplace=True)
    for title, fn in (("x.sigmoid_()", lambda t: t.sigmoid_()), ("x.tanh_()", lambda t: t.tanh_()),
                      ("x.masked_fill_(x > 0, 0)", lambda t: t.masked_fill_(t.detach() > 0, 0.0))):
        weightless(title, lambda fn=fn: Lambda(fn), x4, inplace=True)
    print("\n## A scalar divided by a tensor (x 2x3x4x5 = 480 B)")
    # The hooks-free graph walk does not read ReciprocalBackward0's result back here, so
    # `run`'s cross-check cannot serve: the pack hook's records alone.
    probe = Probe(Lambda(lambda t: 1.0 / t), True)
    for r in measure_saved_bytes(probe, x4).records:
        print(f"x rg: {r.grad_fn} `{r.saved_name}` {'x'.join(map(str, r.shape))} "
              f"{_dtype(r.dtype)} ({_relation(r.storage_ptr, r.kind, probe.ptrs)}, "
              f"{r.storage_nbytes} B)")
    print("\n## timm's drop path: x * x.new_empty((N, 1, 1, 1)).bernoulli_(0.8).div_(0.8)")
    weightless("x * mask", lambda: Lambda(
        lambda t: t * t.new_empty((t.shape[0], 1, 1, 1)).bernoulli_(0.8).div_(0.8)), x4)
    mask = torch.randn(2, 3, requires_grad=True).new_empty((2, 1)).bernoulli_(0.8)
    print(f"\nx.new_empty(...) of an x that requires grad: requires_grad = {mask.requires_grad}"
          f"; torch.rand_like: {torch.rand_like(torch.randn(2, requires_grad=True)).requires_grad}"
          f"; (x > 0).type_as(x): {(x4 > 0).type_as(x4.requires_grad_()).requires_grad}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--library"]:
        library_ops()
    elif sys.argv[1:] == ["--torch-nn"]:
        torch_nn_ops()
    elif sys.argv[1:] == ["--constructs"]:
        construct_ops()
    elif sys.argv[1:] == ["--in-place"]:
        in_place_ops()
    else:
        main()
