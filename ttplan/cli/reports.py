"""The report commands: `ttplan table2`, `ttplan whatif`, `ttplan layers`, `ttplan report`.

`whatif` and `report` take `--device` (with `--iterations`, `--samples`, as `plan` and
`compare` take them): device time, energy and fit in RAM through `ttplan.device_predictor`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

# Only modules that import neither torch nor pandas at the top: the rest is imported inside
# the command that needs it, so `--help` and usage errors stay fast.
from ttplan.io import write_bytes_atomic
from ttplan.specs import parse_input_shape

from .common import emit, note, run_safely, table_width, tell
from .options import option_groups
from .options_device import DevicePrediction
from .options_model import DEFAULT_INPUT_SHAPE, InputShape, Inputs, ModelArg
from .options_output import ReportOutput, ReportTableOutput, Table2Output, WhatifOutput
from .options_plan import (FisherProbe, Optimizer, PaperBudgets, PaperCostChoices, ReportAxes,
                           Solver, WhatifGrid)


def _write_figure(path: Optional[str], draw) -> None:
    from ttplan.render import figure_format

    if path:
        write_bytes_atomic(path, draw(figure_format(path)))
        tell(f"wrote {path}")


def _format(fmt: Optional[str], out: Optional[str], allowed, default: str) -> str:
    """--format as given (checked while the command line was read), else from --out's
    suffix when it is one of `allowed` (.tex: latex), else `default`."""
    if fmt is None:
        suffix = Path(out).suffix.lower().lstrip(".") if out else ""
        fmt = {"tex": "latex"}.get(suffix, suffix) if suffix in (*allowed, "tex") else default
    return fmt


@run_safely
@option_groups
def table2(
    limits: PaperBudgets,
    output: Table2Output,
    models: Optional[List[str]] = typer.Argument(
        None, help="zoo names or module:callable (default: the three zoo models)"),
    fisher: Optional[str] = typer.Option(None, help="Fisher file (one model only)"),
    fisher_dir: Optional[str] = typer.Option(None, help="folder of <model>.json Fisher files"),
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    optimizer: Optimizer = "momentum",
    plot: Optional[str] = typer.Option(None, help="Figure-1-style chart (.png, .svg or .pdf)"),
):
    """The paper's Table 2: every method's memory and backward MACs, beside the paper's.

    The paper's printed figures stand beside ttplan's for the zoo models; md and latex
    print the paper's compact layout, csv and json every column."""
    from ttplan import table2_report
    from ttplan.render import plot_table2, render_table2

    out = output.out
    fmt = _format(output.fmt, out, ("table", "md", "csv", "json", "latex"), "table")
    data = table2_report(models, fisher=fisher, fisher_dir=fisher_dir,
                         input_shape=parse_input_shape(input_shape), budgets=limits.budgets(),
                         optimizer=optimizer, log=note)
    _write_figure(plot, lambda f: plot_table2(data["rows"], f))
    emit(render_table2(data, fmt, table_width(), output.wide), out)


@run_safely
@option_groups
def whatif(
    model: ModelArg,
    grid: WhatifGrid,
    inputs: Inputs,
    costs: PaperCostChoices,
    on: DevicePrediction,
    output: WhatifOutput,
    fisher: FisherProbe = None,
):
    """Plan every cell of a memory x compute grid: what each budget buys."""
    from ttplan import PlanSearch, WhatifAxes
    from ttplan import whatif as plan_grid
    from ttplan.render import plot_heatmaps, plot_pareto, render_whatif

    out = output.out
    fmt = _format(output.fmt, out, ("table", "csv", "json"), "table")
    axes = WhatifAxes(grid.memory, grid.compute, grid.method)
    shape = inputs.resolve(DEFAULT_INPUT_SHAPE)
    predictor = on.predictor()
    search = PlanSearch(grid.solver, grid.channels)
    show = sys.stderr.isatty() if output.progress is None else output.progress
    result = plan_grid(model, axes=axes, search=search, fisher=fisher, inputs=shape,
                       options=costs.options(), predictor=predictor, progress=show)
    for text in result.notes:
        note(text)
    data = result.data
    _write_figure(output.plot, lambda f: plot_heatmaps(data, f))
    _write_figure(output.pareto_plot, lambda f: plot_pareto(data, f))
    emit(render_whatif(data, fmt), out)


@run_safely
@option_groups
def layers(
    model: ModelArg,
    inputs: Inputs,
    output: ReportTableOutput,
    fisher: FisherProbe = None,
    policy: Optional[str] = typer.Option(None, help="policy JSON: highlight its layers"),
    plot: Optional[str] = typer.Option(None, help="Figure-3-style chart (.png, .svg or .pdf)"),
):
    """Per candidate layer: memory, backward MACs, Fisher potential and s_i (Figure 3 style)."""
    from ttplan import layer_report
    from ttplan.render import plot_layers, render_layers

    fmt = _format(output.fmt, output.out, ("table", "csv", "json"), "table")
    found = layer_report(model, fisher=fisher, inputs=inputs.resolve(DEFAULT_INPUT_SHAPE),
                         policy=policy)
    for text in found.notes:
        note(text)
    rows = found.rows
    _write_figure(plot, lambda f: plot_layers(rows, f"{found.model_name}: per-layer cost and "
                                              "value", f))
    emit(render_layers(rows, fmt, None if output.wide else table_width()), output.out)


@run_safely
@option_groups
def report(
    model: ModelArg,
    limits: PaperBudgets,
    axes: ReportAxes,
    on: DevicePrediction,
    output: ReportOutput,
    fisher: FisherProbe = None,
    solver: Solver = "greedy",
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
):
    """One self-contained report: profile, plan and why, Table 2, what-if maps, layers."""
    from ttplan import WhatifAxes, build_report
    from ttplan.render import render_html, write_markdown

    whatif_axes = WhatifAxes(axes.whatif_memory, axes.whatif_compute)  # checked before any work
    predictor = on.predictor()
    built = build_report(model, fisher=fisher, budgets=limits.budgets(), solver=solver,
                         input_shape=parse_input_shape(input_shape), whatif=whatif_axes,
                         predictor=predictor, log=note)
    out = output.out
    if output.fmt == "md":
        names = write_markdown(built, out)
        tell(f"wrote {out}/ ({', '.join(names)})")
    else:
        emit(render_html(built), out)
