"""`train(...)`: TinyTrain's online stage on the device, measured beside the cost model.

A run, as the paper times it end to end (§3.2, appendix A.4, E.3):

  load   the model (zoo name, import path or nn.Module; `weights` with weights_only=True) and
         the support samples;
  fisher only for `method="tinytrain"`: the Fisher probe on the training samples;
  plan   only with `method`: the planner, on the device (for tinytrain with the probe's result);
  train  `iterations` passes over the training samples in steps of `batch_size`.

Each pass recomputes the class prototypes from the un-augmented samples (one forward of every
sample, no gradient) and draws fresh pseudo-queries (`augment`, seeded by seed + pass): the
Fisher probe's ProtoNet cosine loss (`planner.fisher.protonet_criterion`), averaged over the
step's queries. Samples are visited in a seeded random order each pass.

What the run does to realise the cost model's savings (not only to mask gradients):
  * modules in eval mode: BatchNorm normalises with its statistics as deployed, as
    `apply_policy` documents; the prediction prices the same (`training_mode=False`);
  * every parameter the policy does not select has requires_grad False, so frozen layers keep
    only what the gradient's path needs;
  * the forward runs under torch.no_grad() until the first updated layer (a forward pre-hook
    turns gradients on there): the layers before it record nothing for backward;
  * a conv2d/linear layer updated on some channels computes only their weight gradient
    (`devices.sparse`); other partial layers keep the dense, masked gradient and are listed.

Measured beside the `pytorch` convention's prediction for the same configuration (modules in
eval mode, the run's batch size and optimiser): wall time per phase, time per pass, the bytes
autograd keeps for one step's forward (saved_tensors_hooks, storages once, parameters and
buffers excluded: `costmodel.measure`, measured once after training), the process's peak
resident memory and, where the machine has a counter, the energy of the four phases
(`devices.host`). Not timed: tracing the model, the prediction, the accuracy evaluation and
the saved-bytes measurement.

Held-out accuracy: when every class has at least two samples and `holdout` > 0, the last
max(1, round(holdout × n_c)) samples of each class (in the source's order) are held out as
queries, classified by the nearest prototype (cosine) of the training samples, before and
after training; otherwise accuracy is None.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ttplan.costmodel.config import resolve_updates, validate_updates
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import ModelInputs, resolve_inputs
from ttplan.costmodel.measure import measure_saved_bytes
from ttplan.costmodel.options import PAPER, cost_options
from ttplan.costmodel.profile import EVAL_MODE, ModelSource, profile, resolve_model
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, Budgets, parse_input_shape, parse_update
from ttplan.costmodel.trace import trace
from ttplan.planner.api import PlanSearch
from ttplan.planner.api import plan as make_plan
from ttplan.planner.policy.apply import apply_updates
from ttplan.planner.support.sources import load_support
from ttplan.planner.support.sequences import feeding, infer_vocab
from ttplan.planner.fisher import (DEFAULT_TAIL_FRACTION, class_prototypes,
                                   default_candidate_layers, fisher_information,
                                   protonet_criterion)
from ttplan.planner.policy.file import (METHODS, Policy, check_at_any_batch,
                                        policy_from_file_or_object)
from ttplan.planner.selection.tinytl import LITE_ATTR, add_lite_residuals

from .host import EnergyCounter, peak_rss_bytes, reset_peak_rss
from .layerrun import SHORT_RUN_S
from .layertable import busy_warning, machine_load, speed_reference
from .planning import DeviceContext, device_for, layer_run, no_calibration, prediction
from .probecost import run_probe_macs
from .process import process_memory
from .profiles import detect_host
from .sparse import install_sparse_layers
from .stepcost import policy_fingerprint, step_cost
from .workload import DEFAULT_ITERATIONS  # noqa: F401 (the paper's runs, §3.2; re-exported)

DEFAULT_HOLDOUT = 0.2
DEFAULT_LR = 0.01
OPTIMIZERS = ("sgd", "momentum", "adam")
PHASES = ("load_s", "fisher_s", "plan_s", "train_s")
SOURCE = "ttplan train"
SLOWER = 1.2  # reference workload this much slower than at calibration: warn


@dataclass
class TrainResult:
    """One run. `to_dict()` is the `ttplan train --format json` contract; `log_row()` the
    `devices.logs.LOG_COLUMNS` row."""

    model_name: str
    policy: dict
    measured: dict
    predicted: dict
    accuracy: dict
    run: dict
    costs: dict  # the log's cost columns (devices.stepcost), per step at the run's batch size,
    # and the run's probe_macs
    warnings: list[str] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model

    def to_dict(self) -> dict:
        return {"model": self.model_name, "policy": dict(self.policy),
                "measured": dict(self.measured), "predicted": dict(self.predicted),
                "accuracy": dict(self.accuracy), "run": dict(self.run),
                "warnings": list(self.warnings)}

    def log_row(self) -> dict:
        phases = self.measured["phases"]
        return {
            "device": self.run["device"], "model": self.model_name,
            "method": self.policy["method"], "policy": self.policy["fingerprint"],
            "batch_size": self.run["batch_size"], "iterations": self.run["iterations"],
            "samples": self.run["samples"],
            **{key: _round(phases[key]) for key in PHASES},
            "total_s": _round(sum(phases[key] for key in PHASES)),
            "energy_j": _round(self.measured["energy_j"]),
            **self.costs,
            "saved_bytes_measured": self.measured["saved_bytes"],
            "peak_rss_bytes": self.measured["peak_rss_bytes"],
            "torch_version": self.run["torch_version"], "threads": self.run["threads"],
            "source": SOURCE,
        }


@dataclass(frozen=True)
class Support:
    """The support samples of a run, checked when built: `data` (a folder of class
    sub-folders or an .npz) or `synthetic` (`samples` of them, seeded by the run's seed;
    token ids below `vocab`, default the first nn.Embedding's size, for an integer input);
    `holdout`: the share of each class held out as queries (module docstring)."""

    data: str | None = None
    synthetic: bool = False
    samples: int | None = None
    vocab: int | None = None
    holdout: float = DEFAULT_HOLDOUT

    def __post_init__(self) -> None:
        h = self.holdout
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 <= h < 1:
            raise SpecError(f"holdout must be a fraction in [0, 1), not {h!r}")


@dataclass(frozen=True)
class RunSettings:
    """How a run trains and is recorded, checked when built: `iterations` passes in steps of
    `batch_size`; `optimizer` sgd | momentum (0.9) | adam, no weight decay (None: the
    policy's cost_options optimizer, else sgd); `seed` for the samples, the probe, the plan
    and the order; `device_name` the log row's device column (default: the device's name,
    else host); `own_peak_rss` measures the peak resident memory from the start of this run
    (Linux; `devices.host.reset_peak_rss`) instead of since the process started."""

    iterations: int = DEFAULT_ITERATIONS
    batch_size: int = 1
    lr: float = DEFAULT_LR
    optimizer: str | None = None
    seed: int = 0
    progress: bool = False
    device_name: str | None = None
    own_peak_rss: bool = False

    def __post_init__(self) -> None:
        for label, value in (("iterations", self.iterations), ("batch size", self.batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{label} must be a positive integer, not {value!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or \
                not (math.isfinite(lr) and lr > 0):
            raise SpecError(f"learning rate (--lr) must be a positive number, not {lr!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise SpecError(f"unknown optimizer {self.optimizer!r}: use sgd, momentum or adam")


@dataclass(frozen=True)
class OnDevicePlan:
    """Plan on the device before training: `method` (tinytrain runs the Fisher probe on the
    training samples first, over the last `fisher_layers` share of layers), its `budgets`
    and `convention` (default: the device's runtime with a device, else paper)."""

    method: str
    budgets: Budgets = Budgets()
    convention: str | None = None
    fisher_layers: float = DEFAULT_TAIL_FRACTION

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SpecError(f"unknown method {self.method!r}: use {', '.join(METHODS)}")

    @classmethod
    def given(cls, method: str | None, budgets: Budgets, convention: str | None = None):
        """The request when a method is given, else None (then budgets are refused)."""
        if method is None:
            if budgets.memory_bytes is not None or budgets.compute is not None:
                raise SpecError("memory and compute budgets apply to planning on the device "
                                "(a method)")
            return None
        return cls(method, budgets, convention)


def train(model, *, policy=None, method: str | OnDevicePlan | None = None,
          update: str | None = None, support: Support | None = None, inputs=None,
          run: RunSettings | None = None, device=None) -> TrainResult:
    """Fine-tune `model` on the support samples following a policy, and measure the run.

    `model`: an nn.Module (trained in place; the result holds it as `.model`), a zoo name,
    module:callable, or a `ModelSource` (name, weights).
    What to update, exactly one of:
      policy   a Policy, policy dict or policy file from `ttplan plan`;
      method   plan on the device: a method name (tinytrain, fulltrain, lastlayer, none,
               sparseupdate, tinytl) or an `OnDevicePlan` (with budgets and convention);
      update   an update spec: none, all, bias-only, last-layers:K, last-blocks:K.
    `support`: the samples (`Support`: a data folder or .npz, or synthetic samples; without
    either the run is refused). `inputs`: an input shape (default the policy's, else 1x3x128x128) or, for a
    model not called with one float image, its one input's spec ("x:float32[1,40,100]",
    "int64[1,16]", a tensor: `costmodel.inputs`); dimension 0 is replaced by the batch size.
    `run`: `RunSettings` (iterations, batch size, lr, optimizer, seed, ...).
    `device`: predict the run's phases, total time and energy with the device's calibrated
    model (devices.planning), for the same configuration, iterations and training samples: a
    `DeviceContext` (`device_for(device, calibration=...)`), or a built-in name, `host`, a
    device or calibration JSON; without one `predicted`'s phases, total_s and energy_j are
    None.
    """
    run = run if run is not None else RunSettings()
    support = support if support is not None else Support()
    for name, value, kind in (("run", run, RunSettings), ("support", support, Support)):
        if not isinstance(value, kind):  # below the boundary a value arrives typed
            raise SpecError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
    plan_request = OnDevicePlan(method) if isinstance(method, str) else method
    _check_one_way(policy, plan_request, update)
    ctx = _device_model(device)
    device_name = run.device_name or ("host" if ctx is None else ctx.device.name)
    peak_since = "run start" if run.own_peak_rss and reset_peak_rss() else "process start"
    phases = _Phases()
    with phases.timed("load_s"):
        loaded = policy_from_file_or_object(policy) if policy is not None else None
        shape = _run_inputs(inputs, loaded, run.batch_size)
        module, name = resolve_model(model)
        if loaded is not None and loaded.method == "tinytl":
            module, name = _with_lite_residuals(module, name, shape)
        x, y, described = load_support(support.data, shape, support.samples, run.seed,
                                       support.synthetic, support.vocab if support.vocab
                                       is not None else infer_vocab(module))
    samples = _Samples(x, *holdout_split(x, y, support.holdout))
    if run.batch_size > len(samples.x_train):
        raise SpecError(f"batch size {run.batch_size} exceeds the {len(samples.x_train)} "
                        "training samples")
    optimizer = run.optimizer or (loaded.options.optimizer if loaded else "sgd")
    if plan_request is not None:
        loaded, module, name = _plan_on_device(plan_request, module, name, shape, samples,
                                               run, optimizer, ctx, phases)
    # What the probe ran, counted (devices.probecost): the log's probe_macs, 0 without a probe.
    probe_macs = run_probe_macs(module, shape, len(samples.x_train),
                                fisher_layers=plan_request.fisher_layers) \
        if plan_request is not None and plan_request.method == "tinytrain" else 0
    graph = trace(module, shape, name)
    chosen = _chosen_updates(policy, loaded, plan_request, update, graph, module, shape, name)
    # The policy's options with the run's optimiser (the paper defaults without a policy).
    run_options = (loaded.options if loaded is not None else PAPER).replace(optimizer=optimizer)
    predicted_pt = profile(ModelSource(module, name), shape, update=chosen.updates, graph=graph,
                           options=run_options.under("pytorch"), tracing=EVAL_MODE)
    # The log's cost columns come from the one place the shipped logs and `predict` use.
    step = step_cost(None, chosen.updates, shape, graph=graph, options=run_options)
    measured = _measured_run(module, graph, chosen.updates, shape, samples, run, optimizer,
                             phases)
    by_device = _device_prediction(ctx, module, chosen, shape, samples, run, plan_request,
                                   loaded, step, probe_macs)
    return _result(module, name, chosen, loaded, measured, phases, predicted_pt, ctx,
                   by_device, samples, run, optimizer, described, device_name, peak_since, step,
                   probe_macs)


def train_flat(settings: dict) -> TrainResult:
    """`train` from flat values, as a grid run passes them to a fresh process (JSON): model,
    update or method (with compute), synthetic, samples, seed, input_shape, holdout,
    iterations, batch_size, device_name, own_peak_rss, model_name."""
    s = dict(settings)
    method = s.pop("method", None)
    budgets = Budgets(compute=s.pop("compute", None))
    support = Support(synthetic=s.pop("synthetic", False), samples=s.pop("samples", None),
                      holdout=s.pop("holdout", DEFAULT_HOLDOUT))
    return train(ModelSource(s.pop("model"), s.pop("model_name", None)),
                 update=s.pop("update", None), method=OnDevicePlan.given(method, budgets),
                 support=support, inputs=s.pop("input_shape", None), run=RunSettings(**s))


@dataclass
class _Samples:
    """The support set, and its split into training samples and held-out queries."""

    x: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


@dataclass
class _Chosen:
    """What the run updates and where that came from."""

    updates: dict
    label: str
    origin: str


@dataclass
class _Measured:
    """What training measured (beside the phases' clock)."""

    before: float | None
    after: float | None
    losses: list
    saved_bytes: int
    reference_s: float
    trainable_tensors: int
    sparse: list
    dense: list


def _check_one_way(policy, plan_request, update) -> None:
    chosen = [name for name, value in (("policy", policy), ("method", plan_request),
                                       ("update", update)) if value is not None]
    if len(chosen) != 1:
        raise SpecError("give exactly one of a policy, a method (plan on the device) or an "
                        f"update spec{'' if not chosen else ', not ' + ' and '.join(chosen)}")


def _plan_on_device(request: OnDevicePlan, module, name, shape, samples: _Samples,
                    run: RunSettings, optimizer: str, ctx, phases: _Phases):
    """The Fisher probe (tinytrain) and the planner, timed as the device runs them; the
    policy, and the model it is for (TinyTL adds modules)."""
    fisher = None
    if request.method == "tinytrain":
        with phases.timed("fisher_s"), feeding(module, shape):
            fisher = fisher_information(
                module, default_candidate_layers(module, request.fisher_layers),
                samples.x_train, samples.y_train, loss="protonet", seed=run.seed,
                batch_size=run.batch_size, progress=run.progress)
    with phases.timed("plan_s"):
        options = cost_options(request.convention or (ctx.device.runtime if ctx else "paper"),
                               optimizer)
        planned = make_plan(ModelSource(module, name), method=request.method, fisher=fisher,
                            memory_bytes=request.budgets.memory_bytes,
                            compute=request.budgets.compute, options=options, inputs=shape,
                            search=PlanSearch(seed=run.seed))
        if request.method == "tinytl":
            module, name = _with_lite_residuals(module, name, shape)
    return planned, module, name


def _chosen_updates(policy, loaded, plan_request, update, graph, module, shape, name) -> _Chosen:
    if loaded is not None:
        check_at_any_batch(loaded, graph, lambda n: trace(module, shape.with_batch(n), name),
                           str(policy) if isinstance(policy, (str, Path)) else "policy")
        origin = "planned on the device" if plan_request else (
            str(policy) if isinstance(policy, (str, Path)) else "policy object")
        updates = loaded.updates()
        validate_updates(updates, graph)
        return _Chosen(updates, loaded.method, origin)
    spec = parse_update(update)
    if spec.kind == "policy":
        raise SpecError("give a policy file as policy=, not as an update spec")
    updates = resolve_updates(spec, graph)
    validate_updates(updates, graph)
    return _Chosen(updates, update, "update spec")


def _measured_run(module, graph, updates, shape, samples: _Samples, run: RunSettings,
                  optimizer: str, phases: _Phases) -> _Measured:
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
            with phases.timed("train_s"):
                losses = _fine_tune(forward, module, stepper, s.x_train, s.y_train,
                                    run.iterations, b, run.seed, run.progress)
            # A copy, as a step's batch is (queries[index]): a view would keep, and count,
            # the whole support tensor's storage wherever the input itself is saved (token
            # ids for an embedding's gradient, images for a trained first conv).
            saved_bytes = measure_saved_bytes(forward, s.x_train[:b].clone()).saved_bytes
            after = _accuracy(module, s.x_train, s.y_train, s.x_query, s.y_query, b)
        finally:
            forward.detach()
    applied.remove()
    return _Measured(before, after, losses, saved_bytes, reference_s, len(applied.trainable),
                     sparse, dense)


def _device_prediction(ctx, module, chosen: _Chosen, shape, samples: _Samples,
                       run: RunSettings, plan_request, loaded, step, probe_macs: int) -> dict:
    """The same configuration and workload on the device, as a log row of this run."""
    by_device = {"phases": None, "total_s": None, "energy_j": None, "calibration": None,
                 "time_model": None, "time_model_notes": [], "energy_basis": None}
    if ctx is None:
        return by_device
    ctx = replace(ctx, iterations=run.iterations, samples=len(samples.x_train))
    # Only a run that planned on the device probed and planned: a policy given as a file
    # pays for neither, whatever method made it.
    run_label = chosen.label if plan_request is not None or loaded is None else "custom"
    probes = plan_request is not None and plan_request.method == "tinytrain"
    layers_run = None if ctx.calibration.layers is None else layer_run(
        module, chosen.updates, shape, ctx, probes=probes,
        fisher_layers=plan_request.fisher_layers if plan_request else DEFAULT_TAIL_FRACTION)
    if layers_run is not None:
        layers_run["plans"] = plan_request is not None
    got = prediction(ctx, run_label, step, layers_run, tuple(samples.x.shape[1:]), probe_macs)
    return {key: got[key] for key in by_device}


def _result(module, name, chosen: _Chosen, loaded, m: _Measured, phases: _Phases, pt, ctx,
            by_device: dict, samples: _Samples, run: RunSettings, optimizer, described,
            device_name, peak_since, step, probe_macs: int) -> TrainResult:
    # The process's peak resident set: the runtime of the device the run is predicted for
    # (this machine without one), the support set (all of it, held-out queries too) and
    # the step's tensors (devices.process). After the run: the host's baseline is measured
    # in a child process.
    x = samples.x
    process = process_memory(ctx.device if ctx is not None else detect_host(),
                             pt.memory.peak_bytes, len(x), tuple(x.shape[1:]))
    n_train = len(samples.x_train)
    return TrainResult(
        model_name=name,
        policy={"method": chosen.label, "source": chosen.origin,
                "fingerprint": None if loaded is None else policy_fingerprint(loaded),
                "layers": len(chosen.updates), "trainable_tensors": m.trainable_tensors,
                "channel_sparse": m.sparse,
                "dense_masked": m.dense},
        measured={"phases": {key: phases.seconds[key] for key in PHASES},
                  "cpu_phases": {key: phases.cpu_seconds[key] for key in PHASES},
                  "iteration_s": phases.seconds["train_s"] / run.iterations,
                  "saved_bytes": m.saved_bytes, "peak_rss_bytes": peak_rss_bytes(),
                  "energy_j": phases.joules(),
                  "energy_basis": None if phases.joules() is None else "powercap counter",
                  "clock": "phases: wall time; cpu_phases: process CPU time",
                  "load": machine_load(), "reference_s": m.reference_s},
        predicted={"saved_bytes": pt.memory.saved_activation_bytes,
                   "peak_bytes": pt.memory.peak_bytes,
                   "backward_macs": pt.totals["backward_macs"],
                   "peak_rss_bytes": None if process is None else process.peak_rss_bytes,
                   "process_memory": None if process is None else process.to_dict(),
                   **by_device},
        accuracy={"before": m.before, "after": m.after},
        run={"device": device_name, "data": described, "batch_size": run.batch_size,
             "iterations": run.iterations, "samples": n_train,
             "query_samples": len(samples.x_query),
             "steps": run.iterations * math.ceil(n_train / run.batch_size),
             "optimizer": optimizer, "lr": run.lr, "seed": run.seed,
             "loss": {"first": m.losses[0], "last": m.losses[-1]}, "peak_rss_since": peak_since,
             "threads": torch.get_num_threads(), "torch_version": torch.__version__},
        costs={**step.columns(), "probe_macs": probe_macs},
        warnings=list(pt.warnings) + _timing_warnings(phases, m.reference_s, ctx),
        model=module,
    )

# ----------------------------------------------------------------------------- inputs


def _device_model(device) -> DeviceContext | None:
    """The calibrated device model to predict the run with, checked before any work."""
    ctx = device if isinstance(device, DeviceContext) or device is None else device_for(device)
    if ctx is not None and ctx.calibration is None:
        raise SpecError(no_calibration(ctx.device))
    return ctx


def _run_inputs(inputs, policy: Policy | None, batch_size: int) -> ModelInputs:
    """The policy's inputs, or the given ones, or 1×3×128×128, with dim 0 `batch_size`."""
    given = None
    if inputs is not None:
        given = resolve_inputs(parse_input_shape(inputs) if _is_shape_text(inputs) else inputs)
    if policy is not None:
        planned = policy.model_inputs()
        if given is not None and _per_sample(given) != _per_sample(planned):
            if given.is_image_shorthand and planned.is_image_shorthand:
                raise SpecError(f"the policy was planned for input {list(planned.shape[1:])}, "
                                f"not {list(given.shape[1:])}")
            raise SpecError(f"the policy was planned for inputs {planned.text()}, not "
                            f"{given.text()} (dimension 0, the batch, aside)")
        given = planned
    return (given or resolve_inputs(None, DEFAULT_INPUT_SHAPE)).with_batch(batch_size)


def _is_shape_text(inputs) -> bool:
    """'1,3,32,32' (an input shape as the command line writes it), not a spec or .npz."""
    return isinstance(inputs, str) and "[" not in inputs and not inputs.strip().lower().endswith(".npz")


def _per_sample(inputs: ModelInputs) -> list:
    return [(s.name, s.dtype, s.shape[1:]) for s in inputs.specs]


def _with_lite_residuals(module: nn.Module, name: str, shape) -> tuple[nn.Module, str]:
    if any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
        return module, name
    return add_lite_residuals(module, shape), f"{name}+lite-residual"


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


# ----------------------------------------------------------------------------- the run


class _Phases:
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
            self._handle = first.register_forward_pre_hook(self._gradients_from_here)

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
        if node.module in owners:
            return modules[node.module]
    return "all"  # updated parameters used outside a traced module call: no prefix


def _make_optimizer(params, name: str, lr: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9 if name == "momentum" else 0.0)


def _fine_tune(step: _PolicyForward, model, optimizer, x, y, iterations, batch_size, seed,
               progress) -> list[float]:
    """`iterations` passes of ProtoNet fine-tuning; the mean loss of each pass."""
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
                loss = criterion(step(queries[index]), y[index]) / len(index)
                if optimizer is not None and loss.requires_grad:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
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


def _timing_warnings(phases: _Phases, reference_s: float, ctx) -> list[str]:
    """A run too short to time, a machine too busy for its wall time to mean much, or slower
    than when its calibration was measured (the reference workload, devices.layertable)."""
    out = []
    calibrated = None if ctx is None or ctx.calibration.layers is None \
        else ctx.calibration.layers.get("reference_s")
    if calibrated and reference_s > SLOWER * calibrated:
        out.append(f"this machine ran the reference workload {reference_s / calibrated:.2f}x "
                   "slower than when it was calibrated: measured times will exceed the "
                   "prediction by about as much")
    train_cpu = phases.cpu_seconds["train_s"]
    if 0 < train_cpu < SHORT_RUN_S:
        out.append(f"training took {train_cpu:.3f} s of CPU: too short to time well "
                   "(more iterations or samples)")
    busy = busy_warning(machine_load())
    if busy:
        out.append(busy)
    return out


def _round(value):
    return None if value is None else round(float(value), 6)


__all__ = ["TrainResult", "train", "holdout_split", "OPTIMIZERS",
           "DEFAULT_ITERATIONS"]
