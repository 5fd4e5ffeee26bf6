"""Algorithm 1 of TinyTrain: greedy layer/channel selection under memory and compute budgets.

Every candidate configuration is costed as a WHOLE with `costmodel.costs.evaluate`: memory is
not a sum over layers (the peak overlaps activations with I/O buffers, the earliest updated
layer decides which masks exist and how far the gradient travels), so adding a layer is
accepted only when the entire configuration still fits both budgets.

The greedy, for each starting ratio ρ in {1, 1/2, 1/4, 1/8} and "one channel":
  1. layers: in Eq. 3 order, add layer i with its top ceil(ρ·C_i) channels if the
     configuration still fits;
  2. channels: in the same order, grow each selected layer's K as far as the remaining budget
     allows (binary search on K: memory and MACs grow with K, so feasibility is monotone);
  3. biases: in the same order, also update a selected layer's bias when it still fits
     (a bias gradient needs no stored activation, only its gradient buffer and, for a
     bias-only layer, the masks down to it).
The ρ whose result captures the most Fisher (Σ Δ_o of the updated channels) wins; a tie goes
to the larger ρ (fewer, fuller layers). Starting from one channel selects the most layers;
and when not even one weight channel fits, a last pass selects biases only, so a budget that
fits any single update gets one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ttplan.costmodel.config import LayerUpdate, TrainConfig
from ttplan.costmodel.costs import Evaluation, OperatorWork, costing_graph, evaluate, operator_work
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.graph import LayerGraph
from ttplan.costmodel.memory import is_depthwise
from ttplan.costmodel.options import CostOptions

from .score import Candidate, ranked

GREEDY_RATIOS = (1.0, 0.5, 0.25, 0.125)


class Coster:
    """Costs configurations of one traced graph, counting how many it costed."""

    def __init__(self, graph: LayerGraph, options: CostOptions):
        self.graph = graph
        self.options = options
        # Folding once here: evaluate() on an already folded graph folds nothing and gives
        # the same numbers, ~10% faster per call.
        self.costed = costing_graph(graph, options.convention)
        self.calls = 0

    def config(self, updates: dict[str, LayerUpdate]) -> TrainConfig:
        return TrainConfig(dict(updates), self.options)

    def evaluate(self, updates: dict[str, LayerUpdate]) -> Evaluation:
        self.calls += 1
        return evaluate(self.costed, self.config(updates))


DEPTHWISE_QUANTITIES = {"depthwise_forward_macs": "forward_macs",
                        "depthwise_backward_input_macs": "backward_input_macs",
                        "depthwise_backward_weight_macs": "backward_weight_macs"}


OPERATOR_QUANTITIES = tuple(f.name for f in dataclasses.fields(OperatorWork))


def quantity(ev: Evaluation, name: str) -> float:
    """A named quantity of a costed configuration: a total (`backward_weight_macs`), its
    depthwise part (`depthwise_backward_weight_macs`), a memory field (`peak_bytes`),
    `updated_tensors` or a field of `costmodel.costs.OperatorWork` (`backward_operators`)."""
    if name in ev.totals and not isinstance(ev.totals[name], list):
        return ev.totals[name]
    if name == "updated_tensors":
        return ev.updated_tensors
    if name in DEPTHWISE_QUANTITIES:  # the part of a MAC total spent in depthwise convs
        total = DEPTHWISE_QUANTITIES[name]
        return math.fsum(row[total] for row in ev.rows
                         if is_depthwise(ev.graph[row["name"]]))
    if name in OPERATOR_QUANTITIES:
        return getattr(operator_work(ev), name)
    if name in ev.memory.to_dict():
        return ev.memory.to_dict()[name]
    raise SpecError(f"unknown quantity {name!r} in a limit")


@dataclass(frozen=True)
class LinearLimit:
    """Σ coefficient × quantity ≤ limit over a configuration's named quantities (see
    `quantity`). Any budget linear in them fits here without the planner knowing what it
    means: e.g. a training-time budget through a calibrated device model (`devices`). A
    limit may also say, by a method `resolution_of(ev)`, the share over `limit` within which
    a configuration's value cannot be told from it (`resolution_of`, `Budget.tolerates`),
    and by an attribute `resolution` the widest such share (`Budget.could_tolerate`)."""

    coefficients: tuple[tuple[str, float], ...]
    limit: float
    label: str = "limit"

    def value(self, ev: Evaluation) -> float:
        return math.fsum(c * quantity(ev, name) for name, c in self.coefficients)


def resolution_of(limit, ev: Evaluation) -> float:
    """The share a configuration may exceed `limit` by and still meet it (0 unless the limit
    says otherwise: a device's time budget for a configuration its calibration measured)."""
    return limit.resolution_of(ev) if hasattr(limit, "resolution_of") else 0.0


@dataclass(frozen=True)
class Budget:
    """memory binds `memory.peak_bytes`, compute binds `totals.backward_macs`, each of
    `limits` its linear combination; None / () = no limit."""

    memory_bytes: int | None = None
    compute_macs: int | None = None
    limits: tuple[LinearLimit, ...] = ()

    def fits(self, ev: Evaluation) -> bool:
        return self._meets(ev, tolerant=False)

    def tolerates(self, ev: Evaluation) -> bool:
        """`fits`, but a limit met to its resolution (memory and compute exactly). The
        solvers search within `fits`; a fixed configuration (a baseline) is judged by this."""
        return self._meets(ev, tolerant=True)

    def could_tolerate(self, ev: Evaluation) -> bool:
        """Whether a configuration no cheaper than `ev` might still be tolerated: memory and
        compute met, every limit met to the widest resolution it gives any configuration
        (`resolution`: a larger baseline the calibration measured may be tolerated where a
        smaller one it never ran is not)."""
        return self._meets(ev, tolerant=True, widest=True)

    def _meets(self, ev: Evaluation, tolerant: bool, widest: bool = False) -> bool:
        if self.memory_bytes is not None and ev.memory.peak_bytes > self.memory_bytes:
            return False
        if self.compute_macs is not None and ev.totals["backward_macs"] > self.compute_macs:
            return False
        for lim in self.limits:
            value = lim.value(ev)
            # the resolution is asked for only when over: it may cost a second prediction
            share = (getattr(lim, "resolution", 0.0) if widest else resolution_of(lim, ev)) \
                if tolerant and value > lim.limit else 0.0
            if value > lim.limit * (1.0 + share):
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"memory {self.memory_bytes:,} B")
        if self.compute_macs is not None:
            parts.append(f"compute {self.compute_macs:,} MACs")
        parts += [lim.label for lim in self.limits]
        return " and ".join(parts) or "no budget"


