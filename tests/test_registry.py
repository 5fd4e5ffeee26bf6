"""The open cost-rule registry: lookup through the MRO, user rules, duplicates refused."""

import pytest
import torch
from torch import nn

import ttplan
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.rules import REGISTRY, Operator, Registry, Rule, per_output


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
        prof = ttplan.profile(conv_net(conv), (2, 3, 12, 12), update=update,
                              tracing=ttplan.Tracing(tracer=tracer),
                              options={"convention": convention})
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
    # One multiply per output element: count it as a MAC to see the rule take effect; its
    # gradient is the transposed multiply (mac_layer), as a registered rule must say.
    return Rule(forward_macs=lambda node: node.out_numel, forward_other_ops=per_output,
                mac_layer=True)


def test_a_registered_rule_prices_a_custom_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate(4))
    before = ttplan.profile(model, (1, 3, 5, 5), tracing=ttplan.Tracing(tracer="hooks"))
    assert before.totals["forward_macs"] == 4 * 25 * 3
    registry = Registry(REGISTRY.rules, REGISTRY.modules, REGISTRY.functions, REGISTRY.methods)
    kind = registry.register(Gate, gate_rule())
    graph = ttplan.trace(model, (1, 3, 5, 5), "gated", rules=registry)
    after = ttplan.profile(model, (1, 3, 5, 5), update="none",
                           tracing=ttplan.Tracing(rules=registry, tracer="hooks"))
    assert [n.kind for n in graph.ops()] == ["conv", kind]
    assert after.totals["forward_macs"] == 4 * 25 * 3 + 4 * 25
    assert after.totals["unknown_ops"] == []


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
def test_a_per_call_override_applies_to_that_call_only(tracer):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate(4))
    priced = ttplan.profile(model, (1, 3, 5, 5),
                            tracing=ttplan.Tracing(rules={Gate: gate_rule()}, tracer=tracer))
    plain = ttplan.profile(model, (1, 3, 5, 5), tracing=ttplan.Tracing(tracer=tracer))
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


def test_a_rule_with_forward_macs_must_state_its_backward():
    """Backward MACs never silently zero: unstated, every way into a registry refuses it."""
    unstated = Rule(forward_macs=lambda node: node.out_numel)
    assert unstated.unstated_backward() == ["backward_input_macs", "backward_weight_macs"]
    registry = Registry(REGISTRY.rules, REGISTRY.modules, REGISTRY.functions, REGISTRY.methods)
    for register in (lambda: registry.register(Gate, unstated),
                     lambda: registry.with_rules({Gate: unstated}),
                     lambda: ttplan.register_rule(Gate, unstated),
                     lambda: Registry({"gate": unstated}, {}, {}, {})):
        with pytest.raises(SpecError, match="does not state its backward") as refused:
            register()
        assert "\n" not in str(refused.value) and "backward_input_macs=" in str(refused.value)
    half = Rule(forward_macs=lambda node: node.out_numel,
                backward_input_macs=lambda node, g: node.out_numel)
    with pytest.raises(SpecError, match="backward_weight_macs="):
        registry.register(Gate, half)
    assert Gate not in REGISTRY.modules and Gate not in registry.modules


def test_stated_backward_is_what_is_counted():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate(4))
    explicit = Rule(forward_macs=lambda node: node.out_numel,
                    backward_input_macs=lambda node, g: 7 if g.input(0) else 0,
                    backward_weight_macs=Rule.NO_BACKWARD_MACS)
    transposed = gate_rule()
    rows = {}
    for name, rule in (("explicit", explicit), ("transposed", transposed)):
        prof = ttplan.profile(model, (1, 3, 5, 5), update="all",
                              tracing=ttplan.Tracing(rules={Gate: rule}, tracer="hooks"))
        rows[name] = next(r for r in prof.evaluation.rows if r["op"] == "Gate")
    assert (rows["explicit"]["backward_input_macs"], rows["explicit"]["backward_weight_macs"]) \
        == (7, 0)
    # mac_layer: the input gradient is the transposed op, as many MACs as the forward.
    assert rows["transposed"]["backward_input_macs"] == 100
    # Without forward MACs there is nothing to transpose: no backward MACs, stated or not.
    assert Rule().unstated_backward() == []


def test_an_operator_is_taken_in_one_step_or_not_at_all():
    registry = Registry(REGISTRY.rules, REGISTRY.modules, REGISTRY.functions, REGISTRY.methods)
    clash = Operator("my_gate", Rule(), modules=(Gate,), methods=("relu",))  # relu is taken
    with pytest.raises(SpecError, match="already has a cost rule"):
        registry.add(clash)
    assert "my_gate" not in registry.rules and Gate not in registry.modules
    assert registry.add(Operator("my_gate", Rule(), modules=(Gate,))) == "my_gate"
    assert registry.module_kind(Gate(2)) == "my_gate"


def test_every_kind_the_code_names_has_a_rule():
    """Kinds named outside the registry (graph's kind sets, the tracer's attribute table,
    memory's views) all exist in it, so a renamed family cannot leave one behind."""
    from ttplan.costmodel.graph import FREE_PARAM_KINDS, MAC_KINDS, NORM_KINDS
    from ttplan.costmodel.kinds import TENSOR_ATTRIBUTE_KINDS
    from ttplan.costmodel.rules import VIEW_KINDS

    named = MAC_KINDS | NORM_KINDS | FREE_PARAM_KINDS | VIEW_KINDS | {"contiguous", "derived"}
    assert named | set(TENSOR_ATTRIBUTE_KINDS.values()) <= set(REGISTRY.rules)
    assert all(not rule.unstated_backward() for rule in REGISTRY.rules.values())
