"""The exact selection: maximise captured Fisher under the same budgets, as a MILP per depth.

Memory is not additive over layers: which masks are kept and how far the input gradient runs
depend on the EARLIEST updated layer d (the "depth" the backward pass reaches). Once d is fixed
everything else is additive, so we solve one MILP per candidate d (scipy.optimize.milp, HiGHS)
and keep the best solution that `evaluate` confirms is within budget.

For a fixed d, over the candidates i at or after d (in execution order):
  K_i ∈ {0..C_i}  output channels whose weights are updated (the top K_i by Δ_o)
  z_i ∈ {0, 1}    K_i > 0          b_i ∈ {0, 1}  bias updated          z_d + b_d ≥ 1
  f_i ≤ F_i(K_i)  Fisher captured; F_i (prefix sums of Δ sorted high to low) is concave, so
                  it is the minimum of its tangents f_i ≤ F_i(k) + Δ_(k+1)·(K_i − k), exact
                  at every integer K_i; written in perspective form, (F_i(k) − k·Δ_(k+1))·z_i
                  + Δ_(k+1)·K_i, which is equal for z_i = 1 and tightens the LP relaxation
  maximise Σ f_i subject to
  compute:  IG(d) + Σ_i (M_i / C_i)·K_i ≤ B_compute
            IG(d): input-gradient MACs of every MAC layer after d; M_i / C_i: weight-gradient
            MACs per output channel (an integer for conv and linear)
  memory, `paper` (peak = static + B1 + B2 + max(F2, B3 + B4), so two linear rows):
            static + p·U + F2 ≤ B_mem  and  static + p·U + B3(d) + Σ_i S_i ≤ B_mem
            U = Σ_i (W_i / C_i)·K_i + bias_i·b_i updated parameters; p bytes per updated
            parameter (gradient × (1 + optimiser states), + the weight itself when weights
            live in flash); B3(d) the masks of everything the gradient passes; S_i the saved
            input of layer i: in_bytes_i·z_i, or in_bytes_i·K_i / C_i for a depthwise conv
            (only the selected channels' inputs are read)
  memory, `pytorch`: static + Σ_i (whole weight tensors·z_i + bias tensors·b_i)·p + A(d),
            A(d) the activation peak with every candidate from d on trained (an estimate)

Soundness: every solution is re-costed with `evaluate`; one that is over budget (possible
only where the additive model is not exact) tightens that depth's budget rows by the
overshoot and is solved again, at most MAX_ROUNDS times. Exactness: for the `paper`
convention with whole-byte bit-widths, on a chain of blocks (every layer after d reached by
the gradient from d, as in the zoo models) and dense or depthwise convs with ReLU-family
activations, the additive model equals `evaluate` (tests check this on the three zoo models,
every conv a candidate, random configurations), so the
optimum over the space {any candidate set, any top-K per layer, any biases} is exact; it
contains every greedy solution, hence exact ≥ greedy. Elsewhere (grouped convs, branching
graphs, smooth activations, `pytorch`, whose simulated peak the estimate A(d) matches on the
zoo for most configurations and overestimates for some) the model can be off, and the result
is the best verified solution found; it is never worse than the greedy's, which is the
incumbent.
Among equally good solutions, biases are then added greedily (Eq. 3 order) while they fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from ttplan.costmodel.config import LayerUpdate
from ttplan.costmodel.costs import operator_work
from ttplan.costmodel.memory import is_depthwise, paper_peak, updated_param_bytes
from ttplan.costmodel.transforms import attached_norms

from .score import Candidate, ranked
from .select import Budget, Choice, Coster, Selection, captured, quantity, updates_of

MAX_ROUNDS = 6
# HiGHS stops when its proven bound is within this relative distance of its best solution.
# Proving the last 0.01% on a zoo model costs seconds (many near-equal channel mixes); the
# Fisher values themselves are estimates from a few samples, far noisier than that.
MIP_REL_GAP = 1e-4


@dataclass
class LayerTerms:
    """Additive cost terms of one candidate (independent of d)."""

    weight_params_per_channel: float
    bias_params: int
    weight_tensor_params: int  # pytorch: whole weight (+ attached norm scale) tensors
    bias_tensor_params: int
    saved_input_bytes: float  # paper: the whole input of the layer
    depthwise: bool
    weight_macs_per_channel: float


@dataclass
class DepthTerms:
    """Constants that depend on the earliest updated layer d."""

    mask_bytes: int  # paper B3
    input_grad_macs: int
    depthwise_input_grad_macs: int  # the part of input_grad_macs in depthwise convs
    activation_bytes: int  # pytorch: activation peak with every candidate from d on trained
    backward_operators: int  # costmodel.costs.OperatorWork with every candidate from d on
    backward_elements: int


class AdditiveModel:
    """Peak memory and backward MACs of a configuration as a sum once d is known."""

    def __init__(self, coster: Coster, candidates: list[Candidate]):
        self.coster = coster
        self.paper = coster.options.paper
        self.param_bytes = updated_param_bytes(coster.options)
        nothing = coster.evaluate({})
        self.static_bytes = nothing.memory.weights_bytes
        self.io_bytes = nothing.memory.io_buffer_bytes
        self.candidates = sorted(candidates, key=lambda c: c.position)
        rows = {r["name"]: r for r in nothing.rows}
        graph = coster.costed
        norm_of = attached_norms(graph)  # pytorch: the BatchNorm trained with its layer
        self.layers: dict[str, LayerTerms] = {}
        for cand in self.candidates:
            node = graph[cand.name]
            norm = graph[norm_of[cand.name]] if cand.name in norm_of else None
            weight_tensor = node.weight_numel + (norm.weight_numel if norm is not None else 0)
            bias_tensor = node.bias_numel + (norm.bias_numel if norm is not None else 0)
            self.layers[cand.name] = LayerTerms(
                node.weight_numel / cand.channels, node.bias_numel if self.paper else bias_tensor,
                weight_tensor, bias_tensor, rows[cand.name]["input_bytes"],
                is_depthwise(node), rows[cand.name]["forward_macs"] / cand.channels)
        self.depths: dict[str, DepthTerms] = {}
        for i, cand in enumerate(self.candidates):
            everything = {c.name: LayerUpdate() for c in self.candidates[i:]}
            ev = coster.evaluate(everything)
            m = ev.memory
            activation = m.peak_bytes - m.weights_bytes - m.gradient_bytes - m.optimizer_bytes
            work = operator_work(ev)
            self.depths[cand.name] = DepthTerms(
                m.mask_bytes, ev.totals["backward_input_macs"],
                int(quantity(ev, "depthwise_backward_input_macs")), activation,
                work.backward_operators, work.backward_elements)

    def predict(self, choices: dict[str, Choice]) -> tuple[float, float]:
        """(peak bytes, backward MACs) the additive model gives a configuration."""
        chosen = [c for c in self.candidates if choices.get(c.name, Choice()).k or
                  (choices.get(c.name, Choice()).bias and c.has_bias)]
        if not chosen:
            return float(self.coster.evaluate({}).memory.peak_bytes), 0.0
        depth = self.depths[chosen[0].name]
        params = saved = weight_macs = tensors = 0.0
        for cand in chosen:
            t, ch = self.layers[cand.name], choices[cand.name]
            bias = ch.bias and cand.has_bias
            params += t.weight_params_per_channel * ch.k + (t.bias_params if bias else 0)
            tensors += (t.weight_tensor_params if ch.k else 0) + (t.bias_tensor_params if bias else 0)
            if ch.k:
                saved += t.saved_input_bytes * (ch.k / cand.channels if t.depthwise else 1)
            weight_macs += t.weight_macs_per_channel * ch.k
        macs = depth.input_grad_macs + weight_macs
        if self.paper:
            static = self.static_bytes + self.param_bytes * params
            return paper_peak(static, self.io_bytes, depth.mask_bytes + saved), macs
        return self.static_bytes + self.param_bytes * tensors + depth.activation_bytes, macs


def solve_exact(coster: Coster, candidates: list[Candidate], budget: Budget,
                incumbent: Selection | None = None, gap: float = MIP_REL_GAP) -> Selection:
    """The best verified solution over every depth d (module docstring), optimal within the
    relative `gap` (HiGHS's proof). `incumbent` (the greedy's selection) is the cutoff: a
    depth that cannot beat it is not solved, and it is returned when nothing beats it."""
    start = coster.calls
    model = AdditiveModel(coster, candidates)
    scale = max((c.captured(c.channels) for c in candidates), default=0.0) or 1.0
    # Depths in order of their upper bound, best first: a good solution early lets the
    # cutoff (and the bound test) skip most of the others without solving them.
    layers = model.candidates
    bounds = [_upper_bound(model, layers[i:], budget) for i in range(len(layers))]
    best = None  # (value, choices)
    for i in sorted(range(len(layers)), key=lambda i: (-bounds[i], i)):
        cutoff = max(incumbent.fisher_captured if incumbent else 0.0, best[0] if best else 0.0)
        if bounds[i] <= cutoff * (1 + gap):
            break  # neither this depth nor any later in the list can do better
        found = _solve_depth(model, layers[i:], budget, scale, cutoff, gap)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    if best is None:
        if incumbent is not None:
            return Selection(incumbent.updates, incumbent.fisher_captured, incumbent.evaluation,
                             coster.calls - start, f"exact (MILP per depth): nothing beats the "
                             f"greedy by more than {gap:g}, kept its {len(incumbent.updates)} layers")
        return Selection({}, 0.0, coster.evaluate({}), coster.calls - start,
                         "exact: no verified solution within budget")
    choices = _add_biases(coster, candidates, best[1], budget)
    updates = updates_of(candidates, choices)
    return Selection(updates, captured(candidates, choices), coster.evaluate(updates),
                     coster.calls - start, f"exact (MILP per depth, optimal within {gap:g}): "
                     f"{len(updates)} layers")


def _upper_bound(model: AdditiveModel, layers: list[Candidate], budget: Budget) -> float:
    """A quick upper bound on the Fisher a depth can capture: the fractional knapsack over
    the channels of `layers` against each budget row alone (ignoring biases and the fixed
    cost of saved inputs, which only make things worse), the smallest of these."""
    values = np.concatenate([np.asarray(c.fisher, dtype=float) for c in layers])
    d = model.depths[layers[0].name]
    limits = []  # (cost per channel, capacity)
    if budget.compute_macs is not None:
        limits.append((np.concatenate([np.full(c.channels, model.layers[c.name].weight_macs_per_channel)
                                       for c in layers]),
                       budget.compute_macs - d.input_grad_macs))
    if budget.memory_bytes is not None:
        per_channel = np.concatenate([np.full(c.channels, model.param_bytes *
                                              model.layers[c.name].weight_params_per_channel
                                              if model.paper else 0.0) for c in layers])
        floor = model.static_bytes + (max(model.io_bytes, d.mask_bytes) if model.paper
                                      else d.activation_bytes)
        limits.append((per_channel, budget.memory_bytes - floor))
    bound = float(values.sum())
    for costs, capacity in limits:
        if capacity < 0:
            return 0.0
        free = costs <= 0
        ratio = np.where(free, np.inf, values / np.where(free, 1, costs))
        order = np.argsort(-ratio, kind="stable")
        spent = np.cumsum(costs[order])
        whole = spent <= capacity
        value = values[order][whole].sum()
        rest = np.flatnonzero(~whole)
        if rest.size:  # the first item that does not fit, fractionally
            i = rest[0]
            room = capacity - (spent[i - 1] if i > 0 else 0.0)
            value += values[order][i] * max(0.0, room) / costs[order][i]
        bound = min(bound, float(value))
    return bound


def _solve_depth(model: AdditiveModel, layers: list[Candidate], budget: Budget, scale: float,
                 cutoff: float, gap: float):
    """Best verified (value, choices) with layers[0] as the earliest updated layer, or None."""
    program = _depth_program(model, layers, budget, scale, cutoff)
    for _ in range(MAX_ROUNDS):
        x = program.solve(gap)
        if x is None:
            return None
        choices = _choices_of(x, layers)
        ev = model.coster.evaluate(updates_of(layers, choices))
        if budget.fits(ev):
            return captured(layers, choices), choices
        # The additive model was optimistic here: tighten by the overshoot and solve again.
        program = program.tightened(ev, budget)
    return None


Row = tuple  # (coefficients {column: value}, low, high)


@dataclass(frozen=True)
class _DepthProgram:
    """One depth's MILP. Columns, n of each: K (channels), z (layer on), b (bias), f (Fisher
    captured, scaled); the rows in order, and which of them are budget rows that a
    solution over budget tightens."""

    n: int
    lower: np.ndarray
    upper: np.ndarray
    rows: tuple[Row, ...]
    compute_row: int | None = None
    memory_rows: tuple[int, ...] = ()
    limit_rows: tuple[tuple[int, object], ...] = ()  # (row, LinearLimit)

    def solve(self, gap: float):
        """The MILP's solution vector (maximise Σ f), or None when it has none."""
        n = self.n
        cost = np.zeros(4 * n)
        cost[3 * n:] = -1.0  # maximise Σ f
        r_idx, c_idx, vals = [], [], []
        for r, (coeffs, _, _) in enumerate(self.rows):
            r_idx.extend([r] * len(coeffs))
            c_idx.extend(coeffs.keys())
            vals.extend(coeffs.values())
        matrix = coo_matrix((vals, (r_idx, c_idx)), shape=(len(self.rows), 4 * n)).tocsr()
        lows = np.array([low for _, low, _ in self.rows], dtype=float)
        highs = np.array([high for _, _, high in self.rows], dtype=float)
        integrality = np.concatenate([np.ones(3 * n), np.zeros(n)])
        res = milp(cost, integrality=integrality, bounds=Bounds(self.lower, self.upper),
                   constraints=LinearConstraint(matrix, lows, highs),
                   options={"mip_rel_gap": gap, "presolve": True, "disp": False})
        return res.x

    def tightened(self, ev, budget: Budget) -> _DepthProgram:
        """The program with each budget row `ev` overshoots lowered by the overshoot."""
        rows = list(self.rows)

        def lower_by(r: int, overshoot) -> None:
            c, low, high = rows[r]
            rows[r] = (c, low, high - overshoot)

        if self.memory_rows and ev.memory.peak_bytes > budget.memory_bytes:
            for r in self.memory_rows:
                lower_by(r, ev.memory.peak_bytes - budget.memory_bytes)
        if self.compute_row is not None and ev.totals["backward_macs"] > budget.compute_macs:
            lower_by(self.compute_row, ev.totals["backward_macs"] - budget.compute_macs)
        for r, lim in self.limit_rows:
            if lim.value(ev) > lim.limit:
                lower_by(r, lim.value(ev) - lim.limit)
        return replace(self, rows=tuple(rows))


