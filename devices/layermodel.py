"""A configuration's device time as the sum of what it runs, layer by layer.

Each layer's pass costs what its kind's cost function of the layer's shape says:

    seconds(kind, pass) = mac_s x MACs + element_s x elements + call_s      (per call)
                          [+ weight_s x weight elements x batch, weight gradients of MAC kinds]
                          [+ gate_step_s x gate steps, recurrent kinds: per batch, not per sample]
                          [+ short_mac_s x short-map MACs, a 1 x 1 conv's forward and input
                           gradient on a map of fewer than layertable.MIN_POSITIONS positions]

(MAC kinds: conv (dense k x k on oneDNN), conv_native (one PyTorch runs on its own im2col
path at batch 1, layertable.NATIVE_INPUT_ELEMENTS), conv_dilated (a dilated one on that path),
pointwise (1 x 1, stride 1), depthwise (3 x 3 and smaller), depthwise_large (kernels larger
than 3 x 3: a slower weight gradient), conv1d (conv1d_native, conv1d_dilated),
conv_transpose (conv_transpose_native), linear (linear layers, matrix products), sdpa (fused
attention), mha (nn.MultiheadAttention), lstm, rnn and rnn_cell, maxpool and avgpool (their
MACs: window taps); others: norm, elementwise, view, which costs a call only, and the
elementwise family's activations and several-kernel operators). The
constants are fitted per (kind, pass) by non-negative least squares on relative residuals to
the rows of per-layer tables (devices.layertable), never with more free terms than rows; a
(kind, pass) the tables cannot determine (too few rows, or not of full rank) borrows the
constants of a kind that runs on the same kernels (conv and linear: pointwise, a matrix
product; norm and view: elementwise; depthwise_large: depthwise; FALLBACK, PASS_FALLBACK)
and says so.

A training step of batch b runs, in the order autograd runs it:
  forward      every operator (under no_grad before the first updated layer: the same kernels);
  input_grad   the operators a gradient passes through (grads.inputs): nothing before the
               first updated layer, no input gradient where none is needed;
  weight_grad  the updated weights, at the channel fraction updated (the MACs say how much);
  bias_grad    the updated biases and norm shifts;
plus the overheads fitted from whole training runs (`fit_glue`, GLUE_TERMS): what a layer
inside a model pays beyond itself alone, per forward operator call (the containers' Python
around it); the fixed cost of a step (loss, optimiser call, data) and of updating one tensor;
minus what the layers' separately timed gradients double count (a layer's backward computes
its input, weight and bias gradients in ONE call, whose fixed cost each separate timing paid);
per image input element augmented (`augment_element_s`: the data pipeline's augmentation of
image samples, per sample and iteration; fitted only from runs of two lengths, layermeasure's
long runs); and once per run a first-call cost. A `train` pass also runs the
prototypes' forward of every sample (no gradient). The Fisher probe runs the prototypes'
forward, then a forward of every sample and the backward of the probed tail (input gradients
from the first candidate layer on) — its time follows from that, not from a constant.

The work of a configuration is counted per sample (MACs and elements scale with the batch,
calls do not), from one batch-1 evaluation, so any batch size can be predicted.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import nnls

from ttplan.costmodel.memory import checkpoint_regions
from ttplan.costmodel.rules import registry_of

from .layertable import (BIAS_RUNS_WEIGHT_BACKWARD, COST_KINDS, ELEMENTWISE_FAMILY_KINDS,
                         MAC_COST_KINDS, ONE_CALL_KINDS, PARAMETER_FREE_KINDS, PASSES,
                         POOL_KINDS, RECOMPUTE,
                         RECURRENT_KINDS, SHORT_MAP_PASSES, STAND_INS, VIEW_COST_KINDS,
                         WHOLE_BACKWARD_KINDS,
                         cost_kind, forward_work_count, gate_steps, pass_elements, positions,
                         priced_kind, short_macs, weight_elements)

# The cost kinds devices.sparse serves (2-D convs and linear layers); any other layer updated
# on some channels keeps the dense, masked gradient: its whole weight gradient is computed.
SPARSE_COST_KINDS = frozenset({"conv", "conv_native", "conv_dilated", "pointwise", "depthwise",
                               "depthwise_large", "linear"})
FALLBACK = {"conv": "pointwise", "linear": "pointwise", "norm": "elementwise",
            "view": "elementwise", "index": "elementwise", "depthwise_large": "depthwise",
            "lstm": "linear", "rnn": "linear", "rnn_cell": "linear", "conv1d": "conv",
            "conv_transpose": "conv",
            "mha": "linear", "sdpa": "linear", "maxpool": "elementwise",
            "avgpool": "elementwise",
            "conv_native": "conv",
            "conv1d_native": "conv1d", "conv_transpose_native": "conv_transpose",
            "conv_dilated": "conv_native", "conv1d_dilated": "conv1d_native",
            **dict.fromkeys(ELEMENTWISE_FAMILY_KINDS, "elementwise")}
# A bias gradient is a per-channel sum of the output's gradient: for a kind whose tables time
# no biased layer (the zoo's convs have none), a conv's, then a norm's shift's — the same
# reduction — never 0. A conv oneDNN runs computes its weights' gradient for its bias alone
# too (measured: a bias gradient 1.0-1.5x the weight gradient, 92-992 us for depthwise convs);
# a 1 x 1 conv runs PyTorch's own path, where it is the sum alone (15-24 us where oneDNN's
# conv function priced 225-334): a pointwise conv borrows the native path's (notes §24).
# (WHOLE_BACKWARD_KINDS have no bias pass: their biases run their one backward.)
BIAS_FALLBACK = {"pointwise": "conv_native", "depthwise": "conv", "depthwise_large": "conv",
                 "conv1d": "conv", "conv_transpose": "conv", "conv": "norm", "linear": "norm",
                 "conv_native": "conv",
                 "conv1d_native": "conv1d", "conv_dilated": "conv_native",
                 "conv1d_dilated": "conv1d_native",
                 "conv_transpose_native": "conv_transpose", "elementwise": "norm"}
# Per pass, before FALLBACK. A parameter that scales a tensor elementwise (a layer scale, a
# free parameter multiplied in) has a norm's scale's gradient: the same reduction.
PASS_FALLBACK = {"bias_grad": BIAS_FALLBACK, "weight_grad": {"elementwise": "norm",
                                                            "prelu": "norm"}}
# The layers' own seconds count as measured (no free scale); the glue adds what a layer alone
# does not pay — a forward operator call inside a model (`op_s`: the containers' and blocks'
# Python around it), a training step (`step_s`: the loss and its backward, the autograd
# engine's start, the optimiser call, data; measured on a one-Linear model where the tables
# have it, devices.stepreference), a tensor update — and once
# per run the first call of each operator (kernel selection, allocations); it takes off what
# the separately timed gradients of one layer double count (`shared_grad_s`, per gradient of a
# layer beyond its first: PyTorch computes them in one backward call, whose fixed cost each
# separate timing paid; notes/device_time_model.md §12). In the order they are fitted: a term
# whose runs' column the columns before it already span cannot be determined and is left out.
# `augment_element_s` (per input element of every image sample and iteration: the runner
# augments image samples, N x C x H x W, and no other input, planner.fisher.augment_images; so
# it follows the image's size, and a sequence or token model pays none) is told from `step_s`
# by the batch sizes and from `first_call_s` only by runs of two lengths (tables measured
# before measure_table's long runs have one: it is left out there, else it would carry a
# per-run constant in disguise, notes §6, §13, §19). Calibrations written before it have a
# per-sample `sample_s`, applied as it was (`glue_seconds`).
# `forward_element_s` (per forward element of every step's and the prototypes' forward: a
# layer inside a model reads what it did not just touch, which a layer timed alone on a warm
# input does not pay; measured in the tables, layerrun.measured_forward_element_s) is never
# fitted: tables without the whole forwards leave it 0 (notes §22).
# `loop_s` (every step, training or not: the loss and the loop's bookkeeping) and
# `iteration_s` (every iteration: the prototypes' means, the shuffle) are measured on the step
# reference only (layerrun.measured_step_terms); where they are, `step_s` is what a training
# step pays beyond them. Tables without them leave both 0 (step_s then holds the loop's cost).
GLUE_TERMS = ("step_s", "shared_grad_s", "tensor_update_s", "first_call_s", "op_s",
              "augment_element_s", "forward_element_s", "loop_s", "iteration_s")
LENGTH_TERMS = frozenset({"augment_element_s"})  # determined only by runs of two lengths
MEASURED_ONLY_TERMS = frozenset({"forward_element_s", "loop_s", "iteration_s"})
FITTED_TERMS = len(GLUE_TERMS) - len(MEASURED_ONLY_TERMS)  # at most: never more than rows
MIN_ROWS_PER_TERM = 1  # never more free terms than rows
# The optimiser's work beyond SGD's fixed cost per tensor, {optimiser: s} each, measured (never
# fitted) in the tables' step references: glue term -> the step reference's record of it
# (devices.stepreference.update_element_seconds, in this order; `update_seconds`).
OPTIMIZER_TERMS = {"update_element_s": "update_element_cpu_s",
                   "optimizer_tensor_s": "update_tensor_extra_cpu_s",
                   "optimizer_call_s": "update_call_extra_cpu_s"}


def _key(kind: str, pass_name: str) -> str:
    return f"{kind}/{pass_name}"


# ------------------------------------------------------------------------------ work

def layer_passes(evaluation) -> list[list]:
    """[layer, kind, pass, macs, elements, weight elements, channel fraction, gate steps,
    short-map MACs] of every pass one training step runs, per sample (a batch-1 evaluation;
    pytorch convention: BatchNorm its own call), in the graph's order: what `step_work` sums
    per (kind, pass) and what an own table (devices.owntable) prices layer by layer. Gate
    steps: a recurrent layer's step-by-step work (`gate_steps`), per batch, not per sample;
    short-map MACs: what a 1 x 1 conv's map short of layertable.MIN_POSITIONS adds
    (`short_macs`). Entries written before them have seven or eight fields."""
    out: list[list] = []
    rows = {r["name"]: r for r in evaluation.rows}

    def add(layer, kind, pass_name, macs, elements, weights=0.0, fraction=1.0, steps=0):
        out.append([layer, kind, pass_name, macs, elements, weights, fraction, steps,
                    short_macs(kind, pass_name, macs, at)])

    recomputed = {n for r in checkpoint_regions(evaluation.graph, evaluation.grads).values()
                  for n in r.members}
    for node in evaluation.graph.ops():
        kind, row = cost_kind(node), rows[node.name]
        elements, steps, at = pass_elements(node), gate_steps(node), positions(node)
        add(node.name, kind, "forward", forward_work_count(row, kind), elements, steps=steps)
        if node.name in recomputed:  # a checkpointed call's forward, run again in the backward
            add(node.name, kind, RECOMPUTE, forward_work_count(row, kind), elements, steps=steps)
        grad = evaluation.grads[node.name]
        if node.attrs.get("folded_bn"):  # the paper convention folds it; PyTorch still runs it
            out_elements = 2 * math.prod(node.out_shape)
            folded = f"{node.name}#folded-norm"  # no table times it: a kind's function prices it
            add(folded, "norm", "forward", 0, out_elements)
            # the runner updates the folded norm's scale and shift with the conv's weight:
            # one backward call (ONE_CALL_KINDS)
            if grad.any:
                add(folded, "norm", "input_grad", 0, out_elements)
            if grad.weight or grad.bias:
                add(folded, "norm", "joint_grad" if grad.any else
                    "weight_grad" if grad.weight else "bias_grad", 0, out_elements)
        if kind in WHOLE_BACKWARD_KINDS:  # one backward through time, as it is timed
            if grad.weight or (grad.bias and kind in BIAS_RUNS_WEIGHT_BACKWARD):
                add(node.name, kind, "weight_grad", row["backward_weight_macs"], elements,
                    weight_elements(node), steps=steps)
            elif any(grad.inputs) or grad.bias:
                add(node.name, kind, "input_grad", row["backward_input_macs"], elements,
                    steps=steps)
            continue
        if any(grad.inputs):  # a pool's input gradient: its window taps again
            add(node.name, kind, "input_grad", forward_work_count(row, kind)
                if kind in POOL_KINDS else row["backward_input_macs"], elements)
            if kind in ONE_CALL_KINDS:  # its parameters' gradients in the same call
                if grad.weight or grad.bias:
                    add(node.name, kind, "joint_grad", 0, elements)
                continue
        if grad.weight:
            fraction = row["backward_weight_macs"] / row["forward_macs"] \
                if row["forward_macs"] else 1.0
            # a 2-D conv/linear updated on some channels runs the runner's sparse backward;
            # another layer its dense, masked one: the whole gradient
            sparse = fraction < 1.0 and kind in SPARSE_COST_KINDS
            if fraction < 1.0 and not sparse and kind in MAC_COST_KINDS:
                add(node.name, kind, "weight_grad", row["forward_macs"], elements,
                    weight_elements(node))
            else:
                add(node.name, kind, "sparse_weight_grad" if sparse else "weight_grad",
                    row["backward_weight_macs"], elements, weight_elements(node) * fraction,
                    fraction)
            if kind in ONE_CALL_KINDS:  # the shift's gradient comes with the scale's
                continue
        if grad.bias:
            # the elements a table row of the pass counts (pass_elements), as fitted
            add(node.name, kind, "bias_grad", 0, elements)
    return out


def work_of(passes: list[list]) -> dict[str, list[float]]:
    """{kind/pass: [macs, elements, weight elements, calls, gate steps, short-map MACs]} of
    `layer_passes` entries (work written before the last two has four or five columns)."""
    work: dict[str, list[float]] = {}
    for _, kind, pass_name, macs, elements, weights, _, *rest in passes:
        w = work.setdefault(_key(kind, pass_name), [0.0] * 6)
        w[0] += macs
        w[1] += elements
        w[2] += weights
        w[3] += 1
        w[4] += rest[0] if rest else 0
        w[5] += rest[1] if len(rest) > 1 else 0.0
    return work


def step_work(evaluation) -> dict[str, list[float]]:
    """{kind/pass: [macs, elements, weight elements per sample, calls, gate steps, short-map
    MACs per sample]} of one training step,
    from a batch-1 evaluation (pytorch convention: BatchNorm its own call)."""
    return work_of(layer_passes(evaluation))


def forward_work(evaluation) -> dict[str, list[float]]:
    return {k: v for k, v in step_work(evaluation).items() if k.endswith("/forward")}


def probe_work(graph, candidates: set[str]) -> dict[str, list[float]]:
    """A Fisher probe step: the forward of every operator, the input gradients from the
    first candidate layer's output on (the probe's backward of the tail), and what the probe
    computes of each candidate's output (`fisher_passes`), as `work_of` sums layer passes."""
    passes: list[list] = []
    started = False
    for node in graph.ops():
        kind, elements, steps = cost_kind(node), pass_elements(node), gate_steps(node)
        rule = registry_of(graph).rule_for(node.kind)
        macs = 0 if rule is None else forward_work_count(
            {"forward_macs": rule.forward_macs(node),
             "forward_other_ops": rule.forward_other_ops(node)}, kind)
        for pass_name, on in (("forward", True), ("input_grad", started)):
            if on:  # an input gradient does the forward's MACs (transposed product)
                passes.append([node.name, kind, pass_name, macs, elements, 0.0, 1.0, steps,
                               short_macs(kind, pass_name, macs, positions(node))])
        if node.module in candidates:
            started = True
            passes += fisher_passes(node)
    return work_of(passes)


