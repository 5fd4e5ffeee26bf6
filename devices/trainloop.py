"""The training phase of a `train` run, and its clock: the support set split into training
samples and held-out queries, each phase timed (wall, CPU, energy), the forward without
gradient up to the first updated layer, ProtoNet fine-tuning, accuracy before and after and
the bytes autograd keeps for one step (`devices.runner`'s docstring says why each)."""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ttplan.costmodel.measure import measure_saved_bytes
from ttplan.planner.fisher import class_prototypes, protonet_criterion
from ttplan.planner.policy.apply import apply_updates
from ttplan.planner.support.sequences import feeding

from .host import EnergyCounter
from .layertable import speed_reference
from .sparse import install_sparse_layers
from .trainrequest import RunSettings

PHASES = ("load_s", "fisher_s", "plan_s", "train_s")


@dataclass
class Samples:
    """The support set, and its split into training samples and held-out queries."""

    x: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


def holdout_split(x: torch.Tensor, y: torch.Tensor, holdout: float):
    """(x_train, y_train, x_query, y_query): the last max(1, round(holdout × n_c)) samples of
    each class held out, when every class has at least two samples; else no queries."""
    counts = {int(c): int(n) for c, n in zip(*torch.unique(y, return_counts=True))}
    if holdout <= 0 or min(counts.values()) < 2:
        return x, y, x[:0], y[:0]
    keep = {c: n - min(n - 1, max(1, round(holdout * n))) for c, n in counts.items()}
    seen: dict[int, int] = {}
    train_mask = torch.zeros(len(y), dtype=torch.bool)
    for i, label in enumerate(y.tolist()):
        seen[label] = seen.get(label, 0) + 1
        train_mask[i] = seen[label] <= keep[label]
    return x[train_mask], y[train_mask], x[~train_mask], y[~train_mask]


class Phases:
    """Wall time, process CPU time and, where a counter exists, energy of each phase."""

    def __init__(self):
        self.seconds = {key: 0.0 for key in PHASES}
        self.cpu_seconds = {key: 0.0 for key in PHASES}
        self.counter = EnergyCounter()
        self._joules: list[float | None] = []

    @contextlib.contextmanager
    def timed(self, key: str):
        self.counter.start()
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start
            self.cpu_seconds[key] += time.process_time() - cpu_start
            self._joules.append(self.counter.joules())

    def joules(self) -> float | None:
        if not self.counter.available or any(j is None for j in self._joules):
            return None
        return math.fsum(self._joules)


@dataclass
class Measured:
    """What training measured (beside the phases' clock)."""

    before: float | None
    after: float | None
    losses: list
    saved_bytes: int
    reference_s: float
    trainable_tensors: int
    sparse: list
    dense: list
    first_steps_excess_s: float | None = None


def measured_run(module, graph, updates, shape, samples: Samples, run: RunSettings,
                  optimizer: str, phases: Phases) -> Measured:
    """Train as the module docstring says; accuracy before and after, the saved bytes."""
    module.eval()  # BatchNorm statistics as deployed
    applied = apply_updates(module, graph, updates)
    s, b = samples, run.batch_size
    # `feeding`: samples of several inputs come packed in one tensor (sequence_support).
    with install_sparse_layers(module, updates) as (sparse, dense), feeding(module, shape):
        for layer in sparse:
            applied.unmask(f"{layer}.weight")  # its backward computes the selected channels only
        forward = _PolicyForward(module, _first_updated(graph, module, applied.trainable))
        try:
            before = _accuracy(module, s.x_train, s.y_train, s.x_query, s.y_query, b)
            # Built before the clock starts: the first optimiser of a process imports
            # torch._dynamo (seconds), a cost of starting Python, not of training.
            params = applied.parameters()
            stepper = _make_optimizer(params, optimizer, run.lr) if params else None
            reference_s = speed_reference()  # the machine's speed now (not timed)
            step_cpu_s: list[float] = []
            with phases.timed("train_s"):
                losses = _fine_tune(forward, module, stepper, s.x_train, s.y_train,
                                    run.iterations, b, run.seed, run.progress, step_cpu_s)
            # A copy, as a step's batch is (queries[index]): a view would keep, and count,
            # the whole support tensor's storage wherever the input itself is saved (token
            # ids for an embedding's gradient, images for a trained first conv).
            saved_bytes = measure_saved_bytes(forward, s.x_train[:b].clone()).saved_bytes
            after = _accuracy(module, s.x_train, s.y_train, s.x_query, s.y_query, b)
        finally:
            forward.detach()
    applied.remove()
    return Measured(before, after, losses, saved_bytes, reference_s, len(applied.trainable),
                     sparse, dense, first_steps_excess(step_cpu_s))


