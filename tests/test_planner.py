"""The planner: Eq. 3, Algorithm 1 under whole-configuration budgets, the exact MILP, the
baselines (none, fulltrain, lastlayer, tinytl, sparseupdate) and the CLI commands."""

import json
import math
import random
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ttplan.costmodel.config import LayerUpdate, updatable_layers
from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.errors import SpecError
from ttplan import profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model
from ttplan.planner.selection import baselines, sparseupdate
from ttplan.planner.api import plan
from ttplan.planner.selection.exact import AdditiveModel, solve_exact
from ttplan.planner.fisher import FisherResult, default_candidate_layers
from ttplan.planner.selection.score import build_candidates, ranked, score_layers
from ttplan.costmodel.options import CostOptions
from ttplan.planner.selection.select import Budget, Choice, Coster, greedy, updates_of
from ttplan.planner.selection.tinytl import add_lite_residuals, lite_layer_names
from ttplan.cli import app
from ttplan.costmodel.options import cost_options
from ttplan.planner.api import PlanSearch

SHAPE = (1, 3, 128, 128)


def fake_fisher(model, layers=None, seed=0) -> FisherResult:
    """Deterministic heavy-tailed Δ_o per output channel, the shape real probes have."""
    layers = layers or default_candidate_layers(model)
    modules = dict(model.named_modules())
    rng = random.Random(seed)
    deltas = {}
    for name in layers:
        m = modules[name]
        count = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        deltas[name] = [rng.random() ** 3 for _ in range(count)]
    return FisherResult(deltas, {k: math.fsum(v) for k, v in deltas.items()}, 25, "protonet",
                        seed, 0.0, 0)


@pytest.fixture(scope="module")
def mcunet():
    model = build_zoo_model("mcunet-5fps")
    return model, trace(model, SHAPE, "mcunet-5fps"), fake_fisher(model)


