"""Measuring a layer table (devices.layerrun describes it): the layers alone, then short whole
runs of `train` for the overheads. Apart from layerrun because it runs `devices.runner`, which
predicts through the calibrations layerrun's fit feeds."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch

from ttplan.costmodel.config import resolve_updates
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import ModelInputs, at_batch, shape_of
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import EVAL_MODE, profile, resolve_model
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.planner.fisher.losses import augment_images

from .layerrun import (FORMAT, PHASE_MISMATCH, SHORT_RUN_S, TABLE_UPDATES, VERSION, measure_sweep,
                       out_of_order, phase_mismatch, run_description)
from .layermodel import augmented_elements
from .layertable import busy_warning, machine_load, measure_layers, speed_reference, time_call
from .grid import GridRuns
from .runner import train_flat
from .stepreference import measure_step_reference, merged_step_reference


TABLE_RUNS = GridRuns(iterations=2)


RUN_REPEATS = 3  # each whole run, in fresh processes: the median, the spread kept
# rounds added while the runs are unsteady (`unsteady_runs`): the median of more repeats, so a
# minute of a shared machine running slow does not decide the table
EXTRA_ROUNDS = 2
RUN_SPREAD = 0.2
# A second run length for a few cells (the smallest batch, these updates, LONG_RUN_FACTOR x
# the iterations): with every run as long as the others, the once-per-run cost (first calls)
# could not be told from what a run pays per sample and per step (notes §12, §13).
LONG_RUN_UPDATES = ("none", "all")
LONG_RUN_FACTOR = 3


def measure_table(model, *, input_shape, runs: GridRuns = TABLE_RUNS, updates=TABLE_UPDATES,
                  repeats: int = 5, sweep: bool = True, run_repeats: int = RUN_REPEATS,
                  report: Callable[[str], None] | None = None) -> dict:
    """The layer table of `model` (module docstring): `runs` the whole runs measured beside
    the layer timings (batch sizes, samples, iterations, seed; `isolate`: each in a fresh
    Python process (a zoo name or import path), cold as a user's `ttplan train` is; otherwise
    in this process, after the layer timings warmed it). `sweep`: add the generic layers of
    `kind_sweep()` (rows of model "kind-sweep"), so kinds the model lacks are measured too.
    `run_repeats`: each whole run is measured this many times, in rounds with the layer
    timings between them in `run_repeats - 1` passes (at least one) of `repeats` / passes
    repeats each, every layer the median of its passes, so the layers and the runs sample
    the shared machine's speed over the same minutes (a drift shows in the spreads instead
    of in the fitted overheads);
    while the runs are unsteady (`unsteady_runs`) up to EXTRA_ROUNDS more rounds follow;
    the median is kept, every repeat and the speed reference (`speed_reference`) of each
    beside it, and the two phases' reference times are compared (`PHASE_MISMATCH`).
    LONG_RUN_UPDATES (those of `updates`) also run at the smallest batch size for
    LONG_RUN_FACTOR x the iterations, so the fit can tell the once-per-run cost from the
    per-step ones."""
    if run_repeats < 1:
        raise SpecError(f"run_repeats must be at least 1, not {run_repeats}")
    batch_sizes = runs.batch_sizes
    say = report or (lambda line: None)
    module, name = resolve_model(model)
    load_before = machine_load()
    warnings = []
    cells = [(b, spec, runs.iterations) for b in batch_sizes if b <= runs.samples
             for spec in updates]
    smallest = min(batch_sizes)
    cells += [(smallest, spec, LONG_RUN_FACTOR * runs.iterations)
              for spec in LONG_RUN_UPDATES if spec in updates and smallest <= runs.samples]
    repeats_of = {cell: [] for cell in cells}
    # The layers are timed in passes between the rounds of whole runs (R1 L1 R2 L2 R3), each
    # layer the median of its passes: the layer timings then sample the shared machine's speed
    # over the same minutes the runs do, instead of one short window whose speed the overheads
    # fitted from the runs would absorb (notes/device_time_model.md §19).
    passes = max(1, run_repeats - 1)
    per_pass = max(1, math.ceil(repeats / passes))
    layer_references, timed, whole_forwards, step_references = [], [], [], []
    step_repeats = max(1, run_repeats)  # the step reference: once per pass and once after
    for index in range(passes):
        _run_round(model, name, input_shape, cells, runs, repeats_of, say)
        layer_references.append(speed_reference())
        rows, forwards = _time_layers(module, name, input_shape, batch_sizes, sweep, per_pass)
        timed.append(rows)
        whole_forwards.append(forwards)
        layer_references.append(speed_reference())
        step_references.append(measure_step_reference(runs.samples, runs.seed, step_repeats))
        say(f"{name}: layer pass {index + 1} of {passes}: {len(rows)} layer passes timed")
    if run_repeats > 1:
        _run_round(model, name, input_shape, cells, runs, repeats_of, say)
    layers = median_rows(timed)
    augment = _augment_cost(input_shape, runs.samples, repeats)
    step_references.append(measure_step_reference(runs.samples, runs.seed, step_repeats))
    step_reference = merged_step_reference(step_references)
    forward_overhead = [_forward_overhead(forwards, layers, name)
                        for forwards in zip(*whole_forwards)]
    for b in batch_sizes:
        mine = [r for r in layers if r["batch_size"] == b and r["model"] == name]
        noisy = [r for r in mine if r["spread"] > 0.5]
        if len(noisy) > len(mine) / 10:
            warnings.append(f"{name} b{b}: {len(noisy)} of {len(mine)} layer timings spread by "
                            "more than 50 % between repeats or passes: the machine was busy")
    for _ in range(EXTRA_ROUNDS if run_repeats > 1 else 0):
        unsteady = unsteady_runs(repeats_of)
        if not unsteady:
            break
        say(f"{name}: {unsteady[0]}: one more round of the runs")
        _run_round(model, name, input_shape, cells, runs, repeats_of, say)
    table_runs = []
    for (b, spec, iterations) in cells:
        desc, summary = _run_summary(model, name, b, spec, input_shape, runs, iterations,
                                     repeats_of[(b, spec, iterations)])
        table_runs.append(desc)
        if summary["train_cpu_s"] < SHORT_RUN_S:
            warnings.append(f"{name} {spec} b{b} x{iterations}: train took "
                            f"{summary['train_cpu_s']:.3f} s of "
                            "CPU, too short to time well: give more --iterations")
        elif summary["spread"] > RUN_SPREAD:
            warnings.append(f"{name} {spec} b{b} x{iterations}: train CPU time spread by "
                            f"{100 * summary['spread']:.0f} % over {len(summary['repeats'])} "
                            "runs: the machine's speed moved")
    load_after = machine_load()
    layer_reference = statistics.median(layer_references)
    run_references = [m["reference_s"] for ms in repeats_of.values() for m in ms
                      if m.get("reference_s")]
    run_reference = statistics.median(run_references) if run_references else None
    mismatch = phase_mismatch(layer_reference, run_reference)
    if mismatch is not None and abs(mismatch) > PHASE_MISMATCH:
        warnings.append(f"the speed reference took {100 * mismatch:+.0f} % in the runs against "
                        "the layer timings: the machine's speed moved between the two phases; "
                        "the overheads fitted from this table absorb it (measure again)")
    for load in (load_before, load_after):
        w = busy_warning(load)
        if w and w not in warnings:
            warnings.append(w)
    return {"format": FORMAT, "version": VERSION, "model": name,
            "input_shape": list(shape_of(input_shape)), "batch_sizes": list(batch_sizes),
            **({"inputs": input_shape.to_json()} if _other_inputs(input_shape) else {}),
            "machine": {"before": load_before, "after": load_after,
                        "reference_s": statistics.median(layer_references + run_references),
                        "layer_reference_s": layer_reference,
                        "run_reference_s": run_reference,
                        "torch_version": torch.__version__},
            "clock": "process CPU time (time.process_time), wall time beside it",
            "layers": layers, "runs": table_runs, "warnings": warnings,
            **({"augment": augment} if augment else {}),
            "forward_overhead": forward_overhead, "step_reference": step_reference}


def _time_layers(module, name, input_shape, batch_sizes, sweep: bool,
                 repeats: int) -> tuple[list[dict], list[dict]]:
    """One pass of the layer timings: the sweep's layers (`sweep`) and the model's at each
    batch size (rows), and the model's whole forward at each batch size
    ({batch_size, forward_cpu_s, operators, timed_operators})."""
    rows = [] if not sweep else measure_sweep(batch_sizes, repeats)
    forwards = []
    for b in batch_sizes:
        shape = at_batch(input_shape, b)
        graph = trace(module, shape, name)
        full = {r["name"]: r for r in profile(None, shape, update="all", graph=graph,
                                                tracing=EVAL_MODE,
                                                options=PYTORCH).evaluation.rows}
        x = shape.build() if isinstance(shape, ModelInputs) else \
            ((torch.randn(*shape, generator=torch.Generator().manual_seed(0)),), {})
        # the whole forward before and after its layers, so that a machine whose speed moves
        # while they are timed compares the layers with the forward at both ends (their
        # difference is what layerrun.measured_forward_element_s takes as the excess)
        wholes = [_whole_forward(module, x, repeats)]
        mine = measure_layers(module, graph, full, repeats=repeats, model_name=name)
        rows += mine
        wholes.append(_whole_forward(module, x, repeats))
        forwards.append({"batch_size": b, "forward_cpu_s": statistics.mean(wholes),
                         "operators": len(list(graph.ops())),
                         "timed_operators": sum(r["pass"] == "forward" for r in mine)})
    return rows, forwards


def _whole_forward(module, x, repeats: int) -> float:
    """The model's forward without gradients on `x` ((args, kwargs)), in eval mode as `train`
    runs it (BatchNorm on its running statistics, as its layers are timed alone)."""
    module.eval()
    args, kwargs = x
    with torch.no_grad():
        return time_call(lambda: module(*args, **kwargs), repeats=repeats,
                         min_repeat_s=0.02)["cpu_s"]


def _other_inputs(inputs) -> bool:
    """Inputs other than one float image (`--input`): ModelInputs beyond the shorthand."""
    return isinstance(inputs, ModelInputs) and not inputs.is_image_shorthand


def _augment_cost(input_shape, samples: int, repeats: int) -> dict | None:
    """One iteration's augmentation of `samples` image samples as the runner does it (all
    of them in one batch, planner.fisher.augment_images): {samples, elements per sample,
    cpu_s}; None for an input that is not an image (the runner augments no other)."""
    sample = tuple(int(s) for s in shape_of(input_shape)[1:])
    if _other_inputs(input_shape) or not augmented_elements(sample):
        return None
    x = torch.randn((samples,) + sample, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    t = time_call(lambda: augment_images(x, generator), repeats=repeats, min_repeat_s=0.02)
    return {"samples": int(samples), "elements": int(math.prod(sample)), "cpu_s": t["cpu_s"]}


def median_rows(passes: list[list[dict]]) -> list[dict]:
    """The rows of several passes of the same layer timings as one: each (model, layer,
    pass, batch size) at the median of its passes' CPU and wall seconds, its passes' CPU
    seconds kept (`cpu_s_passes`), `spread` the larger of its repeats' within a pass and its
    passes' (max - min) / median. A row some pass lacks keeps the passes that have it."""
    def key(r):
        return r["model"], r["layer"], r["pass"], r["batch_size"]

    seen: dict = {}
    for rows in passes:
        for r in rows:
            seen.setdefault(key(r), []).append(r)
    out = []
    for same in seen.values():
        cpu = [r["cpu_s"] for r in same]
        median = statistics.median(cpu)
        across = (max(cpu) - min(cpu)) / median if median > 0 else 0.0
        out.append(dict(same[0], cpu_s=median,
                        wall_s=statistics.median(r["wall_s"] for r in same),
                        spread=round(max([across] + [r["spread"] for r in same]), 4),
                        cpu_s_passes=cpu))
    return out


