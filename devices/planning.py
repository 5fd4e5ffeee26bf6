"""Device-aware prediction and planning: a calibrated device model applied to configurations.

`predict_training` answers "how long, how much energy, does it fit" for one configuration
(`ttplan predict`). `plan_for_device` plans with a device (`ttplan plan --device --time`):

* memory: without an explicit memory budget, the device's RAM minus its reserve
  (devices.profiles: the OS and runtime a run cannot use), under the plan's convention;
* time: the calibrated model is linear in a configuration's per-step totals as long as it fits
  the available RAM, so `--time T` becomes one `planner.selection.select.LinearLimit`
      steps x (dense x (forward + input-gradient MACs) + weight_grad x weight MACs
               + tensor x updated tensors) <= T - load - steps x step_s [- probe - planning]
  that the planner enforces like its other budgets (greedy, and as a MILP row in the exact
  solver). The memory-pressure term is not in it: a configuration over the available RAM is
  already outside the memory budget under the pytorch convention; under paper the prediction
  in `predicted.device` (which includes the term) is the re-check, and a note says when the
  full model exceeds the time limit;
* the policy's `predicted.device` holds the prediction for the planned configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.inputs import at_batch, resolve_inputs, shape_of
from ttplan.costmodel.options import PAPER, CostOptions, options_or_default
from ttplan.costmodel.specs import Budgets, parse_duration, parse_update
from ttplan.planner.api import PlanSearch, plan
from ttplan.planner.policy.file import Policy, load_policy
from ttplan.planner.selection.select import LinearLimit

from .calibrate import Calibration, load_calibration, resolve_calibration, round6
from .model import PHASES, Run, linear_time_limit, runtime_peak
from .probecost import probe_macs_of_run
from .process import process_memory
from .profiles import DeviceProfile, resolve_device
from .stepcost import StepCost, policy_step_cost, step_cost

from .workload import DEFAULT_ITERATIONS, DEFAULT_SAMPLES  # noqa: F401 (re-exported)


@dataclass
class DeviceContext:
    """A device, its calibration (None if it has none) and the workload to predict for."""

    device: DeviceProfile
    calibration: Calibration | None
    iterations: int = DEFAULT_ITERATIONS
    samples: int = DEFAULT_SAMPLES
    time_s: float | None = None
    # an update spec or policy file whose predicted time is the budget (`with_time_budget`)
    time_as: str | None = None


def device_context(device, *, calibration=None, time=None, iterations=DEFAULT_ITERATIONS,
                   samples=DEFAULT_SAMPLES) -> DeviceContext:
    """`device`: a built-in name, `host`, a device JSON or a calibration JSON. `calibration`:
    a calibration file (default: the device's built-in one, or the file `device` named).
    `time`: a training-time budget: seconds, text such as 10min, or an update spec or policy
    file (last-blocks:2, plan.json) whose run the device's calibration predicts for the
    planned model -- a budget of "no slower than that", immune to how fast the machine runs
    today (`with_time_budget` turns it into seconds once the model is known)."""
    for what, value in (("iterations", iterations), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{what} must be a positive integer, not {value!r}")
    profile = resolve_device(device)
    cal = resolve_calibration(profile, calibration, device)
    if cal is not None and cal.device.name != profile.name:
        raise SpecError(f"the calibration is of device {cal.device.name!r}, not {profile.name!r}")
    time_s = time_as = None
    if time is not None:
        time_s, time_as = _time_budget(time)
        if cal is None:
            raise SpecError(no_calibration(profile))
    return DeviceContext(profile, cal, iterations, samples, time_s, time_as)


def _time_budget(time) -> tuple[float | None, str | None]:
    """(seconds, None) of a duration, or (None, spec) of an update spec or policy file."""
    if isinstance(time, str):
        try:
            return parse_duration(time), None
        except SpecError:
            try:
                parse_update(time.strip())
            except SpecError:
                raise SpecError(
                    f"invalid time budget {time!r}: expected a positive duration such as "
                    "100s, 20min (or 20m) or 1h, or an update spec or policy file to be as "
                    "fast as, such as last-blocks:2") from None
            return None, time.strip()
    if isinstance(time, bool) or not isinstance(time, (int, float)) or \
            not (math.isfinite(time) and time > 0):
        raise SpecError(f"a time budget must be a positive duration, not {time!r}")
    return float(time), None


def with_time_budget(ctx: DeviceContext, model, inputs) -> DeviceContext:
    """`ctx` with a relative budget (`time_as`) turned into seconds: what the device's
    calibration predicts for that configuration of `model` at `inputs` (load and training,
    as `predict --update SPEC` gives it). Unchanged without one or once resolved."""
    if ctx.time_as is None or ctx.time_s is not None:
        return ctx
    seconds = predict_training(model, ctx.time_as, ctx, inputs=inputs)["total_s"]
    if seconds is None or not seconds > 0:
        raise SpecError(f"time budget {ctx.time_as}: {ctx.device.name}'s calibration predicts "
                        "no time for it")
    return replace(ctx, time_s=float(seconds))


def device_for(device, *, calibration=None, time=None, iterations=DEFAULT_ITERATIONS,
               samples=DEFAULT_SAMPLES) -> DeviceContext | None:
    """The one place a device (name, file) becomes a `DeviceContext`, or None without one; a
    time budget without a device is refused (the time model is a device's calibration). A
    calibration alone stands for its own device (also `host`, not a file name)."""
    if device is None and calibration is not None:
        device = load_calibration(calibration).device
    if device is None:
        if time is not None:
            raise SpecError("--time needs --device: the time model is a device's calibration")
        return None
    return device_context(device, calibration=calibration, time=time, iterations=iterations,
                          samples=samples)


def no_calibration(device: DeviceProfile) -> str:
    return (f"no calibration for device {device.name}: fit one with `ttplan calibrate LOG "
            f"--device {device.name} --out cal.json` and pass --calibration cal.json")


def steps_of(iterations: int, samples: int, batch_size: int) -> int:
    return iterations * math.ceil(samples / batch_size)


# A configuration the calibration measured on the model may be predicted over a budget in
# seconds by the 10 % a run is held to beyond its budget: its prediction is a measurement of
# it, and so, usually, is the budget (a user times a configuration for it). Two measurements of
# one configuration minutes apart land further apart than the spread of one table's repeats:
# mcunet-5fps's last-blocks:2, T its median of five runs, was predicted +5.1 to +8.9 % of T in
# 3 of 23 budgets (notes §25) and +5.2 % with the table's repeats spread by ±4.5 % (§28); the
# spread kept it out, and the plan captured less Fisher than last-blocks:2.
TIME_RESOLUTION_CAP = 0.10
# What the calibration never ran on the model is planned below a budget in seconds by the
# spread of the calibration's repeats, at most 5 %: a prediction, which lands that far either
# side of the run.
TIME_HEADROOM_CAP = 0.05


@dataclass(frozen=True)
class LayerTimeLimit:
    """A training-time budget through the per-layer model: the predicted seconds of the run
    (devices.layermodel: every layer's passes priced by the device's table, a channel-sparse
    weight gradient at what the device's sparse path costs) <= `limit`. Not linear in the
    planner's totals (coefficients empty): the greedy checks `value`, the exact solver
    verifies its solutions against it. `resolution`: see `resolution_of`."""

    model: dict
    iterations: int
    samples: int
    probe: dict | None
    limit: float
    label: str = "time"
    coefficients: tuple = ()
    resolution: float = 0.0
    resolution_why: str = ("the calibration measured this configuration on this model, and "
                           f"a run is held to {100 * TIME_RESOLUTION_CAP:.0f} % beyond its budget")
    stated: float | None = None  # the budget as given, where `limit` keeps headroom below it
    # a configuration the calibration measured, predicted over the budget beyond `resolution`
    # (`planner.api._near_miss`): such a budget was likely timed at another speed of the machine
    measured_over_why: str = (
        "the calibration measured {spec} on this model: a budget in seconds timed on this "
        "machine that far under its prediction means the machine ran faster than when it was "
        "calibrated (calibrate again), and a budget relative to it (--time {spec}) does not "
        "depend on the machine's speed")

    def value(self, ev) -> float:
        return sum(self._phases(ev)[f"{p}_s"] for p in PHASES)

    def resolution_of(self, ev) -> float:
        """`resolution` for a configuration the calibration ran on this model (its time is
        a measurement, known to the spread of its repeats), else 0."""
        return self.resolution if self.resolution and self._phases(ev)["measured_as"] else 0.0

    def _phases(self, ev) -> dict:
        from .layermodel import layer_passes, per_sample, predict_phases, work_of

        batch = int(ev.graph.input_shape[0])
        passes = layer_passes(ev)
        step = per_sample(work_of(passes), batch)
        passes = [[n, k, p, m / batch, e / batch, w / batch, *rest]
                  for n, k, p, m, e, w, *rest in passes]
        run = {"batch_size": batch, "iterations": self.iterations, "samples": self.samples,
               "updated_tensors": ev.updated_tensors, "step_work": step,
               "forward_work": {k: v for k, v in step.items() if k.endswith("/forward")},
               "probe_work": self.probe, "plans": self.probe is not None,
               "layer_passes": passes,
               "sample_shape": [int(s) for s in ev.graph.input_shape[1:]]}
        return predict_phases(run, self.model)


def device_budgets(ctx: DeviceContext, budgets: Budgets | None = None) -> Budgets:
    """`budgets` with the device's available RAM as the memory budget unless one is given."""
    budgets = budgets if budgets is not None else Budgets()
    if budgets.memory_bytes is not None:
        return budgets
    return Budgets(ctx.device.available_bytes, budgets.compute)


def time_resolution(ctx: DeviceContext) -> float:
    """The share by which the predicted time of a configuration the calibration measured on
    the model (`LayerTimeLimit.resolution_of`) may exceed a budget in seconds and still meet
    it: TIME_RESOLUTION_CAP, the share a run is held to beyond its budget, with a per-layer
    calibration whose runs were repeated (`timing_resolution`). 0 for a relative budget
    (`time_as`: budget and plan are predicted by the same tables, no measurement between
    them) and for a calibration without repeated runs."""
    return TIME_RESOLUTION_CAP if _seconds_budget_resolution(ctx) else 0.0


def time_headroom(ctx: DeviceContext) -> float:
    """The share below a budget in seconds a configuration the calibration never ran on the
    model is planned to: the per-layer calibration's `timing_resolution` (half the median
    spread of its whole runs' repeats: a prediction lands about that far either side of the
    run), at most TIME_HEADROOM_CAP (0 where `time_resolution` is)."""
    return min(_seconds_budget_resolution(ctx) or 0.0, TIME_HEADROOM_CAP)


def _seconds_budget_resolution(ctx: DeviceContext) -> float | None:
    """The per-layer calibration's `timing_resolution`, uncapped, when the budget is in
    seconds (not relative to a configuration); None otherwise or when it has none."""
    if ctx.time_as is not None or ctx.calibration is None or ctx.calibration.layers is None:
        return None
    resolution = ctx.calibration.layers.get("timing_resolution")
    return float(resolution) if resolution else None


def coarse_timing_note(ctx: DeviceContext) -> str | None:
    """A budget in seconds on a calibration whose repeated runs spread by more than
    TIME_HEADROOM_CAP: what the plan's seconds are worth, said once (None otherwise)."""
    resolution = _seconds_budget_resolution(ctx)
    if ctx.time_s is None or resolution is None or resolution <= TIME_HEADROOM_CAP:
        return None
    return (f"time budget in seconds: the calibration's repeated runs of one configuration "
            f"spread by ±{100 * resolution:.1f} % (the machine's speed moved while it was "
            "measured), so the run may land about that far from its prediction; a budget "
            "relative to a configuration (--time last-blocks:2) does not depend on the "
            "machine's speed")


def headroom_limit_s(ctx: DeviceContext) -> float:
    """What a configuration the calibration never ran on the model is planned to within a
    budget in seconds: T / (1 + `time_headroom`) (`time_limits`)."""
    return ctx.time_s / (1.0 + time_headroom(ctx))


def time_headroom_note(ctx: DeviceContext) -> str | None:
    """How a budget in seconds is planned to on a calibration with repeated runs
    (`time_limits`), said once; None otherwise."""
    r, below = time_resolution(ctx), time_headroom(ctx)
    if ctx.time_s is None or not r:
        return None
    spread = _seconds_budget_resolution(ctx) or 0.0
    counted = f", {100 * below:.1f} % counted" if spread > below else ""
    return (f"time budget {ctx.time_s:g} s: a configuration the calibration never ran on this "
            f"model is planned to {headroom_limit_s(ctx):.4g} s (the calibration's repeated "
            f"runs spread by ±{100 * spread:.1f} %{counted}: a prediction lands about that far "
            f"either side of its run), one it ran to {ctx.time_s * (1.0 + r):.4g} s (its "
            f"prediction is a measurement; a run is held to {100 * r:.0f} % beyond its "
            "budget)")


def time_limits(ctx: DeviceContext, method: str, inputs, model=None,
                headroom: bool = True) -> tuple:
    """The device's time budget as limits the planner enforces (none without one). `inputs`:
    an input shape or ModelInputs. `model`: the nn.Module or name (for a per-layer
    calibration's probe work, and the probe's MACs of a tinytrain time budget). `headroom`:
    a budget in seconds keeps the headroom below it for what the calibration never
    ran (`plan_on` plans to the budget as given where nothing fits below)."""
    if ctx.time_s is None and ctx.time_as is None:
        return ()
    if ctx.time_s is None:
        if model is None:
            raise SpecError(f"a time budget as fast as {ctx.time_as} needs the model")
        ctx = with_time_budget(ctx, model, inputs)
    if ctx.calibration.layers is not None and model is not None:
        # The plan is made here; the device runs the policy (`train --policy`): no probe and
        # no planning there, so the budget covers loading and training. A configuration the
        # calibration ran on the model is a measurement and may be predicted up to T (1 + r),
        # r the 10 % a run is held to; any other is a prediction, and the run lands the
        # calibration's spread either side of it however good the model: it is kept to
        # T / (1 + h), h that spread at most 5 % (`time_headroom_note`).
        # The limit the solvers see, and the share over it a measured configuration may be
        # predicted at: T / (1 + h) and (1 + r)(1 + h) - 1 with headroom h (`time_headroom`),
        # T and r without.
        r = time_resolution(ctx)
        limit = headroom_limit_s(ctx) if headroom else ctx.time_s
        return (LayerTimeLimit(
            ctx.calibration.layers, ctx.iterations, ctx.samples, None, limit,
            f"time {ctx.time_s:g} s on {ctx.device.name} (per-layer model)",
            resolution=ctx.time_s * (1.0 + r) / limit - 1.0, stated=ctx.time_s),)
    steps = steps_of(ctx.iterations, ctx.samples, shape_of(inputs)[0])
    probe = probe_macs_of_run(method, model, inputs, ctx.samples) if model is not None else None
    if method == "tinytrain" and probe is None:
        raise SpecError("a tinytrain time budget needs the model, to count its probe's MACs")
    coefficients, limit = linear_time_limit(
        ctx.calibration.time_terms, steps=steps, probe_macs=probe, limit_s=ctx.time_s)
    if limit <= 0:
        raise SpecError(f"a time budget of {ctx.time_s:g} s is below what any {method} "
                        f"run takes on {ctx.device.name} ({ctx.time_s - limit:.4g} s for "
                        f"loading, {steps} steps and the probe, before any MAC)")
    return (LinearLimit(coefficients, limit, f"time {ctx.time_s:g} s on {ctx.device.name}"),)


def plan_on(ctx: DeviceContext, model, method: str, fisher, budgets: Budgets | None,
            options: CostOptions, given, search: PlanSearch | None) -> Policy:
    """plan() within the device's budgets (`device_budgets`, `time_limits`)."""
    bound = device_budgets(ctx, budgets)
    search = search if search is not None else PlanSearch()

    def within(headroom: bool) -> Policy:
        limits = search.limits + time_limits(ctx, method, given, model, headroom)
        return plan(model, method=method, fisher=fisher, memory_bytes=bound.memory_bytes,
                    compute=bound.compute, options=options, inputs=given,
                    search=replace(search, limits=limits))

    try:
        return within(True)
    except SpecError:  # nothing fits below the headroom: the budget as given, to its resolution
        if not time_headroom(ctx):  # no headroom was kept: the same plan, the same error
            raise
        return within(False)


def prediction(ctx: DeviceContext, method: str, cost: StepCost, run: dict | None = None,
               sample_shape=None, probe_macs: int | None = None) -> dict:
    """Time per phase, energy and fit in RAM of one configuration on the device. `run`: what
    the run executes (devices.layerrun.run_description); with a per-layer calibration the
    phases are the sum of what it runs (devices.layermodel). `sample_shape` (one sample's
    shape): the support set's share of the process's peak resident memory (devices.process);
    where a process is predicted, `fits_ram` compares its peak resident set with the RAM the
    OS leaves (`process_ram_bytes`), else the runtime's peak with the available RAM.
    `probe_macs`: the Fisher probe's MACs of a tinytrain run (devices.probecost), which the
    whole-run model prices its Fisher phase by."""
    available = ctx.device.available_bytes
    peak = runtime_peak(cost, ctx.device)
    process = process_memory(ctx.device, cost.peak_bytes_pytorch, ctx.samples,
                             sample_shape or ())
    rss = None if process is None else process.peak_rss_bytes
    fits = None if available is None else peak <= available
    if rss is not None and ctx.device.process_ram_bytes is not None:
        fits = rss <= ctx.device.process_ram_bytes
    out = {"device": ctx.device.name,
           "calibration": None if ctx.calibration is None else ctx.calibration.label,
           "iterations": ctx.iterations, "samples": ctx.samples, "batch_size": cost.batch_size,
           "phases": None, "total_s": None, "energy_j": None,
           "peak_bytes": peak, "peak_rss_bytes": rss,
           "process_memory": None if process is None else process.to_dict(), "fits_ram": fits,
           "error_band_pct": None, "energy_error_band_pct": None, "time_model": None,
           "time_model_notes": [], "energy_basis": None}
    if ctx.calibration is None:
        return out
    cal = ctx.calibration
    if cal.layers is not None and run is not None:
        return _layer_prediction(out, cal, run)
    if not cal.whole_run:
        return out
    p = cal.predict(Run(method, ctx.iterations, ctx.samples, cost, probe_macs))
    out.update(phases={f"{ph}_s": round6(p.phases[f"{ph}_s"]) for ph in PHASES},
               total_s=round6(p.total_s),
               energy_j=None if p.energy_j is None else round6(p.energy_j),
               error_band_pct=cal.time_loo["median_abs_pct"],
               energy_error_band_pct=None if cal.energy_loo is None
               else cal.energy_loo["median_abs_pct"], time_model="whole-run",
               energy_basis=None if p.energy_j is None else "calibrated powers x time")
    return out


def _layer_prediction(out: dict, cal: Calibration, run: dict) -> dict:
    """`out` (a new dict, the same keys) with the per-layer model's phases; energy = the
    calibrated power x time, or None when the calibration measured no energy (never a
    guess)."""
    from .layermodel import predict_phases

    predicted = predict_phases(run, cal.layers)
    phases = {f"{ph}_s": round6(predicted[f"{ph}_s"]) for ph in PHASES}
    total = round6(sum(phases.values()))
    power = cal.layers.get("power_w")
    return {**out, "phases": phases, "total_s": total,
            "energy_j": None if not power else round6(power * total),
            "error_band_pct": cal.layers["loo"]["median_abs_pct"],
            "time_model": predicted["time_model"],
            "time_model_notes": predicted["time_model_notes"],
            "energy_basis": None if not power else "calibrated power x time"}


def layer_run(module, updates, shape, ctx: DeviceContext, *, probes: bool, graph=None,
              fisher_layers=None, optimizer: str = "sgd") -> dict:
    """What a run of `updates` (a spec or {layer: LayerUpdate}) executes, for the per-layer
    model: its steps at shape[0], the prototypes' forward, the probe when it `probes` (and then
    the planner runs too), the `optimizer`'s updates."""
    from ttplan.costmodel.config import resolve_updates
    from ttplan.costmodel.trace import trace

    from .layerrun import run_description

    one = at_batch(shape, 1)  # ModelInputs are traced on their own inputs
    graph = graph if graph is not None and tuple(graph.input_shape) == shape_of(one) else \
        trace(module, one, "model")
    shape = shape_of(shape)
    if isinstance(updates, str):
        updates = resolve_updates(parse_update(updates), graph)
    return {**run_description(module, updates, shape, iterations=ctx.iterations,
                              samples=ctx.samples, probes=probes, graph=graph,
                              fisher_layers=fisher_layers), "optimizer": optimizer}


def predict_training(model, update, device, *, batch_size=None, inputs=None,
                     optimizer=None) -> dict:
    """`ttplan predict`: `update` is a policy file (its method, cost options and batch) or an
    update spec (all, last-blocks:4, ...; method "custom", batch from `inputs`).
    `device`: a `DeviceContext` (`device_context`: the device, its calibration and the
    workload's iterations and samples) or a device name (its built-in calibration, the
    paper's workload). `model`: an nn.Module, a zoo name, module:callable or a `ModelSource`
    (with weights). `inputs`: what the model is called with, an input shape by default
    1x3x128x128 (`costmodel.inputs`). `optimizer`: sgd | momentum | adam, as `train` runs it
    (default: the policy's, else sgd): its state's memory and its work per updated element.
    error_band_pct is the calibration's median absolute leave-one-out error of the time."""
    ctx = device if isinstance(device, DeviceContext) else device_context(device)
    if ctx.calibration is None:
        raise SpecError(no_calibration(ctx.device))
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise SpecError(f"batch size must be a positive integer, not {batch_size!r}")
    options = None if optimizer is None else PAPER.replace(optimizer=optimizer)  # checked
    shape = resolve_inputs(inputs)
    module, name = resolve_model(model)
    spec = parse_update(update) if isinstance(update, str) else None
    if spec is not None and spec.kind == "policy":
        policy = load_policy(spec.path)
        if options is not None:
            policy = replace(policy, options=policy.options.replace(optimizer=optimizer))
        cost = policy_step_cost(policy, batch_size, model=module)
        method, optimizer = policy.method, policy.options.optimizer
        updates, shape = policy.updates(), (cost.batch_size,) + tuple(policy.input_shape[1:])
    else:
        shape = shape.with_batch(batch_size)
        cost = step_cost(module, update, shape, model_name=name, options=options)
        method, updates, optimizer = "custom", update, optimizer or "sgd"  # the runner's
    run = None
    if ctx.calibration.layers is not None and method != "tinytl":  # tinytl adds modules
        run = layer_run(module, updates, shape, ctx, probes=method == "tinytrain",
                        optimizer=optimizer)
    probe = None if run is not None else probe_macs_of_run(method, module, shape, ctx.samples)
    out = {"model": name, **prediction(ctx, method, cost, run, shape_of(shape)[1:], probe)}
    keys = ("model", "device", "calibration", "iterations", "samples", "batch_size", "phases",
            "total_s", "energy_j", "peak_bytes", "peak_rss_bytes", "process_memory",
            "fits_ram", "error_band_pct", "energy_error_band_pct", "time_model",
            "time_model_notes", "energy_basis")
    return {k: out[k] for k in keys}


def plan_for_device(model, *, device, method="tinytrain", fisher=None,
                    budgets: Budgets | None = None, options: CostOptions | None = None,
                    inputs=None, search=None) -> Policy:
    """plan() within the device's RAM (unless `budgets` has a memory budget) and its time
    budget, with the prediction in `predicted.device` (module docstring). `device`: a
    `DeviceContext` (`device_context`: the device, its calibration, a time budget and the
    workload) or a device name (no time budget). Without `options` the plan is budgeted
    under the device's runtime: `pytorch` where PyTorch trains (a Linux board, the host),
    `paper` on a bare-metal engine."""
    ctx = device if isinstance(device, DeviceContext) else device_context(device)
    # Without options: the device's runtime, what its RAM must hold.
    options = options_or_default(options, PAPER.under(ctx.device.runtime))
    given = resolve_inputs(inputs)
    ctx = with_time_budget(ctx, model, given)
    policy = plan_on(ctx, model, method, fisher, budgets, options, given, search)
    return with_device_prediction(ctx, policy, model)


def with_device_prediction(ctx: DeviceContext, policy: Policy, model=None) -> Policy:
    """The planned policy with `predicted.device` and the device's notes (a new Policy: the
    one given is left as it was)."""
    predicted, notes = device_prediction(ctx, policy, model)
    return replace(policy, predicted={**policy.predicted, "device": predicted},
                   notes=[*policy.notes, *notes])


def _within_time(ctx: DeviceContext, total_s: float, run: dict | None) -> bool:
    """Whether a predicted run meets the seconds budget, as the planner's `LayerTimeLimit`
    judges it: to `time_resolution` when the calibration measured the configuration."""
    if total_s <= ctx.time_s:
        return True
    resolution = time_resolution(ctx) if run is not None else 0.0
    if not resolution or total_s > ctx.time_s * (1.0 + resolution):
        return False
    return _measured(ctx, run)


def _measured(ctx: DeviceContext, run: dict | None) -> bool:
    """Whether the calibration ran this configuration on the model (its own table's runs)."""
    from .layermodel import predict_phases

    return run is not None \
        and predict_phases(run, ctx.calibration.layers)["measured_as"] is not None


def device_prediction(ctx: DeviceContext, policy: Policy, model=None) -> tuple[dict, list[str]]:
    """(`predicted.device` of a planned policy, the notes it calls for: the full model,
    memory pressure included, over the time budget; over the device's RAM). With a per-layer
    calibration (and `model`), the prediction is of the policy's run on the device (`train
    --policy`: no probe, no planning)."""
    run = None
    if ctx.calibration is not None and ctx.calibration.layers is not None and \
            model is not None and policy.method != "tinytl":  # tinytl adds modules
        module, _ = resolve_model(model)
        run = layer_run(module, policy.updates(), tuple(policy.input_shape), ctx, probes=False,
                        optimizer=policy.options.optimizer)
    probe = None if run is not None else probe_macs_of_run(
        policy.method, model if model is not None else policy.model_name,
        policy.model_inputs(), ctx.samples)
    predicted = prediction(ctx, policy.method, policy_step_cost(policy), run,
                           tuple(policy.input_shape[1:]), probe)
    if ctx.time_as is not None and ctx.time_s is None:
        ctx = with_time_budget(ctx, model if model is not None else policy.model_name,
                               policy.model_inputs())
    predicted["time_limit_s"] = ctx.time_s
    predicted["within_time"] = None if ctx.time_s is None or predicted["total_s"] is None \
        else _within_time(ctx, predicted["total_s"], run)
    notes = []
    if ctx.time_as is not None:
        notes.append(f"time budget: as fast as {ctx.time_as} on {ctx.device.name}, predicted "
                     f"{ctx.time_s:.4g} s for this model by the same calibration")
    headroom = time_headroom_note(ctx)
    if headroom is not None and predicted["total_s"] is not None \
            and predicted["total_s"] > headroom_limit_s(ctx) \
            and not _measured(ctx, run):
        headroom = None  # planned to the budget as given: nothing fitted below the headroom
    notes += [n for n in (headroom, coarse_timing_note(ctx)) if n is not None]
    if predicted["within_time"] is False:
        notes.append(f"predicted {predicted['total_s']:.4g} s on {ctx.device.name} "
                     f"exceeds the time budget of {ctx.time_s:g} s")
    if predicted["fits_ram"] is False and predicted["peak_rss_bytes"] is not None:
        notes.append(f"the predicted peak resident memory ({predicted['peak_rss_bytes']:,}"
                     f" B) exceeds {ctx.device.name}'s RAM less its OS reserve "
                     f"({ctx.device.process_ram_bytes:,} B): it will swap")
    elif predicted["fits_ram"] is False:
        notes.append(f"the {ctx.device.runtime} peak ({predicted['peak_bytes']:,} B) "
                     f"exceeds {ctx.device.name}'s available RAM "
                     f"({ctx.device.available_bytes:,} B)"
                     + (": it will swap" if ctx.device.runtime == "pytorch" else ""))
    return predicted, notes
