"""Properties over random small models and random budgets:
  * a plan never exceeds either budget per the cost model (greedy and exact, both conventions);
  * the exact objective is at least the greedy's;
  * with the exact solver, more budget never captures less Fisher (paper convention, where
    its additive model is exact)."""

import functools
import math
import random

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.trace import trace
from ttplan.planner.selection import baselines
from ttplan.planner.selection.exact import solve_exact
from ttplan.planner.selection.score import build_candidates
from ttplan.costmodel.options import CostOptions
from ttplan.planner.selection.select import Budget, Coster, greedy

SHAPE = (1, 3, 16, 16)
EXACT_GAP = 1e-9  # small models: prove optimality outright
PROPERTIES = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@functools.lru_cache(maxsize=64)
def model_and_graph(widths: tuple, depthwise: tuple):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for cin, cout, dw in zip(widths, widths[1:], depthwise):
            if dw:
                layers += [nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
                           nn.BatchNorm2d(cin), nn.ReLU6()]
            layers += [nn.Conv2d(cin, cout, 1 if dw else 3, 1, 0 if dw else 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU()]
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return model, trace(model, SHAPE, "chain")


@st.composite
def problems(draw):
    n = draw(st.integers(2, 4))
    widths = tuple(draw(st.sampled_from((4, 8, 12, 16))) for _ in range(n))
    depthwise = tuple(draw(st.booleans()) for _ in range(n - 1))
    seed = draw(st.integers(0, 10_000))
    memory_share = draw(st.floats(0.0, 1.2))
    compute_share = draw(st.one_of(st.none(), st.floats(0.01, 1.0)))
    flash = draw(st.booleans())
    return widths, depthwise, seed, memory_share, compute_share, flash


def setup(problem, convention="paper"):
    widths, depthwise, seed, memory_share, compute_share, flash = problem
    model, graph = model_and_graph(widths, depthwise)
    options = CostOptions(convention=convention, weights_in_flash=flash and convention == "paper")
    coster = Coster(graph, options)
    rng = random.Random(seed)
    fisher = {n.name: [rng.random() ** 2 for _ in range(n.out_channels)]
              for n in graph.mac_layers()}
    candidates = build_candidates(graph, fisher)
    low = coster.evaluate({}).memory.peak_bytes
    full = coster.evaluate(baselines.fulltrain_updates(graph))
    memory = int(low + memory_share * (full.memory.peak_bytes - low))
    compute = None if compute_share is None else \
        max(1, math.floor(compute_share * full.totals["backward_macs"]))
    return graph, coster, candidates, memory, compute


def check_within(graph, coster, selection, budget):
    ev = evaluate(graph, coster.config(selection.updates))
    assert budget.fits(ev)


@PROPERTIES
@given(problems(), st.sampled_from(("paper", "pytorch")))
def test_plans_stay_within_budget_and_exact_beats_greedy(problem, convention):
    graph, coster, candidates, memory, compute = setup(problem, convention)
    budget = Budget(memory, compute)
    first = greedy(coster, candidates, budget)
    if first is None:  # then not even the cheapest single update fits
        assert not any(budget.fits(coster.evaluate({c.name: u}))
                       for c in candidates for u in _smallest_updates(c))
        return
    check_within(graph, coster, first, budget)
    exact = solve_exact(coster, candidates, budget, incumbent=first, gap=EXACT_GAP)
    check_within(graph, coster, exact, budget)
    # optimal within the solver's relative gap: a tie may come out 1e-10 below the greedy
    assert exact.fisher_captured >= first.fisher_captured * (1 - 1e-7)


@PROPERTIES
@given(problems(), st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_more_budget_never_captures_less_with_exact(problem, more_memory, more_compute):
    graph, coster, candidates, memory, compute = setup(problem)
    small = Budget(memory, compute)
    extra_memory = int(more_memory * memory)
    large = Budget(memory + extra_memory,
                   None if compute is None else compute + int(more_compute * compute))
    a = solve_exact(coster, candidates, small, gap=EXACT_GAP)
    b = solve_exact(coster, candidates, large, gap=EXACT_GAP)
    check_within(graph, coster, b, large)
    assert b.fisher_captured >= a.fisher_captured * (1 - 1e-7)


def _smallest_updates(cand):
    from ttplan.costmodel.config import LayerUpdate
    updates = [LayerUpdate(weight=True, bias=False, channels=cand.channel_set(1))]
    if cand.has_bias:
        updates.append(LayerUpdate(weight=False, bias=True))
    return updates
