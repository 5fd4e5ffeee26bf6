"""The cost commands' whole jobs beside `ttplan.profile`: `ttplan sweep` (`sweep`) and
`ttplan compare` (`compare`). Each takes request values and returns a result value; nothing
given is changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE


@dataclass(frozen=True)
class SweepResult:
    """`rows` (one per K and convention, the fields `ttplan.render.SWEEP_FIELDS`) and the
    traced `graph` (its `warnings`, and operators without a cost rule, are for the person)."""

    rows: list
    graph: object


def sweep(model, *, unit: str = "blocks", ks="1-6", conventions=("paper", "pytorch"),
          inputs=None, blocks: str | None = None) -> SweepResult:
    """Memory and backward MACs of training the last K blocks or layers, for each K: what
    `ttplan sweep` tabulates (the shape of the paper's Table 7).

    model        a `ModelSource` (or what it takes)
    unit         blocks | layers
    ks           the K values: text ("1-6", "1,2,4") or a sequence of positive integers
    conventions  paper and/or pytorch; frozen weights are counted in RAM under each, so the
                 columns compare
    inputs       `ttplan.specs.ModelInputs` or a shape (default 1,3,128,128)
    blocks       regular expression naming the blocks' module paths (default: the repeated
                 units)

    Returns a `SweepResult`. Raises `TtplanError` (one line) for an unknown unit or a K out
    of range.
    """
    from ttplan.costmodel.profile import resolve_model
    from ttplan.costmodel.trace import trace
    from ttplan.reports.sweep import parse_k_range, sweep_last_k, sweep_options

    options = sweep_options(conventions)
    module, name = resolve_model(model)
    ks = parse_k_range(ks) if isinstance(ks, str) else list(ks)
    graph = trace(module, inputs if inputs is not None else DEFAULT_INPUT_SHAPE, name,
                  blocks=blocks)
    return SweepResult(sweep_last_k(graph, unit, ks, options), graph)


@dataclass(frozen=True)
class Comparison:
    """`rows` (one per method in `methods`: `ttplan.render.COMPARE_FIELDS`, and
    `COMPARE_DEVICE_FIELDS` with a device), `notes` on methods left out, and the Fisher
    potential every share of `fisher_captured` is of (`fisher_total`, None without a file)."""

    rows: list
    methods: tuple[str, ...]
    notes: tuple[str, ...]
    fisher_total: float | None


def compare(model, *, fisher=None, device=None, budgets=None, options=None,
            inputs=None) -> Comparison:
    """Every planning method's memory and backward MACs on one model, under the same budgets:
    what `ttplan compare` tabulates (Table 2's shape).

    model    a `ModelSource` (or what it takes)
    fisher   a Fisher file path or FisherResult: tinytrain is compared only with one
    device   a device context (`ttplan.device_for`): budgets from it as `plan` takes them,
             with each method's predicted time, energy and fit in RAM
    budgets  a `Budgets`; options a `CostOptions` (default paper); inputs
             `ttplan.specs.ModelInputs` or a shape (default 1,3,128,128)

    TinyTL is left out (with a note) unless the model takes one float image. Returns a
    `Comparison`. Raises `TtplanError` (one line) for what a method cannot plan.
    """
    from ttplan.costmodel.inputs import as_inputs
    from ttplan.reports.compare import METHODS, compare_methods

    from ._planning import fisher_potential

    methods = METHODS if fisher else tuple(m for m in METHODS if m != "tinytrain")
    inputs = as_inputs(inputs if inputs is not None else DEFAULT_INPUT_SHAPE)
    notes = ()
    if not (inputs.specs[0].is_float and len(inputs.shape) == 4):
        # TinyTL's lite residuals are 2-D convolutions beside blocks that map images.
        methods = tuple(m for m in methods if m != "tinytl")
        notes = ("tinytl is left out: its lite residuals need an image model",)
    rows = compare_methods(model, fisher=fisher, methods=methods, device=device,
                           budgets=budgets, options=options, inputs=inputs)
    return Comparison(rows, methods, notes, fisher_potential(fisher))