def _choices_of(x: np.ndarray, layers: list[Candidate]) -> dict[str, Choice]:
    """The layers a solution vector updates: K channels and the bias when b is set."""
    n = len(layers)
    choices = {}
    for j, cand in enumerate(layers):
        k = int(round(x[j]))
        bias = bool(round(x[2 * n + j])) and cand.has_bias
        if k or bias:
            choices[cand.name] = Choice(k, bias)
    return choices


def _depth_program(model: AdditiveModel, layers: list[Candidate], budget: Budget,
                   scale: float, cutoff: float) -> _DepthProgram:
    """The MILP of depth layers[0] (module docstring): each layer's bounds and tangent rows,
    layers[0] updated, the cutoff, then the compute, memory and limit rows."""
    n = len(layers)
    d = model.depths[layers[0].name]
    Z, B, F = n, 2 * n, 3 * n
    lower, upper, rows = _layer_columns(layers, scale)
    rows.append(({Z: 1, B: 1}, 1, np.inf))  # d itself is updated
    if cutoff > 0:  # only solutions at least as good as the best known are of interest
        rows.append(({F + j: 1 for j in range(n)}, cutoff / scale, np.inf))
    compute_row = None
    if budget.compute_macs is not None:
        compute_row = len(rows)
        rows.append(_compute_row(model, layers, d, budget.compute_macs))
    memory_rows = []
    if budget.memory_bytes is not None:
        for row in _memory_rows(model, layers, d, budget.memory_bytes):
            memory_rows.append(len(rows))
            rows.append(row)
    limit_rows = []
    for lim in budget.limits:
        row = _limit_row(model, layers, d, lim, 0, Z, B)
        if row is not None:  # else verified below like any other budget
            limit_rows.append((len(rows), lim))
            rows.append(row)
    return _DepthProgram(n, lower, upper, tuple(rows), compute_row, tuple(memory_rows),
                         tuple(limit_rows))