def chain(widths=(8, 16, 16, 24), depthwise=(False, True, False), seed=0) -> nn.Module:
    """Conv-BN-ReLU chain (optionally depthwise convs) then pooled features."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for cin, cout, dw in zip(widths, widths[1:], depthwise):
            if dw:
                layers += [nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                           nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            else:
                layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*layers)


# ---------------------------------------------------------------------------- Eq. 3

def test_score_is_eq3_with_folded_params_and_batch1_macs():
    model = chain(widths=(8, 16, 32), depthwise=(False, False))
    graph = trace(model, (4, 3, 16, 16), "chain")  # batch 4: M_i must be per sample
    potential = {"0": 2.0, "3": 1.0, "6": 3.0}
    scores = score_layers(graph, potential)
    # folded params: weight + a bias of Cout (the BatchNorm); MACs of one sample
    params = {"0": 8 * 27 + 8, "3": 16 * 8 * 9 + 16, "6": 32 * 16 * 9 + 32}
    macs = {"0": 8 * 8 * 8 * 27, "3": 16 * 8 * 8 * 72, "6": 32 * 8 * 8 * 144}
    for name, p in potential.items():
        assert scores[name].params == params[name]
        assert scores[name].forward_macs == macs[name]
        expected = p / ((params[name] / max(params.values())) * (macs[name] / max(macs.values())))
        assert scores[name].score == pytest.approx(expected, rel=1e-12)
    candidates = build_candidates(graph, {n: [p / 8] * 8 if n == "0" else
                                          [p / (16 if n == "3" else 32)] * (16 if n == "3" else 32)
                                          for n, p in potential.items()})
    assert [c.name for c in ranked(candidates)][0] == "0"  # cheapest per parameter and MAC


def test_channel_criteria(mcunet):
    model, graph, fisher = mcunet
    name = next(iter(fisher.layers))
    by_fisher = build_candidates(graph, {name: fisher.layers[name]})[0]
    deltas = fisher.layers[name]
    assert deltas[by_fisher.order[0]] == max(deltas)
    assert all(deltas[a] >= deltas[b] for a, b in zip(by_fisher.order, by_fisher.order[1:]))
    by_norm = build_candidates(graph, {name: deltas}, channels="l2norm", model=model)[0]
    norms = dict(model.named_modules())[name].weight.detach().flatten(1).norm(dim=1)
    assert by_norm.order[0] == int(norms.argmax())
    r1 = build_candidates(graph, {name: deltas}, channels="random", seed=1)[0]
    r1b = build_candidates(graph, {name: deltas}, channels="random", seed=1)[0]
    r2 = build_candidates(graph, {name: deltas}, channels="random", seed=2)[0]
    assert r1.order == r1b.order != r2.order
    assert sorted(r1.order) == list(range(len(deltas)))


# ---------------------------------------------------------------------------- greedy

def test_greedy_fits_both_budgets_and_is_deterministic(mcunet):
    model, graph, fisher = mcunet
    kwargs = dict(method="tinytrain", fisher=fisher, memory_bytes=1_000_000, compute=0.15,
                  options=cost_options(weights_in_flash=True))
    a, b = plan(model, **kwargs), plan(model, **kwargs)
    assert a.to_dict() == b.to_dict()
    pred = a.predicted
    assert pred["within_budget"]
    assert pred["memory"]["peak_bytes"] <= 1_000_000
    assert pred["totals"]["backward_macs"] <= a.budgets["compute_macs"]
    assert pred["fisher_captured"] > 0
    assert {l["name"] for l in a.layers} <= set(fisher.layers)
    assert all(l["channel_axis"] == 0 for l in a.layers)
    full = profile(model, SHAPE, update="all",
                   options={"weights_in_flash": True}).totals["backward_macs"]
    assert a.budgets["compute_macs"] == math.floor(full * 15 / 100)
    # the prediction is the cost model's own
    again = profile(model, SHAPE, update=a.updates(), options={"weights_in_flash": True})
    assert again.memory.to_dict() == pred["memory"]


def test_greedy_costs_whole_configurations(mcunet):
    model, graph, fisher = mcunet
    coster = Coster(graph, CostOptions(weights_in_flash=True))
    candidates = build_candidates(graph, fisher.layers)
    budget = Budget(900_000, 3_000_000)
    selection = greedy(coster, candidates, budget)
    assert budget.fits(evaluate(graph, coster.config(selection.updates)))
    # maximal: no unselected candidate's single channel still fits
    for cand in candidates:
        if cand.name in selection.updates:
            continue
        trial = dict(selection.updates)
        trial[cand.name] = LayerUpdate(channels=cand.channel_set(1), bias=False)
        assert not budget.fits(coster.evaluate(trial))


def test_budgets_nothing_fits_name_the_smallest(mcunet):
    model, graph, fisher = mcunet
    with pytest.raises(SpecError, match=r"below the peak with nothing trained, 2,532,256 B"):
        plan(model, fisher=fisher, memory_bytes=1_000_000,
             options=cost_options(weights_in_flash=False))
    with pytest.raises(SpecError, match=r"below the peak with nothing trained, 655,360 B"):
        plan(model, fisher=fisher, memory_bytes=600_000)  # paper default: weights in flash
    with pytest.raises(SpecError) as info:
        plan(model, fisher=fisher, memory_bytes=655_361,
             options=cost_options(weights_in_flash=True))
    message = str(info.value)
    assert "\n" not in message and "cheapest" in message
    smallest = int(re.search(r"needs ([\d,]+) B", message).group(1).replace(",", ""))
    fits = plan(model, fisher=fisher, memory_bytes=smallest,
                options=cost_options(weights_in_flash=True))
    assert fits.layers and fits.predicted["memory"]["peak_bytes"] <= smallest
    with pytest.raises(SpecError, match="needs Fisher"):
        plan(model, method="tinytrain")


# ---------------------------------------------------------------------------- exact

@pytest.mark.parametrize("name", ZOO_MODELS)
@pytest.mark.parametrize("flash", [True, False])
def test_additive_model_equals_evaluate_on_the_zoo(name, flash):
    model = build_zoo_model(name)
    graph = trace(model, SHAPE, name)
    fisher = fake_fisher(model, default_candidate_layers(model, 1.0))  # every conv a candidate
    coster = Coster(graph, CostOptions(weights_in_flash=flash, optimizer="adam"))
    candidates = build_candidates(graph, fisher.layers)
    additive = AdditiveModel(coster, candidates)
    rng = random.Random(0)
    for _ in range(30):
        choices = {}
        for cand in candidates:
            if rng.random() < 0.4:
                choices[cand.name] = Choice(rng.randint(0, cand.channels), rng.random() < 0.5)
        choices = {n: c for n, c in choices.items() if c.k or c.bias}
        ev = coster.evaluate(updates_of(candidates, choices))
        peak, macs = additive.predict(choices)
        assert (peak, macs) == (ev.memory.peak_bytes, ev.totals["backward_macs"])


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_exact_is_at_least_greedy_within_budget(name):
    model = build_zoo_model(name)
    graph = trace(model, SHAPE, name)
    fisher = fake_fisher(model)
    coster = Coster(graph, CostOptions(weights_in_flash=True))
    candidates = build_candidates(graph, fisher.layers)
    full = coster.evaluate(baselines.fulltrain_updates(graph)).totals["backward_macs"]
    budget = Budget(1_000_000 + 200_000 * (name == "mbv2-w0.35"), full * 15 // 100)
    first = greedy(coster, candidates, budget)
    exact = solve_exact(coster, candidates, budget, incumbent=first)  # speed: benchmarks/
    assert budget.fits(exact.evaluation)
    assert exact.fisher_captured >= first.fisher_captured


def test_exact_through_plan_records_the_greedy(mcunet, capfd):
    model, graph, fisher = mcunet
    capfd.readouterr()
    policy = plan(model, fisher=fisher, memory_bytes="1MB", compute="15%",
                  options=cost_options(weights_in_flash=True), search=PlanSearch(solver="exact"))
    sel = policy.selection
    assert sel["solver"] == "exact" and sel["greedy_fisher_captured"] is not None
    assert policy.fisher_captured >= sel["greedy_fisher_captured"]
    assert any("greedy" in n for n in policy.notes)
    again = plan(model, fisher=fisher, memory_bytes="1MB", compute="15%",
                 options=cost_options(weights_in_flash=True), search=PlanSearch(solver="exact"))
    assert again.to_dict() == policy.to_dict()  # HiGHS is deterministic: same file
    assert capfd.readouterr().out == ""  # HiGHS writes nothing into a --format json stdout


# ---------------------------------------------------------------------------- baselines

def test_fixed_baselines(mcunet):
    model, graph, fisher = mcunet
    none = plan(model, method="none")
    assert none.layers == [] and none.predicted["totals"]["backward_macs"] == 0
    full = plan(model, method="fulltrain", fisher=fisher)
    assert len(full.layers) == len(updatable_layers(graph))
    assert full.predicted["totals"] == profile(model, SHAPE, update="all").to_dict()["totals"]
    assert full.fisher_captured == pytest.approx(sum(fisher.potential.values()))
    last = plan(model, method="lastlayer", memory_bytes=3_000_000)
    assert [l["name"] for l in last.layers] == [graph.mac_layers()[-1].name]
    assert last.predicted["within_budget"]
    over = plan(model, method="fulltrain", memory_bytes=3_000_000)
    assert not over.predicted["within_budget"] and "over budget" in over.notes[0]


def test_sparseupdate_released_scheme(mcunet):
    model, graph, _ = mcunet
    policy = plan(model, method="sparseupdate")
    convs = [n for n in graph.mac_layers() if n.kind == "conv"]
    scheme = sparseupdate.released_schemes()["mcunet-5fps"]["99"]
    layers = {l["name"]: l for l in policy.layers}
    for idx, ratio in zip(scheme["weight_update_idx"], scheme["weight_update_ratio"]):
        layer = layers[convs[idx].name]
        cin = convs[idx].weight_shape[1]
        assert layer["update_weight"] and layer["channel_axis"] == 1
        expected = None if ratio == 1 else list(range(math.floor(ratio * cin + 0.5)))
        assert layer["channels"] == expected
    biased = {l["name"] for l in policy.layers if l["update_bias"]}
    assert biased == {c.name for c in convs[-scheme["n_bias_update"]:]}


def test_sparseupdate_shrinks_to_the_budget(mcunet):
    model, graph, fisher = mcunet
    unconstrained = plan(model, method="sparseupdate", options=cost_options(weights_in_flash=True))
    peak = unconstrained.predicted["memory"]["peak_bytes"]
    tight = plan(model, method="sparseupdate", fisher=fisher,
                 memory_bytes=peak - 50_000, compute=0.1,
                 options=cost_options(weights_in_flash=True))
    assert tight.predicted["within_budget"]
    assert "shrunk to fit" in tight.selection["detail"]
    assert tight.fisher_captured is not None


def test_sparseupdate_search_is_seeded_and_within_budget():
    model = chain(widths=(8, 16, 24, 32, 32), depthwise=(False, True, False, True))
    kwargs = dict(method="sparseupdate", inputs=(1, 3, 32, 32), memory_bytes=120_000, compute=0.3,
                  search=PlanSearch(seed=3))
    a, b = plan(model, **kwargs), plan(model, **kwargs)
    assert a.to_dict() == b.to_dict()
    assert a.predicted["within_budget"] and a.layers
    assert a.selection["detail"].startswith("evolutionary search")
    assert a.selection["evaluations"] >= 100
    with pytest.raises(SpecError, match="no released SparseUpdate scheme"):
        plan(model, method="sparseupdate", inputs=(1, 3, 32, 32),
             search=PlanSearch(scheme="released"))


def test_tinytl_prices_the_lite_residuals():
    model = build_zoo_model("mcunet-5fps")
    lite = add_lite_residuals(model, (1, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.eval(), lite.eval()
    with torch.no_grad():
        assert torch.equal(model(x), lite(x))  # conv2 starts at zero
    names = lite_layer_names(lite)
    assert len(names) == 2 * len(model.blocks)
    assert "blocks.3.lite_residual.conv1" in names and "blocks.3.expand.0" in dict(lite.named_modules())
    policy = plan(model, method="tinytl", inputs=(1, 3, 64, 64))
    assert policy.model_name == "mcunet-5fps+lite-residual"
    weights = {l["name"] for l in policy.layers if l["update_weight"]}
    assert weights == set(names)
    assert all(l["update_bias"] for l in policy.layers if l["name"] not in names)
    plain = profile(model, (1, 3, 64, 64)).totals["forward_macs"]
    assert policy.predicted["totals"]["forward_macs"] > plain  # the branches cost MACs


# ---------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_fisher_plan_export(tmp_path):
    fisher = tmp_path / "f.json"
    result = runner.invoke(app, ["fisher", "mcunet-5fps", "--synthetic", "--samples", "4",
                                 "--input-shape", "1,3,32,32", "--out", str(fisher)])
    assert result.exit_code == 0, result.output
    assert "peak saved" in result.stderr and " s," in result.stderr
    assert json.loads(fisher.read_text())["format"] == "ttplan-fisher"
    policy = tmp_path / "p.json"
    result = runner.invoke(app, ["plan", "mcunet-5fps", "--fisher", str(fisher), "--input-shape",
                                 "1,3,32,32", "--memory", "200kB", "--compute", "15%",
                                 "--weights-in-flash", "--out", str(policy)])
    assert result.exit_code == 0, result.output
    assert "tinytrain" in result.stdout and "of 195.3 KiB" in result.stdout  # 200kB, in KiB
    saved = json.loads(policy.read_text())
    result = runner.invoke(app, ["plan", "mcunet-5fps", "--fisher", str(fisher), "--input-shape",
                                 "1,3,32,32", "--memory", "200kB", "--compute", "15%",
                                 "--weights-in-flash", "--format", "json"])
    assert json.loads(result.stdout) == saved
    result = runner.invoke(app, ["profile", "mcunet-5fps", "--input-shape", "1,3,32,32",
                                 "--update", str(policy), "--weights-in-flash", "--format", "json"])
    assert json.loads(result.stdout)["memory"] == saved["predicted"]["memory"]
    result = runner.invoke(app, ["export", str(policy)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"n_bias_update", "manual_weight_idx",
                                              "weight_update_ratio"}


@pytest.mark.parametrize("args, message", [
    (["plan", "mcunet-5fps", "--method", "magic"], "unknown method"),
    (["plan", "mcunet-5fps", "--method", "none", "--memory", "lots"], "invalid byte size"),
    (["plan", "mcunet-5fps", "--method", "none", "--compute", "150%"], "invalid compute"),
    (["plan", "mcunet-5fps"], "needs Fisher"),
    (["plan", "mcunet-5fps", "--fisher", "missing.json"], "not found"),
    (["plan", "mcunet-5fps", "--method", "none", "--format", "xml"], "unknown --format"),
    (["export", "missing.json"], "not found"),
])
def test_cli_errors_are_one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
