"""The Fisher probe: how much each output channel of each candidate layer matters for the task.

TinyTrain (§2.2, Eq. 2) scores channel o of a layer by the Fisher information of its activation,

    Δ_o = 1/(2N) · Σ_n ( Σ_d a_nd · g_nd )²,        P = Σ_o Δ_o  (the layer's Fisher potential)

where a is the layer's output activation for sample n, g the gradient of that sample's loss with
respect to it, and d runs over the positions of channel o (H×W for a convolution, 1 for a Linear
on N×C, the token axis for a Linear on N×T×C).

What "the gradient of that sample's loss" means here, precisely
---------------------------------------------------------------
The paper's loss is ProtoNet's (Eq. 1) on a pseudo-query set made by augmenting the support set
(appendix C, after Hu et al. 2022). Queries interact only through the prototypes, so we compute
the prototypes once, from the un-augmented support set, without gradient: the probe measures
how sensitive each query's own loss is to that query's own activations, not how a query moves
the prototypes. The model runs in eval mode (BatchNorm uses its running statistics, as it must
with the batch of one a device processes), so a forward pass never mixes samples either. Hence
with a batch of B queries the loss is the SUM of the B per-query losses and the gradient at
query n's activation is exactly the gradient of query n's loss: `batch_size` trades memory for
speed without changing the definition (only float rounding differs from batch_size=1).

Memory, as in appendix F.1
--------------------------
Every parameter is frozen for the probe, and the output of each candidate layer that does not
already depend on an earlier candidate is made a leaf requiring grad inside the forward hook.
So autograd records nothing below the earliest candidate: the layers below run like inference.
The bytes autograd keeps for the backward pass are measured with `saved_tensors_hooks`
(`peak_saved_bytes`, the maximum over batches, storages de-duplicated, parameters and buffers
excluded). Our own references to the candidate activations (needed for a·g) are released as
soon as each gradient arrives.

Determinism: no global RNG is used; the pseudo-queries come from a `torch.Generator` seeded with
`seed`, and the probe (data, forward and backward passes) runs on one intra-op thread, so two
runs with the same inputs give bit-identical Δ whatever OMP_NUM_THREADS says
(notes/fisher_determinism.md: with two threads, oneDNN convolutions and bilinear resizing
round differently, by up to 0.5 % of a Δ).

Memory: the samples are a `planner.support.base.SupportSet`, read one batch at a time (twice for
ProtoNet: prototypes, then the probe), so the resident memory does not grow with their number.

The losses are in `planner.fisher.losses`, the file format in `planner.fisher.file`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ttplan.costmodel.checkpointing import checkpointing_off
from ttplan.costmodel.errors import SpecError, TraceError

from ..support.base import SupportSet, TensorSupport, one_thread
from .file import FisherResult, check_values, weights_digest
from .losses import LossFn, model_device, resolve_loss
from ..probe_defaults import DEFAULT_TAIL_FRACTION


def default_candidate_layers(model: nn.Module, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> list[str]:
    """The last ceil(tail_fraction × count) Conv1d/Conv2d/Linear/MultiheadAttention layers,
    in `named_modules` order.

    Appendix F.1: the layers that matter for a cross-domain task are among the last ones, and
    inspecting 30–44% of them is enough; 0.44 keeps the upper end. `named_modules` order is
    definition order, which equals forward order for the sequential backbones this targets
    (MCUNet, MobileNetV2, ProxylessNAS); a model defining modules out of order should pass its
    own list.
    """
    if isinstance(tail_fraction, bool) or not (0.0 < tail_fraction <= 1.0):
        raise SpecError(f"tail fraction must be in (0, 1], got {tail_fraction}")
    # nn.MultiheadAttention is one layer (its out_proj is never called as a module).
    attention = [name for name, module in model.named_modules()
                 if isinstance(module, nn.MultiheadAttention)]
    names = [name for name, module in model.named_modules()
             if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MultiheadAttention))
             and not any(name.startswith(f"{a}.") for a in attention)]
    if not names:
        raise SpecError("the model has no Conv1d, Conv2d, Linear or MultiheadAttention layer "
                        "to probe")
    # round() first: 0.44 × 25 is 11.000000000000002 in binary floating point, and ceil of that
    # would keep 12 layers instead of 11.
    keep = max(1, math.ceil(round(tail_fraction * len(names), 9)))
    return names[-keep:]


# ----------------------------------------------------------------------------- the probe


def fisher_information(
    model: nn.Module,
    layer_names: Sequence[str],
    x: torch.Tensor | SupportSet,
    y: torch.Tensor | None = None,
    *,
    loss: str | LossFn = "protonet",
    seed: int = 0,
    batch_size: int = 1,
    progress: bool = False,
) -> FisherResult:
    """Δ_o (Eq. 2) for every output channel of the named layers, from labelled samples: tensors
    (x, y), or a `planner.support.base.SupportSet` as `x` (read batch by batch; `y` None).

    loss:
      "protonet" (default; "auto" is the same): the model is a feature backbone f; prototypes
          c_k = mean f(x) over class k's support samples (no gradient); the queries are
          `augment(x, Generator().manual_seed(seed))`, the whole support set augmented once in
          order; logits = 10 · cos(f(q), c_k); per-query cross-entropy against the query's label.
      "ce": the model ends in a classifier over labels 0..K-1; per-sample cross-entropy on the
          un-augmented samples (`seed` is unused).
      a callable (output, labels) -> scalar: applied to the un-augmented samples; it must be a
          SUM of per-sample losses for batch_size > 1 to keep the per-sample meaning of g.
    batch_size: queries per forward/backward (1, the default, is what a device does).

    `time_s` covers the whole probe (prototypes, augmentation, forward and backward passes);
    `peak_saved_bytes` is the largest total of tensors autograd saved for one batch's backward.
    The result records `weights_digest(model)`; a non-finite Δ is a one-line error.
    """
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, nn.Module):
        raise TraceError("the Fisher probe needs an eager torch.nn.Module (not TorchScript)")
    modules = _resolve_layers(model, layer_names)
    support = _support_of(x, y)
    loss_name, make_criterion = resolve_loss(loss)
    _check_batch_and_seed(batch_size, seed)

    start_s = time.perf_counter()
    # a checkpointed call runs directly: its activations need gradients here
    with one_thread(), _probe_state(model), checkpointing_off():
        queries, criterion = make_criterion(model, support, seed, batch_size)
        probe = _ActivationProbe(modules)
        with probe.attached():
            peak_saved_bytes = _run_batches(probe, model, queries(batch_size), support,
                                            criterion, progress)
        deltas = probe.deltas(num_samples=len(support))
    time_s = time.perf_counter() - start_s
    check_values(deltas, "the probe")

    return FisherResult(
        layers=deltas,
        potential={name: math.fsum(values) for name, values in deltas.items()},
        num_samples=len(support),
        loss=loss_name,
        seed=seed,
        time_s=time_s,
        peak_saved_bytes=peak_saved_bytes,
        weights=weights_digest(model),
    )


def _check_batch_and_seed(batch_size, seed) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"batch size must be a positive integer, got {batch_size}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise SpecError(f"seed must be an integer in [0, 2**63), got {seed!r}")


def _run_batches(probe: _ActivationProbe, model: nn.Module, batches, support: SupportSet,
                 criterion, progress: bool) -> int:
    """Every query batch through the attached probe, labelled in order; the largest total
    of bytes autograd saved for one batch's backward."""
    device = model_device(model)
    labels = support.labels.to(device)
    excluded = _storage_ptrs(model)
    peak_saved_bytes, begin = 0, 0
    with tqdm(total=len(support), disable=not progress, file=sys.stderr, desc="fisher",
              unit="sample") as bar:
        for batch_x in batches:
            batch_y = labels[begin : begin + len(batch_x)]
            begin += len(batch_x)
            saved_bytes = probe.run_batch(model, batch_x.to(device), batch_y, criterion, excluded)
            peak_saved_bytes = max(peak_saved_bytes, saved_bytes)
            bar.update(len(batch_x))
    return peak_saved_bytes


