"""How well does a model's own layer table predict that model's runs?  (A script, no timing.)

    OMP_NUM_THREADS=1 python benchmarks/own_table_check.py TABLE.json [TABLE.json ...]

The tables' whole runs (`ttplan measure --layer-table`: none, bias-only, last-blocks:2, all
at each batch size) predicted by a per-layer calibration of all the tables (as `ttplan
calibrate --device host --layer-table ...` fits it, tables in the order given):
  per-kind    the cross-model per-kind functions (the path of a model the calibration never saw);
  own table   the run's model priced from its own table (devices.owntable), glue as fitted;
  own, LORO   the same with the run left out of the glue's fit (leave-one-run-out; the layer
              timings stay: they are the table, not the run).
Prints per run the measured process-CPU train_s and the three errors, then median / max
|error| of each. Reads tables only (their runs are re-described by tracing the models).
"""

from __future__ import annotations

import argparse
import statistics

from ttplan.costmodel.config import resolve_updates
from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.devices import layermodel as lm
from ttplan.devices.layerrun import load_table, round_model, run_description
from ttplan.devices.layerrun import _fit as fit_tables


def described(run: dict, sample_shape) -> dict:
    """The table's run with its layer passes (tables written before they were recorded)."""
    if run.get("layer_passes"):
        return run
    module, name = resolve_model(run["model"])
    shape = (run["batch_size"],) + tuple(sample_shape)
    graph = trace(module, (1,) + shape[1:], name)
    desc = run_description(module, resolve_updates(parse_update(run["update"]), graph), shape,
                           iterations=run["iterations"], samples=run["samples"], graph=graph)
    assert desc["step_work"] == run["step_work"], "the table's run is not what it describes"
    return {**run, "layer_passes": desc["layer_passes"], "sample_shape": desc["sample_shape"]}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", help="layer tables (`ttplan measure --layer-table`)")
    tables = [load_table(p) for p in ap.parse_args().tables]
    model = round_model(fit_tables(tables))
    per_kind = {k: v for k, v in model.items() if k != "own_tables"}
    runs = [described(r, t["input_shape"][1:]) for t in tables for r in t["runs"]]
    errors = {"per-kind": [], "own table": [], "own, LORO": []}
    print(f"{'model':16} {'update':14} b  measured  per-kind  own  own-LORO  (train_s, CPU)")
    for i, r in enumerate(runs):
        measured = r["measured"]["train_cpu_s"]
        others = runs[:i] + runs[i + 1:]
        loro = dict(model, glue=round_model(lm.fit_glue(others, model["kinds"])))
        got = {"per-kind": lm.predict_phases(r, per_kind),
               "own table": lm.predict_phases(r, model),
               "own, LORO": lm.predict_phases(r, loro)}
        assert got["own table"]["time_model"] == "per-layer, own table"
        pct = {k: 100 * (v["train_s"] - measured) / measured for k, v in got.items()}
        for k, v in pct.items():
            errors[k].append(abs(v))
        print(f"{r['model']:16} {r['update']:14} {r['batch_size']}  {measured:7.3f}  "
              + "  ".join(f"{pct[k]:+6.1f} %" for k in errors))
    for k, v in errors.items():
        print(f"{k:10} median |error| {statistics.median(v):5.1f} %, max {max(v):5.1f} % "
              f"over {len(v)} runs")


if __name__ == "__main__":
    main()
