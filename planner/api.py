"""`plan(model, ...)`: one entry point for TinyTrain's selection and the baselines.

Budgets: `memory_bytes` binds `memory.peak_bytes` and `compute` binds `totals.backward_macs` of
the configuration, both under the cost options (`options`: convention, optimiser, bit-widths,
weights in flash), at the batch size of `inputs`. A compute FRACTION is of full training's
backward MACs (`--update all`) under the same convention and batch.

Selecting methods (tinytrain, sparseupdate) must fit the budgets; when nothing fits they raise
a one-line SpecError naming the smallest feasible budget. Fixed baselines (none, fulltrain,
lastlayer, tinytl) are what they are: their policy says whether they fit
(`predicted.within_budget`) and a note says by how much they do not.

`fisher` is a FisherResult, a Fisher file path (checked against the model's fingerprint), or
None. tinytrain needs it; for the other methods it only adds `fisher_captured` (and steers the
sparseupdate search's proxy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from ttplan.costmodel.config import channel_count
from ttplan.costmodel.costs import costing_graph
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import resolve_inputs
from ttplan.costmodel.options import CostOptions, options_or_default
from ttplan.costmodel.profile import profile as cost_profile, resolve_model
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, Budgets, ComputeBudget
from ttplan.costmodel.trace import trace

from .selection import baselines, sparseupdate
from .selection.exact import solve_exact
from .fisher import FisherResult, check_weights
from .fisher.file import fisher_for
from .policy.file import METHODS, Policy, layer_dicts
from .selection.score import CHANNEL_CRITERIA, build_candidates
from .selection.select import (Budget, Coster, Selection, greedy, infeasible_error,
                               resolution_of)
from .selection.tinytl import add_lite_residuals, lite_layer_names

SOLVERS = ("greedy", "exact")
SCHEMES = ("auto", "released", "search")


@dataclass(frozen=True)
class PlanSearch:
    """How a selecting method searches, checked when built (the CLI's messages).

    solver (tinytrain): greedy (Algorithm 1, selection.select) or exact (MILP, selection.exact,
    optimal within the relative `exact_gap`; the greedy's result is recorded for comparison).
    channels (tinytrain): fisher | l2norm | random (seeded by `seed`).
    scheme (sparseupdate): auto (the released scheme for a zoo model, else the search),
    released, search (evolutionary, seeded by `seed`).
    blocks: a regular expression naming the model's blocks (`costmodel.blocks`), which the
    last-blocks:K baselines a plan is compared with count.
    limits: extra `select.LinearLimit`s every selecting method must meet (e.g. a training-time
    budget from `devices`); like the budgets, fixed baselines only report them.
    """

    solver: str = "greedy"
    channels: str = "fisher"
    seed: int = 0
    scheme: str = "auto"
    exact_gap: float = 1e-4
    blocks: str | None = None
    limits: tuple = ()

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise SpecError(f"unknown solver {self.solver!r}: use greedy or exact")
        if self.channels not in CHANNEL_CRITERIA:
            raise SpecError(f"unknown channel criterion {self.channels!r}: use "
                            f"{', '.join(CHANNEL_CRITERIA)}")
        if self.scheme not in SCHEMES:
            raise SpecError(f"unknown sparseupdate scheme {self.scheme!r}: use {', '.join(SCHEMES)}")
        if self.solver == "exact" and self.channels != "fisher":
            raise SpecError("the exact solver maximises captured Fisher and needs channels=fisher")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SpecError(f"seed must be an integer, not {self.seed!r}")
        object.__setattr__(self, "limits", tuple(self.limits))


DEFAULT_SEARCH = PlanSearch()


@dataclass(frozen=True)
class _Planned:
    """What one plan found, before it becomes a Policy."""

    selection: Selection
    notes: tuple[str, ...] = ()
    greedy_value: float | None = None


def plan(model, *, method: str = "tinytrain", fisher=None, memory_bytes=None, compute=None,
         options: CostOptions | None = None, inputs=None,
         search: PlanSearch | None = None) -> Policy:
    """Plan which layers/channels to train. `model`: nn.Module, zoo name or module:callable,
    or a `ModelSource` (with the name outputs give it).

    memory_bytes, compute: the budgets, as `Budgets` reads them: bytes as an int or text
    ("1MB"); compute as MACs (int), a fraction in (0, 1], a ComputeBudget or text ("15%",
    "6.5M"), refused with the command line's messages.
    options: the cost model's `CostOptions` (default: paper); recorded in the policy, and
    profiling the policy uses them.
    inputs: what the model is called with: an input shape (default 1x3x128x128), a tensor, a
    tuple or dict of tensors, spec strings like "ids:int64[1,128]", an .npz
    (`costmodel.inputs`); the policy records them.
    search: a `PlanSearch` (solver, channel criterion, seed, sparseupdate scheme, blocks,
    extra limits).
    """
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r}: use {', '.join(METHODS)}")
    budgets = Budgets(memory_bytes, compute)
    options = options_or_default(options)
    search = search if search is not None else DEFAULT_SEARCH
    if not isinstance(search, PlanSearch):
        raise SpecError(f"search must be a PlanSearch, not {type(search).__name__}")
    given = resolve_inputs(inputs, None if inputs is not None else DEFAULT_INPUT_SHAPE)
    module, name = resolve_model(model)
    planned_notes, lite_layers = [], []
    if method == "tinytl":
        module, name = add_lite_residuals(module, given), f"{name}+lite-residual"
        lite_layers = lite_layer_names(module)
        planned_notes = _tinytl_notes(given.shape, fisher)
    graph = trace(module, given, name, blocks=search.blocks)
    coster = Coster(graph, options)
    compute_macs, fraction = _compute_budget(budgets.compute, coster)
    budget = Budget(budgets.memory_bytes, compute_macs, search.limits)
    result = fisher_for(fisher, graph) if method != "tinytl" else None
    if result is not None:  # a probe of other weights ranks channels these weights do not have
        check_weights(result, module, str(fisher) if isinstance(fisher, (str, Path)) else "fisher")
    if method in ("tinytrain", "sparseupdate"):
        _check_room_for_nothing(coster, budget.memory_bytes)
    planned = _select(method, coster, graph, budget, result, search, module, name, lite_layers)
    planned = replace(planned, notes=(*planned_notes, *planned.notes))
    return _policy(method, module, graph, given, options, budget, fraction, search, result,
                   planned)


def _tinytl_notes(input_shape, fisher) -> list[str]:
    notes = [f"planned for add_lite_residuals(model, {list(input_shape)}) (planner.tinytl): "
             "apply the policy to that model (`ttplan profile` adds the modules itself)"]
    if fisher is not None:
        notes.append("the Fisher probe was ignored: it measured the model without lite residuals")
    return notes


def _check_room_for_nothing(coster: Coster, memory: int | None) -> None:
    """A selecting method needs the peak with nothing trained to fit the memory budget."""
    if memory is None:
        return
    nothing = coster.evaluate({})
    if nothing.memory.peak_bytes > memory:
        options = coster.options
        hint = ": give a budget of at least that, or a smaller input shape" \
            if options.weights_in_flash or not options.paper else \
            " (weights count as RAM: plan with weights in flash to leave them out)"
        raise SpecError(f"memory budget {memory:,} B is below the peak with nothing trained, "
                        f"{nothing.memory.peak_bytes:,} B ({options.convention} convention){hint}")


def _select(method, coster, graph, budget, result, search, module, name,
            lite_layers) -> _Planned:
    """The selection of `method` under `budget`, with the notes it leaves."""
    if method == "tinytrain":
        return _tinytrain(coster, graph, budget, result, search, module)
    if method == "sparseupdate":
        return _Planned(_sparseupdate(coster, graph, name, budget, result, search.seed,
                                      search.scheme))
    if method == "tinytl":
        updates = baselines.tinytl_updates(graph, lite_layers)
    else:
        updates = {"none": baselines.none_updates, "fulltrain": baselines.fulltrain_updates,
                   "lastlayer": baselines.lastlayer_updates}[method](graph)
    return _Planned(Selection(updates, 0.0, coster.evaluate(updates), 1, f"baseline {method}"))


def _tinytrain(coster, graph, budget, result, search, module) -> _Planned:
    if result is None:
        raise SpecError("method tinytrain needs Fisher information: run `ttplan fisher` "
                        "first and pass its file")
    candidates = build_candidates(graph, result.layers, channels=search.channels, model=module,
                                  seed=search.seed)
    selection = greedy(coster, candidates, budget)
    if selection is None:
        raise infeasible_error(coster, candidates, budget)
    exact_notes, greedy_value = (), None
    if search.solver == "exact":
        greedy_value = selection.fisher_captured
        exact = solve_exact(coster, candidates, budget, incumbent=selection, gap=search.exact_gap)
        gap = exact.fisher_captured - greedy_value
        exact_notes = (f"exact optimum captures {exact.fisher_captured:.6g}, greedy "
                       f"{greedy_value:.6g} ({_percent(gap, exact.fisher_captured)} below)",)
        selection = exact
    selection, baseline_notes = _at_least_baselines(coster, budget, result, graph, selection)
    return _Planned(selection, (*exact_notes, *baseline_notes), greedy_value)


def _policy(method, module, graph, given, options, budget, fraction, search, result,
            planned: _Planned) -> Policy:
    """The policy of a selection: its profile under the same options, budgets, notes."""
    selection = planned.selection
    prof = cost_profile(module, given.shape, update=selection.updates, options=options, graph=graph)
    within = budget.tolerates(prof.evaluation)
    over = (_over_budget(method, budget, prof.memory.peak_bytes, prof.totals["backward_macs"],
                         prof.evaluation),) if not within else \
        _within_resolution(budget, prof.evaluation)
    notes = [*planned.notes, *over]
    captured = fisher_captured(selection.updates, result, graph) if result is not None else None
    tinytrain = method == "tinytrain"
    return Policy(
        model_name=graph.model_name, fingerprint=graph.fingerprint(), input_shape=given.shape,
        method=method, options=options,
        budgets={"memory_bytes": budget.memory_bytes, "compute_macs": budget.compute_macs,
                 "compute_fraction": fraction},
        selection={"solver": search.solver if tinytrain else None,
                   "channels": search.channels if tinytrain else None,
                   "seed": search.seed, "evaluations": selection.evaluations,
                   "greedy_fisher_captured": planned.greedy_value, "detail": selection.note,
                   "fisher": None if result is None else {
                       "num_samples": result.num_samples, "loss": result.loss,
                       "seed": result.seed}},
        layers=layer_dicts(selection.updates, graph),
        predicted={"memory": prof.to_dict()["memory"], "totals": prof.to_dict()["totals"],
                   "fisher_captured": captured, "within_budget": within},
        notes=notes, graph=graph, inputs=graph.input_specs)


def _at_least_baselines(coster: Coster, budget: Budget, result: FisherResult, graph,
                        selection: Selection) -> tuple[Selection, tuple[str, ...]]:
    """The selection, or the simple baseline (last-blocks:K, last-layers:K) that fits the same
    budgets and captures more Fisher than it (with a note saying so): a plan never captures less than a
    feasible baseline. The greedy can: it adds layers by Eq. 3's score, and a high-scoring layer
    early in the order can crowd out a block whose layers capture more together (and its
    channel-sparse layers cost more than dense ones under a device's time budget).

    A baseline counts as fitting when it meets the limits to their resolution
    (`Budget.tolerates`): a time budget in seconds measured on a machine whose runs spread by
    a few per cent cannot tell a baseline 2 % over it from one 2 % under (the usual budget is
    what a baseline itself measured); the plan's notes then say how far over it is predicted."""
    best_value = fisher_captured(selection.updates, result, graph)
    planned_value, best, start = best_value, None, coster.calls
    near_misses = []
    for kind in baselines.LAST_K_KINDS:
        first_over = True
        for k, updates in baselines.last_k_baselines(graph, kind):
            ev = coster.evaluate(updates)
            value = fisher_captured(updates, result, graph)
            if not budget.tolerates(ev):
                # the first over the budget, and any the limits measured (`_near_miss`)
                if first_over or any(resolution_of(lim, ev) > 0 for lim in budget.limits):
                    near_misses.append((f"{kind}:{k}", value, ev))
                    first_over = False
                # a larger K trains a superset, over budget too, unless the calibration
                # measured it and its prediction is met to that resolution (`resolution_of`)
                if not budget.could_tolerate(ev):
                    break
                continue
            if value > best_value:
                best_value, best = value, (f"{kind}:{k}", updates, ev)
    # named against the plan as it ends up (a kept baseline may capture more than the selection)
    missed = tuple(n for n in (_near_miss(spec, value, best_value, budget, ev)
                               for spec, value, ev in near_misses) if n)
    if best is None:
        return selection, missed
    spec, updates, ev = best
    fits = "fits the same budgets" if budget.fits(ev) else \
        "fits the same budgets to their resolution"
    note = (f"{spec} {fits} and captures more Fisher ({best_value:.6g}) "
            f"than the selection found ({planned_value:.6g}): the plan is {spec}")
    return Selection(updates, best_value, ev,
                     selection.evaluations + coster.calls - start,
                     f"{spec}, a baseline capturing more than the {selection.note}"), \
        (note, *missed)


NEAR_MISS = 0.05  # a baseline over a limit by at most this share is worth saying
# ... or by at most this share where the limit measured the baseline: a budget timed on the
# same machine lands that far from a calibration made at another of its speeds (notes §28)
MEASURED_NEAR_MISS = 0.30


def _near_miss(spec: str, value: float, planned: float, budget: Budget, ev) -> str | None:
    """A note when the first baseline over the budget captures more Fisher than the plan and
    is over only a limit (a device's time) by at most NEAR_MISS: the user may prefer it (a
    limit is a prediction, with its error); or by at most MEASURED_NEAR_MISS, where the limit
    measured it (its `resolution_of` the configuration) and says why that may be
    (`measured_over_why`, a format string of `spec`)."""
    if value <= planned or not Budget(budget.memory_bytes, budget.compute_macs).fits(ev):
        return None
    over = [(lim.value(ev) / lim.limit - 1.0, i) for i, lim in enumerate(budget.limits)
            if lim.limit > 0 and lim.value(ev) > lim.limit]
    if not over:
        return None
    share, index = max(over)
    lim = budget.limits[index]
    if share <= NEAR_MISS:
        where = "the budget" if lim.value(ev) > _stated(lim) else \
            f"the {lim.limit:.4g} s a prediction is planned to below the budget"
        return (f"{spec} would capture more Fisher ({value:.6g}, the plan {planned:.6g}) but is "
                f"predicted {100 * share:.1f} % over {where} ({lim.label}): not kept")
    if share > MEASURED_NEAR_MISS or not resolution_of(lim, ev) \
            or not getattr(lim, "measured_over_why", ""):
        return None
    return (f"{spec} would capture more Fisher ({value:.6g}, the plan {planned:.6g}) but is "
            f"predicted {100 * (lim.value(ev) / _stated(lim) - 1.0):.1f} % over the budget "
            f"({lim.label}): not kept; {lim.measured_over_why.format(spec=spec)}")


def _stated(lim) -> float:
    """A limit's budget as given (a limit may keep headroom below it: `stated`)."""
    return getattr(lim, "stated", None) or lim.limit


def _over_budget(method, budget: Budget, peak_bytes: int, backward_macs: int, ev=None) -> str:
    over = []
    if budget.memory_bytes is not None and peak_bytes > budget.memory_bytes:
        over.append(f"memory: needs {peak_bytes:,} B of {budget.memory_bytes:,} B")
    if budget.compute_macs is not None and backward_macs > budget.compute_macs:
        over.append(f"compute: needs {backward_macs:,} of {budget.compute_macs:,} MACs")
    over += [f"{lim.label}: needs {lim.value(ev):.6g} of {lim.limit:.6g}"
             for lim in budget.limits if lim.value(ev) > lim.limit]
    return f"{method} is over budget ({'; '.join(over)})"


def _within_resolution(budget: Budget, ev) -> tuple[str, ...]:
    """Notes for limits a configuration meets only to their resolution (over the budget as
    given: a limit may keep headroom below it, `stated`)."""
    def share(lim) -> float:  # over the budget as given, whatever headroom the limit keeps
        return lim.limit * (1.0 + resolution_of(lim, ev)) / _stated(lim) - 1.0

    # "the plan": a baseline may have replaced the method's selection (`_at_least_baselines`)
    return tuple(f"the plan is predicted {100 * (lim.value(ev) / _stated(lim) - 1.0):.1f} % "
                 f"over the budget ({lim.label}): within its resolution "
                 f"(±{100 * share(lim):.1f} %"
                 + (f": {lim.resolution_why}" if getattr(lim, "resolution_why", "") else "")
                 + ")" for lim in budget.limits if _stated(lim) < lim.value(ev))


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole > 0 else "0%"


def _compute_budget(compute: ComputeBudget | None, coster: Coster) -> tuple[int | None, float | None]:
    """(budget in MACs, fraction as given or None)."""
    if compute is None:
        return None, None
    if compute.macs is not None:
        return compute.macs, None
    full = coster.evaluate(baselines.fulltrain_updates(coster.graph)).totals["backward_macs"]
    macs = compute.resolve(full)
    if macs <= 0:
        raise SpecError(f"a compute budget of {compute.fraction:g} of full training's "
                        f"{full:,} backward MACs is below one MAC")
    return macs, compute.fraction


def _sparseupdate(coster, graph, name, budget, result, seed, scheme) -> Selection:
    released = None
    if scheme in ("auto", "released"):
        released = sparseupdate.released_scheme_for(graph, name, budget.memory_bytes)
        if released is None and scheme == "released":
            raise SpecError(f"no released SparseUpdate scheme for {name}: use scheme=search")
    if released is not None:
        selection = sparseupdate.sparseupdate_released(coster, *released, budget)
    else:
        potential = result.potential if result is not None else None
        selection = sparseupdate.sparseupdate_search(coster, budget, potential, seed)
    if selection is None:
        layers = [n for n in coster.costed.ops() if n.kind in ("conv", "conv_transpose", "linear")]
        candidates = build_candidates(graph, {n.name: [0.0] * _out_channels(n) for n in layers})
        raise infeasible_error(coster, candidates, budget)
    return selection


def _out_channels(node) -> int:
    return channel_count(node, 0)


def fisher_captured(updates, result: FisherResult, graph) -> float:
    """Σ Δ_o over the weight-updated output channels of the probed layers. A layer updated on
    a subset of INPUT channels (SparseUpdate's axis 1) counts the same fraction of its P."""
    folded = costing_graph(graph, "paper")
    total = []
    for name, update in updates.items():
        deltas = result.layers.get(name)
        if deltas is None or not update.weight:
            continue
        if update.channels is None:
            total.append(math.fsum(deltas))
        elif update.channel_axis == 0:
            total.append(math.fsum(deltas[c] for c in update.channels))
        else:
            share = len(update.channels) / channel_count(folded[name], 1)
            total.append(share * math.fsum(deltas))
    return math.fsum(total)

