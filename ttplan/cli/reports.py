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
from ttplan.specs import SpecError, parse_bytes, parse_compute, parse_input_shape

from .common import emit, note, run_safely, table_width, tell
from .options import (DEFAULT_INPUT_SHAPE, DevicePrediction, FisherProbe, Inputs, InputShape,
                      ModelArg, Optimizer, PaperBudgets, PaperCostChoices, ReportAxes,
                      ReportOutput, ReportTableOutput, Solver, Table2Output, WhatifGrid,
                      WhatifOutput, option_groups)


def _write_figure(path: Optional[str], draw) -> None:
    from ttplan.render import figure_format

    if path:
        write_bytes_atomic(path, draw(figure_format(path)))
        tell(f"wrote {path}")


def _fisher_or_probe(fisher: Optional[str], module, name: str, shape):
    from ttplan import PROBE_SAMPLES, PROBE_SEED, infer_vocab, synthetic_fisher
    from ttplan.specs import ModelInputs

    if fisher is not None:
        return fisher
    note(f"{name}: no Fisher file given; using the synthetic probe "
               f"({PROBE_SAMPLES} samples, seed {PROBE_SEED})")
    if isinstance(shape, ModelInputs):
        return synthetic_fisher(module, shape.with_batch(1), vocab=infer_vocab(module))
    return synthetic_fisher(module, (1,) + tuple(shape)[1:])


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
    from ttplan import ZOO_MODELS
    from ttplan import table2 as table2_data
    from ttplan.render import plot_table2, render_table2

    models, out = list(models or ZOO_MODELS), output.out
    fmt = _format(output.fmt, out, ("table", "md", "csv", "json", "latex"), "table")
    if fisher is not None and len(models) != 1:
        raise SpecError("--fisher goes with one model; use --fisher-dir for several")
    if fisher_dir is not None and not Path(fisher_dir).is_dir():
        raise SpecError(f"--fisher-dir {fisher_dir!r} is not a folder")
    fishers = {}
    for model in models:
        path = Path(fisher_dir) / f"{model}.json" if fisher_dir else None
        fishers[model] = fisher if fisher is not None else (
            str(path) if path is not None and path.is_file() else None)
    data = table2_data(models, fishers=fishers, log=note,
                  input_shape=parse_input_shape(input_shape),
                  memory_bytes=parse_bytes(limits.memory), compute=parse_compute(limits.compute),
                  optimizer=optimizer)
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
    from ttplan import ModelSource, PlanningContext, resolve_model, run_whatif, whatif_data
    from ttplan.render import plot_heatmaps, plot_pareto, render_whatif
    from ttplan.specs import parse_methods, parse_range

    out, solver, channels = output.out, grid.solver, grid.channels
    fmt = _format(output.fmt, out, ("table", "csv", "json"), "table")
    methods = parse_methods(grid.method)
    memory_values = parse_range(grid.memory, "memory")
    compute_values = parse_range(grid.compute, "compute")
    shape = inputs.resolve(DEFAULT_INPUT_SHAPE)
    predictor = on.predictor()
    if solver == "exact" and channels != "fisher":
        raise SpecError("the exact solver maximises captured Fisher and needs channels=fisher")
    options = costs.options()
    module, name = resolve_model(model)
    context = PlanningContext(ModelSource(module, name), options=options,
                              fisher=_fisher_or_probe(fisher, module, name, shape),
                              inputs=shape, channels=channels)
    show = sys.stderr.isatty() if output.progress is None else output.progress
    cells = run_whatif(context, memory_values, compute_values, methods=methods, solver=solver,
                       predictor=predictor, progress=show)
    data = whatif_data(context, cells, solver)
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
    from ttplan import ModelSource, PlanningContext, layer_rows, load_policy, resolve_model
    from ttplan import check_policy as check_against_graph
    from ttplan.render import plot_layers, render_layers

    fmt = _format(output.fmt, output.out, ("table", "csv", "json"), "table")
    shape = inputs.resolve(DEFAULT_INPUT_SHAPE)
    module, name = resolve_model(model)
    context = PlanningContext(ModelSource(module, name),
                              fisher=_fisher_or_probe(fisher, module, name, shape), inputs=shape)
    updates = None
    if policy is not None:
        loaded = load_policy(policy)
        check_against_graph(loaded, context.graph, policy)
        updates = loaded.updates()
    rows = layer_rows(context, updates)
    _write_figure(plot, lambda f: plot_layers(rows, f"{name}: per-layer cost and value", f))
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
    from ttplan.specs import parse_range

    parse_range(axes.whatif_compute, "compute")
    if axes.whatif_memory is not None:
        parse_range(axes.whatif_memory, "memory")
    predictor = on.predictor()
    built = build_report(model, fisher=fisher, budgets=limits.budgets(), solver=solver,
                         input_shape=parse_input_shape(input_shape),
                         whatif=WhatifAxes(axes.whatif_memory, axes.whatif_compute),
                         predictor=predictor, log=note)
    out = output.out
    if output.fmt == "md":
        names = write_markdown(built, out)
        tell(f"wrote {out}/ ({', '.join(names)})")
    else:
        emit(render_html(built), out)
