"""Policy files: deterministic bytes, strict validation, `profile(update=policy.json)` giving the
predicted numbers, refusal of another model's policy, and the SparseUpdate export."""

import copy
import json
import math
import random

import pytest
from torch import nn

from ttplan.costmodel.errors import PolicyError, SpecError
from ttplan import profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.planner.selection import sparseupdate
from ttplan.planner.api import plan
from ttplan.planner.fisher import FisherResult, default_candidate_layers
from ttplan.planner.policy.file import Policy, load_policy, load_policy_updates
from ttplan.planner.selection.sparseupdate import export_sparseupdate
from ttplan.costmodel.options import cost_options
from ttplan.planner.api import PlanSearch

SHAPE = (1, 3, 64, 64)


def fake_fisher(model, seed=0):
    modules = dict(model.named_modules())
    rng = random.Random(seed)
    deltas = {n: [rng.random() ** 3 for _ in range(modules[n].out_channels)]
              for n in default_candidate_layers(model)}
    return FisherResult(deltas, {k: math.fsum(v) for k, v in deltas.items()}, 25, "protonet",
                        seed, 0.0, 0)


@pytest.fixture(scope="module")
def setup():
    model = build_zoo_model("mcunet-5fps")
    fisher = fake_fisher(model)
    policy = plan(model, fisher=fisher, inputs=SHAPE,
                  memory_bytes=400_000, compute=0.2,
                  options=cost_options(weights_in_flash=True),
                  search=PlanSearch(channels="random", seed=7))
    return model, fisher, policy


def test_same_inputs_and_seed_give_byte_identical_files(setup, tmp_path):
    model, fisher, policy = setup
    again = plan(model, fisher=fisher, inputs=SHAPE,
                 memory_bytes=400_000, compute=0.2,
                 options=cost_options(weights_in_flash=True),
                 search=PlanSearch(channels="random", seed=7))
    policy.save(tmp_path / "a.json")
    again.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other = plan(model, fisher=fisher, inputs=SHAPE,
                 memory_bytes=400_000, compute=0.2,
                 options=cost_options(weights_in_flash=True),
                 search=PlanSearch(channels="random", seed=8))
    assert other.to_dict()["layers"] != policy.to_dict()["layers"]


def test_round_trip_and_schema(setup, tmp_path):
    _, _, policy = setup
    path = tmp_path / "p.json"
    policy.save(path)
    loaded = load_policy(path)
    assert loaded.to_dict() == policy.to_dict()
    d = json.loads(path.read_text())
    assert d["version"] == 1 and d["format"] == "ttplan-policy"
    assert set(d["model"]) == {"name", "fingerprint"}
    assert set(d["budgets"]) == {"memory_bytes", "compute_macs", "compute_fraction"}
    assert d["budgets"]["compute_fraction"] == 0.2
    for layer in d["layers"]:
        assert set(layer) == {"name", "update_weight", "update_bias", "channel_axis", "channels"}
        assert layer["channels"] is None or layer["channels"] == sorted(set(layer["channels"]))
    assert {"memory", "totals", "fisher_captured", "within_budget"} == set(d["predicted"])
    assert "time" not in path.read_text()


@pytest.mark.parametrize("convention", ["paper", "pytorch"])
def test_profile_of_the_policy_gives_the_predicted_numbers(tmp_path, convention):
    model = build_zoo_model("mbv2-w0.35")
    fisher = fake_fisher(model)
    policy = plan(model, fisher=fisher, inputs=SHAPE,
                  memory_bytes=3_000_000, compute=0.25,
                  options=cost_options(convention=convention, optimizer="momentum"))
    path = tmp_path / "policy.json"
    policy.save(path)
    prof = profile(model, SHAPE, update=str(path),
                   options={"convention": convention, "optimizer": "momentum"})
    assert prof.to_dict()["memory"] == policy.predicted["memory"]
    assert prof.to_dict()["totals"] == policy.predicted["totals"]
    # a CostOptions sets every field: the policy's own is accepted, another refused
    assert profile(model, SHAPE, update=str(path), options=policy.options).to_dict() == \
        prof.to_dict()
    with pytest.raises(SpecError, match="optimizer adam contradicts the policy's momentum"):
        profile(model, SHAPE, update=str(path), options=policy.options.replace(optimizer="adam"))
    assert policy.predicted["memory"]["peak_bytes"] <= 3_000_000
    assert policy.predicted["within_budget"]


def test_another_models_policy_is_refused(setup, tmp_path):
    _, _, policy = setup
    path = tmp_path / "p.json"
    policy.save(path)
    other = trace(build_zoo_model("proxyless-w0.3"), SHAPE, "proxyless-w0.3")
    with pytest.raises(PolicyError) as info:
        load_policy_updates(path, other)
    assert "\n" not in str(info.value) and "planned for model mcunet-5fps" in str(info.value)
    with pytest.raises(PolicyError, match="planned for"):
        profile("proxyless-w0.3", SHAPE, update=str(path))