def _layer_columns(layers: list[Candidate], scale: float):
    """(lower, upper, rows): each layer's column bounds, and the rows tying K, z and f."""
    n = len(layers)
    K, Z, B, F = 0, n, 2 * n, 3 * n
    lower = np.zeros(4 * n)
    upper = np.zeros(4 * n)
    rows: list[Row] = []
    for j, cand in enumerate(layers):
        upper[K + j] = cand.channels
        upper[Z + j] = 1
        upper[B + j] = 1 if cand.has_bias else 0
        upper[F + j] = cand.captured(cand.channels) / scale
        rows.append(({K + j: 1, Z + j: -cand.channels}, -np.inf, 0))  # K ≤ C·z
        rows.append(({Z + j: 1, K + j: -1}, -np.inf, 0))  # z ≤ K
        slopes = {}
        for k in range(cand.channels):  # tangents of the concave prefix sum
            slope = cand.fisher[cand.order[k]] / scale
            slopes.setdefault(slope, cand.captured(k) / scale - k * slope)
        for slope, intercept in slopes.items():
            # The perspective f ≤ intercept·z + slope·K (not intercept + slope·K) makes the LP
            # relaxation the convex hull of "off, or on with K channels": without it a
            # fractional z buys the saved input cheaply and the MILP branches for seconds.
            rows.append(({F + j: 1, K + j: -slope, Z + j: -intercept}, -np.inf, 0))
    return lower, upper, rows


