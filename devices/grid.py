"""`measure(...)`: a bounded grid of training runs on this machine, one log row each.

The grid, in this fixed order (cheapest update first within each batch size, so that a short
time limit still covers the range of update depths at batch 1):

    for batch size in 1, 4, 16 (or the ones asked for):
        none, bias-only, last-layers:1, last-blocks:1, tinytrain (Fisher probe + plan on the
        device, compute budget 15 %: channel-sparse layers), last-blocks:2, last-blocks:4, all

(bias-only: what `predict` is asked about must be in the grid, or a fit cannot tell weight
gradients from the rest; issue 16 found it predicted equal to `all`.)

Configurations the model or the samples cannot take (more blocks than the model has, a batch
larger than the samples) are skipped. Every run uses synthetic samples (`samples`, `seed`) and
no held-out queries. By default each run is a fresh Python process, so that its peak resident
memory and its load time are its own; that pays for importing torch every time (seconds on a
PC, more on a Pi). `isolate=False` runs them all in this process, restarting the peak before
each (Linux, `devices.host.reset_peak_rss`); memory an earlier run left resident (allocator
and kernel caches: about 85 MB after a batch-16 FullTrain of MCUNet, measured on this machine)
then counts in the later runs' peaks.

Time: before each run the remaining time is shared equally among the configurations left; the
run gets as many iterations (at most `max_iterations`, at least 1) as its share holds after its
fixed overhead (process start, load, trace, prediction: the largest seen so far). Seconds per
iteration are predicted from the last run's seconds per MAC of work (per pass: a no-gradient
forward of every sample for the prototypes, then a forward and backward of every sample, MACs
from the cost model), doubled for safety. The first run has one iteration. A run that would not
fit the time left is not started. An isolated run that overruns the deadline is stopped and not
logged; an in-process one cannot be stopped: it is logged, and the grid ends.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ttplan.costmodel.config import mac_blocks
from ttplan.costmodel.errors import SpecError, TtplanError
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import profile, resolve_model
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE
from ttplan.costmodel.specs import parse_duration  # one duration grammar: --time, --time-limit
from ttplan.costmodel.trace import trace

from .logs import append_log_row, check_log_target
from .runner import DEFAULT_ITERATIONS, train_flat

GRID_UPDATES = ("none", "bias-only", "last-layers:1", "last-blocks:1", "tinytrain",
                "last-blocks:2", "last-blocks:4", "all")
GRID_BATCH_SIZES = (1, 4, 16)
TINYTRAIN_COMPUTE = 0.15
DEFAULT_SAMPLES = 25
SAFETY = 2.0  # predicted seconds per iteration are doubled before sharing the time left

@dataclass(frozen=True)
class Configuration:
    update: str  # an update spec, or "tinytrain"
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.update} b{self.batch_size}"


def grid_configurations(graph, samples: int,
                        batch_sizes: tuple[int, ...] = GRID_BATCH_SIZES) -> list[Configuration]:
    """The grid in its fixed order, without what this model or sample count cannot run."""
    blocks = len(mac_blocks(graph))
    out = []
    for batch_size in batch_sizes:
        if batch_size > samples:
            continue
        for update in GRID_UPDATES:
            if update.startswith("last-blocks:") and int(update.split(":")[1]) > blocks:
                continue
            out.append(Configuration(update, batch_size))
    return out


@dataclass(frozen=True)
class GridRuns:
    """The runs of a measurement grid, checked when built: `batch_sizes` in the order to run
    them, `samples` synthetic support samples (at least 2), `iterations` per run (the grid
    runs at most this many, to fit its time limit), `seed`, and `isolate`: each run in a
    fresh Python process (module docstring)."""

    batch_sizes: tuple = GRID_BATCH_SIZES
    samples: int = DEFAULT_SAMPLES
    iterations: int = DEFAULT_ITERATIONS
    seed: int = 0
    isolate: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or \
                self.iterations < 1:
            raise SpecError(f"iterations must be a positive integer, not {self.iterations!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or \
                self.samples < 2:
            raise SpecError(f"samples must be an integer of at least 2, not {self.samples!r}")
        batch_sizes = tuple(self.batch_sizes)
        if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1
                                  for b in batch_sizes):
            raise SpecError(f"batch sizes must be positive integers, not {list(batch_sizes)!r}")
        object.__setattr__(self, "batch_sizes", batch_sizes)


def measure(model: str, *, time_limit_s: float, log, runs: GridRuns | None = None,
            input_shape=None, device_name: str = "host",
            report: Callable[[str], None] | None = None) -> list[dict]:
    """Run the grid (`runs`) within `time_limit_s` seconds, appending one row per run to
    `log`.

    `model`: zoo name or import path (an nn.Module always runs in this process).
    Returns the rows appended. `report` receives one line per configuration.
    """
    check_log_target(log)  # a foreign file is refused before any run, not after the first
    deadline = time.perf_counter() + time_limit_s
    runs = runs if runs is not None else GridRuns()
    samples, seed, max_iterations = runs.samples, runs.seed, runs.iterations
    batch_sizes, isolate = runs.batch_sizes, runs.isolate and isinstance(model, str)
    shape = tuple(input_shape or DEFAULT_INPUT_SHAPE)
    module, name = resolve_model(model)
    graph = trace(module, (1,) + tuple(shape[1:]), name)
    configurations = grid_configurations(graph, samples, batch_sizes)
    if not configurations:
        raise SpecError(f"no grid configuration fits {samples} samples at batch sizes "
                        f"{', '.join(map(str, batch_sizes))}")
    work = {c: _work_macs(module, graph, c, samples) for c in configurations}
    say = report or (lambda line: None)

    rows: list[dict] = []
    seconds_per_mac = None
    overhead_s = 0.0
    for i, config in enumerate(configurations):
        remaining = deadline - time.perf_counter()
        if seconds_per_mac is None:
            iterations, needed = 1, 0.0
        else:
            per_iteration = SAFETY * seconds_per_mac * work[config]["iteration"]
            setup = overhead_s + SAFETY * seconds_per_mac * work[config]["setup"]
            share = remaining / (len(configurations) - i)
            iterations = max(1, min(max_iterations, math.floor((share - setup) / per_iteration)))
            needed = setup + per_iteration
        if remaining <= 0 or needed > remaining:
            say(f"time limit reached: {len(rows)} of {len(configurations)} configurations run")
            break
        kwargs = {"model": model if isolate else _fresh(model), "seed": seed,
                  "samples": samples, "synthetic": True,
                  "input_shape": [config.batch_size] + list(shape[1:]), "holdout": 0.0,
                  "iterations": iterations, "batch_size": config.batch_size,
                  "device_name": device_name}
        if config.update == "tinytrain":
            kwargs.update(method="tinytrain", compute=TINYTRAIN_COMPUTE)
        else:
            kwargs["update"] = config.update
        started = time.perf_counter()
        row = _run_isolated(kwargs, remaining) if isolate else \
            train_flat({**kwargs, "own_peak_rss": True}).log_row()
        wall_s = time.perf_counter() - started
        if row is None:
            say(f"{config.label}: stopped at the time limit (not logged)")
            break
        append_log_row(log, row)
        rows.append(row)
        seconds_per_mac = row["train_s"] / (iterations * work[config]["iteration"])
        overhead_s = max(overhead_s, wall_s - row["train_s"] - row["fisher_s"])
        say(f"[{i + 1}/{len(configurations)}] {config.label}: {iterations} iteration(s), "
            f"train {row['train_s']:.2f} s, run {wall_s:.1f} s")
    return rows


def _fresh(model):
    """Every in-process run starts from the model as given, not from the last run's result."""
    return copy.deepcopy(model) if isinstance(model, nn.Module) else model


