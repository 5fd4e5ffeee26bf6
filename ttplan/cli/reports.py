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
from ttplan.specs import Budgets, SpecError, parse_bytes, parse_compute, parse_input_shape

from .common import emit, model_inputs, note, run_safely, table_width, tell
from .options import (DEFAULT_INPUT_SHAPE, Channels, ComputeBudget, Convention, Device,
                      FisherProbe, InputShape, InputSpecs, InputsFile, Iterations, MemoryBudget,
                      ModelArg, Optimizer, Out, Progress, ReportFormat, ReportTableFormat,
                      Samples, Solver, Table2Format, WeightsInFlash, Wide)


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


def _predictor(device: Optional[str], iterations: int, samples: int):
    """The device predictor, checked before any work (an unknown device is a one-line error)."""
    from ttplan import device_context, device_predictor

    if device is None:
        return None
    return device_predictor(device_context(device, iterations=iterations, samples=samples))


def _format(fmt: Optional[str], out: Optional[str], allowed, default: str) -> str:
    """--format as given (checked while the command line was read), else from --out's
    suffix when it is one of `allowed` (.tex: latex), else `default`."""
    if fmt is None:
        suffix = Path(out).suffix.lower().lstrip(".") if out else ""
        fmt = {"tex": "latex"}.get(suffix, suffix) if suffix in (*allowed, "tex") else default
    return fmt


@run_safely
def table2(
    models: Optional[List[str]] = typer.Argument(
        None, help="zoo names or module:callable (default: the three zoo models)"),
    fisher: Optional[str] = typer.Option(None, help="Fisher file (one model only)"),
    fisher_dir: Optional[str] = typer.Option(None, help="folder of <model>.json Fisher files"),
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    memory: MemoryBudget = "1MB",
    compute: ComputeBudget = "15%",
    optimizer: Optimizer = "momentum",
    fmt: Table2Format = None,
    wide: Wide = False,
    out: Out = None,
    plot: Optional[str] = typer.Option(None, help="Figure-1-style chart (.png, .svg or .pdf)"),
):
    """The paper's Table 2: every method's memory and backward MACs, beside the paper's.

    The paper's printed figures stand beside ttplan's for the zoo models; md and latex
    print the paper's compact layout, csv and json every column."""
    from ttplan import ZOO_MODELS
    from ttplan import table2 as table2_data
    from ttplan.render import plot_table2, render_table2

    models = list(models or ZOO_MODELS)
    fmt = _format(fmt, out, ("table", "md", "csv", "json", "latex"), "table")
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
                  input_shape=parse_input_shape(input_shape), memory_bytes=parse_bytes(memory),
                  compute=parse_compute(compute), optimizer=optimizer)
    _write_figure(plot, lambda f: plot_table2(data["rows"], f))
    emit(render_table2(data, fmt, table_width(), wide), out)



