"""The tracer: both paths give the same graph costs; blocks and kinds are what users expect."""

import math
from math import sqrt

import torch
from torch import nn

from ttplan import Tracing, profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import build_zoo_model
from tests.varied_models import VARIED_MODELS


def test_hooks_tracer_costs_the_same_as_fx():
    for name in ("residual", "concat", "squeeze_excite", "conv_bn_relu6", "activations"):
        case = VARIED_MODELS[name]
        pytorch = {"convention": "pytorch"}
        a = profile(case(), case.input_shape, update="all", options=pytorch,
                    tracing=Tracing(tracer="fx"))
        b = profile(case(), case.input_shape, update="all", options=pytorch,
                    tracing=Tracing(tracer="hooks"))
        assert a.graph.tracer == "fx" and b.graph.tracer == "hooks"
        assert a.totals == b.totals, name
        assert a.memory == b.memory, name


def test_zoo_graph_blocks_and_kinds():
    g = trace(build_zoo_model("mbv2-w0.35"), (1, 3, 128, 128), "mbv2-w0.35")
    convs = [n for n in g.ops() if n.kind == "conv"]
    assert len(convs) == 52
    assert g["feature_mix.0"].block == "blocks.16"  # the paper counts it in the last block
    assert g["blocks.3.depthwise.0"].attrs["groups"] == 48
    assert g.declared_blocks == [f"blocks.{i}" for i in range(17)]
    assert g.fingerprint() == trace(build_zoo_model("mbv2-w0.35"), (4, 3, 128, 128)).fingerprint()


def test_generic_blocks_are_composite_children_of_top_level_containers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.layers = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()),
                                        nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.layers(self.stem(x)).mean((2, 3)))

    g = trace(Net(), (1, 3, 16, 16))
    assert [g[n].block for n in ("stem.0", "layers.0.0", "layers.1.0", "head")] == \
        ["stem", "layers.0", "layers.1", "head"]
    p = profile(Net(), (1, 3, 16, 16), update="last-blocks:2")
    assert {r["name"] for r in p.evaluation.rows if r["trainable"]} == {"layers.1.0", "head"}


def test_model_modes_are_restored():
    model = VARIED_MODELS["dropout"]()
    model.train()
    trace(model, VARIED_MODELS["dropout"].input_shape)
    assert all(m.training for m in model.modules())


def _graph_record(graph):
    return (graph.tracer, graph.order, {n: repr(graph[n]) for n in graph.order},
            graph.unknown_ops, graph.output_names, graph.fingerprint())



def test_tracing_frees_intermediates_as_the_forward_does(monkeypatch):
    """Both tracers let go of a value once nothing later reads it: tracing a chain of 40
    operators never holds more than a few of their outputs (it used to hold all 40)."""
    import weakref
    import ttplan.costmodel.trace as tracing

    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) if i % 2 == 0 else nn.ReLU()
                            for i in range(40)])
    recorded = tracing._Builder._add_node
    for tracer in ("fx", "hooks"):
        outputs, most_alive = [], [0]

        def counting_add(self, name, kind, op, module_path, scope, inputs, in_tensors, out,
                         params, attrs):
            recorded(self, name, kind, op, module_path, scope, inputs, in_tensors, out,
                     params, attrs)
            outputs.append(weakref.ref(out))
            most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in outputs))

        monkeypatch.setattr(tracing._Builder, "_add_node", counting_add)
        graph = trace(model, (1, 4, 8, 8), tracer=tracer)
        assert graph.tracer == tracer and len(graph.order) == 41
        assert most_alive[0] <= 3, (tracer, most_alive[0])
        monkeypatch.setattr(tracing._Builder, "_add_node", recorded)


class _MathOnShapes(nn.Module):
    """`math` called on proxies, through the module and imported by name."""

    def forward(self, x):
        return x * math.sqrt(x.size(-1)) + sqrt(x.shape[1]) * math.floor(2.5)


def test_the_fx_tracer_makes_the_graph_a_plain_fx_tracer_makes():
    """`LeafTracer` reaches fx's result by shorter ways (parameters by id, `math` wrappers
    built once, argument shortcuts, node arguments set after the node is made, cheap copies
    of the module stack and scope): node for node, the same graph as fx's own Tracer with the
    same leaves."""
    import inspect

    import torch.fx as fx

    from tests.library_models import LIBRARY_MODELS
    from ttplan.costmodel.fx_tracer import LeafTracer, _Proxy
    from ttplan.costmodel.rules import REGISTRY

    class PlainTracer(fx.Tracer):
        def is_leaf_module(self, m, qualified_name):
            # a torch.nn module without a rule is one operator only without parameters or
            # submodules (fx_tracer.LeafTracer.is_leaf_module)
            return REGISTRY.is_leaf(m) or super().is_leaf_module(m, qualified_name) and \
                not m._modules and not any(p is not None for p in m._parameters.values())

        def proxy(self, node):
            return _Proxy(node, self)

    def described(graph):
        return [(n.name, n.op, str(n.target), repr(n.args), repr(n.kwargs),
                 [u.name for u in n.users], list((n.meta.get("nn_module_stack") or {}).items()),
                 sorted(n.meta)) for n in graph.nodes]

    models = [case() for case in LIBRARY_MODELS.values()] + [_MathOnShapes()]
    before = dict(vars(math))
    for model in models:
        defaults = {p.name: p.default for p in inspect.signature(model.forward).parameters.values()
                    if p.default is not inspect.Parameter.empty} or None
        plain, ours = PlainTracer(), LeafTracer(REGISTRY)
        expected = described(plain.trace(model, concrete_args=defaults))
        assert described(ours.trace(model, concrete_args=defaults)) == expected, type(model)
        assert ours.node_name_to_scope == plain.node_name_to_scope
    assert dict(vars(math)) == before  # the math module is given back as it was


def test_remembered_saved_sets_are_what_a_fresh_measurement_gives():
    """What a recurrent layer and einsum keep is measured once per configuration and process;
    a remembered table equals a new measurement, and a caller's copy cannot change it."""
    import torch

    from ttplan.costmodel import opinfo

    lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True)
    x = torch.randn(2, 4, 5)
    einsum, a, b = opinfo.EinsumCall("bij,bjk->bik"), torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    for fn, inputs, module in ((lstm_call, [x], lstm), (einsum, [a, b], None)):
        fresh = opinfo.measure_saved(fn, inputs, module)
        first = opinfo.measure_saved_remembered(fn, inputs, module)
        first[next(iter(first))].append(("new", 1))
        assert opinfo.measure_saved_remembered(fn, inputs, module) == fresh
    assert opinfo.measure_saved_remembered(einsum, [a.transpose(1, 2).contiguous()
                                                    .transpose(1, 2), b], None) == \
        opinfo.measure_saved(einsum, [a.transpose(1, 2).contiguous().transpose(1, 2), b])


def lstm_call(module, x):
    return module(x)


def test_a_class_registry_never_sees_the_tracer():
    """A library registering subclasses in `__init_subclass__` keeps its registry as it was:
    such a class is traced by fx's own trace, not by a traced subclass of its own."""
    import ttplan

    registry = []

    class Registered(nn.Module):
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            registry.append(cls)

    class Head(Registered):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.fc(x) * self.scale

    before = list(registry)
    prof = ttplan.profile(nn.Sequential(nn.Linear(5, 4), Head()), (2, 5))
    assert registry == before == [Head]
    assert prof.totals["params"] == 5 * 4 + 4 + 4 * 3 + 3 + 3
    assert type(Head().fc) is nn.Linear