def _work_macs(module, graph, config: Configuration, samples: int) -> dict:
    """MACs of one pass (prototypes + training steps) and of the on-device setup."""
    shape = graph.input_shape
    options = PYTORCH
    full = profile(module, shape, update="all", options=options, graph=graph).totals
    forward = full["forward_macs"]
    if config.update == "tinytrain":
        backward = TINYTRAIN_COMPUTE * full["backward_macs"]
        setup = samples * (forward + full["backward_macs"])  # the probe's forward + backward
    else:
        costs = profile(module, shape, update=config.update, options=options, graph=graph)
        backward, setup = costs.totals["backward_macs"], 0.0
    # Per pass: prototypes (a forward of every sample) + a forward and backward of each.
    return {"iteration": max(1.0, samples * (2 * forward + backward)), "setup": setup}


def _run_isolated(kwargs: dict, timeout_s: float) -> dict | None:
    """One `train(...)` in a fresh Python process; its log row, or None past the timeout."""
    command = [sys.executable, "-c", "from ttplan.devices.grid import _child_main; _child_main()"]
    try:
        done = subprocess.run(command, input=json.dumps(kwargs), capture_output=True, text=True,
                              timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        return None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpecError(f"the training run {kwargs.get('update') or kwargs.get('method')} "
                        f"b{kwargs['batch_size']} failed: {last}") from None
    if "error" in answer:
        raise SpecError(answer["error"])
    return answer["row"]


def _child_main() -> None:
    """Entry point of an isolated run: kwargs as JSON on stdin, {"row": ...} on stdout."""
    kwargs = json.loads(sys.stdin.read())
    try:
        row = train_flat(kwargs).log_row()
        answer = {"row": row}
    except TtplanError as exc:
        answer = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    sys.stdout.write(json.dumps(answer) + "\n")


__all__ = ["measure", "GridRuns", "parse_duration", "grid_configurations", "Configuration",
           "GRID_UPDATES", "GRID_BATCH_SIZES"]
