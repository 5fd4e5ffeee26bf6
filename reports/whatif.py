"""What-if maps: plan every cell of a memory x compute grid and record what each budget buys.

The model is traced and scored once (`planner.context.PlanningContext`); each cell is one
selection. Memory values are log-spaced, compute values linear (`LOW:HIGH:STEPS`). With the
exact solver a cell's plan is never worse than its smaller neighbours' (each fits the larger
budget, so it is handed to the solver as the incumbent): captured Fisher is non-decreasing
along both axes by construction. The greedy solver is recorded as it is (Algorithm 1 is not
monotone in its budgets).

Per cell (`WHATIF_FIELDS`): method, the two budgets, feasible, layers (updated: weight or
bias) and channels (weight channels updated, along each layer's own channel axis),
fisher_fraction (captured Fisher potential / the probe's total, 0..1), backward_macs and
peak_bytes of the plan, and time_s / energy_j / fits_ram from a device predictor (None
without one, see `reports.predict`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from fractions import Fraction

import matplotlib
from tqdm import tqdm

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import ComputeBudget, parse_bytes, parse_compute
from ttplan.planner.context import CONTEXT_METHODS, PlanningContext
from ttplan.planner.selection.select import Budget

from .figures import (COLUMN_WIDTH_IN, MIN_FONT_PT, TEXT_WIDTH_IN, figure_bytes, new_figure,
                      percent_label, styled)
from .predict import for_model, predict

WHATIF_FIELDS = ("method", "memory_bytes", "compute_macs", "compute_fraction", "feasible",
                 "layers", "channels", "fisher_fraction", "backward_macs", "peak_bytes",
                 "time_s", "energy_j", "fits_ram")
MAX_STEPS = 100
# The grid `ttplan whatif` maps by default (LOW:HIGH:STEPS; memory log-spaced).
DEFAULT_MEMORY_RANGE, DEFAULT_COMPUTE_RANGE = "128KB:2MB:12", "2%:60%:12"
_GREY_WHERE_INFEASIBLE = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")


def parse_range(text: str, what: str) -> list:
    """'LOW:HIGH:STEPS' → STEPS values. memory: bytes, log-spaced; compute: fractions
    (percentages) or MACs, linearly spaced. A one-line SpecError for anything else."""
    parts = text.split(":")
    usage = f"invalid --{what} range {text!r}: use LOW:HIGH:STEPS, e.g. " + \
        (DEFAULT_MEMORY_RANGE if what == "memory" else DEFAULT_COMPUTE_RANGE)
    if len(parts) != 3 or not re.fullmatch(r"\s*\d+\s*", parts[2]):
        raise SpecError(usage)
    steps = int(parts[2])
    if what == "memory":
        low, high = parse_bytes(parts[0]), parse_bytes(parts[1])
    else:
        low, high = parse_compute(parts[0]), parse_compute(parts[1])
        if (low.fraction is None) != (high.fraction is None):
            raise SpecError(f"invalid --compute range {text!r}: give both ends as percentages "
                            "or both as MACs")
        low, high = (low.fraction, high.fraction) if low.fraction is not None \
            else (low.macs, high.macs)
    if not 1 <= steps <= MAX_STEPS or (steps == 1 and low != high) or (steps > 1 and low >= high):
        raise SpecError(f"{usage} (LOW < HIGH and 2 <= STEPS <= {MAX_STEPS}, or LOW:LOW:1)")
    if steps == 1:
        return [low]
    if what == "memory":
        return [round(low * (high / low) ** (k / (steps - 1))) for k in range(steps)]
    if isinstance(low, float):  # fractions: exact decimal steps, so 2%..60% gives 2%, ... 60%
        lo, hi = Fraction(repr(low)), Fraction(repr(high))
        return [float(lo + (hi - lo) * k / (steps - 1)) for k in range(steps)]
    return [low + (high - low) * k // (steps - 1) for k in range(steps)]


def parse_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in CONTEXT_METHODS]
    if unknown or not methods:
        raise SpecError(f"unknown method {unknown[0] if unknown else text!r}: use a comma-separated "
                        f"list of {', '.join(CONTEXT_METHODS)}")
    return tuple(dict.fromkeys(methods))


def run_whatif(context: PlanningContext, memory_values, compute_values, *,
               methods=("tinytrain",), solver: str = "greedy", predictor=None,
               progress: bool = False) -> list[dict]:
    """One cell per (method, memory, compute), memory-major, both axes ascending."""
    if solver not in ("greedy", "exact"):
        raise SpecError(f"unknown solver {solver!r}: use greedy or exact")
    predictor = for_model(predictor, context.module)
    memory_values = sorted(memory_values)
    compute_values = sorted(compute_values)
    cells = []
    total = len(methods) * len(memory_values) * len(compute_values)
    with tqdm(total=total, disable=not progress, file=sys.stderr, desc="whatif",
              unit="cell") as bar:
        for method in methods:
            chosen: dict[tuple[int, int], object] = {}
            for i, memory in enumerate(memory_values):
                for j, compute in enumerate(compute_values):
                    macs, fraction = _compute_macs(compute, context.full_backward_macs)
                    budget = Budget(memory, macs)
                    incumbent = _best(chosen.get((i - 1, j)), chosen.get((i, j - 1)))
                    selection = context.select(method, budget, solver, incumbent)
                    chosen[(i, j)] = selection
                    cells.append(_cell(context, method, memory, macs, fraction, selection,
                                       predictor))
                    bar.update(1)
    return cells


def _best(a, b):
    if a is None or b is None:
        return a or b
    return a if a.fisher_captured >= b.fisher_captured else b


def _compute_macs(value, full_macs: int) -> tuple[int, float | None]:
    if isinstance(value, float):
        return ComputeBudget(fraction=value).resolve(full_macs), value
    return int(value), None


def _cell(context, method, memory, macs, fraction, selection, predictor) -> dict:
    cell = {"method": method, "memory_bytes": memory, "compute_macs": macs,
            "compute_fraction": fraction, "feasible": selection is not None}
    if selection is None:
        cell.update(layers=0, channels=0, fisher_fraction=None, backward_macs=None,
                    peak_bytes=None, time_s=None, energy_j=None, fits_ram=None)
        return cell
    ev = selection.evaluation
    fraction_captured = context.fisher_fraction(selection.updates)
    cell.update(layers=len(selection.updates), channels=context.channels_updated(selection.updates),
                fisher_fraction=None if fraction_captured is None else round(fraction_captured, 6),
                backward_macs=ev.totals["backward_macs"], peak_bytes=ev.memory.peak_bytes,
                **predict(predictor, method, context.graph, selection.updates, context.options))
    return cell


def pareto(cells: list[dict]) -> list[dict]:
    """Feasible cells no other cell of the same method beats: at most the peak memory and
    backward MACs and at least the captured Fisher, better in one (distinct plans only)."""
    front = []
    points = {}
    for c in cells:
        if c["feasible"] and c["fisher_fraction"] is not None:
            key = (c["method"], c["peak_bytes"], c["backward_macs"], c["fisher_fraction"])
            points.setdefault(key, c)
    for key, c in points.items():
        method, peak, macs, fisher = key
        dominated = any(m == method and p <= peak and b <= macs and f >= fisher
                        and (p, b, f) != (peak, macs, fisher) for m, p, b, f in points)
        if not dominated:
            front.append({"method": method, "peak_bytes": peak, "backward_macs": macs,
                          "fisher_fraction": fisher})
    return sorted(front, key=lambda p: (p["method"], p["peak_bytes"], p["backward_macs"]))


# ---------------------------------------------------------------------------- data out

def render_whatif(data: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=WHATIF_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(data["cells"])
        return buffer.getvalue()
    if fmt == "table":
        return whatif_text(data)
    raise SpecError(f"unknown --format {fmt!r}: use table, csv or json")


def whatif_text(data: dict) -> str:
    """Per method, a grid of captured Fisher (percent), memory down, compute across."""
    lines = []
    for method in dict.fromkeys(c["method"] for c in data["cells"]):
        mine = [c for c in data["cells"] if c["method"] == method]
        memories = list(dict.fromkeys(c["memory_bytes"] for c in mine))
        computes = list(dict.fromkeys(c["compute_macs"] for c in mine))
        by = {(c["memory_bytes"], c["compute_macs"]): c for c in mine}
        heads = [compute_label(by[(memories[0], m)]) for m in computes]
        width = max(7, *(len(h) for h in heads))
        lines.append(f"{method}: captured Fisher potential (memory down, compute across; "
                     "'-' = nothing fits)")
        lines.append("memory".rjust(10) + "".join(h.rjust(width + 1) for h in heads))
        for memory in memories:
            row = [percent_label(by[(memory, m)]["fisher_fraction"])
                   if by[(memory, m)]["feasible"] else "-" for m in computes]
            lines.append(bytes_label(memory).rjust(10) + "".join(v.rjust(width + 1) for v in row))
        lines.append("")
    return "\n".join(lines)


def bytes_label(n: int) -> str:
    for unit, size in (("MB", 1000**2), ("kB", 1000)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n}B"


def compute_label(cell: dict) -> str:
    if cell["compute_fraction"] is not None:
        return f"{100 * cell['compute_fraction']:.3g}%"
    return f"{cell['compute_macs'] / 1e6:.3g}M"


# ---------------------------------------------------------------------------- figures

@styled
def plot_heatmaps(data: dict, fmt: str = "png") -> bytes:
    """Captured Fisher (%) per cell for each method, and predicted time when there is one."""
    cells = data["cells"]
    methods = list(dict.fromkeys(c["method"] for c in cells))
    timed = any(c["time_s"] is not None for c in cells)
    panels = [(m, "fisher_fraction") for m in methods] + \
        ([(m, "time_s") for m in methods] if timed else [])
    ncols = 1 if len(panels) == 1 else 2  # two panels across the text width, then more rows
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(COLUMN_WIDTH_IN if ncols == 1 else TEXT_WIDTH_IN, 3.4 * nrows,
                           ncols=ncols, nrows=nrows)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (method, field) in zip(flat, panels):
        mine = [c for c in cells if c["method"] == method]
        memories = list(dict.fromkeys(c["memory_bytes"] for c in mine))
        computes = list(dict.fromkeys(c["compute_macs"] for c in mine))
        by = {(c["memory_bytes"], c["compute_macs"]): c for c in mine}
        scale = 100 if field == "fisher_fraction" else 1
        grid = [[math.nan if by[(m, k)][field] is None else scale * by[(m, k)][field]
                 for k in computes] for m in memories]
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap=_GREY_WHERE_INFEASIBLE)
        # a label per cell while a cell is wide enough for "100" at MIN_FONT_PT (two panels
        # across the text width leave ~190 pt per panel: 8 columns); else the colour bar says
        if len(computes) <= 8 and len(memories) <= 16:
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    text = "-" if math.isnan(value) else (f"{value:.0f}" if field ==
                                                            "fisher_fraction" else f"{value:.3g}")
                    ax.text(j, i, text, ha="center", va="center", fontsize=MIN_FONT_PT,
                            color="white" if not math.isnan(value) else "black")
        ax.set_xticks(range(len(computes)))
        ax.set_xticklabels([compute_label(by[(memories[0], k)]) for k in computes],
                           rotation=60)
        ax.set_yticks(range(len(memories)))
        ax.set_yticklabels([bytes_label(m) for m in memories])
        ax.set_xlabel("compute budget (backward MACs)")
        ax.set_ylabel("memory budget (peak)")
        ax.grid(False)
        what = "captured Fisher (%)" if field == "fisher_fraction" else "predicted time (s)"
        ax.set_title(f"{method}: {what}")
        fig.colorbar(image, ax=ax, shrink=0.8, label=what)
    fig.tight_layout()
    return figure_bytes(fig, fmt)


@styled
def plot_pareto(data: dict, fmt: str = "png") -> bytes:
    """Captured Fisher against the plans' peak memory and backward MACs; frontier joined."""
    fig, axes = new_figure(TEXT_WIDTH_IN, 3.0, ncols=2)
    feasible = [c for c in data["cells"] if c["feasible"] and c["fisher_fraction"] is not None]
    for method in dict.fromkeys(c["method"] for c in data["cells"]):
        mine = [c for c in feasible if c["method"] == method]
        front = [p for p in data["pareto"] if p["method"] == method]
        for ax, key, scale in ((axes[0][0], "peak_bytes", 2**-10), (axes[0][1], "backward_macs", 1e-6)):
            line = ax.scatter([c[key] * scale for c in mine],
                              [100 * c["fisher_fraction"] for c in mine], s=10, alpha=0.35)
            ordered = sorted(front, key=lambda p: p[key])
            best, xs, ys = -1.0, [], []
            for p in ordered:  # the frontier along this one axis: running maximum
                if p["fisher_fraction"] > best:
                    best = p["fisher_fraction"]
                    xs.append(p[key] * scale)
                    ys.append(100 * best)
            ax.step(xs, ys, where="post", color=line.get_facecolor()[0], label=method)
    axes[0][0].set_xlabel("peak memory of the plan (KiB)")
    axes[0][1].set_xlabel("backward MACs of the plan (M)")
    for ax in axes[0]:
        ax.set_ylabel("captured Fisher potential (%)")
    axes[0][0].legend(loc="lower right")  # one legend: the same methods in both panels
    fig.suptitle("Pareto frontier: captured Fisher against memory and compute")
    fig.tight_layout()
    return figure_bytes(fig, fmt)


def whatif_data(context: PlanningContext, cells: list[dict], solver: str) -> dict:
    return {"model": context.model_name, "input_shape": list(context.input_shape),
            "convention": context.options.convention, "solver": solver,
            "full_backward_macs": context.full_backward_macs,
            "total_fisher_potential": context.total_potential,
            "cells": cells, "pareto": pareto(cells)}
