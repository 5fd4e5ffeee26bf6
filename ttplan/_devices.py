"""The device commands' whole jobs beside `ttplan.predict` and `ttplan.train`: `ttplan devices`
(`list_devices`), `ttplan calibrate` (`fit_calibration`), `ttplan validate` (`validate_log`)
and `ttplan measure` (`measure`, with its `MeasureGrid`). Each takes request values and
returns a result value; nothing given is changed (`measure` appends to the log it is given,
which is its job).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, parse_duration


def list_devices(files=()) -> list[dict]:
    """The built-in device profiles, the detected host, then each device JSON of `files`:
    one dict per device (its profile's `to_dict()`: RAM, reserve, runtime, flash, cores,
    clock, description, the sources of each figure), with `calibration` "built-in" when
    ttplan ships one for it, else None. What `ttplan devices` lists.

    Raises `TtplanError` (one line) for a device file it cannot read.
    """
    from ttplan.devices.calibrate import BUILTIN
    from ttplan.devices.profiles import builtin_profiles, detect_host, resolve_device

    profiles = [*builtin_profiles().values(), detect_host(), *(resolve_device(d) for d in files)]
    return [{**p.to_dict(), "calibration": "built-in" if p.name in BUILTIN else None}
            for p in profiles]


def fit_calibration(device: str, *, log=None, layer_tables=()):
    """A device's time and energy model fitted to its measured runs: what `ttplan calibrate`
    writes.

    device        a built-in name, a device JSON file, or the name in the log's device
                  column (its RAM then unknown)
    log           CSV log of runs (`ttplan train --log`, `ttplan measure`)
    layer_tables  per-layer tables (`ttplan measure --layer-table`): the per-layer model is
                  fitted from them too

    Returns a `Calibration` (`ttplan.io.calibration_text` is its JSON). Raises `TtplanError`
    (one line) without a log or a table, or for a file it cannot read.
    """
    from ttplan.devices.calibrate import calibrate, calibrate_layers
    from ttplan.devices.layerrun import load_table
    from ttplan.devices.logs import load_device_logs
    from ttplan.devices.profiles import resolve_device

    if log is None and not layer_tables:
        raise SpecError("give a LOG of runs, --layer-table files, or both")
    frame = load_device_logs(log) if log is not None else None
    profile = resolve_device(device, log_names=set() if frame is None else set(frame["device"]))
    if layer_tables:
        tables = [load_table(path) for path in layer_tables]
        return calibrate_layers(tables, profile, frame, log or "log")
    return calibrate(frame, profile, log)


def validate_log(log=None, *, calibration=None, devices=()) -> dict:
    """Predicted against measured for every run of a log, with the leave-one-out median and
    max |error| per device: what `ttplan validate` reports.

    log          CSV log (default: the built-in Pi Zero 2 / Jetson Nano logs)
    calibration  a calibration JSON to check the log against (no refitting)
    devices      device JSON files for device names in the log

    Returns the validation (`ttplan.render.VALIDATION_FIELDS` per row, `ttplan.render.
    plot_validation` draws it). Raises `TtplanError` (one line) for a file it cannot read.
    """
    from ttplan.devices.calibrate import load_calibration
    from ttplan.devices.logs import load_device_logs
    from ttplan.devices.profiles import resolve_device
    from ttplan.devices.validate import validate

    frame = load_device_logs(log)
    names = set(frame["device"])
    given = {p.name: p for p in (resolve_device(d) for d in devices)}
    profiles = {n: given[n] if n in given else resolve_device(n, log_names=names)
                for n in names}
    cal = load_calibration(calibration) if calibration else None
    return validate(frame, profiles, cal)


@dataclass(frozen=True)
class MeasureGrid:
    """A measurement grid's bounds, checked when built: the CSV `log` its rows are appended
    to (required), its wall-time `time_limit` (100s, 20min, 1h, or seconds: the one duration
    grammar) and the `device_name` of the log rows."""

    log: str | None = None
    time_limit: str | float = "20min"
    device_name: str = "host"
    time_limit_s: float = field(init=False)

    def __post_init__(self) -> None:
        if self.log is None:
            raise SpecError("--log is required (or --layer-table for a per-layer table)")
        object.__setattr__(self, "time_limit_s", parse_duration(self.time_limit, "time limit"))


@dataclass(frozen=True)
class Measurement:
    """What `measure` measured: the grid's `rows` (appended to its log; `ttplan.io.LOG_COLUMNS`)
    or the per-layer `table` (`ttplan.io.save_layer_table` writes it); the other is None."""

    rows: list | None = None
    table: dict | None = None


def measure(model, *, grid: MeasureGrid | None = None, runs=None, input_shape=None,
            report=None) -> Measurement:
    """Calibration runs on this machine: what `ttplan measure` runs.

    model        a zoo name or import path (an nn.Module runs in this process)
    grid         a `MeasureGrid`: a fixed grid of updates and batch sizes within its time
                 limit, each run appended to its log; None: the model's per-layer device
                 table instead (every layer timed alone at each batch size, short runs for
                 the overheads)
    runs         a `GridRuns` (batch sizes, samples, iterations, seed, isolate)
    input_shape  N,C,H,W as a tuple (N is each run's batch size; default 1,3,128,128)
    report       called with one line per configuration (progress)

    Returns a `Measurement`. Raises `TtplanError` (one line) for a grid that cannot run.
    """
    if grid is None:
        from ttplan.devices.layermeasure import TABLE_RUNS, measure_table

        return Measurement(table=measure_table(
            model, input_shape=input_shape if input_shape is not None else DEFAULT_INPUT_SHAPE,
            runs=runs if runs is not None else TABLE_RUNS, report=report))
    from ttplan.devices.grid import measure as measure_grid

    return Measurement(rows=measure_grid(model, time_limit_s=grid.time_limit_s, log=grid.log,
                                         device_name=grid.device_name, runs=runs,
                                         input_shape=input_shape, report=report))
