"""The paper's Table 2 setting for any model, beside the paper's printed figures for the zoo.

Setting (§3.2, A.3, A.4): FullTrain and TinyTL at batch 100; LastLayer, SparseUpdate and
TinyTrain at batch 1; SGD with momentum (A.3) unless told otherwise. TinyTrain is planned
within the budgets (default 1 MB and 15 % of full training's backward MACs, §2.2);
SparseUpdate is the released scheme as released (no budget) for a zoo model, and the
evolutionary search within TinyTrain's budgets for any other model. Every method is planned
once (under the `paper` convention, so one policy means the same layers) and that update is
then costed under both conventions at the method's batch size.

Per row:
* memory_bytes.paper / .pytorch: the configuration's `peak_bytes` under each convention.
* backward_macs: the exact backward MACs for ONE sample (the paper's compute column is per
  sample, also for the batch-100 rows).
* backward_macs_paper_count: A.4's count, "the backward pass incurs 2x more MACs than the
  forward pass": 2 x forward MACs when every layer is trained (FullTrain); the exact count
  otherwise (the paper's LastLayer figures, e.g. 0.80M for MobileNetV2, are the exact weight
  gradient with no input gradient).
* memory_ratio / compute_ratio: to the TinyTrain row, per convention / per count.
* paper: the paper's printed Table 2 (zoo models), memory in MB, compute in millions. Its
  "MB" is compared as MiB (2^20 B): that is the unit in which ttplan reproduces FullTrain's
  906 / 1,049 / 857 MB (docs/cost-model.md, "Memory").
* compared / difference_pct: which ttplan figure each printed figure is set against, and the
  relative difference (ttplan / paper - 1). Memory: the `pytorch` convention for the batch-100
  rows (the documented FullTrain accounting), the `paper` convention (A.4's engine) for the
  batch-1 rows; compute: the paper count.

The paper's setting and printed figures: `reports.table2_paper`; the rows as text, CSV,
LaTeX and a figure: `reports.table2_render` (both re-exported here).
"""

from __future__ import annotations

import sys

from ttplan.costmodel.options import PAPER
from ttplan.costmodel.profile import ModelSource, profile, resolve_model
from ttplan.costmodel.zoo import ZOO_MODELS
from ttplan.planner.api import plan
from ttplan.planner.support.sources import load_support
from ttplan.planner.fisher import default_candidate_layers, fisher_information

from .predict import for_model, predict
# The paper's figures and the renderings, re-exported: importers name this module.
from .table2_paper import (BATCH_SIZES, METHOD_LABELS, METHODS, MIB,  # noqa: F401
                           MODEL_LABELS, PAPER_TABLE2)
from .table2_render import (TABLE2_FORMATS, csv_table2, latex_table2,  # noqa: F401
                            plot_table2, ratio_text, render_table2)

PROBE_SAMPLES = 25
PROBE_SEED = 0


def synthetic_fisher(module, input_shape, samples: int = PROBE_SAMPLES, seed: int = PROBE_SEED,
                     vocab: int | None = None):
    """The Fisher probe on synthetic samples (as `ttplan fisher --synthetic`); `input_shape`
    may be `costmodel.inputs.ModelInputs` (`vocab`: synthetic token ids' range)."""
    x, y, _ = load_support(None, input_shape, samples, seed, True, vocab)
    return fisher_information(module, default_candidate_layers(module), x, y, seed=seed)