def _mutations(d):
    """(description, mutated policy dict, expected message fragment)."""

    def edit(fn):
        new = copy.deepcopy(d)
        fn(new)
        return new

    partial = next(i for i, l in enumerate(d["layers"]) if l["channels"])
    return [
        ("version", edit(lambda x: x.update(version=2)), "version 2"),
        ("format", edit(lambda x: x.update(format="other")), "not a ttplan policy"),
        ("unknown top key", edit(lambda x: x.update(extra=1)), "unknown key(s) extra"),
        ("missing key", edit(lambda x: x.pop("predicted")), "missing key(s) predicted"),
        ("unknown layer key", edit(lambda x: x["layers"][0].update(lr=0.1)), "unknown key(s) lr"),
        ("wrong type", edit(lambda x: x["layers"][0].update(update_bias="yes")), "true or false"),
        ("bad axis", edit(lambda x: x["layers"][0].update(channel_axis=2)), "channel_axis"),
        ("budget type", edit(lambda x: x["budgets"].update(memory_bytes="1MB")), "memory_bytes"),
        ("duplicate layer", edit(lambda x: x["layers"].append(dict(x["layers"][0]))), "listed twice"),
        ("unknown layer", edit(lambda x: x["layers"][0].update(name="blocks.99.conv")), "not an updatable layer"),
        ("out of range", edit(lambda x: x["layers"][partial].update(
            channels=x["layers"][partial]["channels"] + [100_000])), "out of range"),
        ("duplicate channel", edit(lambda x: x["layers"][partial].update(
            channels=[0, 0])), "duplicated"),
        ("unsorted", edit(lambda x: x["layers"][partial].update(channels=[2, 1])), "sorted"),
        ("empty", edit(lambda x: x["layers"][partial].update(channels=[])), "non-empty"),
        ("nothing", edit(lambda x: x["layers"][0].update(update_weight=False, update_bias=False,
                                                       channels=None)), "neither"),
        ("fingerprint", edit(lambda x: x["model"].update(fingerprint="0" * 16)), "planned for"),
        ("method", edit(lambda x: x.update(method="magic")), "'method'"),
    ]


def test_malformed_policies_are_refused_with_the_reason(setup, tmp_path):
    model, _, policy = setup
    graph = trace(model, SHAPE, "mcunet-5fps")
    for description, bad, fragment in _mutations(policy.to_dict()):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(PolicyError) as info:
            load_policy_updates(path, graph)
        assert fragment in str(info.value), description
        assert "\n" not in str(info.value)
    path.write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        load_policy_updates(path, graph)


def test_export_of_the_released_scheme_is_the_scheme():
    model = build_zoo_model("mcunet-5fps")
    graph = trace(model, SHAPE, "mcunet-5fps")
    policy = plan(model, method="sparseupdate", inputs=SHAPE)
    notes = []
    config = export_sparseupdate(policy, graph, notes)
    scheme = sparseupdate.released_schemes()["mcunet-5fps"]["99"]
    assert config["n_bias_update"] == scheme["n_bias_update"]
    assert config["manual_weight_idx"] == scheme["weight_update_idx"]
    # ratios come back as the fraction of channels kept: exact where r·Cin is whole
    convs = [n for n in graph.mac_layers() if n.kind == "conv"]
    for idx, ratio, got in zip(scheme["weight_update_idx"], scheme["weight_update_ratio"],
                               config["weight_update_ratio"]):
        cin = convs[idx].weight_shape[1]
        assert got == math.floor(ratio * cin + 0.5) / cin
    assert notes == []


def test_export_notes_what_it_cannot_express(setup):
    model, _, policy = setup
    graph = trace(model, SHAPE, "mcunet-5fps")
    notes = []
    config = export_sparseupdate(policy, graph, notes)
    assert any("output channels" in n for n in notes)
    convs = [n.name for n in graph.mac_layers() if n.kind == "conv"]
    earliest_bias = min(convs.index(l["name"]) for l in policy.layers if l["update_bias"])
    assert config["n_bias_update"] == len(convs) - earliest_bias
    assert config["manual_weight_idx"] == sorted(config["manual_weight_idx"])


def test_policy_from_dict_accepts_only_dicts_of_the_schema():
    with pytest.raises(PolicyError, match="not a ttplan policy"):
        Policy.from_dict([1, 2])
    with pytest.raises(PolicyError):
        Policy.from_dict({"format": "ttplan-policy", "version": 1})


def test_linear_layers_are_plannable():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    deltas = {"0": [0.5] * 8, "3": [1.0] * 10}
    fisher = FisherResult(deltas, {k: sum(v) for k, v in deltas.items()}, 4, "ce", 0, 0.0, 0)
    policy = plan(model, fisher=fisher, inputs=(1, 3, 8, 8), compute=0.5)
    assert policy.layers and policy.predicted["within_budget"]