def _forward_overhead(forwards: tuple[dict, ...], rows: list[dict], name: str) -> dict:
    """The model's whole forward (no gradient), the median of its passes, beside the sum of
    its layers' forwards timed alone: what an operator pays inside the model beyond itself
    (the containers' Python around it), measured rather than fitted
    (layerrun.measured_op_s)."""
    b = forwards[0]["batch_size"]
    model_rows = [r for r in rows if r["batch_size"] == b and r["pass"] == "forward"
                  and r["model"] == name]
    return {"batch_size": int(b),
            "forward_cpu_s": statistics.median(f["forward_cpu_s"] for f in forwards),
            "layers_forward_cpu_s": sum(r["cpu_s"] for r in model_rows),
            "operators": forwards[0]["operators"],
            "timed_operators": forwards[0]["timed_operators"]}


def unsteady_runs(repeats_of: dict) -> list[str]:
    """Why the runs measured so far cannot be trusted yet: a run long enough to time whose
    repeats spread by more than RUN_SPREAD, or a configuration measured faster than one it
    contains (layerrun.out_of_order); [] when they can. `repeats_of`: {(batch size, update,
    iterations): [measured, ...]}."""
    medians = {cell: statistics.median(m["cpu_phases"]["train_s"] for m in ms)
               for cell, ms in repeats_of.items() if ms}
    why = []
    for (b, spec, iterations), ms in repeats_of.items():
        train = [m["cpu_phases"]["train_s"] for m in ms]
        median = medians.get((b, spec, iterations), 0.0)
        if len(train) > 1 and median >= SHORT_RUN_S and \
                (max(train) - min(train)) / median > RUN_SPREAD:
            why.append(f"{spec} b{b} x{iterations} spread by "
                       f"{100 * (max(train) - min(train)) / median:.0f} %")
    runs = [{"update": spec, "batch_size": b, "iterations": iterations,
             "measured": {"train_cpu_s": median}}
            for (b, spec, iterations), median in medians.items() if median >= SHORT_RUN_S]
    return why + out_of_order(runs)


