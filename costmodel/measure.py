"""Measure what eager PyTorch autograd keeps in memory for backward.

This is the ground truth the analytic memory rules are checked against, by the tests and by
users (`ttplan profile --verify`, `verify_saved_bytes`). One forward of
`model(x)` runs under `torch.autograd.graph.saved_tensors_hooks`; every tensor an autograd
node saves passes through the pack hook. Two methods run together and check each other:

1. Pack hook: every packed tensor is recorded. The hook returns a small handle object, so the
   only owner of the handle is the SavedVariable inside the autograd node. A weak reference to
   the handle therefore tells whether the node that saved it is still alive when the forward
   ends. Nodes on a branch whose result was thrown away are freed during the forward, and
   what they saved is not kept for backward, so it does not count in `saved_bytes`.
2. Graph walk: from the outputs' `grad_fn`, every node's `_saved_<name>` attributes (and
   `saved_tensors` of custom `autograd.Function`s) are read. Reading one calls our unpack
   hook with the handle, which names the node and attribute that saved each packed tensor.

`saved_bytes_by_graph_walk` is a third, independent count: its own forward with no hooks at
all, then the same graph walk reading the saved tensors directly. The tests check it agrees.

Bytes are de-duplicated by storage: a saved view counts its whole storage, once, however many
nodes save it. Storages of the model's parameters and buffers (e.g. BN running stats) are
excluded: they are resident anyway. The input `x` is NOT excluded; records mark it `input`,
and it counts as the batch a training step feeds: its own elements in a storage of its own.
A batch cut from a larger tensor (`x_train[:2]`) is a view whose storage is the whole tensor;
counting that storage made `ttplan train --update all` (whose first layer saves its input)
report the support set instead of the batch (notes/pytorch_saved_tensors.md).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .config import TrainConfig, parameter_requires_grad
from .costs import evaluate
from .graph import LayerGraph
from .inputs import ModelInputs, call_args, from_json
from .options import PYTORCH


class SavedRecord(NamedTuple):
    """One packed tensor: which node saved what, and the storage it lives in."""

    grad_fn: str  # e.g. "ConvolutionBackward0"; "?" if the graph walk could not reach it
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int  # bytes of this tensor's own elements (numel * element size)
    storage_index: int  # same index = same storage (dedup key), numbered in first-seen order
    saved_name: str  # attribute on the node, e.g. "self", "result", "weight"; "?" if unknown
    storage_nbytes: int  # bytes of the whole underlying storage (what gets counted)
    kind: str  # "activation", "input" (storage of x), "parameter", "buffer"
    alive: bool  # node still alive at the end of the forward (reachable for backward)
    storage_ptr: int  # raw address; only meaningful while the caller holds the tensors


@dataclass
class MeasuredSaved:
    # Deduplicated bytes of storages kept alive for backward, params and buffers excluded.
    saved_bytes: int
    records: list[SavedRecord] = field(default_factory=list)
    # Same, but also counting tensors packed by nodes that were freed during the forward
    # (dead branches). Equals saved_bytes for every model whose outputs use all of its ops.
    packed_bytes: int = 0
    # Packed tensors the graph walk did not attribute to a node while alive. Expected 0;
    # non-zero means a node type whose saved tensors are not exposed as attributes.
    unattributed_alive: int = 0

    def by_grad_fn(self) -> dict[str, int]:
        """Counted bytes per grad_fn name; a shared storage is charged to its first saver."""
        out: dict[str, int] = {}
        seen: set[int] = set()
        for r in self.records:
            if not r.alive or r.kind in ("parameter", "buffer") or r.storage_index in seen:
                continue
            seen.add(r.storage_index)
            out[r.grad_fn] = out.get(r.grad_fn, 0) + r.storage_nbytes
        return out


class _Handle:
    """What the pack hook hands to autograd; only the SavedVariable holds it."""

    __slots__ = ("index", "__weakref__")

    def __init__(self, index: int) -> None:
        self.index = index


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    """(data_ptr, nbytes) of the tensor's storage; tensors without one fall back to id."""
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without storage
        return id(t), t.numel() * t.element_size()


def _nodes(outputs: list[torch.Tensor]):
    """Every autograd node reachable from `outputs`, each once."""
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        yield node
        stack.extend(fn for fn, _ in node.next_functions if fn is not None)


def _saved_attrs(node) -> list[str]:
    """Names of the attributes through which a node exposes what it saved."""
    names = [a for a in dir(node) if a.startswith("_saved_")]
    if hasattr(node, "saved_tensors"):  # custom autograd.Function: ctx.save_for_backward
        names.append("saved_tensors")
    return names


def _label(attr: str) -> str:
    return attr[len("_saved_"):] if attr.startswith("_saved_") else attr


