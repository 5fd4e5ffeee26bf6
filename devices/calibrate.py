"""Fit a device's time and energy model (devices.model) to its measured runs.

Time: every measured quantity of a run is one equation, linear in the terms — its total_s
(always), and each phase the log measured (load_s, fisher_s, plan_s, train_s). The terms are
fitted by non-negative least squares (scipy.optimize.nnls) on RELATIVE residuals: each equation
is divided by its measured value, so a 7-minute run weighs as much as a 2-hour one, and the
errors reported are percentages. A term enters the fit only if the log can say something about
it: load_s and plan_s when some run measured them (else 0: they are folded into the other
terms), fisher_mac_s when some tinytrain run probed (probe_macs > 0), swap_s_per_byte when the device's RAM
is known and some run's peak (under the device's runtime) exceeds the available RAM.
Energy: the three powers are fitted the same way (nnls, relative) to the measured joules,
given the seconds the fitted time model puts under each.
Leave-one-out: each run predicted by a fit (time, then energy) of all the others.

The calibration file (format "ttplan-calibration", version 2; strictly validated):
  device      the device profile (devices.profiles) whose RAM the pressure term uses
  log         {source: file name, rows: runs fitted}
  fit_method  how the terms were fitted
  time        {terms: {name: {value, unit, meaning, identified}},
               rows: [{model, method, batch_size, measured_s, fitted_s, fitted_error_pct,
                       loo_predicted_s, loo_error_pct}],
               fit: {median_abs_pct, max_abs_pct}, loo: {median_abs_pct, max_abs_pct}}
  energy      null (no energy measured), or the same with W terms and _j values
  layers      null, or the per-layer model fitted from layer tables (devices.layerrun):
              {kinds: {KIND/PASS: {mac_s, element_s, weight_s, call_s, rows, identified, why}
                       (+ gate_step_s: recurrent kinds, layertable.gate_steps;
                        + short_mac_s: a 1 x 1 conv's forward and input gradient,
                        layertable.short_macs; absent before: 0)},
               glue: {step_s, shared_grad_s, tensor_update_s, first_call_s, op_s,
                      augment_element_s (before it: a per-sample sample_s; absent before
                      that: 0), forward_element_s, loop_s, iteration_s (absent before:
                      0), identified, update_element_s ({optimiser: s per updated
                      element}, measured; absent before: 0)} (devices.layermodel.GLUE_TERMS;
                      terms left out: notes),
               phases: {load_s, plan_s}, power_w (null: no energy measured), models, notes,
               timing_resolution (half the median spread of the whole runs' repeats; null
               without repeats; absent before: none),
               loo: {by: leave-one-model-out, rows, median_abs_pct, max_abs_pct}}
              It predicts configurations of a model (its layers); the whole-run terms predict
              log rows. A calibration from layer tables alone has no whole-run terms (log.rows 0).
  notes       [str]
Numbers are rounded to 6 significant digits, so a calibration regenerates byte-identically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from ttplan.costmodel.errors import SpecError
from ttplan.planner.jsonio import check_header, check_keys, dumps, load_json, save_json

from .model import (ENERGY_NAMES, ENERGY_TERMS, TIME_NAMES, TIME_TERMS, Prediction, Run,
                    energy_features, predict, time_components, time_features)
from .profiles import DeviceProfile, profile_from_dict
from .stepcost import COST_COLUMNS, StepCost

FORMAT = "ttplan-calibration"
VERSION = 4  # 2: the depthwise and operator terms; 3: the per-layer model (`layers`);
# 4: the Fisher probe priced per probe MAC (fisher_mac_s), not per sample
MIN_RUNS = 3
FIT_METHOD = ("scipy.optimize.nnls on relative residuals (each equation divided by its "
              "measured value; columns scaled to unit maximum)")
BUILTIN = ("pi-zero-2", "jetson-nano")
_PHASE_COLUMNS = {"load": "load_s", "fisher": "fisher_s", "plan": "plan_s", "train": "train_s"}
_TOP = {"format", "version", "device", "log", "fit_method", "time", "energy", "layers", "notes"}


@dataclass(frozen=True)
class Measured:
    """One logged run: what was run and what was measured (None = not measured)."""

    model: str
    run: Run
    total_s: float
    phases: dict  # phase name -> seconds or None
    energy_j: float | None


def measured_runs(log: pd.DataFrame) -> list[Measured]:
    out = []
    for r in log.to_dict("records"):
        cost = StepCost(int(r["batch_size"]), *(int(r[c]) for c in COST_COLUMNS))
        run = Run(r["method"], int(r["iterations"]), int(r["samples"]), cost,
                  int(r["probe_macs"]))
        phases = {p: _value(r[c]) for p, c in _PHASE_COLUMNS.items()}
        out.append(Measured(r["model"], run, float(r["total_s"]), phases, _value(r["energy_j"])))
    return out


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# ------------------------------------------------------------------------------ fitting

# The order in which whole-run terms earn a place in a fit: at most one free term per two
# logged runs (never more free terms than rows). The first ones price what every run does
# (steps, MACs, memory pressure, the probe); the splits by kind of operator come last, as the
# data can tell them apart only with many runs. Chosen on the shipped logs' leave-one-model-out
# error (notes/device_time_model.md §6): with all 12 the Pi's held-out-model max was 20.8 %.
TERM_PRIORITY = ("step_s", "dense_mac_s", "weight_grad_mac_s", "swap_s_per_byte",
                 "fisher_mac_s", "tensor_update_s", "operator_s", "element_s",
                 "depthwise_mac_s", "depthwise_weight_grad_mac_s", "backward_operator_s",
                 "backward_element_s")
RUNS_PER_TERM = 2


def included_time_terms(runs: list[Measured], device: DeviceProfile) -> dict[str, str]:
    """{term: why it is left out} for the terms this log cannot inform (module docstring)."""
    out = _uninformed_terms(runs, device)
    rows = len(runs) + sum(1 for m in runs for p in ("load", "fisher", "plan", "train")
                           if m.phases[p])  # each measured phase is an equation too
    allowed = max(1, rows // RUNS_PER_TERM)
    candidates = [n for n in TERM_PRIORITY if n not in out]
    for name in candidates[allowed:]:
        out[name] = (f"too few runs: {rows} measured values fit at most {allowed} free terms "
                     f"(one per {RUNS_PER_TERM})")
    return out


def _uninformed_terms(runs: list[Measured], device: DeviceProfile) -> dict[str, str]:
    out = {}
    probes = [m for m in runs if m.run.probes]
    if all(m.phases["load"] is None for m in runs):
        out["load_s"] = "no run measured load_s: loading is folded into the other terms"
    if not any(m.phases["plan"] is not None for m in probes):
        out["plan_s"] = "no tinytrain run measured plan_s: selection is folded into the other terms"
    if not probes:
        out["fisher_mac_s"] = "no tinytrain run probed on the device"
    if device.ram_bytes is None:
        out["swap_s_per_byte"] = "the device's RAM is unknown"
    for name in TIME_NAMES:
        if name not in out and not any(time_features(m.run, device)[name] for m in runs):
            out[name] = "no run exercises it" if name != "swap_s_per_byte" else \
                "no run's peak exceeds the available RAM"
    return out


def _time_equations(runs: list[Measured], device: DeviceProfile, names: list[str]):
    rows, targets = [], []
    for m in runs:
        features = time_features(m.run, device)
        rows.append([features[n] for n in names])
        targets.append(m.total_s)
        for phase, seconds in m.phases.items():
            row = [features[t.name] if t.group == phase else 0.0
                   for t in TIME_TERMS if t.name in names]
            # measured, non-zero (a relative residual divides by it) and modelled here
            if seconds and any(row):
                rows.append(row)
                targets.append(seconds)
    return np.array(rows, dtype=float), np.array(targets, dtype=float)


def _nnls_relative(matrix: np.ndarray, targets: np.ndarray) -> np.ndarray:
    weighted = matrix / targets[:, None]
    scale = np.abs(weighted).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(weighted / scale, np.ones(len(targets)), maxiter=50 * matrix.shape[1] + 100)
    return solution / scale


def fit_time(runs: list[Measured], device: DeviceProfile,
             left_out: dict[str, str]) -> dict[str, float]:
    names = [n for n in TIME_NAMES if n not in left_out]
    matrix, targets = _time_equations(runs, device, names)
    values = dict(zip(names, _nnls_relative(matrix, targets)))
    return {n: round6(values.get(n, 0.0)) for n in TIME_NAMES}


def fit_energy(runs: list[Measured], time_terms: dict[str, float],
               device: DeviceProfile) -> dict[str, float] | None:
    with_energy = [m for m in runs if m.energy_j]
    if len(with_energy) < MIN_RUNS:
        return None
    seconds = [energy_features(time_components(m.run, time_terms, device))
               for m in with_energy]
    names = [p for p in ENERGY_NAMES if any(s[p] > 0 for s in seconds)]
    matrix = np.array([[s[p] for p in names] for s in seconds], dtype=float)
    targets = np.array([m.energy_j for m in with_energy], dtype=float)
    values = dict(zip(names, _nnls_relative(matrix, targets)))
    return {p: round6(values.get(p, 0.0)) for p in ENERGY_NAMES}


def round6(x: float) -> float:
    """6 significant digits: what the file stores, and what predictions use."""
    return float(f"{float(x):.6g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def pct_error(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def abs_error_summary(errors: list[float]) -> dict:
    errors = [abs(e) for e in errors]
    if not errors:
        return {"median_abs_pct": None, "max_abs_pct": None}
    return {"median_abs_pct": round6(float(np.median(errors))), "max_abs_pct": round6(max(errors))}


# ------------------------------------------------------------------------------ calibration

@dataclass
class Calibration:
    device: DeviceProfile
    time_terms: dict[str, float]
    energy_terms: dict[str, float] | None
    data: dict = field(default_factory=dict)  # the file's content
    label: str = ""  # where it came from: "built-in pi-zero-2" or a path

    @property
    def layers(self) -> dict | None:
        return self.data.get("layers")

    @property
    def whole_run(self) -> bool:
        """Whether it has whole-run terms (fitted to a log's rows)."""
        return bool(self.data["log"]["rows"])

    def predict(self, run: Run) -> Prediction:
        if not self.whole_run:
            raise SpecError(f"{self.label} is a per-layer calibration (no whole-run terms): it "
                            "predicts configurations of a model, not log rows")
        return predict(run, self.time_terms, self.energy_terms, self.device)

    @property
    def time_loo(self) -> dict:
        if not self.whole_run and self.layers is not None:
            loo = self.layers["loo"]
            return {"median_abs_pct": loo["median_abs_pct"], "max_abs_pct": loo["max_abs_pct"]}
        return self.data["time"]["loo"]

    @property
    def energy_loo(self) -> dict | None:
        return None if self.data["energy"] is None else self.data["energy"]["loo"]

    def to_dict(self) -> dict:
        return self.data

    def save(self, path) -> None:
        save_json(path, self.data)


def calibrate_layers(tables: list[dict], device: DeviceProfile,
                     log: pd.DataFrame | None = None, log_source: str = "log") -> Calibration:
    """A per-layer calibration from layer tables (devices.layerrun), with the whole-run terms
    of `log` too when given."""
    from .layerrun import fit_layer_model, round_model

    layers = round_model(fit_layer_model(tables))
    if log is not None:
        cal = calibrate(log, device, log_source)
        cal.data["layers"] = layers
        return calibration_from_dict(cal.data, cal.label)
    empty = {t.name: 0.0 for t in TIME_TERMS}
    why = {t.name: "no log: a per-layer calibration" for t in TIME_TERMS}
    data = {
        "format": FORMAT, "version": VERSION, "device": device.to_dict(),
        "log": {"source": None, "rows": 0}, "fit_method": FIT_METHOD,
        "time": _section(TIME_TERMS, empty, why, []), "energy": None, "layers": layers,
        "notes": ["no whole-run terms: per-layer model only (predicts configurations of a "
                  "model, not log rows)"] + layers["notes"]
        + ([] if layers.get("power_w") else ["no energy model: the layer tables' runs measured "
                                             "no energy (no readable counter)"]),
    }
    return calibration_from_dict(data, "layer tables")


def calibrate(log: pd.DataFrame, device: DeviceProfile, log_source: str = "log",
              notes: tuple[str, ...] = ()) -> Calibration:
    """Fit the runs of `device` (rows whose `device` column is its name) in `log`."""
    mine = log[log["device"] == device.name]
    if mine.empty:
        names = ", ".join(sorted(set(log["device"])))
        raise SpecError(f"{log_source} has no runs of device {device.name!r} (it has: {names})")
    runs = measured_runs(mine)
    if len(runs) < MIN_RUNS:
        raise SpecError(f"{log_source} has {len(runs)} run(s) of {device.name}: a calibration "
                        f"needs at least {MIN_RUNS}")
    left_out = included_time_terms(runs, device)
    time_terms = fit_time(runs, device, left_out)
    energy_terms = fit_energy(runs, time_terms, device)
    loo_time, loo_energy = leave_one_out(runs, device, left_out)
    time_rows, energy_rows = [], []
    for m, loo_s, loo_j in zip(runs, loo_time, loo_energy):
        fitted = predict(m.run, time_terms, energy_terms, device)
        base = {"model": m.model, "method": m.run.method, "batch_size": m.run.cost.batch_size}
        time_rows.append({**base, "measured_s": m.total_s, "fitted_s": round6(fitted.total_s),
                          "fitted_error_pct": round6(pct_error(fitted.total_s, m.total_s)),
                          "loo_predicted_s": round6(loo_s),
                          "loo_error_pct": round6(pct_error(loo_s, m.total_s))})
        if energy_terms is not None and m.energy_j:
            energy_rows.append({**base, "measured_j": m.energy_j,
                                "fitted_j": round6(fitted.energy_j),
                                "fitted_error_pct": round6(pct_error(fitted.energy_j, m.energy_j)),
                                "loo_predicted_j": round6(loo_j),
                                "loo_error_pct": round6(pct_error(loo_j, m.energy_j))})
    all_notes = list(notes) + [f"{name} not fitted: {why}" for name, why in left_out.items()]
    all_notes += [f"{name} fitted as 0: these runs give no evidence for it beyond the other "
                  "terms; configurations unlike the logged ones are extrapolations"
                  for name in TIME_NAMES if name not in left_out and time_terms[name] == 0]
    probe_note = _probe_note(runs, left_out)
    if probe_note:
        all_notes.append(probe_note)
    if energy_terms is None:
        all_notes.append(f"no energy model: fewer than {MIN_RUNS} runs measured energy_j")
    data = {
        "format": FORMAT, "version": VERSION, "device": device.to_dict(),
        "log": {"source": Path(log_source).name, "rows": len(runs)},
        "fit_method": FIT_METHOD,
        "time": _section(TIME_TERMS, time_terms, left_out, time_rows),
        "energy": None if energy_terms is None else _section(ENERGY_TERMS, energy_terms, {},
                                                             energy_rows),
        "layers": None,
        "notes": all_notes,
    }
    return Calibration(device, time_terms, energy_terms, data, label=f"fitted to {log_source}")


def _probe_note(runs: list[Measured], left_out: dict) -> str | None:
    """What the log can say about the Fisher probe's time (devices.model: one coefficient per
    probe MAC), when it is fitted."""
    if "fisher_mac_s" in left_out:
        return None
    probing = [m for m in runs if m.run.probes]
    timed = sum(1 for m in probing if m.phases["fisher"])
    if not timed:
        return (f"fisher_mac_s from the totals of {len(probing)} tinytrain run(s) alone (no run "
                "measured fisher_s): it also carries their planning time (plan_s is not "
                "fitted) and what of their training the other terms miss")
    return (f"fisher_mac_s from {timed} measured probe phase(s) (fisher_s): one coefficient for "
            "all the probe's MACs; its operator calls, elements and kinds of operator are not "
            "separate terms, too few probe times to determine them")


def _section(terms, values, left_out, rows) -> dict:
    return {
        "terms": {t.name: {"value": values[t.name], "unit": t.unit, "meaning": t.meaning,
                           "identified": t.name not in left_out} for t in terms},
        "rows": rows,
        "fit": abs_error_summary([r["fitted_error_pct"] for r in rows]),
        "loo": abs_error_summary([r["loo_error_pct"] for r in rows]),
    }


def leave_one_out(runs: list[Measured], device: DeviceProfile, left_out) -> tuple[list, list]:
    """(predicted total_s, predicted energy_j or None) of each run by a fit without it."""
    times, energies = [], []
    for i, m in enumerate(runs):
        others = runs[:i] + runs[i + 1:]
        time_terms = fit_time(others, device, left_out)
        energy_terms = fit_energy(others, time_terms, device)
        p = predict(m.run, time_terms, energy_terms, device)
        times.append(p.total_s)
        energies.append(p.energy_j)
    return times, energies


def leave_one_model_out(runs: list[Measured], device: DeviceProfile, left_out) -> list:
    """Predicted total_s of each run by a fit of the OTHER models' runs only (None where a
    model's runs are all there is): how a model the calibration never saw is predicted."""
    out = []
    fits = {}
    for m in runs:
        if m.model not in fits:
            others = [o for o in runs if o.model != m.model]
            fits[m.model] = fit_time(others, device, left_out) if others else None
        terms = fits[m.model]
        out.append(None if terms is None else predict(m.run, terms, None, device).total_s)
    return out


def share_within(errors: list[float], pct: float = 10.0) -> float | None:
    """Share of the rows whose |error| is at most `pct` percent (None without rows)."""
    return None if not errors else round6(sum(abs(e) <= pct for e in errors) / len(errors))


def too_few_rows(runs: list[Measured], left_out: dict) -> str | None:
    """The caveat of a fit that had to leave terms out for want of rows."""
    dropped = [n for n, why in left_out.items() if why.startswith("too few runs")]
    if not dropped:
        return None
    return (f"too few rows: {len(runs)} runs fit {len(TIME_NAMES) - len(left_out)} free terms; "
            f"{', '.join(dropped)} not fitted, and a held-out fit has fewer rows still")


# ------------------------------------------------------------------------------ files

def load_calibration(path) -> Calibration:
    data = load_json(path, what="calibration")
    return calibration_from_dict(data, str(path))


def builtin_calibration(name: str) -> Calibration | None:
    if name not in BUILTIN:
        return None
    resource = resources.files("ttplan.devices").joinpath(f"data/calibrations/{name}.json")
    text = resource.read_text("utf-8")
    cal = calibration_from_dict(json.loads(text), f"built-in calibration {name}")
    cal.label = f"built-in {name}"
    return cal


def calibration_from_dict(d, source: str) -> Calibration:
    def bad(problem: str) -> SpecError:
        return SpecError(f"{source} is not a valid calibration: {problem}")

    d = _from_version_3(d, source)
    check_header(d, source, FORMAT, VERSION, "calibration")
    check_keys(d, _TOP, "the calibration", bad)
    device = profile_from_dict(d["device"], source, header=False, ram_optional=True)
    check_keys(d["log"], {"source", "rows"}, "'log'", bad)
    if d["layers"] is not None and not (isinstance(d["layers"], dict) and
                                        {"kinds", "glue", "phases", "loo"} <= set(d["layers"])):
        raise bad("'layers' must be null or a per-layer model (kinds, glue, phases, loo)")
    if not isinstance(d["fit_method"], str):
        raise bad("fit_method must be text")
    time_terms = _terms(d["time"], TIME_TERMS, "time", bad)
    energy_terms = None if d["energy"] is None else _terms(d["energy"], ENERGY_TERMS, "energy", bad)
    if not (isinstance(d["notes"], list) and all(isinstance(n, str) for n in d["notes"])):
        raise bad("'notes' must be a list of strings")
    return Calibration(device, time_terms, energy_terms, d, label=source)


def _from_version_3(d, source: str):
    """A version-3 calibration read as version 4 when nothing is lost: its Fisher term
    (fisher_s_per_sample) was not fitted, as in a per-layer calibration; else a one-line
    refusal saying what to do."""
    if not (isinstance(d, dict) and d.get("format") == FORMAT and d.get("version") == 3
            and not isinstance(d.get("version"), bool)):
        return d
    try:
        terms = d["time"]["terms"]
        old = terms["fisher_s_per_sample"]
        value = old["value"]
    except (KeyError, TypeError):
        return d  # not valid either way: the checks below say why
    if value != 0 or old.get("identified"):
        raise SpecError(f"{source} is a version-3 calibration that prices the Fisher probe per "
                        "sample (fisher_s_per_sample); this ttplan prices it per probe MAC: "
                        "calibrate again from a log with the probe_macs column (ttplan train "
                        "or ttplan measure write it)")
    fisher = next(t for t in TIME_TERMS if t.name == "fisher_mac_s")
    new_terms = {("fisher_mac_s" if k == "fisher_s_per_sample" else k):
                 ({**v, "unit": fisher.unit, "meaning": fisher.meaning}
                  if k == "fisher_s_per_sample" else v) for k, v in terms.items()}
    return {**d, "version": VERSION, "time": {**d["time"], "terms": new_terms}}


def _terms(section, terms, where: str, bad) -> dict[str, float]:
    check_keys(section, {"terms", "rows", "fit", "loo"}, f"'{where}'", bad)
    names = {t.name for t in terms}
    check_keys(section["terms"], names, f"{where}.terms", bad)
    values = {}
    for name in sorted(names):
        term = section["terms"][name]
        check_keys(term, {"value", "unit", "meaning", "identified"}, f"{where}.terms.{name}", bad)
        v = term["value"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise bad(f"{where}.terms.{name}.value must be a non-negative number")
        if not isinstance(term["identified"], bool):
            raise bad(f"{where}.terms.{name}.identified must be true or false")
        values[name] = float(v)
    if not (isinstance(section["rows"], list) and all(isinstance(r, dict) for r in section["rows"])):
        raise bad(f"{where}.rows must be a list of objects")
    for key in ("fit", "loo"):
        check_keys(section[key], {"median_abs_pct", "max_abs_pct"}, f"{where}.{key}", bad)
        for v in section[key].values():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise bad(f"{where}.{key} values must be non-negative numbers or null")
    return values


def calibration_text(cal: Calibration) -> str:
    return dumps(cal.to_dict())


def resolve_calibration(device: DeviceProfile, path=None, device_spec=None) -> Calibration | None:
    """The calibration to predict with: `path` if given, the file `--device` named if it was
    a calibration, else the built-in one of the device, else None."""
    if path is not None:
        return load_calibration(path)
    if isinstance(device_spec, str) and device_spec.lower().endswith(".json"):
        data = load_json(device_spec, what="device")
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return calibration_from_dict(data, device_spec)
    return builtin_calibration(device.name)
