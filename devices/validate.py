"""Predicted against measured, for every run of a log.

Without a calibration, each device's runs are predicted leave-one-out: every run by a fit
(devices.calibrate) of the device's other runs, so every error is out of sample. With a
calibration, every run is predicted by it as it is (no refitting): a check of a calibration
against runs it did not see. The result (`ttplan validate --format json`):

  {devices: {NAME: {predicted_by, rows: [{model, method, measured_s, predicted_s, error_pct,
                                           model_out_predicted_s, model_out_error_pct,
                                           measured_j, predicted_j}],
                    loo: {time: {median_abs_pct, max_abs_pct},
                          energy: {median_abs_pct, max_abs_pct}},
                    loo_model: {median_abs_pct, max_abs_pct},
                    within_10_pct: {run_out, model_out},
                    fisher_phase: null, or {rows: [{model, measured_s, predicted_s, error_pct,
                                                    model_out_predicted_s, model_out_error_pct}],
                                            loo: {...}, loo_model: {...}},
                    free_terms, caveat}}}

`loo` leaves one RUN out; `loo_model` leaves one MODEL out (each run predicted by a fit of the
other models' runs only: a model the calibration never saw). `within_10_pct` is the share of
rows within ±10 %. `fisher_phase` checks the Fisher phase alone on the runs that measured it
(fisher_s; null when none did), predicted the same ways. `caveat` says when the fit had too
few rows for its terms (null otherwise).

Times are end-to-end (total_s); errors are (predicted - measured) / measured in percent;
`loo` summarises the absolute errors of the rows (leave-one-out, or against the calibration).
"""

from __future__ import annotations

import io

import pandas as pd

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.fileio import write_bytes_atomic

from .calibrate import (MIN_RUNS, TIME_NAMES, Calibration, abs_error_summary, fit_time,
                        included_time_terms, leave_one_model_out, leave_one_out, measured_runs,
                        pct_error, round6, share_within, too_few_rows)
from .model import predict
from .profiles import DeviceProfile

ROW_FIELDS = ("model", "method", "measured_s", "predicted_s", "error_pct",
              "model_out_error_pct", "measured_j", "predicted_j")


def validate(log: pd.DataFrame, profiles: dict[str, DeviceProfile],
             calibration: Calibration | None = None) -> dict:
    """`profiles`: the profile of every device name in the log (for the RAM the time model
    needs); not used with a calibration, which carries its own."""
    devices = {}
    for name in dict.fromkeys(log["device"]):  # first-appearance order
        runs = measured_runs(log[log["device"] == name])
        by_model, caveat, free, fisher = [None] * len(runs), None, None, None
        if calibration is not None:
            predictions = [calibration.predict(m.run) for m in runs]
            times = [p.total_s for p in predictions]
            energies = [p.energy_j for p in predictions]
            by = calibration.label
        else:
            if len(runs) < MIN_RUNS:
                raise SpecError(f"device {name} has {len(runs)} run(s): leave-one-out needs at "
                                f"least {MIN_RUNS}")
            device = profiles[name]
            left_out = included_time_terms(runs, device)
            times, energies = leave_one_out(runs, device, left_out)
            by_model = leave_one_model_out(runs, device, left_out)
            caveat, free = too_few_rows(runs, left_out), len(TIME_NAMES) - len(left_out)
            by = "leave-one-out fit"
            fisher = fisher_phase(runs, device, left_out)
        rows = []
        for m, t, e, tm in zip(runs, times, energies, by_model):
            measured_j = m.energy_j
            rows.append({"model": m.model, "method": m.run.method, "measured_s": m.total_s,
                         "predicted_s": round6(t), "error_pct": round6(pct_error(t, m.total_s)),
                         "model_out_predicted_s": None if tm is None else round6(tm),
                         "model_out_error_pct": None if tm is None
                         else round6(pct_error(tm, m.total_s)),
                         "measured_j": measured_j,
                         "predicted_j": None if e is None or measured_j is None else round6(e)})
        energy_errors = [pct_error(r["predicted_j"], r["measured_j"]) for r in rows
                         if r["predicted_j"] is not None]
        model_errors = [r["model_out_error_pct"] for r in rows
                        if r["model_out_error_pct"] is not None]
        devices[name] = {"predicted_by": by, "rows": rows,
                         "loo": {"time": abs_error_summary([r["error_pct"] for r in rows]),
                                 "energy": abs_error_summary(energy_errors)},
                         "loo_model": abs_error_summary(model_errors),
                         "within_10_pct": {
                             "run_out": share_within([r["error_pct"] for r in rows]),
                             "model_out": share_within(model_errors)},
                         "fisher_phase": fisher if calibration is None else
                         fisher_phase(runs, calibration.device, None, calibration),
                         "free_terms": free, "caveat": caveat}
    return {"devices": devices}


