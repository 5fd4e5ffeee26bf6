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
`seed`, so two runs with the same inputs give bit-identical Δ.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ttplan.costmodel.errors import PolicyError, SpecError, TraceError
from ttplan.planner.data import augment
from ttplan.planner.jsonio import check_header, load_json

FORMAT = "ttplan-fisher"
VERSION = 1

# Logits = cos(f(q), c_k) / τ with τ = 0.1, i.e. a scale of 10: the initial value of the
# learnable cosine scale in Hu et al. 2022's ProtoNet (the fine-tuning recipe the paper
# follows, appendix C). A scale of 1 would squash the softmax (logits in [-1, 1]) and make
# every gradient tiny and nearly uniform across classes.
PROTONET_SCALE = 10.0

# Appendix F.1: inspecting the last 30-44% of the layers suffices for SOTA accuracy.
DEFAULT_TAIL_FRACTION = 0.44

LOSSES = ("auto", "protonet", "ce")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- result


@dataclass
class FisherResult:
    """Δ_o per output channel (channel order) and P per layer, in the order the layers were given."""

    layers: dict[str, list[float]]
    potential: dict[str, float]
    num_samples: int
    loss: str
    seed: int
    time_s: float = field(compare=False)  # a measurement of this run, not part of the result
    peak_saved_bytes: int = 0

    def to_json_dict(self, model_name: str, fingerprint: str) -> dict[str, Any]:
        """A versioned, JSON-ready dict. Layers are a list so their order survives sorted keys."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {"name": model_name, "fingerprint": fingerprint},
            "loss": self.loss,
            "seed": self.seed,
            "num_samples": self.num_samples,
            # No time here: it differs run to run, and the same samples and seed must give a
            # byte-identical file. The CLI prints the measured time.
            "peak_saved_bytes": self.peak_saved_bytes,
            "layers": [
                {"name": name, "channel_fisher": list(deltas), "potential": self.potential[name]}
                for name, deltas in self.layers.items()
            ],
        }

    @classmethod
    def from_json_dict(
        cls,
        d: Any,
        expected_fingerprint: str | None,
        *,
        expected_model: str | None = None,
        source: str = "fisher.json",
    ) -> FisherResult:
        """Validate a dict made by `to_json_dict` strictly; refuse another model's probe.

        `expected_fingerprint=None` skips the model check (for inspecting a file on its own).
        Every problem is a one-line PolicyError naming `source`.
        """
        return _parse(d, expected_fingerprint, expected_model, source)


def load_fisher(
    path: str | Path, expected_fingerprint: str | None, *, expected_model: str | None = None
) -> FisherResult:
    """Read and validate a Fisher file written with `save_json(path, result.to_json_dict(...))`."""
    return FisherResult.from_json_dict(
        load_json(path, what="fisher"), expected_fingerprint, expected_model=expected_model, source=str(path)
    )


# ----------------------------------------------------------------------------- candidates


def default_candidate_layers(model: nn.Module, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> list[str]:
    """The last ceil(tail_fraction × count) Conv2d/Linear layers, in `named_modules` order.

    Appendix F.1: the layers that matter for a cross-domain task are among the last ones, and
    inspecting 30–44% of them is enough; 0.44 keeps the upper end. `named_modules` order is
    definition order, which equals forward order for the sequential backbones this targets
    (MCUNet, MobileNetV2, ProxylessNAS); a model defining modules out of order should pass its
    own list.
    """
    if isinstance(tail_fraction, bool) or not (0.0 < tail_fraction <= 1.0):
        raise SpecError(f"tail fraction must be in (0, 1], got {tail_fraction}")
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    if not names:
        raise SpecError("the model has no Conv2d or Linear layer to probe")
    # round() first: 0.44 × 25 is 11.000000000000002 in binary floating point, and ceil of that
    # would keep 12 layers instead of 11.
    keep = max(1, math.ceil(round(tail_fraction * len(names), 9)))
    return names[-keep:]


# ----------------------------------------------------------------------------- the probe


def fisher_information(
    model: nn.Module,
    layer_names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str | LossFn = "protonet",
    seed: int = 0,
    batch_size: int = 1,
    progress: bool = False,
) -> FisherResult:
    """Δ_o (Eq. 2) for every output channel of the named layers, from labelled samples (x, y).

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
    """
    modules = _resolve_layers(model, layer_names)
    x, y = _check_samples(x, y)
    loss_name, make_criterion = _resolve_loss(loss)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"batch size must be a positive integer, got {batch_size}")
    device = _model_device(model)
    x, y = x.to(device), y.to(device)

    start_s = time.perf_counter()
    with _probe_state(model):
        queries, criterion = make_criterion(model, x, y, seed, batch_size)
        probe = _ActivationProbe(modules)
        peak_saved_bytes = 0
        excluded = _storage_ptrs(model)
        with probe.attached(), tqdm(
            total=len(x), disable=not progress, file=sys.stderr, desc="fisher", unit="sample"
        ) as bar:
            for begin in range(0, len(x), batch_size):
                batch_x, batch_y = queries[begin : begin + batch_size], y[begin : begin + batch_size]
                saved_bytes = probe.run_batch(model, batch_x, batch_y, criterion, excluded)
                peak_saved_bytes = max(peak_saved_bytes, saved_bytes)
                bar.update(len(batch_x))
        deltas = probe.deltas(num_samples=len(x))
    time_s = time.perf_counter() - start_s

    return FisherResult(
        layers=deltas,
        potential={name: math.fsum(values) for name, values in deltas.items()},
        num_samples=len(x),
        loss=loss_name,
        seed=seed,
        time_s=time_s,
        peak_saved_bytes=peak_saved_bytes,
    )


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
        channel_dim = -1 if isinstance(self.modules[name], nn.Linear) else 1

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
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
            raise
        missing = [name for name in self.modules if name not in self._called]
        if missing:
            raise SpecError(f"layer(s) {', '.join(missing)} are never called by the model's forward")
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise SpecError("the probe's loss must be a scalar tensor")
        if loss.requires_grad:
            torch.autograd.grad(loss, self._roots, allow_unused=True)
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


# ----------------------------------------------------------------------------- losses


def _resolve_loss(loss: str | LossFn) -> tuple[str, Callable]:
    if callable(loss):
        def make_custom(model, x, y, seed, batch_size):
            return x, loss

        return "custom", make_custom
    if loss not in LOSSES:
        raise SpecError(f"unknown Fisher loss {loss!r}: choose protonet, ce or auto")
    return ("ce", _make_ce) if loss == "ce" else ("protonet", _make_protonet)


def _make_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, batch_size: int):
    def criterion(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if output.dim() != 2 or output.shape[1] <= int(labels.max()):
            raise SpecError(
                f"loss 'ce' needs a classifier output N×K with K > {int(labels.max())}, "
                f"got {tuple(output.shape)}; use the protonet loss for a feature backbone"
            )
        return F.cross_entropy(output, labels, reduction="sum")

    return x, criterion


def _make_protonet(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, batch_size: int):
    classes, labels = torch.unique(y, sorted=True, return_inverse=True)
    if len(classes) < 2:
        raise SpecError("the protonet loss needs samples of at least two classes")
    prototypes = _prototypes(model, x, labels, len(classes), batch_size)
    unit_prototypes = F.normalize(prototypes, dim=1)
    queries = augment(x, torch.Generator().manual_seed(seed))

    # The probe feeds the original labels; map them to prototype indices by position.
    label_of = {int(c): i for i, c in enumerate(classes.tolist())}

    def criterion(output: torch.Tensor, batch_labels: torch.Tensor) -> torch.Tensor:
        features = F.normalize(output.reshape(len(output), -1), dim=1)
        logits = PROTONET_SCALE * features @ unit_prototypes.T
        targets = torch.tensor([label_of[int(v)] for v in batch_labels.tolist()], device=output.device)
        return F.cross_entropy(logits, targets, reduction="sum")

    return queries, criterion


def protonet_criterion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
                       batch_size: int = 1) -> tuple[torch.Tensor, LossFn]:
    """(pseudo-queries, criterion): the probe's ProtoNet loss, for fine-tuning with it too.

    Prototypes come from `model` on the un-augmented `x` now, without gradient; the queries are
    `augment(x, Generator().manual_seed(seed))`; criterion(features, labels) is the SUM of the
    per-query cosine cross-entropies (scale PROTONET_SCALE), labels as given in `y`.
    """
    return _make_protonet(model, x, y, seed, batch_size)


def class_prototypes(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted class labels, their prototypes): the probe's mean features per class, no grad."""
    classes, labels = torch.unique(y, sorted=True, return_inverse=True)
    return classes, _prototypes(model, x, labels, len(classes), batch_size)


