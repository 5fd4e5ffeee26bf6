"""A planning context: trace, cost set-up, Fisher and candidates once, then plan many budgets.

`planner.api.plan` does everything for one budget (trace, score, select, profile, policy).
Exploring a grid of budgets (`ttplan whatif`) re-does nothing that does not depend on the
budget: the graph is traced once, the candidates are scored once, and every configuration
costed for one budget is remembered (`CachingCoster`), because neighbouring budgets cost many
of the same configurations. The selections are exactly the ones `plan` makes for the same
inputs (the same functions: `greedy`, `solve_exact`, the baselines).
"""

from __future__ import annotations

import math

from ttplan.costmodel.config import channel_count
from ttplan.costmodel.costs import Evaluation
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import resolve_inputs
from ttplan.costmodel.options import CostOptions, options_or_default
from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.trace import trace

from .selection import baselines, sparseupdate
from .api import fisher_captured
from .selection.exact import solve_exact
from .fisher import FisherResult
from .fisher.file import fisher_for
from .selection.score import build_candidates
from .selection.select import Budget, Coster, Selection, greedy

# Methods whose plan depends on the budget, and fixed baselines that fit or do not.
# (TinyTL needs another model, with lite-residual modules: `plan(method="tinytl")`.)
CONTEXT_METHODS = ("tinytrain", "sparseupdate", "fulltrain", "lastlayer")


class CachingCoster(Coster):
    """A Coster that remembers each configuration's evaluation (keyed by its updates)."""

    def __init__(self, graph, options: CostOptions):
        super().__init__(graph, options)
        self._cache: dict = {}

    def evaluate(self, updates) -> Evaluation:
        key = frozenset(updates.items())
        found = self._cache.get(key)
        if found is None:
            found = super().evaluate(updates)
            self._cache[key] = found
        else:
            self.calls += 1
        return found


class PlanningContext:
    """Everything about one model, its Fisher file and the cost options that no budget changes.

    `select(method, budget)` returns the Selection `plan` would make (None when nothing fits);
    `fisher_fraction(updates)` the share of the probe's total Fisher potential it captures.
    """

    def __init__(self, model, *, fisher=None, options: CostOptions | None = None, inputs=None,
                 channels: str = "fisher", seed: int = 0):
        """`model`, `fisher`, `options` and `inputs` as `plan` takes them (`inputs` default
        1x3x128x128); `channels` and `seed`: the candidates' channel criterion."""
        self.options = options_or_default(options)
        given = resolve_inputs(inputs)
        self.input_shape = given.shape
        self.module, self.model_name = resolve_model(model)
        self.graph = trace(self.module, given, self.model_name)
        self.coster = CachingCoster(self.graph, self.options)
        self.fisher = self._fisher(fisher)
        self.seed = seed
        self.candidates = [] if self.fisher is None else build_candidates(
            self.graph, self.fisher.layers, channels=channels, model=self.module, seed=seed)
        self.full_backward_macs = self.coster.evaluate(
            baselines.fulltrain_updates(self.graph)).totals["backward_macs"]
        self.nothing = self.coster.evaluate({})
        self.total_potential = math.fsum(self.fisher.potential.values()) if self.fisher else 0.0

    def _fisher(self, fisher) -> FisherResult | None:
        return fisher_for(fisher, self.graph)

    def select(self, method: str, budget: Budget, solver: str = "greedy",
               incumbent: Selection | None = None) -> Selection | None:
        """The plan's selection for one budget, or None when nothing fits. With the exact
        solver, `incumbent` (any selection known to fit this budget) is a lower bound."""
        if method not in CONTEXT_METHODS:
            raise SpecError(f"unknown method {method!r}: use {', '.join(CONTEXT_METHODS)}")
        if method in ("fulltrain", "lastlayer"):
            updates = (baselines.fulltrain_updates if method == "fulltrain"
                       else baselines.lastlayer_updates)(self.graph)
            ev = self.coster.evaluate(updates)
            return Selection(updates, 0.0, ev, 1, f"baseline {method}") \
                if budget.tolerates(ev) else None  # a fixed configuration: to the resolution
        if budget.memory_bytes is not None and self.nothing.memory.peak_bytes > budget.memory_bytes:
            return None
        if method == "sparseupdate":
            return self._sparseupdate(budget)
        if self.fisher is None:
            raise SpecError("method tinytrain needs Fisher information: run `ttplan fisher` "
                            "first and pass its file")
        selection = greedy(self.coster, self.candidates, budget)
        if selection is None or solver == "greedy":
            return selection
        if solver != "exact":
            raise SpecError(f"unknown solver {solver!r}: use greedy or exact")
        if incumbent is not None and incumbent.fisher_captured > selection.fisher_captured:
            selection = incumbent
        exact = solve_exact(self.coster, self.candidates, budget, incumbent=selection)
        # The MILP proves optimality within a relative gap; never hand back less than a
        # selection already known to fit.
        return exact if exact.fisher_captured >= selection.fisher_captured else selection

    def _sparseupdate(self, budget: Budget) -> Selection | None:
        released = sparseupdate.released_scheme_for(self.graph, self.model_name, budget.memory_bytes)
        if released is not None:
            return sparseupdate.sparseupdate_released(self.coster, *released, budget)
        potential = self.fisher.potential if self.fisher is not None else None
        return sparseupdate.sparseupdate_search(self.coster, budget, potential, self.seed)

    def fisher_fraction(self, updates) -> float | None:
        """Captured Fisher potential over the probe's total (None without a probe)."""
        if self.fisher is None or self.total_potential <= 0:
            return None
        return fisher_captured(updates, self.fisher, self.graph) / self.total_potential

    def channels_updated(self, updates) -> int:
        """Weight channels updated, along each layer's own channel axis."""
        total = 0
        for name, update in updates.items():
            if not update.weight:
                continue
            if update.channels is not None:
                total += len(update.channels)
            else:
                total += channel_count(self.graph[name], update.channel_axis)
        return total