class _PolicyForward(nn.Module):
    """model(x) with torch.no_grad() up to the first updated layer.

    `first` is that layer's module, "all" when a parameter of the root module itself is
    updated (no prefix), None when nothing is updated (the whole forward without gradient).
    """

    def __init__(self, model: nn.Module, first):
        super().__init__()
        self.model = model
        self.whole_graph = isinstance(first, str)  # "all": no prefix to run without gradient
        self._active = False
        self._handle = None
        if isinstance(first, nn.Module):  # a hook, not an attribute: it is not a submodule
            # first of its pre-hooks: torch.nn.utils.weight_norm's computes the weight there
            self._handle = first.register_forward_pre_hook(self._gradients_from_here,
                                                           prepend=True)

    def _gradients_from_here(self, module, args):
        if self._active:  # only in a training step: not for prototypes or accuracy
            torch.set_grad_enabled(True)

    def forward(self, x):
        if self.whole_graph:
            return self.model(x)
        self._active = True
        try:
            with torch.no_grad():  # exiting restores the caller's mode, the graph stays
                return self.model(x)
        finally:
            self._active = False

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _first_updated(graph, model: nn.Module, trainable: dict):
    """The module of the first operator, in execution order, with an updated parameter."""
    if not trainable:
        return None
    owners = {name.rpartition(".")[0] for name in trainable}
    if "" in owners:
        return "all"
    modules = dict(model.named_modules())
    for node in graph.ops():
        # A parameter read on its own (nn.RMSNorm's weight in F.rms_norm) is read inside
        # the module that owns it.
        module = node.module.rpartition(".")[0] if node.kind == "parameter" and node.module \
            else node.module
        if module in owners:
            # inside a checkpointed call the grad mode a pre-hook sets may not outlive it (a
            # reentrant one is an autograd Function): the whole forward with gradients, which
            # keeps nothing more, as nothing before it needs one
            if node.attrs.get("checkpoint") is not None:
                return "all"
            return modules[module] if module else "all"
    return "all"  # updated parameters used outside a traced module call: no prefix


def _make_optimizer(params, name: str, lr: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9 if name == "momentum" else 0.0)


FIRST_STEPS = 2  # steps that pay first calls (the second: the optimiser's first update)


def first_steps_excess(step_cpu_s: list[float]) -> float | None:
    """What the first FIRST_STEPS training steps cost beyond as many warm ones (process
    CPU): the first call of each backward operator and of the optimiser (kernel choice,
    buffers; the forward's first calls were paid when the model was traced). The median of
    the later steps is the warm step; None with fewer than FIRST_STEPS + 2 steps. Read
    by layerrun.measured_first_call_s (notes/device_time_model.md §23)."""
    if len(step_cpu_s) < FIRST_STEPS + 2:
        return None
    warm = statistics.median(step_cpu_s[FIRST_STEPS:])
    return max(0.0, sum(step_cpu_s[:FIRST_STEPS]) - FIRST_STEPS * warm)


def _fine_tune(step: _PolicyForward, model, optimizer, x, y, iterations, batch_size, seed,
               progress, step_cpu_s: list | None = None) -> list[float]:
    """`iterations` passes of ProtoNet fine-tuning; the mean loss of each pass. Each
    full-batch step's process CPU seconds (forward, backward, update) are appended to
    `step_cpu_s`."""
    steps = math.ceil(len(x) / batch_size)
    pass_losses = []
    with tqdm(total=iterations * steps, disable=not progress, file=sys.stderr, desc="train",
              unit="step") as bar:
        for iteration in range(iterations):
            queries, criterion = protonet_criterion(model, x, y, seed + iteration, batch_size)
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + iteration))
            total = 0.0
            for begin in range(0, len(x), batch_size):
                index = order[begin: begin + batch_size]
                started = time.process_time()
                loss = criterion(step(queries[index]), y[index]) / len(index)
                if optimizer is not None and loss.requires_grad:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                if step_cpu_s is not None and len(index) == batch_size:  # not a short last batch
                    step_cpu_s.append(time.process_time() - started)
                value = float(loss.detach())
                total += value * len(index)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            pass_losses.append(total / len(x))
    return pass_losses


def _accuracy(model, x_train, y_train, x_query, y_query, batch_size) -> float | None:
    """Nearest-prototype (cosine) accuracy on the held-out queries, or None without any."""
    if len(x_query) == 0:
        return None
    with torch.no_grad():
        classes, prototypes = class_prototypes(model, x_train, y_train, batch_size)
        features = torch.cat([model(x_query[i: i + batch_size]).reshape(len(x_query[i: i + batch_size]), -1)
                              for i in range(0, len(x_query), batch_size)])
        similarity = F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T
        predicted = classes[similarity.argmax(dim=1)]
    return float((predicted == y_query).double().mean())
