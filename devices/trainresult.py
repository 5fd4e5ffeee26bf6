"""A `train` run's result: what it measured, what the cost model and the device model
predicted for the same configuration, and the warnings about how far its clock can be
trusted. `TrainResult.to_dict()` is the `ttplan train --format json` contract."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ttplan.costmodel.inputs import ModelInputs
from ttplan.planner.fisher import DEFAULT_TAIL_FRACTION
from ttplan.planner.policy.file import Policy

from .host import peak_rss_bytes
from .layerrun import SHORT_RUN_S
from .layertable import busy_warning, machine_load
from .planning import DeviceContext, layer_run, prediction
from .process import process_memory
from .profiles import detect_host
from .stepcost import StepCost, policy_fingerprint
from .trainloop import PHASES, Measured, Phases, Samples
from .trainplan import Chosen
from .trainrequest import OnDevicePlan, RunSettings

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
class RunRecord:
    """What a run was, built once it has chosen what to update: the model and its inputs,
    the update and where it came from, the samples and settings it trains with, the device
    it is predicted for and the step's cost columns. The result is assembled from it."""

    module: nn.Module
    name: str
    shape: ModelInputs
    chosen: Chosen
    loaded: Policy | None  # the policy given or planned on the device, else None
    plan_request: OnDevicePlan | None
    samples: Samples
    run: RunSettings
    optimizer: str
    ctx: DeviceContext | None
    step: StepCost
    probe_macs: int
    described: str  # the support samples, as load_support describes them
    device_name: str
    peak_since: str


def predicted_on_device(r: RunRecord) -> dict:
    """The same configuration and workload on the device, as a log row of this run."""
    by_device = {"phases": None, "total_s": None, "energy_j": None, "calibration": None,
                 "time_model": None, "time_model_notes": [], "energy_basis": None}
    if r.ctx is None:
        return by_device
    ctx = replace(r.ctx, iterations=r.run.iterations, samples=len(r.samples.x_train))
    plan_request = r.plan_request
    # Only a run that planned on the device probed and planned: a policy given as a file
    # pays for neither, whatever method made it.
    run_label = r.chosen.label if plan_request is not None or r.loaded is None else "custom"
    probes = plan_request is not None and plan_request.method == "tinytrain"
    layers_run = None if ctx.calibration.layers is None else {
        **layer_run(r.module, r.chosen.updates, r.shape, ctx, probes=probes,
                    optimizer=r.optimizer,
                    fisher_layers=plan_request.fisher_layers if plan_request
                    else DEFAULT_TAIL_FRACTION),
        "plans": plan_request is not None}
    got = prediction(ctx, run_label, r.step, layers_run, tuple(r.samples.x.shape[1:]),
                     r.probe_macs)
    return {key: got[key] for key in by_device}


def train_result(r: RunRecord, m: Measured, phases: Phases, pt, by_device: dict) -> TrainResult:
    """The result of run `r`: what training measured `m`, its `phases`' clock, the pytorch
    convention's profile `pt` and the device's prediction `by_device`."""
    # The process's peak resident set: the runtime of the device the run is predicted for
    # (this machine without one), the support set (all of it, held-out queries too) and
    # the step's tensors (devices.process). After the run: the host's baseline is measured
    # in a child process.
    samples, run, ctx, chosen = r.samples, r.run, r.ctx, r.chosen
    x = samples.x
    process = process_memory(ctx.device if ctx is not None else detect_host(),
                             pt.memory.peak_bytes, len(x), tuple(x.shape[1:]))
    n_train = len(samples.x_train)
    return TrainResult(
        model_name=r.name,
        policy={"method": chosen.label, "source": chosen.origin,
                "fingerprint": None if r.loaded is None else policy_fingerprint(r.loaded),
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
                  "load": machine_load(), "reference_s": m.reference_s,
                  "first_steps_excess_cpu_s": m.first_steps_excess_s},
        predicted={"saved_bytes": pt.memory.saved_activation_bytes,
                   "peak_bytes": pt.memory.peak_bytes,
                   "backward_macs": pt.totals["backward_macs"],
                   "peak_rss_bytes": None if process is None else process.peak_rss_bytes,
                   "process_memory": None if process is None else process.to_dict(),
                   **by_device},
        accuracy={"before": m.before, "after": m.after},
        run={"device": r.device_name, "data": r.described, "batch_size": run.batch_size,
             "iterations": run.iterations, "samples": n_train,
             "query_samples": len(samples.x_query),
             "steps": run.iterations * math.ceil(n_train / run.batch_size),
             "optimizer": r.optimizer, "lr": run.lr, "seed": run.seed,
             "loss": {"first": m.losses[0], "last": m.losses[-1]}, "peak_rss_since": r.peak_since,
             "threads": torch.get_num_threads(), "torch_version": torch.__version__},
        costs={**r.step.columns(), "probe_macs": r.probe_macs},
        warnings=list(pt.warnings) + timing_warnings(phases, m.reference_s, ctx),
        model=r.module,
    )


def timing_warnings(phases: Phases, reference_s: float, ctx) -> list[str]:
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
