"""A layer table of the model being predicted prices that model directly.

A per-layer calibration (devices.layerrun) fits per-kind cost functions from the tables of
several models, to predict models it never saw. For a model whose own table it holds, the
table's measured seconds are a better price than the cross-model function: a layer alone at
its real shapes, on this device, at the measured batch sizes. `own_table(table)` keeps what a
prediction needs of a table (per layer: its cost kind, its elements per sample, and the
process-CPU seconds per call of each pass at each batch size); `match(run, tables)` finds the
table of a run's model; `passes_seconds` prices a run's layer passes from it.

Identity: the same model at the same input means the same layers: every layer the table
timed is in the run's graph, under the same name, of the same cost kind and with the same
elements per sample (its input and output shapes), the sample shapes are equal, and the
table covers at least MIN_COVERAGE of the graph's non-view operators it could time: an
operator of its own model it does not time alone (a functional call such as F.silu, F.glu or
a mean, which no module holds; its runs' layer passes name them, `untimed`) is priced by its
kind's function and does not count against it. The fingerprint (a hash
of the table's layers, kinds and elements) names the table in the prediction's notes.

Priced from the table's own seconds: a layer pass it timed at the run's batch size (forward,
input gradient, dense weight gradient, bias/norm gradients; the sparse weight gradient at the
fraction it timed, SPARSE_FRACTION). Anchored on the table and scaled by the per-kind
function: a batch size it did not time (the nearest timed batch, times the function's ratio
of the two) and a sparse fraction it did not time (likewise). The per-kind function alone:
what the table did not time (views, a layer that does not run alone, a folded norm).

Anchored on the table's own whole runs: a table also holds whole training runs of its model
(none, bias-only, last-blocks:2, all, at its batch sizes, each the median of fresh
processes). What the layers plus the cross-model overheads predict for those runs is off by a
factor that depends on the model (how its Python containers, caches and allocations behave
around its layers) and on how much of the run is backward. `anchors(runs, table, predict)`
keeps, per own run, that factor (measured / predicted train_s) beside the run's batch size and
backward share (the share of its layer seconds that are not forward passes);
`anchor_ratio` gives a run of the same model the factor of its own runs at the nearest batch
size, of its family (training weights, or biases alone), interpolated in the backward share
(piecewise linear in the log of the factor, clamped at the ends): a configuration the table
ran is priced at what it measured, one between two it ran between their factors
(notes/device_time_model.md §16).
"""

from __future__ import annotations

import hashlib
import json
import math

from .layertable import KIND_FAMILY, RECOMPUTE, SPARSE_FRACTION, VIEW_COST_KINDS

MIN_COVERAGE = 0.9  # share of the graph's non-view operators the table must have timed
FRACTION_TOLERANCE = 1e-6
SAME_SHARE = 1e-5  # relative: shares are stored to 6 significant digits
WEIGHT_PASSES = frozenset({"weight_grad", "sparse_weight_grad"})


def _elements_per_sample(row: dict) -> int:
    return int(row["elements"]) // int(row["batch_size"])


