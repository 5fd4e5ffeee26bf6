"""The report commands' whole jobs beside `ttplan.build_report`: `ttplan table2`
(`table2_report`), `ttplan whatif` (`whatif`) and `ttplan layers` (`layer_report`). Each
takes request values and returns a result value; nothing given is changed.

Without a Fisher file each probes the model with the synthetic probe and says so in the
result's `notes` (the command shows them as `note:` lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, Budgets
from ttplan.reports.table2_paper import PAPER_BUDGETS


def table2_report(models=None, *, fisher=None, fisher_dir=None,
                  input_shape=DEFAULT_INPUT_SHAPE, budgets: Budgets = PAPER_BUDGETS,
                  optimizer: str = "momentum", log=None) -> dict:
    """The paper's Table 2 for `models`: every method's memory and backward MACs, beside the
    paper's printed figures for the zoo models. What `ttplan table2` renders.

    models       zoo names, import paths (module:callable) or `ModelSource`s (default: the
                 three zoo models)
    fisher       a Fisher file of the one model; fisher_dir: a folder of <model>.json files
                 (a model without one gets the synthetic probe, and `log` is told)
    input_shape  N,C,H,W; budgets a `Budgets` (default the paper's 1MB and 15%); optimizer
                 sgd | momentum | adam

    Returns {rows, settings, note} (`ttplan.render.render_table2`, `plot_table2`). Raises
    `TtplanError` (one line) for --fisher with several models or a --fisher-dir that is not
    a folder.
    """
    from ttplan.costmodel.zoo import ZOO_MODELS
    from ttplan.reports.table2 import table2

    models = list(models or ZOO_MODELS)
    if fisher is not None and len(models) != 1:
        raise SpecError("--fisher goes with one model; use --fisher-dir for several")
    if fisher_dir is not None and not Path(fisher_dir).is_dir():
        raise SpecError(f"--fisher-dir {fisher_dir!r} is not a folder")
    fishers = {}
    for model in models:
        path = Path(fisher_dir) / f"{model}.json" if fisher_dir else None
        fishers[model] = fisher if fisher is not None else (
            str(path) if path is not None and path.is_file() else None)
    return table2(models, fishers=fishers, log=log, input_shape=input_shape,
                  memory_bytes=budgets.memory_bytes, compute=budgets.compute,
                  optimizer=optimizer)


def _context_with_fisher(model, fisher, inputs, **context):
    """A PlanningContext of `model` with `fisher`, or the synthetic probe's, the model's name
    and the notes for the person (the probe used, if any)."""
    from ttplan.costmodel.inputs import as_inputs
    from ttplan.costmodel.profile import ModelSource, resolve_model
    from ttplan.planner.context import PlanningContext
    from ttplan.planner.support.sequences import infer_vocab
    from ttplan.reports.table2 import PROBE_SAMPLES, PROBE_SEED, synthetic_fisher

    inputs = as_inputs(inputs if inputs is not None else DEFAULT_INPUT_SHAPE)
    module, name = resolve_model(model)
    notes = ()
    if fisher is None:
        notes = (f"{name}: no Fisher file given; using the synthetic probe "
                 f"({PROBE_SAMPLES} samples, seed {PROBE_SEED})",)
        fisher = synthetic_fisher(module, inputs.with_batch(1), vocab=infer_vocab(module))
    return PlanningContext(ModelSource(module, name), fisher=fisher, inputs=inputs,
                           **context), name, notes


@dataclass(frozen=True)
class WhatifResult:
    """The what-if grid's `data` (`ttplan.render.render_whatif`, `plot_heatmaps`,
    `plot_pareto`) and `notes` for the person."""

    data: dict
    notes: tuple[str, ...]


def whatif(model, *, axes=None, search=None, fisher=None, inputs=None, options=None,
           predictor=None, progress: bool = False) -> WhatifResult:
    """Plan every cell of a memory x compute grid: what each budget buys. What `ttplan
    whatif` maps.

    model      a `ModelSource` (or what it takes)
    axes       a `WhatifAxes`: memory and compute ranges (LOW:HIGH:STEPS; memory default
               128KB:2MB:12) and the methods planned in each cell
    search     a `PlanSearch` (its solver and channel criterion)
    fisher     a Fisher file path or FisherResult (default: the synthetic probe, noted)
    inputs     `ttplan.specs.ModelInputs` or a shape (default 1,3,128,128)
    options    a `CostOptions` (default paper)
    predictor  a device predictor (`ttplan.device_predictor`): each cell's time and energy
    progress   a progress bar on stderr

    Returns a `WhatifResult`. Raises `TtplanError` (one line) for a range or method it
    cannot plan.
    """
    from ttplan.planner.api import PlanSearch
    from ttplan.reports.report import WhatifAxes
    from ttplan.reports.whatif import (DEFAULT_COMPUTE_RANGE, DEFAULT_MEMORY_RANGE,
                                       parse_range, run_whatif, whatif_data)

    axes = axes if axes is not None else WhatifAxes(DEFAULT_MEMORY_RANGE, DEFAULT_COMPUTE_RANGE,
                                                    ("tinytrain",))
    search = search if search is not None else PlanSearch()
    memory_values = parse_range(axes.memory or DEFAULT_MEMORY_RANGE, "memory")
    compute_values = parse_range(axes.compute, "compute")
    context, _, notes = _context_with_fisher(model, fisher, inputs, options=options,
                                             channels=search.channels, seed=search.seed)
    cells = run_whatif(context, memory_values, compute_values, methods=axes.methods,
                       solver=search.solver, predictor=predictor, progress=progress)
    return WhatifResult(whatif_data(context, cells, search.solver), notes)


@dataclass(frozen=True)
class LayerReport:
    """One row per candidate layer (`ttplan.render.render_layers`, `plot_layers`) of
    `model_name`, and `notes` for the person."""

    rows: list
    model_name: str
    notes: tuple[str, ...]


def layer_report(model, *, fisher=None, inputs=None, policy=None) -> LayerReport:
    """Per candidate layer: memory, backward MACs, Fisher potential and s_i (the paper's
    Figure 3). What `ttplan layers` tabulates.

    model   a `ModelSource` (or what it takes)
    fisher  a Fisher file path or FisherResult (default: the synthetic probe, noted)
    inputs  `ttplan.specs.ModelInputs` or a shape (default 1,3,128,128)
    policy  a policy JSON file: its layers are marked (checked against the model's graph)

    Returns a `LayerReport`. Raises `TtplanError` (one line) for a policy of another model.
    """
    from ttplan.planner.policy.file import check_against_graph, load_policy
    from ttplan.reports.layers import layer_rows

    context, name, notes = _context_with_fisher(model, fisher, inputs)
    updates = None
    if policy is not None:
        loaded = load_policy(policy)
        check_against_graph(loaded, context.graph, policy)
        updates = loaded.updates()
    return LayerReport(layer_rows(context, updates), name, notes)