def _compute_row(model: AdditiveModel, layers: list[Candidate], d: DepthTerms,
                 compute_macs: int) -> Row:
    """IG(d) + Σ_i (M_i / C_i)·K_i ≤ B_compute."""
    coeffs = {j: model.layers[c.name].weight_macs_per_channel for j, c in enumerate(layers)}
    return coeffs, -np.inf, compute_macs - d.input_grad_macs


def _memory_rows(model: AdditiveModel, layers: list[Candidate], d: DepthTerms,
                 memory_bytes: int) -> list[Row]:
    """The memory budget's rows: `paper`'s two (module docstring), `pytorch`'s one."""
    n = len(layers)
    K, Z, B = 0, n, 2 * n
    paper = model.paper
    rows = []
    # paper_peak's max(F2, B3 + B4) is within a budget exactly when both of its
    # arguments are: one row each.
    for with_saved in ((False, True) if paper else (True,)):
        coeffs: dict[int, float] = {}
        for j, cand in enumerate(layers):
            t = model.layers[cand.name]
            if paper:
                coeffs[K + j] = model.param_bytes * t.weight_params_per_channel
                coeffs[B + j] = model.param_bytes * t.bias_params
                if with_saved:
                    if t.depthwise:
                        coeffs[K + j] += t.saved_input_bytes / cand.channels
                    else:
                        coeffs[Z + j] = t.saved_input_bytes
            else:
                coeffs[Z + j] = model.param_bytes * t.weight_tensor_params
                coeffs[B + j] = model.param_bytes * t.bias_tensor_params
        constant = model.static_bytes + (
            (d.mask_bytes if with_saved else model.io_bytes) if paper else d.activation_bytes)
        rows.append((coeffs, -np.inf, memory_bytes - constant))
    return rows