def fisher_passes(node) -> list[list]:
    """The elementwise passes the probe runs on a candidate layer's output a when its
    gradient g arrives (planner.fisher.probe, Eq. 2): the product a·g (reads two tensors,
    writes one) and its sum over each channel's positions (reads it, writes a value per
    channel); then, per batch, the channels' values squared in float64 and added to the
    running sums (a cast, a square, a sum over the batch, an add: four calls on a value per
    channel). Measured on this VM: 6-16 ms of a 25-sample probe of 8-11 candidate layers,
    3-10 % of it (notes/device_time_model.md §29)."""
    out, channels, name = math.prod(node.out_shape), int(node.out_channels), f"{node.name}#fisher"
    return [[name, "elementwise", "forward", 0, 3 * out, 0.0, 1.0, 0],
            [name, "elementwise", "forward", 0, out + channels, 0.0, 1.0, 0]] + \
        [[name, "elementwise", "forward", 0, 2 * channels, 0.0, 1.0, 0]] * 4


def per_sample(work: dict, batch: int) -> dict:
    """Work counted at batch `batch` per sample (calls and gate steps are per batch)."""
    return {k: [m / batch, e / batch, w / batch, *rest[:2], *(s / batch for s in rest[2:])]
            for k, (m, e, w, *rest) in work.items()}


