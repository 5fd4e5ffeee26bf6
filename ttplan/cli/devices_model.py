"""The device commands: `ttplan devices`, `calibrate`, `predict`, `validate`."""

from __future__ import annotations

from typing import List, Optional

import typer

# Only modules that import neither torch nor pandas at the top: the rest is imported inside
# the command that needs it, so `--help` and usage errors stay fast.
from ttplan.io import json_text as dumps
from ttplan.render import human_bytes, human_joules, human_seconds, render_rows, wrap_lines

from .common import emit, run_safely, table_width, tell
from .options import option_groups
from .options_device import PredictDevice
from .options_model import DEFAULT_INPUT_SHAPE, BatchedInputs, Model, Update
from .options_output import FormatOutput, Out, TableFormat, Wide
from .options_plan import Optimizer

DEVICE_FIELDS = ("name", "ram_bytes", "reserve_bytes", "runtime_bytes", "flash_bytes", "cores",
                 "clock_hz", "calibration", "description")


@run_safely
def devices(
    device: List[str] = typer.Option([], "--device", help="also show this device JSON file "
                                     "(repeatable)"),
    fmt: TableFormat = "table",
    wide: Wide = False,
    out: Out = None,
):
    """Built-in device profiles (RAM, flash, cores, clock, with sources) and the detected host."""
    from ttplan import list_devices

    rows = list_devices(device)
    if fmt == "json":
        emit(dumps({"devices": rows}), out)
        return
    width = None if wide else table_width()
    text = render_rows([{k: r.get(k) for k in DEVICE_FIELDS} for r in rows], DEVICE_FIELDS, fmt,
                       width, wide, squeeze=("description",))
    if fmt == "table":
        text += "\nsources:\n" + "".join(
            line + "\n" for r in rows for field, source in r["sources"].items()
            for line in wrap_lines([f"  {r['name']}.{field}: {source}"], width, "    "))
    emit(text, out)


@run_safely
def calibrate(
    log: Optional[str] = typer.Argument(None, help="CSV log of measured runs (ttplan train / "
                                        "measure); optional with --layer-table"),
    device: str = typer.Option(..., help="the device: a built-in name, a device JSON file, or "
                               "the name in the log's device column (RAM then unknown)"),
    layer_table: List[str] = typer.Option([], "--layer-table", help="per-layer table from "
                                          "`ttplan measure --layer-table` (repeatable): fit the "
                                          "per-layer model too"),
    fmt: TableFormat = "table",
    out: Out = None,
):
    """Fit the device's time/energy model to its runs in LOG; write the calibration JSON.

    With --layer-table (repeatable), the per-layer model is fitted from those tables too."""
    from ttplan import fit_calibration
    from ttplan.io import calibration_text

    cal = fit_calibration(device, log=log, layer_tables=layer_table)
    summary = _calibration_rows(cal.to_dict())
    if out:  # the file is the calibration; a summary for the person on stderr
        emit(calibration_text(cal), out)
        tell(_summary_text(cal.to_dict()))
        return
    if fmt == "json":
        emit(calibration_text(cal), None)
    elif fmt == "csv":
        emit(render_rows(summary, ("quantity", "term", "value", "unit"), "csv"), None)
    else:
        emit(_summary_text(cal.to_dict()), None)


def _calibration_rows(d: dict) -> list[dict]:
    rows = []
    for quantity in ("time", "energy"):
        section = d[quantity]
        if section is None:
            continue
        for name, term in section["terms"].items():
            rows.append({"quantity": quantity, "term": name, "value": term["value"],
                         "unit": term["unit"]})
    return rows