def _limit_row(model: AdditiveModel, layers: list[Candidate], d: DepthTerms, lim, K, Z, B):
    """A LinearLimit as a MILP row at depth d, when its quantities are additive here: forward
    MACs and their depthwise part, forward operators and elements (constant), input-gradient
    MACs and their depthwise part (IG(d)), backward operators and elements (those of training
    everything from d: a gradient reaches the same operators from d whatever else is chosen in
    a chain of layers; the solution is checked against the true costs and the row tightened),
    weight-gradient MACs and their depthwise part (per channel) and updated tensors
    (z_i + b_i). None for anything else."""
    coeffs: dict[int, float] = {}
    constant = 0.0
    for name, c in lim.coefficients:
        if name in ("forward_macs", "depthwise_forward_macs", "forward_operators",
                    "forward_elements"):  # the same for every choice
            constant += c * quantity(model.coster.evaluate({}), name)
        elif name in ("backward_input_macs", "backward_macs"):
            constant += c * d.input_grad_macs
        elif name == "depthwise_backward_input_macs":
            constant += c * d.depthwise_input_grad_macs
        elif name == "backward_operators":
            constant += c * d.backward_operators
        elif name == "backward_elements":
            constant += c * d.backward_elements
        elif name == "updated_tensors":
            for j in range(len(layers)):
                coeffs[Z + j] = coeffs.get(Z + j, 0.0) + c
                coeffs[B + j] = coeffs.get(B + j, 0.0) + c
        elif name not in ("backward_weight_macs", "depthwise_backward_weight_macs"):
            return None
        if name in ("backward_weight_macs", "backward_macs", "depthwise_backward_weight_macs"):
            for j, cand in enumerate(layers):
                if name == "depthwise_backward_weight_macs" and not model.layers[cand.name].depthwise:
                    continue
                coeffs[K + j] = coeffs.get(K + j, 0.0) + \
                    c * model.layers[cand.name].weight_macs_per_channel
    return coeffs, -np.inf, lim.limit - constant


def _add_biases(coster: Coster, candidates: list[Candidate], choices: dict[str, Choice],
                budget: Budget) -> dict[str, Choice]:
    """Biases are free for the objective; add those of the chosen layers that still fit."""
    choices = dict(choices)
    for cand in ranked(candidates):
        ch = choices.get(cand.name)
        if ch is None or ch.bias or not cand.has_bias:
            continue
        trial = {**choices, cand.name: Choice(ch.k, True)}
        if budget.fits(coster.evaluate(updates_of(candidates, trial))):
            choices = trial
    return choices