def fisher_phase(runs, device: DeviceProfile, left_out, calibration=None) -> dict | None:
    """The Fisher phase of the runs that measured it, predicted leave-one-run-out and
    leave-one-model-out (or by `calibration` as it is); None when no run measured one."""
    timed = [(i, m) for i, m in enumerate(runs) if m.run.probes and m.phases["fisher"]]
    if not timed:
        return None

    def fisher_s(terms, m):
        return predict(m.run, terms, None, device).phases["fisher_s"]

    rows = []
    for i, m in timed:
        if calibration is not None:
            run_out, model_out = calibration.predict(m.run).phases["fisher_s"], None
        else:
            run_out = fisher_s(fit_time(runs[:i] + runs[i + 1:], device, left_out), m)
            others = [o for o in runs if o.model != m.model]
            model_out = fisher_s(fit_time(others, device, left_out), m) if others else None
        measured = m.phases["fisher"]
        rows.append({"model": m.model, "measured_s": measured, "predicted_s": round6(run_out),
                     "error_pct": round6(pct_error(run_out, measured)),
                     "model_out_predicted_s": None if model_out is None else round6(model_out),
                     "model_out_error_pct": None if model_out is None
                     else round6(pct_error(model_out, measured))})
    return {"rows": rows, "loo": abs_error_summary([r["error_pct"] for r in rows]),
            "loo_model": abs_error_summary([r["model_out_error_pct"] for r in rows
                                            if r["model_out_error_pct"] is not None])}


def plot_validation(result: dict, path) -> None:
    """Predicted against measured time (and energy where measured), log-log, one colour per
    device; deterministic PNG bytes (Agg, no Software metadata)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SpecError("--plot needs matplotlib: pip install 'ttplan[plots]'") from None
    with_energy = any(r["predicted_j"] is not None for d in result["devices"].values()
                      for r in d["rows"])
    panels = [("measured_s", "predicted_s", "end-to-end time (s)")]
    if with_energy:
        panels.append(("measured_j", "predicted_j", "energy (J)"))
    with matplotlib.rc_context({"svg.hashsalt": "ttplan", "font.size": 9}):
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
        for ax, (mx, py, label) in zip(axes[0], panels):
            low, high = float("inf"), 0.0
            for name, d in result["devices"].items():
                points = [(r[mx], r[py]) for r in d["rows"] if r[py] is not None]
                if not points:
                    continue
                xs, ys = zip(*points)
                low, high = min(low, *xs, *ys), max(high, *xs, *ys)
                stat = d["loo"]["time" if mx == "measured_s" else "energy"]
                ax.scatter(xs, ys, s=22, label=f"{name} (median |error| "
                           f"{stat['median_abs_pct']:.1f}%)")
            if high > 0:
                ax.plot([low * 0.8, high * 1.25], [low * 0.8, high * 1.25], color="grey",
                        linewidth=0.8, linestyle="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"measured {label}")
            ax.set_ylabel(f"predicted {label}")
            ax.legend(loc="upper left", fontsize=8)
        fig.suptitle("ttplan validate: predicted vs measured")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
        plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