class _ActivationProbe:
    """Forward hooks on the candidate layers; per-sample Σ_d a·g accumulated per channel."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = modules
        self.sum_sq = {name: None for name in modules}  # float64 Σ_n (Σ_d a g)², per channel
        self.channels: dict[str, int] = {}
        self._batch: dict[str, torch.Tensor] = {}  # Σ_d a·g per sample of the current batch
        self._live: dict[int, tuple[str, torch.Tensor, int]] = {}  # activations awaiting g
        self._roots: list[torch.Tensor] = []
        self._called: set[str] = set()
        self._error: str | None = None
        self._next_key = 0  # never reused: keys of activations still waiting must not collide

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        handles = [m.register_forward_hook(self._hook_for(name)) for name, m in self.modules.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook_for(self, name: str) -> Callable:
        # Channels last: Linear, and nn.MultiheadAttention / recurrent layers (batch first).
        channel_dim = -1 if isinstance(self.modules[name], (nn.Linear, nn.MultiheadAttention,
                                                            nn.RNNBase)) else 1

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                output = output[0]  # MultiheadAttention, LSTM: (output, weights or state)
            if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() < 2:
                raise TraceError(f"layer {name} returns {type(output).__name__}, not a batched float tensor")
            if not output.requires_grad:
                # Nothing upstream is a candidate: start the backward graph here (F.1).
                output.requires_grad_()
                self._roots.append(output)
            channels = output.shape[channel_dim]
            if self.channels.setdefault(name, channels) != channels:
                raise TraceError(f"layer {name} produced {channels} channels, earlier {self.channels[name]}")
            self._called.add(name)
            key = self._next_key
            self._next_key += 1
            # The dict, not the closure, holds the activation, so no tensor→hook→tensor cycle.
            self._live[key] = (name, output, output._version)
            output.register_hook(lambda grad, key=key, channel_dim=channel_dim: self._on_grad(key, grad, channel_dim))

        return hook

    def _on_grad(self, key: int, grad: torch.Tensor, channel_dim: int) -> None:
        name, activation, version = self._live.pop(key)
        if activation._version != version:
            # An in-place op after the layer overwrote a; Σ a·g would use the wrong values.
            self._error = f"the output of layer {name} is modified in place after the layer; Fisher needs it intact"
            return
        product = activation.detach() * grad
        if channel_dim == 1:
            per_channel = product.sum(dim=tuple(range(2, product.dim()))) if product.dim() > 2 else product
        else:
            per_channel = product.sum(dim=tuple(range(1, product.dim() - 1))) if product.dim() > 2 else product
        # A layer called twice in one forward: D spans the positions of every call.
        previous = self._batch.get(name)
        self._batch[name] = per_channel if previous is None else previous + per_channel

    def run_batch(
        self,
        model: nn.Module,
        batch_x: torch.Tensor,
        batch_y: torch.Tensor,
        criterion: LossFn,
        excluded_ptrs: set[int],
    ) -> int:
        """Forward, loss, backward for one batch; returns the bytes autograd saved for it."""
        self._batch, self._live, self._roots, self._called = {}, {}, [], set()
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            try:
                storage = tensor.untyped_storage()
                ptr, nbytes = storage.data_ptr(), storage.nbytes()
            except (RuntimeError, NotImplementedError):  # storage-less tensors (rare)
                ptr, nbytes = id(tensor), tensor.numel() * tensor.element_size()
            if ptr not in excluded_ptrs:
                saved[ptr] = max(saved.get(ptr, 0), nbytes)
            return tensor

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                output = model(batch_x)
                if not isinstance(output, torch.Tensor):
                    raise SpecError(f"the model returns {type(output).__name__}; the probe needs a tensor output")
                loss = criterion(output, batch_y)
        except RuntimeError as exc:
            if "in-place" in str(exc):
                raise TraceError(
                    "the model modifies a probed layer's output in place (e.g. x.relu_()); "
                    "probe a different layer or make that op out of place"
                ) from None
            raise TraceError(f"the model fails on support samples of shape {list(batch_x.shape)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
        missing = [name for name in self.modules if name not in self._called]
        if missing:
            raise SpecError(f"layer(s) {', '.join(missing)} are never called by the model's forward")
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise SpecError("the probe's loss must be a scalar tensor")
        if loss.requires_grad:
            try:
                torch.autograd.grad(loss, self._roots, allow_unused=True)
            except RuntimeError as exc:
                raise TraceError(f"the backward pass fails: {_first_line(exc)}") from None
        self._live.clear()  # activations whose gradient never came (they do not reach the loss)
        if self._error:
            raise TraceError(self._error)

        for name in self.modules:
            per_sample = self._batch.get(name)
            if per_sample is None:  # the layer does not influence the loss: g = 0
                continue
            square_sum = per_sample.double().pow(2).sum(dim=0)
            total = self.sum_sq[name]
            self.sum_sq[name] = square_sum if total is None else total + square_sum
        self._batch = {}
        return sum(saved.values())

    def deltas(self, num_samples: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for name in self.modules:
            total = self.sum_sq[name]
            if total is None:
                total = torch.zeros(self.channels[name], dtype=torch.float64)
            out[name] = (total / (2 * num_samples)).tolist()
        return out


# ----------------------------------------------------------------------------- helpers


def _resolve_layers(model: nn.Module, layer_names: Sequence[str]) -> dict[str, nn.Module]:
    if isinstance(layer_names, str):
        raise SpecError("layer names must be a list of module names, not one string")
    names = list(layer_names)
    if not names:
        raise SpecError("no layers to probe")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"layer(s) listed twice: {', '.join(duplicates)}")
    available = dict(model.named_modules())
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SpecError(f"no module named {', '.join(map(repr, unknown))} in the model")
    return {name: available[name] for name in names}


def _support_of(x, y) -> SupportSet:
    if isinstance(x, SupportSet):
        if y is not None:
            raise SpecError("give samples as a SupportSet or as tensors x and y, not both")
        if len(x) == 0:
            raise SpecError("the support set holds no samples")
        return x
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise SpecError("samples must be tensors x (N×…) and y (N), or a SupportSet")
    if y.dim() != 1 or len(y) != len(x) or len(x) == 0:
        raise SpecError(f"need N ≥ 1 samples with one label each, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if x.is_complex() or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise SpecError(f"x must be real samples (float, or integer token ids) and y integer "
                        f"labels, got {x.dtype} and {y.dtype}")
    return TensorSupport(x.detach(), y.detach().to(torch.int64))


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _storage_ptrs(model: nn.Module) -> set[int]:
    """Storages of parameters and buffers: model memory, not activations saved for backward."""
    return {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}


@contextlib.contextmanager
def _probe_state(model: nn.Module) -> Iterator[None]:
    """Eval mode, all parameters frozen, module in-place flags off; everything restored after.

    In-place activations (nn.ReLU(inplace=True) right after a conv) would overwrite the
    activation a that Eq. 2 needs, or hit autograd's rule against in-place ops on leaves.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    inplace = [(m, m.inplace) for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        for m, _ in inplace:
            m.inplace = False
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)
        for m, value in inplace:
            m.inplace = value


