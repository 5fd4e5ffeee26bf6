"""Measuring a layer table (devices.layerrun describes it): the layers alone, then short whole
runs of `train` for the overheads. Apart from layerrun because it runs `devices.runner`, which
predicts through the calibrations layerrun's fit feeds."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch

from ttplan.costmodel.config import resolve_updates
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import EVAL_MODE, profile, resolve_model
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace

from .layerrun import FORMAT, SHORT_RUN_S, TABLE_UPDATES, VERSION, measure_sweep, run_description
from .layertable import busy_warning, machine_load, measure_layers, speed_reference
from .grid import GridRuns
from .runner import train_flat


TABLE_RUNS = GridRuns(iterations=2)


def measure_table(model, *, input_shape, runs: GridRuns = TABLE_RUNS, updates=TABLE_UPDATES,
                  repeats: int = 5, sweep: bool = True,
                  report: Callable[[str], None] | None = None) -> dict:
    """The layer table of `model` (module docstring): `runs` the whole runs measured beside
    the layer timings (batch sizes, samples, iterations, seed; `isolate`: each in a fresh
    Python process (a zoo name or import path), cold as a user's `ttplan train` is; otherwise
    in this process, after the layer timings warmed it). `sweep`: add the generic layers of
    `kind_sweep()` (rows of model "kind-sweep"), so kinds the model lacks are measured too."""
    batch_sizes, samples, iterations = runs.batch_sizes, runs.samples, runs.iterations
    seed, isolate = runs.seed, runs.isolate
    say = report or (lambda line: None)
    module, name = resolve_model(model)
    load_before = machine_load()
    reference_before = speed_reference()
    warnings = []
    layers, runs = ([] if not sweep else measure_sweep(batch_sizes, repeats)), []
    for b in batch_sizes:
        shape = (b,) + tuple(input_shape[1:])
        graph = trace(module, shape, name)
        full = {r["name"]: r for r in profile(None, shape, update="all", graph=graph,
                                                tracing=EVAL_MODE,
                                                options=PYTORCH).evaluation.rows}
        rows = measure_layers(module, graph, full, repeats=repeats, model_name=name)
        layers += rows
        noisy = [r for r in rows if r["spread"] > 0.5]
        say(f"{name} b{b}: {len(rows)} layer passes timed"
            + (f", {len(noisy)} with spread > 50 %" if noisy else ""))
        if len(noisy) > len(rows) / 10:
            warnings.append(f"{name} b{b}: {len(noisy)} of {len(rows)} layer timings spread by "
                            "more than 50 % between repeats: the machine was busy")
    for b in batch_sizes:
        if b > samples:
            continue
        shape = (b,) + tuple(input_shape[1:])
        for spec in updates:
            kwargs = {"update": spec, "synthetic": True, "samples": samples, "seed": seed,
                      "input_shape": list(shape), "holdout": 0.0, "iterations": iterations,
                      "batch_size": b}
            if isolate and isinstance(model, str):  # cold, as a user's `ttplan train` runs
                measured = _isolated_run(model, kwargs)
            else:
                measured = train_flat({"model": resolve_model(model)[0], "model_name": name,
                                       **kwargs}).measured
            fresh, _ = resolve_model(model)
            graph = trace(fresh, (1,) + tuple(shape[1:]), name)
            updates_map = resolve_updates(parse_update(spec), graph)
            desc = run_description(fresh, updates_map, shape, iterations=iterations,
                                   samples=samples, graph=graph)
            cpu, wall = measured["cpu_phases"], measured["phases"]
            desc.update(model=name, update=spec, measured={
                **{f"{k[:-2]}_cpu_s": cpu[k] for k in cpu},
                "train_cpu_s": cpu["train_s"], "train_wall_s": wall["train_s"],
                "energy_j": measured["energy_j"]})
            if cpu["train_s"] < SHORT_RUN_S:
                warnings.append(f"{name} {spec} b{b}: train took {cpu['train_s']:.3f} s of CPU, "
                                "too short to time well: give more --iterations")
            runs.append(desc)
            say(f"{name} {spec} b{b}: train {cpu['train_s']:.2f} s CPU, "
                f"{wall['train_s']:.2f} s wall")
    load_after = machine_load()
    reference = statistics.median([reference_before, speed_reference()])
    for load in (load_before, load_after):
        w = busy_warning(load)
        if w and w not in warnings:
            warnings.append(w)
    return {"format": FORMAT, "version": VERSION, "model": name,
            "input_shape": list(input_shape), "batch_sizes": list(batch_sizes),
            "machine": {"before": load_before, "after": load_after, "reference_s": reference,
                        "torch_version": torch.__version__},
            "clock": "process CPU time (time.process_time), wall time beside it",
            "layers": layers, "runs": runs, "warnings": warnings}


def _isolated_run(model: str, kwargs: dict) -> dict:
    """`train(model, **kwargs).measured` in a fresh Python process."""
    code = ("import json, sys; from ttplan.devices.runner import train_flat; "
            "a = json.loads(sys.stdin.read()); "
            "r = train_flat(a); "
            "print(json.dumps({k: r.measured[k] for k in ('phases', 'cpu_phases', 'energy_j')}))")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps({"model": model, **kwargs}),
                          capture_output=True, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpecError(f"the table run {kwargs['update']} b{kwargs['batch_size']} of {model} "
                        f"failed: {last}") from None


