"""The open cost-rule registry: lookup through the MRO, user rules, duplicates refused."""

import pytest
import torch
from torch import nn

import ttplan
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.rules import REGISTRY, Registry, Rule, per_output


class MyConv(nn.Conv2d):
    """A library-style subclass that only adds an attribute."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = "mine"


def conv_net(conv):
    return nn.Sequential(conv(3, 8, 3, padding=1), nn.ReLU(), conv(8, 8, 3, groups=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2"])
@pytest.mark.parametrize("convention", ["paper", "pytorch"])
def test_a_conv_subclass_costs_what_a_conv_costs(tracer, update, convention):
    def costs(conv):
        torch.manual_seed(0)
        prof = ttplan.profile(conv_net(conv), (2, 3, 12, 12), update=update, tracer=tracer,
                              convention=convention)
        return prof.totals, prof.memory.to_dict(), [r["kind"] for r in prof.evaluation.rows]

    assert costs(MyConv) == costs(nn.Conv2d)
    assert costs(MyConv)[0]["unknown_ops"] == []


class Gate(nn.Module):
    """A user's module: y = x * sigmoid(w) per channel, with a parameter of its own."""

    def __init__(self, channels):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x):
        return x * torch.sigmoid(self.w)


def gate_rule():
    # One multiply per output element: count it as a MAC to see the rule take effect.
    return Rule(forward_macs=lambda node: node.out_numel, forward_other_ops=per_output)


def test_a_registered_rule_prices_a_custom_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate(4))
    before = ttplan.profile(model, (1, 3, 5, 5), tracer="hooks")
    assert before.totals["forward_macs"] == 4 * 25 * 3
    registry = Registry(REGISTRY.rules, REGISTRY.modules, REGISTRY.functions, REGISTRY.methods)
    kind = registry.register(Gate, gate_rule())
    graph = ttplan.trace(model, (1, 3, 5, 5), "gated", rules=registry)
    after = ttplan.profile(model, (1, 3, 5, 5), update="none", rules=registry, tracer="hooks")
    assert [n.kind for n in graph.ops()] == ["conv", kind]
    assert after.totals["forward_macs"] == 4 * 25 * 3 + 4 * 25
    assert after.totals["unknown_ops"] == []


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
def test_a_per_call_override_applies_to_that_call_only(tracer):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate(4))
    priced = ttplan.profile(model, (1, 3, 5, 5), rules={Gate: gate_rule()}, tracer=tracer)
    plain = ttplan.profile(model, (1, 3, 5, 5), tracer=tracer)
    assert priced.totals["forward_macs"] - plain.totals["forward_macs"] == 100
    assert priced.totals["unknown_ops"] == []


def test_duplicates_are_refused():
    registry = Registry(REGISTRY.rules, REGISTRY.modules, REGISTRY.functions, REGISTRY.methods)
    with pytest.raises(SpecError, match="already has a cost rule"):
        registry.register(nn.Conv2d, gate_rule())
    with pytest.raises(SpecError, match="already has a cost rule"):
        registry.register("conv", gate_rule())
    registry.register(Gate, gate_rule())
    with pytest.raises(SpecError, match="already has a cost rule"):
        registry.register(Gate, gate_rule())
    with pytest.raises(SpecError, match="must be a ttplan Rule"):
        registry.register(Gate, "free")


def test_register_rule_is_global_and_refuses_twice():
    class Scale(nn.Module):
        def forward(self, x):
            return 2 * x

    kind = ttplan.register_rule(Scale, gate_rule())
    try:
        prof = ttplan.profile(nn.Sequential(nn.Conv2d(3, 4, 1), Scale()), (1, 3, 5, 5))
        assert prof.totals["forward_macs"] == 300 + 100
        with pytest.raises(SpecError):
            ttplan.register_rule(Scale, gate_rule())
    finally:  # keep the process-wide registry as the other tests expect it
        del REGISTRY.modules[Scale], REGISTRY.rules[kind]


def test_backward_formulas_live_in_the_rule():
    rule = REGISTRY.rule_for("conv")
    for column in ("forward_macs", "backward_input_macs", "backward_weight_macs",
                   "forward_other_ops", "backward_other_ops", "saved_pytorch", "saved_paper"):
        assert callable(getattr(rule, column))