@dataclass
class Choice:
    """Per candidate: how many channels (0 = no weight update) and whether its bias."""

    k: int = 0
    bias: bool = False


def updates_of(candidates: list[Candidate], choices: dict[str, Choice]) -> dict[str, LayerUpdate]:
    by_name = {c.name: c for c in candidates}
    updates = {}
    for name, choice in choices.items():
        cand = by_name[name]
        if choice.k == 0 and not choice.bias:
            continue
        if choice.k == 0:
            updates[name] = LayerUpdate(weight=False, bias=True)
        else:
            updates[name] = LayerUpdate(weight=True, bias=choice.bias,
                                        channels=cand.channel_set(choice.k), channel_axis=0)
    return updates


def captured(candidates: list[Candidate], choices: dict[str, Choice]) -> float:
    by_name = {c.name: c for c in candidates}
    return math.fsum(by_name[n].captured(ch.k) for n, ch in choices.items())


@dataclass
class Selection:
    updates: dict[str, LayerUpdate]
    fisher_captured: float
    evaluation: Evaluation
    evaluations: int  # configurations costed to find it
    note: str = ""


def greedy(coster: Coster, candidates: list[Candidate], budget: Budget) -> Selection | None:
    """Algorithm 1 (see the module docstring). None when not even one bias fits."""
    order = ranked(candidates)
    start_calls = coster.calls
    best = None
    memo: dict = {}  # configurations costed by an earlier pass are not costed again
    for ratio in GREEDY_RATIOS + ("one",):
        choices = _one_pass(coster, order, budget, ratio, memo)
        value = captured(candidates, choices)
        if choices and (best is None or value > best[0]):
            best = (value, choices, ratio)
    if best is None:  # not one weight channel fits anywhere: maybe a bias does
        choices = _one_pass(coster, order, budget, "bias", memo)
        if choices:
            best = (0.0, choices, "bias")
    if best is None:
        return None
    value, choices, ratio = best
    updates = updates_of(candidates, choices)
    ev = coster.evaluate(updates)
    start = f"ratio {ratio}" if not isinstance(ratio, str) else {"one": "one channel",
                                                                  "bias": "bias only"}[ratio]
    return Selection(updates, value, ev, coster.calls - start_calls,
                     f"greedy: best start {start}, {len(updates)} layers")


