"""The checks every table of test models gets (tests/test_library_models.py,
tests/test_construct_models.py): parameters equal sum(p.numel()), no unknown operator and no
warning under both tracers, both tracers cost the same, and the `pytorch` convention's saved
bytes equal what autograd keeps in a train-mode step within 1 % under all, bias-only and
last-blocks:2. `exactness_tests(MODELS)` returns the three parametrized tests for a module to
bind under its own test names; `profile_case` and `conv` serve its hand-written MAC tests."""

from __future__ import annotations

import pytest

import ttplan
from tests.test_pytorch_convention import assert_close, predicted_and_measured

TRACERS = ("fx", "hooks")


def profile_case(models: dict, name: str, update="all", tracer="auto", blocks=None, **kw):
    case = models[name]
    return ttplan.profile(case(), case.input_shape, update=update,
                          options={"convention": "pytorch"},
                          tracing=ttplan.Tracing(tracer=tracer, blocks=blocks), **kw)


def conv(n, cout, hw, cin_per_group, k):
    """MACs of a square convolution: N·Cout·Hout·Wout·(Cin/groups)·k²."""
    return n * cout * hw * hw * cin_per_group * k * k


def exactness_tests(models: dict):
    """(params-and-ops test, tracers-agree test, saved-bytes test) over every model in `models`."""
    names = sorted(models)

    @pytest.mark.parametrize("tracer", TRACERS)
    @pytest.mark.parametrize("name", names)
    def params_counted_and_every_op_priced(name, tracer):
        p = profile_case(models, name, tracer=tracer)
        assert p.graph.tracer == tracer
        assert p.totals["params"] == sum(q.numel() for q in models[name]().parameters())
        assert p.totals["unknown_ops"] == [] and p.warnings == []
        assert p.totals["trainable_params"] == p.totals["params"]  # `all` trains every parameter

    @pytest.mark.parametrize("name", names)
    def both_tracers_cost_the_same(name):
        a = profile_case(models, name, tracer="fx")
        b = profile_case(models, name, tracer="hooks")
        keys = ("params", "trainable_params", "forward_macs", "backward_macs", "blocks")
        assert {k: a.totals[k] for k in keys} == {k: b.totals[k] for k in keys}
        assert a.memory.saved_activation_bytes == b.memory.saved_activation_bytes

    @pytest.mark.parametrize("update", ["all", "bias-only", "last-blocks:2"])
    @pytest.mark.parametrize("name", names)
    def saved_bytes_match_autograd(name, update):
        case = models[name]
        predicted, measured = predicted_and_measured(case(), case.input_shape, update)
        assert measured > 0
        assert_close(predicted, measured)

    return (params_counted_and_every_op_priced, both_tracers_cost_the_same,
            saved_bytes_match_autograd)


def assert_forward_flops_match_flop_counter(models: dict, names):
    """torch.utils.flop_counter's count of an eval-mode forward equals ttplan's forward FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    for name in names:
        case = models[name]
        model = case().eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(case.example_input())
        assert counter.get_total_flops() == \
            profile_case(models, name).totals["forward_flops"], name
