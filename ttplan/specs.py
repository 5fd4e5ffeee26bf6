"""Text into typed values: the grammar of every quantity a person types, one parser each.

Public API (`from ttplan.specs import parse_bytes`); names load on first use, so importing
this module imports nothing heavy. A malformed value raises `SpecError` (a `TtplanError`)
whose message names it; the `ttplan` command prints that message as its one `error:` line.

Errors
    TtplanError            any error in what a person gave (the CLI's exit status 2)
    SpecError              a malformed value: a size, a budget, a shape, a file's content

Scalars
    parse_int(text, what, minimum=0, maximum=MAX_INT)     ASCII digits, bounded
    parse_fraction(text, what)                            a decimal in (0, 1]
    parse_bytes(text)                                     1MB, 512KiB, 1_000_000 -> bytes
    parse_compute(text)                                   15% or 6.5M backward MACs
    parse_duration(text, what)                            100s, 20min, 1h -> seconds
    Budgets(memory, compute)                              a memory and a compute budget,
                                                          each parsed once (text or number)
    MAX_INT, MAX_INPUT_ELEMENTS                           the bounds of the above

Shapes and inputs
    parse_input_shape(text)                               "1,3,128,128" -> (1, 3, 128, 128)
    ModelInputs, inputs_from_specs, inputs_from_shape     what a model is called with
                                                          (`--input`/`--inputs` specs, a shape)

Ranges and lists
    parse_k_range(text)                                   "1-6" or "1,2,4" (sweep)
    parse_range(text, what)                               LOW:HIGH:STEPS (what-if grids)
    parse_methods(text)                                   comma-separated planning methods

Defaults
    DEFAULT_ITERATIONS, DEFAULT_SAMPLES                   a device run's passes and samples
    DEFAULT_TAIL_FRACTION                                 the share of layers a Fisher probe sees
"""

from __future__ import annotations

from ttplan._lazy import lazy_exports

_EXPORTS = {
    "TtplanError": ("ttplan.costmodel.errors", "TtplanError"),
    "SpecError": ("ttplan.costmodel.errors", "SpecError"),
    "parse_int": ("ttplan.costmodel.specs", "parse_int"),
    "parse_fraction": ("ttplan.costmodel.specs", "parse_fraction"),
    "parse_bytes": ("ttplan.costmodel.specs", "parse_bytes"),
    "parse_compute": ("ttplan.costmodel.specs", "parse_compute"),
    "parse_duration": ("ttplan.costmodel.specs", "parse_duration"),
    "Budgets": ("ttplan.costmodel.specs", "Budgets"),
    "parse_input_shape": ("ttplan.costmodel.specs", "parse_input_shape"),
    "MAX_INT": ("ttplan.costmodel.specs", "MAX_INT"),
    "MAX_INPUT_ELEMENTS": ("ttplan.costmodel.specs", "MAX_INPUT_ELEMENTS"),
    "ModelInputs": ("ttplan.costmodel.inputs", "ModelInputs"),
    "inputs_from_specs": ("ttplan.costmodel.inputs", "as_inputs"),
    "inputs_from_shape": ("ttplan.costmodel.inputs", "from_shape"),
    "parse_k_range": ("ttplan.reports.sweep", "parse_k_range"),
    "parse_range": ("ttplan.reports.whatif", "parse_range"),
    "parse_methods": ("ttplan.reports.whatif", "parse_methods"),
    "DEFAULT_ITERATIONS": ("ttplan.devices.workload", "DEFAULT_ITERATIONS"),
    "DEFAULT_SAMPLES": ("ttplan.devices.workload", "DEFAULT_SAMPLES"),
    "DEFAULT_TAIL_FRACTION": ("ttplan.planner.probe_defaults", "DEFAULT_TAIL_FRACTION"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