def _walk_graph(outputs: list[torch.Tensor], attribution: dict[int, tuple[str, str]],
                unpacked: list[int]) -> None:
    """Read every saved attribute of every node reachable from `outputs`.

    The unpack hook appends handle indices to `unpacked`; those are charged to the node and
    attribute being read. Reading an attribute does not change what is saved.
    """
    for node in _nodes(outputs):
        for attr in _saved_attrs(node):
            unpacked.clear()
            try:
                getattr(node, attr)
            except RuntimeError:  # e.g. saved tensors already freed; nothing to attribute
                continue
            for idx in unpacked:
                attribution.setdefault(idx, (type(node).__name__, _label(attr)))
    unpacked.clear()


def _excluded_storages(model: nn.Module) -> dict[int, str]:
    """Storage address -> "parameter" / "buffer" for everything the model owns."""
    excluded = {_storage_key(b)[0]: "buffer" for b in model.buffers()}
    excluded.update({_storage_key(p)[0]: "parameter" for p in model.parameters()})
    return excluded


def saved_bytes_by_graph_walk(model: nn.Module, x: torch.Tensor) -> int:
    """Independent cross-check of `measure_saved_bytes(...).saved_bytes`.

    Runs its own forward WITHOUT hooks, then reads every reachable node's saved tensors
    directly and de-duplicates by storage the same way. Agreement shows the hooks neither
    add nor drop anything. A second forward updates BN running stats once more.
    """
    excluded = _excluded_storages(model)
    with torch.enable_grad():
        out = model(x.detach())
    outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    counted: dict[int, int] = {}
    for node in _nodes(outputs):
        for attr in _saved_attrs(node):
            value = getattr(node, attr)  # raises if a saved tensor was modified in place
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, torch.Tensor):
                    ptr, nbytes = _storage_key(t)
                    if ptr not in excluded:
                        counted[ptr] = nbytes
    return sum(counted.values())


def measure_saved_bytes(model: nn.Module, x: torch.Tensor) -> MeasuredSaved:
    """Bytes autograd keeps for backward after one forward of `model(x)`; no backward runs.

    The caller decides train/eval mode and which parameters require grad; neither is changed.
    `x` is used with requires_grad False, each input copied into a contiguous storage of its
    own (a view of a larger tensor would otherwise count that tensor's whole storage); it may
    also be a tuple (positional), a dict (keyword) or `ModelInputs` (costmodel.inputs).
    """
    excluded = _excluded_storages(model)
    args, kwargs = call_args(x)
    own = lambda t: t.detach().clone(memory_format=torch.contiguous_format)  # noqa: E731
    args = tuple(own(a) for a in args)
    kwargs = {k: own(v) for k, v in kwargs.items()}
    input_ptrs = {_storage_key(t)[0] for t in list(args) + list(kwargs.values())}

    # Strong references to every packed tensor until counting is done, so no storage is freed
    # and its address reused by a later allocation (that would merge two storages in dedup).
    packed: list[torch.Tensor] = []
    handles: list[weakref.ref] = []
    unpacked: list[int] = []

    def pack(t: torch.Tensor) -> _Handle:
        h = _Handle(len(packed))
        # A detached alias keeps the storage alive but not `t`'s grad_fn: a node that saves
        # its own output would otherwise be kept alive by this list (output -> grad_fn ->
        # SavedVariable -> handle), hiding that a dead branch was freed.
        packed.append(t.detach())
        handles.append(weakref.ref(h))
        return h

    def unpack(h: _Handle) -> torch.Tensor:
        unpacked.append(h.index)
        return packed[h.index]

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = model(*args, **kwargs)
    outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]

    attribution: dict[int, tuple[str, str]] = {}
    _walk_graph(outputs, attribution, unpacked)

    records: list[SavedRecord] = []
    storage_index: dict[int, int] = {}
    alive_bytes: dict[int, int] = {}
    all_bytes: dict[int, int] = {}
    unattributed_alive = 0
    for i, t in enumerate(packed):
        ptr, storage_nbytes = _storage_key(t)
        sidx = storage_index.setdefault(ptr, len(storage_index))
        kind = excluded.get(ptr) or ("input" if ptr in input_ptrs else "activation")
        alive = handles[i]() is not None
        grad_fn, saved_name = attribution.get(i, ("?", "?"))
        if alive and i not in attribution:
            unattributed_alive += 1
        records.append(SavedRecord(grad_fn, tuple(t.shape), t.dtype,
                                   t.numel() * t.element_size(), sidx, saved_name,
                                   storage_nbytes, kind, alive, ptr))
        if kind in ("parameter", "buffer"):
            continue
        all_bytes[ptr] = storage_nbytes
        if alive:
            alive_bytes[ptr] = storage_nbytes

    result = MeasuredSaved(saved_bytes=sum(alive_bytes.values()), records=records,
                           packed_bytes=sum(all_bytes.values()),
                           unattributed_alive=unattributed_alive)
    # Free the graph and the packed tensors before returning.
    del out, outputs
    packed.clear()
    return result