def _run_round(model, name, input_shape, cells, runs: GridRuns, repeats_of: dict,
               say) -> None:
    """One measurement of every (batch size, update) whole run."""
    for b, spec, iterations in cells:
        shape = at_batch(input_shape, b)
        given = {"inputs": shape.to_json()} if _other_inputs(shape) else \
            {"input_shape": list(shape_of(shape))}
        kwargs = {"update": spec, "synthetic": True, "samples": runs.samples, "seed": runs.seed,
                  **given, "holdout": 0.0, "iterations": iterations, "batch_size": b}
        if runs.isolate and isinstance(model, str):  # cold, as a user's `ttplan train` runs
            measured = _isolated_run(model, kwargs)
        else:
            measured = train_flat({"model": resolve_model(model)[0], "model_name": name,
                                   **kwargs}).measured
        repeats_of[(b, spec, iterations)].append(measured)
        say(f"{name} {spec} b{b} x{iterations}: train "
            f"{measured['cpu_phases']['train_s']:.2f} s CPU, "
            f"{measured['phases']['train_s']:.2f} s wall")


def _run_summary(model, name, b, spec, input_shape, runs: GridRuns, iterations: int,
                 measured: list[dict]):
    """The run description of one (batch size, update) with the median of its repeats
    (process CPU time per phase; wall train time), every repeat's train CPU seconds and speed
    reference, and the spread (max - min) / median of the train CPU seconds."""
    shape = shape_of(at_batch(input_shape, b))
    fresh, _ = resolve_model(model)
    graph = trace(fresh, at_batch(input_shape, 1), name)
    updates_map = resolve_updates(parse_update(spec), graph)
    desc = run_description(fresh, updates_map, shape, iterations=iterations,
                           samples=runs.samples, graph=graph)
    cpu = {k: statistics.median(m["cpu_phases"][k] for m in measured)
           for k in measured[0]["cpu_phases"]}
    train = [m["cpu_phases"]["train_s"] for m in measured]
    joules = [m["energy_j"] for m in measured if m.get("energy_j") is not None]
    summary = {"train_cpu_s": cpu["train_s"], "repeats": train,
               "spread": (max(train) - min(train)) / statistics.median(train)
               if statistics.median(train) > 0 else 0.0}
    desc.update(model=name, update=spec, measured={
        **{f"{k[:-2]}_cpu_s": cpu[k] for k in cpu},
        "train_cpu_s": cpu["train_s"],
        "train_wall_s": statistics.median(m["phases"]["train_s"] for m in measured),
        "energy_j": statistics.median(joules) if len(joules) == len(measured) else None,
        "train_cpu_s_repeats": train, "train_cpu_spread": summary["spread"],
        "reference_s_repeats": [m.get("reference_s") for m in measured],
        "first_steps_excess_cpu_s": _median_or_none(
            [m.get("first_steps_excess_cpu_s") for m in measured])})
    return desc, summary


def _median_or_none(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _isolated_run(model: str, kwargs: dict) -> dict:
    """`train(model, **kwargs).measured` in a fresh Python process."""
    code = ("import json, sys; from ttplan.devices.runner import train_flat; "
            "a = json.loads(sys.stdin.read()); "
            "r = train_flat(a); "
            "print(json.dumps({k: r.measured[k] for k in ('phases', 'cpu_phases', 'energy_j', 'reference_s', "
            "'first_steps_excess_cpu_s')}))")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps({"model": model, **kwargs}),
                          capture_output=True, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpecError(f"the table run {kwargs['update']} b{kwargs['batch_size']} of {model} "
                        f"failed: {last}") from None