def batches(samples: int, batch_size: int) -> list[int]:
    """The batch sizes of one pass over `samples` (the last one may be smaller)."""
    full, rest = divmod(samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


# ------------------------------------------------------------------------------ seconds

def priced_by(kinds: dict, kind: str, pass_name: str) -> str | None:
    """The kind/pass whose fitted constants price (kind, pass): its own, or those of the kind it
    falls back to (PASS_FALLBACK, then FALLBACK; an unmeasured sparse weight gradient as dense);
    None when no kind on the way is measured."""
    if pass_name == RECOMPUTE:
        pass_name = "forward"
    seen, visited = kind, set()
    by_pass = PASS_FALLBACK.get(pass_name, {})
    while seen not in visited:
        visited.add(seen)
        c = kinds.get(_key(seen, pass_name))
        if c is not None and c["identified"]:
            return _key(seen, pass_name)
        seen = by_pass.get(seen) or FALLBACK.get(seen)
        if seen is None:
            break
    if pass_name == "sparse_weight_grad":
        return priced_by(kinds, kind, "weight_grad")
    return None


def priced_as(source: str | None) -> str:
    """How a note says what prices an untimed kind (`priced_by`)."""
    return f"priced as {source}" if source else "priced at 0 s: no kind to borrow from"


def constants_for(kinds: dict, kind: str, pass_name: str) -> dict:
    """The fitted constants of (kind, pass), or of the kind it falls back to (`priced_by`)."""
    pass_name = "forward" if pass_name == RECOMPUTE else pass_name
    key = priced_by(kinds, kind, pass_name)
    if key is None:
        return {"mac_s": 0.0, "element_s": 0.0, "weight_s": 0.0, "call_s": 0.0}
    c = kinds[key]
    # a view costs a call, whatever its size; an index's backward writes elements
    if kind == "view" or kind == "index" and pass_name == "forward":
        return {"mac_s": 0.0, "element_s": 0.0, "weight_s": 0.0, "call_s": c["call_s"],
                "gate_step_s": 0.0}
    return c


def _seconds(c: dict, macs: float, elements: float, weights: float, batch: int,
             calls: float = 1.0, steps: float = 0.0, short: float = 0.0) -> float:
    """The kind's function (module docstring) of constants `c`: work per sample times the
    batch; calls and gate steps per batch."""
    return batch * (c["mac_s"] * macs + c["element_s"] * elements
                    + c.get("weight_s", 0.0) * weights + c.get("short_mac_s", 0.0) * short) \
        + c["call_s"] * calls + c.get("gate_step_s", 0.0) * steps


def work_seconds(work_per_sample: dict, kinds: dict, batch: int) -> float:
    total = 0.0
    for key, (macs, elements, weights, calls, *rest) in work_per_sample.items():
        kind, pass_name = key.split("/")
        total += _seconds(constants_for(kinds, priced_kind(kind, batch), pass_name), macs,
                          elements, weights, batch, calls, *rest[:2])
    return total


def kind_seconds(kinds: dict, kind: str, pass_name: str, macs: float, elements: float,
                 weights: float, batch: int, *rest: float) -> float:
    """One call of a (kind, pass) at batch `batch` by its fitted function (work per sample;
    `rest`: gate steps per batch, then short-map MACs per sample; absent: 0)."""
    return _seconds(constants_for(kinds, priced_kind(kind, batch), pass_name), macs, elements,
                    weights, batch, 1.0, *rest[:2])


def own_pass_seconds(run: dict, table: dict, kinds: dict) -> tuple[float, float, dict]:
    """Layer seconds of a run's train passes priced from its model's own table
    (devices.owntable), the share of them that are not forward passes (the backward share
    an own-run anchor is interpolated in), and {how priced: passes} over one step of each
    batch size."""
    from .owntable import passes_seconds

    price = lambda *a: kind_seconds(kinds, *a)  # noqa: E731
    passes = run["layer_passes"]
    forward = [p for p in passes if p[2] == "forward"]
    notes: dict = {}
    total = backward = 0.0
    sizes = batches(run["samples"], run["batch_size"])
    for b in sorted(set(sizes)):
        forwards = passes_seconds(forward, table, price, b, {})  # the prototypes'
        step = passes_seconds(passes, table, price, b, notes)
        total += (forwards + step) * sizes.count(b)
        backward += (step - forwards) * sizes.count(b)
    share = backward / total if total > 0 else 0.0
    return run["iterations"] * total, share, notes


def pass_seconds(step: dict, forward: dict, kinds: dict, samples: int, batch_size: int,
                 iterations: int) -> float:
    """Layer seconds of `iterations` train passes: prototypes' forward + each step."""
    one = sum(work_seconds(forward, kinds, b) + work_seconds(step, kinds, b)
              for b in batches(samples, batch_size))
    return iterations * one


# ------------------------------------------------------------------------------ fitting

def _nnls_weighted(matrix: np.ndarray, targets: np.ndarray, power: float = 0.5) -> np.ndarray:
    """NNLS with residuals divided by target**power: 1 is relative (every layer alike), 0
    absolute (the big layers decide); 0.5 between, as a model's time is a sum of layers of
    very different sizes."""
    weights = targets ** power
    weighted = matrix / weights[:, None]
    scale = np.abs(weighted).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(weighted / scale, targets / weights, maxiter=50 * matrix.shape[1] + 100)
    return solution / scale


def _same_column(column: list[float], other: list[float]) -> bool:
    """Whether a column is another over again (proportional): one term would carry both, so
    the second is left out of the fit rather than leaving the kind undetermined. A cell's
    call is one time step: its weight gradient's MACs are its weights x the batch."""
    a, b = np.asarray(column, dtype=float), np.asarray(other, dtype=float)
    if not len(a) or not a.any() or not b.any():
        return False
    return bool(np.allclose(a / np.abs(a).max(), b / np.abs(b).max(), rtol=1e-9, atol=0.0))


def fit_kinds(rows: list[dict]) -> dict:
    """{kind/pass: {mac_s, element_s, call_s, rows, identified, why}} from table rows."""
    out = {}
    for kind in COST_KINDS:
        for pass_name in PASSES:
            if kind in WHOLE_BACKWARD_KINDS and pass_name in ("bias_grad", "sparse_weight_grad"):
                continue  # its weight_grad is its one backward (layer_passes)
            if pass_name == "sparse_weight_grad" and kind in MAC_COST_KINDS \
                    and kind not in SPARSE_COST_KINDS:
                continue  # the sparse backward does not serve it: never run (layer_passes)
            if kind in PARAMETER_FREE_KINDS and pass_name not in ("forward", "input_grad"):
                continue  # no parameters
            if kind == "prelu" and pass_name in ("bias_grad", "sparse_weight_grad"):
                continue  # its slopes only, never per channel
            if pass_name == "joint_grad" and kind not in ONE_CALL_KINDS:
                continue  # its gradients are calls of their own
            mine = [r for r in rows if r["kind"] == kind and r["pass"] == pass_name
                    and r["cpu_s"] > 0]
            use_macs = kind in MAC_COST_KINDS and pass_name != "bias_grad"
            use_weights = kind in MAC_COST_KINDS and pass_name.endswith("weight_grad") \
                and not _same_column([r["weights"] for r in mine], [r["macs"] for r in mine])
            # tables measured before the per-step term have no gate steps: it is left out
            use_steps = kind in WHOLE_BACKWARD_KINDS and any(r.get("gate_steps") for r in mine)
            # nor before positions: no short-map MACs, or no map short of the floor
            short = [short_macs(kind, pass_name, r["macs"], r.get("positions", 0))
                     for r in mine]
            use_short = (kind, pass_name) in SHORT_MAP_PASSES and any(short)
            names = (["mac_s"] if use_macs else []) + ["element_s"] + \
                (["weight_s"] if use_weights else []) + \
                (["short_mac_s"] if use_short else []) + \
                (["gate_step_s"] if use_steps else []) + ["call_s"]
            entry = {"mac_s": 0.0, "element_s": 0.0, "weight_s": 0.0, "call_s": 0.0,
                     **({"short_mac_s": 0.0} if (kind, pass_name) in SHORT_MAP_PASSES else {}),
                     **({"gate_step_s": 0.0} if kind in WHOLE_BACKWARD_KINDS else {}),
                     "rows": len(mine),
                     "identified": False, "why": ""}
            if not mine:
                if kind not in VIEW_COST_KINDS:
                    entry["why"] = "no layer of this kind in the tables"
                    out[_key(kind, pass_name)] = entry
                continue
            columns = ([[r["macs"] for r in mine]] if use_macs else []) + \
                [[r["elements"] for r in mine]] + \
                ([[r["weights"] for r in mine]] if use_weights else []) + \
                ([short] if use_short else []) + \
                ([[r.get("gate_steps", 0) for r in mine]] if use_steps else []) + \
                [[1.0] * len(mine)]
            matrix = np.array(columns, dtype=float).T
            rank = np.linalg.matrix_rank(matrix / np.abs(matrix).max(axis=0).clip(min=1e-300))
            if len(mine) < len(names) * MIN_ROWS_PER_TERM or rank < len(names):
                entry["why"] = (f"{len(mine)} row(s) of rank {rank} for {len(names)} terms: "
                                "cannot determine them")
                out[_key(kind, pass_name)] = entry
                continue
            values = _nnls_weighted(matrix, np.array([r["cpu_s"] for r in mine]))
            entry.update(dict(zip(names, (float(v) for v in values))), identified=True)
            out[_key(kind, pass_name)] = entry
    return out


def run_layer_seconds(run: dict, kinds: dict) -> dict:
    """Layer seconds of a whole run's phases: {train, fisher} (before the glue)."""
    train = pass_seconds(run["step_work"], run["forward_work"], kinds, run["samples"],
                         run["batch_size"], run["iterations"])
    fisher = 0.0
    if run.get("probe_work"):
        fisher = sum(work_seconds(run["forward_work"], kinds, b)  # the prototypes
                     + work_seconds(run["probe_work"], kinds, b)  # forward + tail backward
                     for b in batches(run["samples"], run["batch_size"]))
    return {"train": train, "fisher": fisher}


def calls(work: dict) -> float:
    return float(sum(w[3] for w in work.values()))


def shared_gradients(passes: list[list] | None) -> int:
    """Gradients of one step that a layer's backward computes in the same call as another of
    its gradients: per layer with backward passes, their number less one (a conv's input and
    weight gradient: 1; a BatchNorm's input, weight and bias gradients: 2). Each was timed
    alone in the table (its own call), so the layers' sum pays that call's fixed cost once
    per gradient, the step once per layer. 0 without `layer_passes` (tables written before)."""
    per_layer: dict[str, int] = {}
    for layer, _, pass_name, *_ in passes or ():
        if pass_name not in ("forward", "joint_grad"):  # joint: in the input gradient's call
            per_layer[layer] = per_layer.get(layer, 0) + 1
    return sum(n - 1 for n in per_layer.values())


def augmented_elements(sample_shape) -> int:
    """Input elements of one sample the runner augments: an image's (C x H x W), else 0."""
    return int(math.prod(sample_shape)) if len(sample_shape) == 3 else 0


def glue_features(run: dict) -> list[float]:
    """The runs' column of each GLUE_TERMS term: training steps (a run that updates nothing
    runs no backward and no optimiser: none); shared gradients per step (negative: taken
    off); updated tensors per step; the step's operator calls once per run; forward operator
    calls (each step's forward and the prototypes' forward of as many batches); image
    elements the run augments (iterations x samples x `augmented_elements`); forward
    elements (each step's forward, a checkpointed call's forward run again in its backward,
    and the prototypes'); steps, trained or not; iterations."""
    steps = run["iterations"] * math.ceil(run["samples"] / run["batch_size"])
    training = steps if run["updated_tensors"] else 0
    return [float(training), -float(steps * shared_gradients(run.get("layer_passes"))),
            float(steps * run["updated_tensors"]), calls(run["step_work"]),
            2.0 * steps * calls(run["forward_work"]),
            float(run["iterations"] * run["samples"]
                  * augmented_elements(run.get("sample_shape") or ())),
            run["iterations"] * run["samples"] * (2.0 * forward_elements(run["forward_work"])
                                                  + recomputed_elements(run["step_work"])),
            float(steps), float(run["iterations"])]


def recomputed_elements(step: dict) -> float:
    """Elements of one sample's forward run again in the backward (checkpointed calls):
    inside a model it pays what a forward pays beyond its layers alone, as the step's does."""
    return float(sum(w[1] for k, w in step.items() if k.endswith("/" + RECOMPUTE)))


def forward_elements(forward: dict) -> float:
    """Elements of one sample's forward passes (work per sample, `work_of`)."""
    return float(sum(w[1] for w in forward.values()))


def fit_glue(runs: list[dict], kinds: dict, measured: dict | None = None) -> dict:
    """The GLUE_TERMS from the runs' measured process-CPU train_s beyond their layers'.
    `measured`: {term: seconds} timed directly (e.g. op_s, `layerrun.measured_op_s`): fixed at
    that value, taken off the runs' remainder, not fitted. `undetermined`: terms the runs
    cannot tell from the ones before them (GLUE_TERMS order), fixed at 0."""
    measured = measured or {}
    usable = [r for r in runs if r["measured"]["train_cpu_s"] > 0]
    if len(usable) < FITTED_TERMS:
        return {**dict.fromkeys(GLUE_TERMS, 0.0), **measured, "identified": False,
                "undetermined": [t for t in GLUE_TERMS
                                 if t not in measured and t not in MEASURED_ONLY_TERMS]}
    matrix = np.array([glue_features(r) for r in usable])
    targets = np.array([r["measured"]["train_cpu_s"] for r in usable])
    # the optimiser's per-element work, measured (update_seconds), counts as the layers' does
    layers = np.array([run_layer_seconds(r, kinds)["train"] + update_seconds(r, measured)
                       for r in usable])
    # Residuals relative to the run's measured time (what leave-one-out scores), not to
    # the remainder beyond the layers: that remainder is small where the layers are most of
    # the run (`all` at batch 1) and sinks to nothing when the layer timings and the run
    # were measured at different speeds of a shared machine; dividing by it then gave that
    # one run ~1e6x the weight of the others and fitted every glue term 0 (notes §11).
    relative = matrix / targets[:, None]
    scale = np.abs(relative).max(axis=0)
    scale[scale == 0] = 1.0
    relative = relative / scale
    fixed = np.array([measured.get(t, 0.0) for t in GLUE_TERMS])
    layers = layers + matrix @ fixed  # a measured term's seconds count as the layers' do
    kept: list[int] = []
    one_length = len({r["iterations"] * r["samples"] for r in usable}) < 2
    for j in range(len(GLUE_TERMS)):  # a column in the span of those before: not determined
        if GLUE_TERMS[j] in measured or GLUE_TERMS[j] in MEASURED_ONLY_TERMS:
            continue
        if one_length and GLUE_TERMS[j] in LENGTH_TERMS:
            continue  # with one run length its column is a per-run constant (notes §13)
        if np.linalg.matrix_rank(relative[:, kept + [j]], tol=1e-9) == len(kept) + 1:
            kept.append(j)
    # scipy's nnls of a matrix without columns aborts the interpreter (a double free)
    solution = nnls(relative[:, kept], (targets - layers) / targets,
                    maxiter=50 * len(kept) + 100)[0] if kept else []
    values = {t: float(measured.get(t, 0.0)) for t in GLUE_TERMS}
    for j, v in zip(kept, solution):
        values[GLUE_TERMS[j]] = float(v / scale[j])
    for key in OPTIMIZER_TERMS:
        if key in measured:
            values[key] = dict(measured[key])
    return {**values, "identified": True,
            "undetermined": [t for j, t in enumerate(GLUE_TERMS)
                             if j not in kept and t not in measured
                             and t not in MEASURED_ONLY_TERMS]}


def update_seconds(run: dict, glue: dict) -> float:
    """The optimiser's work over a run's training steps beyond SGD's fixed cost per tensor
    (`tensor_update_s`): per updated element at its optimiser's measured rate
    (`update_element_s`, {optimiser: s}), per updated tensor and per step what it pays beyond
    SGD's (`optimizer_tensor_s`, `optimizer_call_s`); calibrations and runs before them: 0."""
    if not run.get("updated_tensors"):
        return 0.0
    steps = run["iterations"] * math.ceil(run["samples"] / run["batch_size"])
    optimizer = run.get("optimizer") or "sgd"
    rate = (glue.get("update_element_s") or {}).get(optimizer, 0.0)
    extra = (glue.get("optimizer_tensor_s") or {}).get(optimizer, 0.0)
    call = (glue.get("optimizer_call_s") or {}).get(optimizer, 0.0)
    return steps * (run.get("updated_elements", 0) * rate + run["updated_tensors"] * extra
                    + call)


def glue_seconds(run: dict, glue: dict) -> float:
    """The overheads of a run's train phase (the glue's terms times the run's columns)."""
    steps = run["iterations"] * math.ceil(run["samples"] / run["batch_size"])
    train_calls = steps * (calls(run["forward_work"]) + calls(run["step_work"]))
    return (sum(glue.get(t, 0.0) * x for t, x in zip(GLUE_TERMS, glue_features(run)))
            + update_seconds(run, glue)
            + glue.get("call_s", 0.0) * train_calls  # calibrations before op_s: per call
            # calibrations before augment_element_s: per sample
            + glue.get("sample_s", 0.0) * run["iterations"] * run["samples"])


def probe_glue_seconds(run: dict, glue: dict) -> float:
    """The overheads of the Fisher probe's pass: one pass over the samples in batches, each a
    forward of the prototypes and of the batch (`op_s`, `forward_element_s` on both) and the
    backward of the probed tail (input gradients only: no layer computes two gradients, no
    tensor is updated), each batch a step of the loop (`step_s`, `loop_s`); the probe's
    operator calls once (`first_call_s`); calibrations before `op_s` per call (`call_s`);
    every sample augmented once as a query (`augment_element_s`, image samples) and the
    prototypes' means once (`iteration_s`), as a training iteration pays them."""
    steps = math.ceil(run["samples"] / run["batch_size"])
    forward_calls, probe_calls = calls(run["forward_work"]), calls(run["probe_work"])
    augmented = run["samples"] * augmented_elements(run.get("sample_shape") or ())
    return (glue.get("call_s", 0.0) * steps * (forward_calls + probe_calls)
            + glue.get("augment_element_s", 0.0) * augmented  # the queries, augmented once
            + glue.get("iteration_s", 0.0)  # the prototypes' means, once
            + glue.get("op_s", 0.0) * 2 * steps * forward_calls
            + glue.get("forward_element_s", 0.0) * 2 * run["samples"]
            * forward_elements(run["forward_work"])
            + (glue["step_s"] + glue.get("loop_s", 0.0)) * steps
            + glue["first_call_s"] * probe_calls)


def phase_constants(runs: list[dict]) -> dict:
    """load_s and plan_s per run: medians of what the runs measured (None: not measured)."""
    out = {}
    for phase in ("load", "plan"):
        seen = [r["measured"][f"{phase}_cpu_s"] for r in runs
                if r["measured"].get(f"{phase}_cpu_s")]
        out[f"{phase}_s"] = float(np.median(seen)) if seen else None
    return out


def predict_phases(run: dict, model: dict) -> dict:
    """{load_s, fisher_s, plan_s, train_s} of a run description (see `run_description`), and
    `measured_as`: the update of the own-table run it repeats (`owntable.measured_update`)."""
    kinds, glue = model["kinds"], model["glue"]
    layer = run_layer_seconds(run, kinds)
    table = own_table_of(run, model)
    time_model, own_notes = "per-layer, per-kind fit", []
    if table is not None:
        from .owntable import describe

        train, share, counts = own_train_seconds(run, table, model)
        time_model = "per-layer, own table"
        own_notes = describe(table, counts) + (
            ["the Fisher probe: per-kind functions"] if run.get("probe_work") else [])
    else:
        train = layer["train"] + glue_seconds(run, glue)
    anchored = measured_as = None
    if table is not None and table.get("anchors"):
        from .owntable import anchor_ratio, measured_update, trains_weights

        if table.get("anchored", True):  # False: its runs saw another speed (layerrun)
            anchored = anchor_ratio(table["anchors"], run["batch_size"], share,
                                    trains_weights(run))
        else:
            own_notes.append("not anchored on the table's whole runs: they ran at another "
                             "speed of the machine than its layers were timed at")
        measured_as = measured_update(table["anchors"], run["batch_size"], share,
                                      trains_weights(run))
    if anchored is not None:
        ratio, between = anchored
        train *= ratio
        own_notes.append(f"anchored on the whole runs in the table: train x {ratio:.3f} "
                         f"(measured / predicted of its {between} run(s) at the nearest batch "
                         f"size, backward share {share:.3f})")
    fisher = layer["fisher"] + probe_glue_seconds(run, glue) if run.get("probe_work") else 0.0
    probes = bool(run.get("probe_work"))
    # a run described before a kind was timed may name a stand-in that is one no longer
    own_notes += [f"no table times it: {n} {STAND_INS[key]}"
                  for key, n in sorted((run.get("stand_ins") or {}).items()) if key in STAND_INS]
    own_notes += borrowed_kinds(run, kinds)
    return {"load_s": model["phases"].get("load_s") or 0.0,
            "fisher_s": fisher,
            "plan_s": (model["phases"].get("plan_s") or 0.0) if run.get("plans") else 0.0,
            "train_s": train, "probes": probes, "time_model": time_model,
            "time_model_notes": own_notes, "measured_as": measured_as}


def borrowed_kinds(run: dict, kinds: dict) -> list[str]:
    """A note per kind of the run's layers that the calibration's tables time none of (made
    before the kind sweep timed it), priced by the kind it falls back to."""
    layers: dict[str, set] = {}
    for name, kind, *_ in run.get("layer_passes") or ():
        layers.setdefault(kind, set()).add(name)
    out = []
    for kind in sorted(set(layers) - VIEW_COST_KINDS):
        source = priced_by(kinds, kind, "forward")
        if source == _key(kind, "forward"):
            continue
        priced = priced_as(source.split("/")[0] if source else None)
        if kind in RECURRENT_KINDS:
            out.append(f"{len(layers[kind])} recurrent layer(s) ({kind}) {priced}: the "
                       "calibration's tables time none (measured before recurrent layers were; "
                       "their backward through time is likely under-predicted)")
        else:
            out.append(f"{len(layers[kind])} layer(s) of kind {kind} {priced}: the "
                       "calibration's tables time none (measured before the kind sweep timed it)")
    joint = {p[0] for p in run.get("layer_passes") or () if p[2] == "joint_grad"
             and priced_by(kinds, p[1], "joint_grad") is None}
    if joint:
        out.append(f"the scale and shift gradients of {len(joint)} norm layer(s) priced at 0 s "
                   "beyond the call of their input gradient: the tables of the calibration did "
                   "not time that joint pass (measured before joint_grad was)")
    return out


def own_train_seconds(run: dict, table: dict, model: dict) -> tuple[float, float, dict]:
    """train_s of a run priced from its model's own table plus the glue, before anchoring on
    the table's own runs; its backward share and {how priced: passes} (`own_pass_seconds`)."""
    layers, share, counts = own_pass_seconds(run, table, model["kinds"])
    return layers + glue_seconds(run, model["glue"]), share, counts


def own_table_of(run: dict, model: dict) -> dict | None:
    """The calibration's own table of the run's model (devices.owntable.match), or None."""
    if not model.get("own_tables"):
        return None
    from .owntable import match

    return match(run, model["own_tables"])