def _summary_text(d: dict) -> str:
    whole_runs = bool(d["log"]["rows"])
    lines = [f"calibration of {d['device']['name']} from {d['log']['rows']} runs "
             f"({d['log']['source']})" if whole_runs else
             f"calibration of {d['device']['name']}: per-layer model only (no whole-run log)"]
    for quantity in ("time", "energy"):
        section = d[quantity]
        if section is None:
            lines.append(f"{quantity}: no model")
            continue
        if not whole_runs:  # every whole-run term unfitted: the per-layer model below predicts
            continue
        for name, term in section["terms"].items():
            mark = "" if term["identified"] else "  (not fitted)"
            lines.append(f"  {name:22s} {term['value']:<12.6g} {term['unit']}{mark}")
        fit, loo = section["fit"], section["loo"]
        if fit["median_abs_pct"] is None:
            lines.append(f"  {quantity}: no whole-run fit (no log)")
            continue
        lines.append(f"  {quantity}: in-sample median |error| {fit['median_abs_pct']:.1f}% "
                     f"(max {fit['max_abs_pct']:.1f}%), leave-one-out median "
                     f"{loo['median_abs_pct']:.1f}% (max {loo['max_abs_pct']:.1f}%)")
    layers = d.get("layers")
    if layers is not None:
        loo = layers["loo"]
        lines.append(f"per-layer model from the tables of {', '.join(layers['models'])}: glue "
                     + ", ".join(f"{k} {v:.4g}" for k, v in layers["glue"].items()
                                 if k != "identified" and not isinstance(v, dict))
                     + "".join(f", {k} " + " ".join(f"{n} {x:.4g}" for n, x in v.items())
                               for k, v in layers["glue"].items() if isinstance(v, dict)))
        if loo["median_abs_pct"] is not None:
            lines.append(f"  train_s leave-one-model-out median |error| "
                         f"{loo['median_abs_pct']:.1f}% (max {loo['max_abs_pct']:.1f}%) over "
                         f"{len(loo['rows'])} runs")
        if layers.get("timing_resolution") is not None:
            lines.append(f"  timing resolution ±{100 * layers['timing_resolution']:.1f}% (half "
                         "the median spread of the whole runs' repeats)")
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(wrap_lines(lines, table_width(), "      ")) + "\n"


@run_safely
@option_groups
def predict(
    model: Model,
    update: Update,
    on: PredictDevice,
    inputs: BatchedInputs,
    output: FormatOutput,
    optimizer: Optimizer = None,
):
    """Predicted time per phase, energy and fit in RAM of training on a device."""
    from ttplan import predict as predict_training

    batch_size, fmt, out = inputs.batch_size, output.fmt, output.out
    inputs = inputs.resolve(DEFAULT_INPUT_SHAPE)
    device = on.context()
    result = predict_training(model.source(), update, device, batch_size=batch_size,
                              inputs=inputs, optimizer=optimizer)
    if fmt == "json":
        emit(dumps(result), out)
        return
    flat = {k: v for k, v in result.items() if k not in ("phases", "process_memory")}
    flat["time_model_notes"] = "; ".join(result["time_model_notes"])
    for phase, seconds in (result["phases"] or {}).items():
        flat[phase] = seconds
    if fmt == "csv":
        emit(render_rows([flat], tuple(flat), "csv"), out)
        return
    band = result["error_band_pct"]
    e_band = result["energy_error_band_pct"]
    lines = [f"{result['model']} on {result['device']} ({result['calibration']}): "
             f"{result['iterations']} iterations over {result['samples']} samples at batch "
             f"{result['batch_size']}"]
    lines += [f"  {p.removesuffix('_s'):10s} {human_seconds(s):>12}"
              for p, s in result["phases"].items()]
    lines.append(f"  {'total':10s} {human_seconds(result['total_s']):>12}  (+-{band:.1f}%: the "
                 "calibration's median leave-one-out error)")
    if result["energy_j"] is not None:
        lines.append(f"  {'energy':10s} {human_joules(result['energy_j']):>12}  (+-{e_band:.1f}%)")
    else:
        lines.append(f"  {'energy':10s} {'-':>12}  (the calibration has no energy model)")
    if result["time_model_notes"]:  # a per-layer calibration priced it from the model's own table
        lines.append(f"  time model: {'; '.join(result['time_model_notes'])}")
    fits = {True: "yes", False: "NO (it will swap)", None: "unknown"}[result["fits_ram"]]
    lines.append(f"  {'peak':10s} {human_bytes(result['peak_bytes']):>12}  (PyTorch)  fits in "
                 f"RAM: {fits}")
    process = result["process_memory"]
    if process is not None:
        lines.append(f"  process peak {human_bytes(process['peak_rss_bytes'])} resident = "
                     f"runtime {human_bytes(process['runtime_bytes'])} + support set "
                     f"{process['support_copies']:g} x {human_bytes(process['support_bytes'])}"
                     " + the step's tensors")
    emit("\n".join(wrap_lines(lines, table_width())) + "\n", out)