def _one_pass(coster, order: list[Candidate], budget: Budget, ratio, memo) -> dict[str, Choice]:
    choices: dict[str, Choice] = {}

    def fits(trial: dict[str, Choice]) -> bool:
        key = frozenset((n, c.k, c.bias) for n, c in trial.items())
        if key not in memo:
            memo[key] = budget.fits(coster.evaluate(updates_of(order, trial)))
        return memo[key]

    # 1. layers, in score order
    for cand in order:
        if ratio == "bias":
            if not cand.has_bias:
                continue
            first = Choice(0, True)
        else:
            k = 1 if ratio == "one" else max(1, math.ceil(ratio * cand.channels))
            first = Choice(k, False)
        if fits({**choices, cand.name: first}):
            choices[cand.name] = first
    if ratio == "bias":
        return choices
    # 2. channels: grow K within what remains (monotone, so binary search)
    for cand in order:
        choice = choices.get(cand.name)
        if choice is None or choice.k == cand.channels:
            continue
        low, high = choice.k, cand.channels  # low fits
        if fits({**choices, cand.name: Choice(high, False)}):
            low = high
        elif fits({**choices, cand.name: Choice(low + 1, False)}):
            low += 1
            while high - low > 1:
                mid = (low + high) // 2
                if fits({**choices, cand.name: Choice(mid, False)}):
                    low = mid
                else:
                    high = mid
        choices[cand.name] = Choice(low, False)
    # 3. biases of the selected layers
    for cand in order:
        choice = choices.get(cand.name)
        if choice is None or not cand.has_bias:
            continue
        trial = {**choices, cand.name: Choice(choice.k, True)}
        if fits(trial):
            choices = trial
    return choices


def cheapest_single_update(coster: Coster, candidates: list[Candidate]) -> tuple[str, Evaluation]:
    """The single smallest update (a bias, or one weight channel where there is no bias) by
    peak memory then backward MACs: what the smallest feasible budget must allow."""
    best = None
    for cand in candidates:
        choice = Choice(0, True) if cand.has_bias else Choice(1, False)
        ev = coster.evaluate(updates_of(candidates, {cand.name: choice}))
        key = (ev.memory.peak_bytes, ev.totals["backward_macs"], -cand.position)
        what = f"the bias of {cand.name}" if cand.has_bias else f"one channel of {cand.name}"
        if best is None or key < best[0]:
            best = (key, what, ev)
    return best[1], best[2]


def infeasible_error(coster: Coster, candidates: list[Candidate], budget: Budget) -> SpecError:
    what, ev = cheapest_single_update(coster, candidates)
    return SpecError(
        f"no update fits {budget.describe()}: the cheapest, {what}, needs "
        f"{ev.memory.peak_bytes:,} B peak memory and {ev.totals['backward_macs']:,} backward MACs "
        f"({coster.options.convention} convention)")