@run_safely
def whatif(
    model: ModelArg,
    fisher: FisherProbe = None,
    memory: str = typer.Option("128KB:2MB:12", help="LOW:HIGH:STEPS, log-spaced"),
    compute: str = typer.Option("2%:60%:12", help="LOW:HIGH:STEPS, linear (% or MACs)"),
    method: str = typer.Option("tinytrain", help="comma-separated: tinytrain, sparseupdate, "
                               "fulltrain, lastlayer"),
    solver: Solver = "greedy",
    channels: Channels = "fisher",
    convention: Convention = "paper",
    input_shape: InputShape = None,
    input_specs: InputSpecs = None,
    inputs_file: InputsFile = None,
    optimizer: Optimizer = "sgd",
    weights_in_flash: WeightsInFlash = None,
    device: Device = None,
    iterations: Iterations = 40,
    samples: Samples = 25,
    plot: Optional[str] = typer.Option(None, help="heat maps of captured Fisher, and of "
                                       "predicted time with --device (.png, .svg or .pdf)"),
    pareto_plot: Optional[str] = typer.Option(None, help="Pareto frontier figure (.png, .svg "
                                              "or .pdf)"),
    fmt: ReportTableFormat = None,
    out: Out = None,
    progress: Progress = None,
):
    """Plan every cell of a memory x compute grid: what each budget buys."""
    from ttplan import (ModelSource, PlanningContext, cost_options, resolve_model, run_whatif,
                        whatif_data)
    from ttplan.render import plot_heatmaps, plot_pareto, render_whatif
    from ttplan.specs import parse_methods, parse_range

    fmt = _format(fmt, out, ("table", "csv", "json"), "table")
    methods = parse_methods(method)
    memory_values, compute_values = parse_range(memory, "memory"), parse_range(compute, "compute")
    shape = model_inputs(input_shape, input_specs, inputs_file, DEFAULT_INPUT_SHAPE)
    predictor = _predictor(device, iterations, samples)
    if solver == "exact" and channels != "fisher":
        raise SpecError("the exact solver maximises captured Fisher and needs channels=fisher")
    options = cost_options(convention, optimizer, weights_in_flash=weights_in_flash)
    module, name = resolve_model(model)
    context = PlanningContext(ModelSource(module, name), options=options,
                              fisher=_fisher_or_probe(fisher, module, name, shape),
                              inputs=shape, channels=channels)
    show = sys.stderr.isatty() if progress is None else progress
    cells = run_whatif(context, memory_values, compute_values, methods=methods, solver=solver,
                       predictor=predictor, progress=show)
    data = whatif_data(context, cells, solver)
    _write_figure(plot, lambda f: plot_heatmaps(data, f))
    _write_figure(pareto_plot, lambda f: plot_pareto(data, f))
    emit(render_whatif(data, fmt), out)


@run_safely
def layers(
    model: ModelArg,
    fisher: FisherProbe = None,
    policy: Optional[str] = typer.Option(None, help="policy JSON: highlight its layers"),
    input_shape: InputShape = None,
    input_specs: InputSpecs = None,
    inputs_file: InputsFile = None,
    plot: Optional[str] = typer.Option(None, help="Figure-3-style chart (.png, .svg or .pdf)"),
    fmt: ReportTableFormat = None,
    wide: Wide = False,
    out: Out = None,
):
    """Per candidate layer: memory, backward MACs, Fisher potential and s_i (Figure 3 style)."""
    from ttplan import ModelSource, PlanningContext, layer_rows, load_policy, resolve_model
    from ttplan import check_policy as check_against_graph
    from ttplan.render import plot_layers, render_layers

    fmt = _format(fmt, out, ("table", "csv", "json"), "table")
    shape = model_inputs(input_shape, input_specs, inputs_file, DEFAULT_INPUT_SHAPE)
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
    emit(render_layers(rows, fmt, None if wide else table_width()), out)


@run_safely
def report(
    model: ModelArg,
    fisher: FisherProbe = None,
    memory: MemoryBudget = "1MB",
    compute: ComputeBudget = "15%",
    solver: Solver = "greedy",
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    whatif_memory: Optional[str] = typer.Option(None, help="what-if memory range (default: "
                                                "half to twice the budget, 6 steps)"),
    whatif_compute: str = typer.Option("2%:60%:6", help="what-if compute range"),
    device: Device = None,
    iterations: Iterations = 40,
    samples: Samples = 25,
    fmt: ReportFormat = "html",
    out: str = typer.Option(..., help="the HTML file, or the folder for md"),
):
    """One self-contained report: profile, plan and why, Table 2, what-if maps, layers."""
    from ttplan import WhatifAxes, build_report
    from ttplan.render import render_html, write_markdown
    from ttplan.specs import parse_range

    parse_range(whatif_compute, "compute")
    if whatif_memory is not None:
        parse_range(whatif_memory, "memory")
    predictor = _predictor(device, iterations, samples)
    built = build_report(model, fisher=fisher, budgets=Budgets(memory, compute), solver=solver,
                         input_shape=parse_input_shape(input_shape),
                         whatif=WhatifAxes(whatif_memory, whatif_compute),
                         predictor=predictor, log=note)
    if fmt == "md":
        names = write_markdown(built, out)
        tell(f"wrote {out}/ ({', '.join(names)})")
    else:
        emit(render_html(built), out)