def _prototypes(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int) -> torch.Tensor:
    """c_k = mean of the flattened features of class k's support samples, without gradient."""
    with torch.no_grad():
        features = torch.cat([
            _as_tensor(model(x[i : i + batch_size])).reshape(len(x[i : i + batch_size]), -1)
            for i in range(0, len(x), batch_size)
        ])
        sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
        sums.index_add_(0, labels, features)
        counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
        return sums / counts[:, None]


def _as_tensor(output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise SpecError(f"the model returns {type(output).__name__}; the probe needs a tensor output")
    return output


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


def _check_samples(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise SpecError("samples must be tensors x (N×…) and y (N)")
    if y.dim() != 1 or len(y) != len(x) or len(x) == 0:
        raise SpecError(f"need N ≥ 1 samples with one label each, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if not x.is_floating_point() or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise SpecError(f"x must be floating point and y integer labels, got {x.dtype} and {y.dtype}")
    return x.detach(), y.detach().to(torch.int64)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


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


# ----------------------------------------------------------------------------- JSON parsing

_TOP_KEYS = {"format", "version", "model", "loss", "seed", "num_samples", "peak_saved_bytes", "layers"}
_LAYER_KEYS = {"name", "channel_fisher", "potential"}


def _short(fingerprint: str) -> str:
    return fingerprint if len(fingerprint) <= 12 else fingerprint[:12] + "…"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse(d: Any, expected_fingerprint: str | None, expected_model: str | None, source: str) -> FisherResult:
    def bad(problem: str) -> PolicyError:
        return PolicyError(f"{source} is not a valid Fisher file: {problem}")

    check_header(d, source, FORMAT, VERSION, "Fisher file")
    if set(d) != _TOP_KEYS:
        missing, extra = sorted(_TOP_KEYS - set(d)), sorted(set(d) - _TOP_KEYS)
        raise bad(f"missing keys {missing}" if missing else f"unknown keys {extra}")

    model = d["model"]
    if not (isinstance(model, dict) and set(model) == {"name", "fingerprint"}
            and all(isinstance(model[k], str) and model[k] for k in model)):
        raise bad("'model' must be {name, fingerprint} strings")
    if expected_fingerprint is not None and model["fingerprint"] != expected_fingerprint:
        target = expected_model or "this model"
        raise PolicyError(
            f"{source} was measured on model {model['name']} (fingerprint {_short(model['fingerprint'])}), "
            f"not on {target} (fingerprint {_short(expected_fingerprint)})"
        )

    if not (isinstance(d["loss"], str) and d["loss"]):
        raise bad("'loss' must be a non-empty string")
    if not (isinstance(d["seed"], int) and not isinstance(d["seed"], bool)):
        raise bad("'seed' must be an integer")
    if not (_count(d["num_samples"]) and d["num_samples"] > 0):
        raise bad("'num_samples' must be a positive integer")
    if not _count(d["peak_saved_bytes"]):
        raise bad("'peak_saved_bytes' must be a non-negative integer")

    records = d["layers"]
    if not isinstance(records, list) or not records:
        raise bad("'layers' must be a non-empty list")
    layers: dict[str, list[float]] = {}
    potential: dict[str, float] = {}
    for record in records:
        if not isinstance(record, dict) or set(record) != _LAYER_KEYS:
            raise bad(f"each layer must have exactly the keys {sorted(_LAYER_KEYS)}")
        name, deltas, total = record["name"], record["channel_fisher"], record["potential"]
        if not isinstance(name, str) or name in layers:
            raise bad(f"layer name {name!r} is not a string or appears twice")
        if not isinstance(deltas, list) or not deltas or not all(_number(v) and v >= 0 for v in deltas):
            raise bad(f"layer {name}: 'channel_fisher' must be a non-empty list of non-negative numbers")
        if not (_number(total) and math.isclose(total, math.fsum(deltas), rel_tol=1e-9, abs_tol=1e-300)):
            raise bad(f"layer {name}: 'potential' is not the sum of its channel_fisher values")
        layers[name] = [float(v) for v in deltas]
        potential[name] = float(total)

    return FisherResult(
        layers=layers,
        potential=potential,
        num_samples=d["num_samples"],
        loss=d["loss"],
        seed=d["seed"],
        time_s=math.nan,  # not stored: see to_json_dict
        peak_saved_bytes=d["peak_saved_bytes"],
    )