def format_records(m: MeasuredSaved) -> str:
    """A plain table of the records, for printing while debugging."""
    lines = [f"saved_bytes={m.saved_bytes} packed_bytes={m.packed_bytes} "
             f"unattributed_alive={m.unattributed_alive}"]
    for r in m.records:
        lines.append(f"  {r.grad_fn:28s} {r.saved_name:14s} {str(list(r.shape)):18s} "
                     f"{str(r.dtype):14s} {r.nbytes:>9d}B storage#{r.storage_index} "
                     f"({r.storage_nbytes}B) {r.kind}{'' if r.alive else ' FREED'}")
    return "\n".join(lines)


def random_inputs(graph: LayerGraph, generator: torch.Generator, batch: int | None = None):
    """One random batch (of `batch` samples, default the traced batch) of what `graph` was
    traced on: Gaussian floats; integer inputs (token ids) and masks zeros, as traced (what
    autograd keeps depends on shapes only)."""
    if graph.input_specs is None:
        shape = tuple(graph.input_shape)
        return torch.randn((batch or shape[0],) + shape[1:], generator=generator)
    inputs = from_json(graph.input_specs).with_batch(batch)
    args, kwargs = inputs.build()
    fill = lambda t: torch.randn(t.shape, generator=generator, dtype=t.dtype) \
        if t.is_floating_point() else t  # noqa: E731
    return ModelInputs(inputs.specs, [fill(t) for t in list(args) + list(kwargs.values())])


def verify_saved_bytes(model: nn.Module, graph: LayerGraph, updates: dict, seed: int = 0,
                       training_mode: bool = True) -> dict:
    """Run `updates` once in PyTorch and compare what autograd kept with the `pytorch`
    convention's prediction: {predicted_bytes, measured_bytes, difference_pct,
    measured_batches}.

    The model runs as the configuration says (requires_grad per parameter; train mode, or
    eval mode when `training_mode` is False, as `ttplan train` runs it) on random batches of
    the traced input shape; its flags, modes and buffers (BatchNorm running statistics) are
    put back afterwards.

    PyTorch refuses a BatchNorm in train mode that sees one value per channel (batch 1 on a
    1x1 map). Then the configuration is measured at batches 2 and 3 and the bytes at the
    traced batch b follow from the line through them: every saved tensor is either per
    sample (activations) or per channel (BatchNorm's batch mean and inverse std), so the bytes
    are affine in the batch (checked against direct measurements in tests/test_measure.py;
    notes/pytorch_saved_tensors.md). `measured_batches` says which batches ran.
    """
    config = TrainConfig(dict(updates), PYTORCH, training_mode)
    predicted = evaluate(graph, config).memory.saved_activation_bytes
    flags = parameter_requires_grad(graph, config)
    batch = int(graph.input_shape[0])
    batches = (2, 3) if training_mode and _batchnorm_sees_one_value(graph) else (batch,)
    generator = torch.Generator().manual_seed(seed)
    by_batch = {}
    with _configured(model, flags, training_mode):
        for b in batches:
            x = random_inputs(graph, generator, b)
            by_batch[b] = measure_saved_bytes(model, x).saved_bytes
    if len(batches) == 1:
        measured = by_batch[batch]
    else:  # the line through (2, m2) and (3, m3), at the traced batch
        measured = by_batch[2] + (batch - 2) * (by_batch[3] - by_batch[2])
    difference = 100.0 * (predicted - measured) / measured if measured else 0.0
    return {"predicted_bytes": int(predicted), "measured_bytes": int(measured),
            "difference_pct": round(difference, 3), "measured_batches": list(batches)}


def _batchnorm_sees_one_value(graph: LayerGraph) -> bool:
    """A BatchNorm whose input has one value per channel (N x H x W == 1): train mode fails."""
    for node in graph.ops():
        if node.kind == "batchnorm" and node.in_shapes and len(node.in_shapes[0]) >= 2:
            shape = node.in_shapes[0]
            if math.prod(shape) // max(1, shape[1]) == 1:
                return True
    return False


@contextlib.contextmanager
def _configured(model: nn.Module, flags: dict, training_mode: bool):
    """The model with `flags` as requires_grad and every module in train (or eval) mode;
    flags, modes and buffers as they were afterwards."""
    params = dict(model.named_parameters())
    was = {name: p.requires_grad for name, p in params.items()}
    modes = {m: m.training for m in model.modules()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    try:
        for name, p in params.items():
            p.requires_grad_(flags.get(name, False))
        model.train(training_mode)
        yield model
    finally:
        for name, p in params.items():
            p.requires_grad_(was[name])
        for module, training in modes.items():
            module.train(training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])


__all__ = ["MeasuredSaved", "SavedRecord", "measure_saved_bytes", "saved_bytes_by_graph_walk",
           "format_records", "verify_saved_bytes"]