def fingerprint(layers: dict) -> str:
    """A short hash of the table's layers: names, cost kinds, elements per sample."""
    text = json.dumps(sorted((name, v["kind"], v["elements"]) for name, v in layers.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def own_table(table: dict) -> dict:
    """What a prediction needs of one layer table (devices.layerrun's file format)."""
    layers: dict[str, dict] = {}
    for r in table["layers"]:
        if r["model"] == "kind-sweep" or r["cpu_s"] <= 0:
            continue
        entry = layers.setdefault(r["layer"], {"kind": r["kind"],
                                               "elements": _elements_per_sample(r),
                                               "passes": {}})
        entry["passes"].setdefault(r["pass"], {})[str(int(r["batch_size"]))] = float(r["cpu_s"])
    return {"model": table["model"], "sample_shape": [int(s) for s in table["input_shape"][1:]],
            "batch_sizes": [int(b) for b in table["batch_sizes"]],
            "sparse_fraction": SPARSE_FRACTION, "fingerprint": fingerprint(layers),
            "layers": layers, "untimed": untimed_operators(table, layers)}


def untimed_operators(table: dict, layers: dict) -> list[str]:
    """The non-view operators of the table's model (its runs' forward layer passes) that it
    timed no pass of: measured on a Conformer-like model, 7 of its 40 (F.glu, F.silu, a
    scalar product, a mean) kept its 33 timed layers from pricing it (MIN_COVERAGE)."""
    operators = {name for r in table.get("runs") or ()
                 for name in _operators(_forwards(r.get("layer_passes") or ()))}
    return sorted(operators - set(layers))


def _forwards(passes: list[list]) -> dict[str, tuple]:
    """{operator: (cost kind, elements)} of the forward passes among `layer_passes` entries."""
    return {p[0]: (p[1], p[4]) for p in passes if p[2] == "forward"}


def _operators(forward: dict[str, tuple]) -> list[str]:
    """The non-view operators of `_forwards`."""
    return [name for name, (kind, _) in forward.items() if kind not in VIEW_COST_KINDS]


def match(run: dict, tables: list[dict]) -> dict | None:
    """The own table of the run's model (module docstring: identity), or None."""
    passes, shape = run.get("layer_passes"), run.get("sample_shape")
    if not passes or shape is None:
        return None
    forward = _forwards(passes)
    operators = _operators(forward)
    for table in tables:
        if [int(s) for s in shape] != table["sample_shape"]:
            continue
        layers, untimed = table["layers"], set(table.get("untimed") or ())
        same = all(name in forward and _family(forward[name][0]) == _family(v["kind"])
                   and int(forward[name][1]) == v["elements"] for name, v in layers.items())
        timeable = [name for name in operators if name not in untimed]
        covered = sum(name in layers for name in timeable)
        if same and layers and covered >= MIN_COVERAGE * len(timeable):
            return table
    return None


def _family(kind: str) -> str:
    """A kind and the kind it was split from are one (a table measured before the split)."""
    return KIND_FAMILY.get(kind, kind)


def _nearest(timed: dict, batch: int) -> int:
    """The timed batch size nearest `batch` in ratio (ties: the smaller)."""
    return min((int(b) for b in timed), key=lambda b: (abs(math.log(b / batch)), b))


def passes_seconds(passes: list[list], table: dict, kinds_seconds, batch: int,
                   notes: dict) -> float:
    """Seconds of `layer_passes` entries at batch `batch`, from the own table where it timed
    them (module docstring). `kinds_seconds(kind, pass, macs, elements, weights, batch,
    steps, short-map MACs)`: the per-kind function. `notes` counts the passes per pricing, {reason: count}."""
    total = 0.0
    for layer, kind, pass_name, macs, elements, weights, fraction, *rest in passes:
        # entries written before gate steps have seven fields, before short-map MACs eight
        steps, short = (list(rest) + [0, 0.0])[:2]
        fitted = kinds_seconds(kind, pass_name, macs, elements, weights, batch, steps, short)
        timed = table["layers"].get(layer, {}).get("passes", {}).get(
            "forward" if pass_name == RECOMPUTE else pass_name)  # the forward, run again
        if not timed:
            notes["per-kind function: a pass the table did not time"] = \
                notes.get("per-kind function: a pass the table did not time", 0) + 1
            total += fitted
            continue
        at = _nearest(timed, batch)
        scale_macs = scale_weights = 1.0
        if pass_name == "sparse_weight_grad" and \
                abs(fraction - table["sparse_fraction"]) > FRACTION_TOLERANCE:
            scale_macs = scale_weights = table["sparse_fraction"] / fraction
            reason = "own table scaled by the per-kind function: a channel fraction not timed"
        elif at != batch:
            reason = "own table scaled by the per-kind function: a batch size not timed"
        else:
            notes["own table"] = notes.get("own table", 0) + 1
            total += timed[str(at)]
            continue
        anchor = kinds_seconds(kind, pass_name, macs * scale_macs, elements,
                               weights * scale_weights, at, steps, short * scale_macs)
        notes[reason] = notes.get(reason, 0) + 1
        total += timed[str(at)] * (fitted / anchor if anchor > 0 else 1.0)
    return total


def trains_weights(run: dict) -> bool:
    """Whether a run updates any weight (a conv's, a linear's, a norm's scale): its backward
    then has weight gradients, which runs updating only biases do not."""
    return any(p[2] in WEIGHT_PASSES for p in run.get("layer_passes") or ())


def anchors(runs: list[dict], table: dict, predict) -> list[list]:
    """[update, batch size, backward share, measured / predicted train_s, trains weights] of
    the table's own whole runs. `predict(run)` -> (train_s, backward share) before anchoring;
    a run of another input or without layer passes (tables written before) gives none."""
    out = []
    for r in runs:
        measured = r.get("measured", {}).get("train_cpu_s") or 0.0
        if measured <= 0 or match(r, [table]) is None:
            continue
        predicted, share = predict(r)
        if predicted > 0:
            out.append([r["update"], int(r["batch_size"]), share, measured / predicted,
                        trains_weights(r)])
    return sorted(out, key=lambda a: (a[1], a[2], a[0]))


def anchor_ratio(points: list[list], batch: int, share: float,
                 weights: bool = True) -> tuple[float, str] | None:
    """The factor of the own runs (`anchors`) for a run at `batch` with backward share
    `share`, and what it was interpolated from; None without anchors. Only runs of the same
    family count, and the runs training nothing (share 0) in both: a run that trains weights
    (`weights`: none, last-blocks:K, all, a plan) between those, one training biases alone
    between none and bias-only -- at the same share of backward they run other kernels."""
    if not points:
        return None
    at = _nearest({p[1]: None for p in points}, batch)
    mine: dict[float, list] = {}
    for update, b, x, ratio, *family in points:
        if b != at or (family and x > 0 and family[0] != weights):
            continue
        # runs of one configuration at two lengths: one point, their mean
        mine.setdefault(round(x, 6), []).append((update, x, math.log(ratio)))
    if not mine:
        return None
    groups = [mine[k] for k in sorted(mine)]
    xs = [sum(x for _, x, _ in g) / len(g) for g in groups]
    logs = [sum(v for _, _, v in g) / len(g) for g in groups]
    names = [g[0][0] for g in groups]
    if share <= xs[0] or len(xs) == 1:
        return math.exp(logs[0]), names[0]
    if share >= xs[-1]:
        return math.exp(logs[-1]), names[-1]
    i = next(k for k in range(1, len(xs)) if share <= xs[k])
    w = (share - xs[i - 1]) / (xs[i] - xs[i - 1])
    return math.exp((1 - w) * logs[i - 1] + w * logs[i]), f"{names[i - 1]} and {names[i]}"


def measured_update(points: list[list], batch: int, share: float,
                    weights: bool = True) -> str | None:
    """The update of the own run (`anchors`) a run repeats -- the same batch size, family and
    backward share, so the same layer passes -- or None: a configuration the table measured,
    whose time is known to the spread of its repeats (devices.planning.time_resolution)."""
    for update, b, x, _, *family in points or ():
        if b == batch and math.isclose(x, share, rel_tol=SAME_SHARE, abs_tol=1e-12) and \
                (not family or x == 0 or family[0] == weights):
            return update
    return None


def describe(table: dict, notes: dict) -> list[str]:
    """The prediction's notes: which table, and how many passes were priced how."""
    head = (f"per-layer, own table: {table['model']} at 1x"
            f"{'x'.join(str(s) for s in table['sample_shape'])} (fingerprint "
            f"{table['fingerprint']}, batch sizes {', '.join(map(str, table['batch_sizes']))})")
    return [head] + [f"{reason}: {count} layer passes" for reason, count in sorted(notes.items())]