@run_safely
def validate(
    log: Optional[str] = typer.Argument(None, help="CSV log (default: the built-in "
                                        "Pi Zero 2 / Jetson Nano logs)"),
    calibration: Optional[str] = typer.Option(None, help="check the log against this "
                                              "calibration (no refitting)"),
    device: List[str] = typer.Option([], "--device", help="device JSON file for a device "
                                     "name in the log (repeatable)"),
    plot: Optional[str] = typer.Option(None, help="write a predicted-vs-measured PNG here"),
    fmt: TableFormat = "table",
    wide: Wide = False,
    out: Out = None,
):
    """Predicted against measured for every run; leave-one-out median and max |error|."""
    from ttplan import validate_log
    from ttplan.render import VALIDATION_FIELDS as ROW_FIELDS
    from ttplan.render import plot_validation

    result = validate_log(log, calibration=calibration, devices=device)
    if plot:
        plot_validation(result, plot)
        tell(f"wrote {plot}")
    if fmt == "json":
        emit(dumps(result), out)
        return
    rows = [{"device": name, **r} for name, d in result["devices"].items() for r in d["rows"]]
    fields = ("device",) + ROW_FIELDS
    if fmt == "csv":
        emit(render_rows(rows, fields, "csv"), out)
        return
    text = render_rows(rows, fields, "table", table_width(), wide, squeeze=("model",),
                       heads={"error_pct": "error %"})
    for name, d in result["devices"].items():
        t, e = d["loo"]["time"], d["loo"]["energy"]
        line = (f"{name} ({d['predicted_by']}): time median |error| {t['median_abs_pct']:.1f}%, "
                f"max {t['max_abs_pct']:.1f}%")
        lm_, share = d["loo_model"], d["within_10_pct"]
        if lm_["median_abs_pct"] is not None:
            line += (f"; leave-one-model-out median {lm_['median_abs_pct']:.1f}%, max "
                     f"{lm_['max_abs_pct']:.1f}%")
        if share["run_out"] is not None:
            line += f"; within ±10%: {100 * share['run_out']:.0f}% of rows"
            if share["model_out"] is not None:
                line += f" ({100 * share['model_out']:.0f}% model out)"
        if e["median_abs_pct"] is not None:
            line += f"; energy median {e['median_abs_pct']:.1f}%, max {e['max_abs_pct']:.1f}%"
        width = None if wide else table_width()
        text += "".join(f"{part}\n" for part in wrap_lines([line], width, "  "))
        fisher = d.get("fisher_phase")
        if fisher:
            f, fm = fisher["loo"], fisher["loo_model"]
            part = (f"  Fisher phase ({len(fisher['rows'])} runs measured it): median |error| "
                    f"{f['median_abs_pct']:.1f}%, max {f['max_abs_pct']:.1f}%")
            if fm["median_abs_pct"] is not None:
                part += (f"; leave-one-model-out median {fm['median_abs_pct']:.1f}%, max "
                         f"{fm['max_abs_pct']:.1f}%")
            text += "".join(f"{p}\n" for p in wrap_lines([part], width, "    "))
        if d["caveat"]:
            text += "".join(f"{part}\n" for part in
                            wrap_lines([f"  caveat: {d['caveat']}"], width, "    "))
    emit(text, out)