def table2_rows(model, *, fisher=None, input_shape=(1, 3, 128, 128), memory_bytes=1_000_000,
                compute=0.15, optimizer: str = "momentum", log=None,
                predictor=None) -> list[dict]:
    """The five rows of one model (see the module docstring). `fisher`: a Fisher file, a
    FisherResult, or None (the synthetic probe, seed 0, 25 samples; `log` is told). With a
    device `predictor` (`reports.predict`) each row also has `device`: {time_s, energy_j,
    fits_ram} of the method's run at its batch size."""
    module, name = resolve_model(model)
    predictor = for_model(predictor, module)
    sample_shape = (1,) + tuple(int(d) for d in input_shape)[1:]
    if fisher is None:
        if log is not None:
            log(f"{name}: no Fisher file given; using the synthetic probe "
                f"({PROBE_SAMPLES} samples, seed {PROBE_SEED})")
        fisher = synthetic_fisher(module, sample_shape)
    zoo = name in ZOO_MODELS
    options = PAPER.replace(optimizer=optimizer)
    rows = []
    for method in METHODS:
        batch = BATCH_SIZES.get(method, 1)
        shape = (batch,) + sample_shape[1:]
        budgets = {}
        if method == "tinytrain" or (method == "sparseupdate" and not zoo):
            budgets = {"memory_bytes": memory_bytes, "compute": compute}
        policy = plan(ModelSource(module, name), method=method, inputs=shape,
                      fisher=fisher if method in ("tinytrain", "sparseupdate") else None,
                      options=options, **budgets)
        updates = policy.updates()
        costs = {c: profile(ModelSource(module, name), shape, update=updates,
                            options=policy.options.under(c), graph=policy.graph)
                 for c in ("paper", "pytorch")}
        totals = costs["paper"].totals
        backward = totals["backward_macs"] // batch
        # "2 x forward" is A.4's count of a full backward pass: every weight updated.
        full = all(r["backward_weight_macs"] == r["forward_macs"]
                   for r in costs["paper"].evaluation.rows if r["forward_macs"])
        printed = PAPER_TABLE2.get(name, {}).get(method)
        device = {} if predictor is None else {
            "device": predict(predictor, method, policy.graph, updates, policy.options)}
        rows.append({
            "model": name, "method": method, "batch_size": batch,
            "memory_bytes": {c: costs[c].memory.peak_bytes for c in costs},
            "backward_macs": backward,
            "backward_macs_paper_count": 2 * totals["forward_macs"] // batch if full else backward,
            "paper": None if printed is None else {"memory_mb": printed[0], "compute_m": printed[1]},
            "compared": {"memory": "pytorch" if batch > 1 else "paper",
                         "compute": "backward_macs_paper_count"},
            **device,
        })
    ref = next(r for r in rows if r["method"] == "tinytrain")
    return [_with_ratios_and_differences(row, ref) for row in rows]


def _with_ratios_and_differences(row: dict, ref: dict) -> dict:
    """The row with its ratios to TinyTrain's row `ref` and its differences to the paper."""
    shown = row["memory_bytes"][row["compared"]["memory"]]
    memory_ratio = {**{c: round(v / ref["memory_bytes"][c], 2)
                       for c, v in row["memory_bytes"].items()},
                    # As the paper's Ratio column: the figure shown over TinyTrain's figure shown.
                    "compared": round(shown / ref["memory_bytes"][ref["compared"]["memory"]], 2)}
    compute_ratio = {
        "exact": round(row["backward_macs"] / ref["backward_macs"], 2),
        "paper_count": round(row["backward_macs_paper_count"]
                             / ref["backward_macs_paper_count"], 2)}
    paper = row["paper"]
    difference = None if paper is None else {
        "memory": round(100 * (shown / MIB / paper["memory_mb"] - 1), 1),
        "compute": round(100 * (row["backward_macs_paper_count"] / 1e6
                                / paper["compute_m"] - 1), 1)}
    return {**row, "memory_ratio": memory_ratio, "compute_ratio": compute_ratio,
            "difference_pct": difference}


def table2(models, *, fishers: dict | None = None, log=None, **options) -> dict:
    """{rows, settings}: the rows of every model, in order."""
    rows = []
    for model in models:
        fisher = (fishers or {}).get(model if isinstance(model, str) else None)
        rows += table2_rows(model, fisher=fisher, log=log, **options)
    settings = {k: options.get(k, v) for k, v in (("memory_bytes", 1_000_000),
                                                   ("compute", 0.15), ("optimizer", "momentum"))}
    if not isinstance(settings["compute"], (int, float)):
        settings["compute"] = str(settings["compute"])
    return {"rows": rows, "settings": settings, "note": NOTE}


NOTE = ("memory: peak bytes (paper = A.4's engine, BN folded, frozen weights in flash; "
        "pytorch = what eager PyTorch keeps); the paper's MB compared as MiB, against the "
        "pytorch convention at batch 100 and the paper convention at batch 1. compute: "
        "backward MACs per sample; paper count = 2 x forward for FullTrain (A.4), exact "
        "otherwise.")


def stderr_log(message: str) -> None:
    sys.stderr.write(f"note: {message}\n")
