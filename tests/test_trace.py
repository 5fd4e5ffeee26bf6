"""The tracer: both paths give the same graph costs; blocks and kinds are what users expect."""

from torch import nn

from ttplan import profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import build_zoo_model
from tests.varied_models import VARIED_MODELS


def test_hooks_tracer_costs_the_same_as_fx():
    for name in ("residual", "concat", "squeeze_excite", "conv_bn_relu6", "activations"):
        case = VARIED_MODELS[name]
        a = profile(case(), case.input_shape, update="all", convention="pytorch", tracer="fx")
        b = profile(case(), case.input_shape, update="all", convention="pytorch", tracer="hooks")
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


def test_tracing_on_meta_tensors_gives_the_real_graph(monkeypatch):
    """The meta pass (large inputs) and the real pass (small ones) record the same graph:
    shapes, storage aliasing, contiguity, blocks, measured saved tensors. A model needing
    values (data-dependent Python, einsum/recurrent saved tensors measured for real) falls back
    to the real pass; every other one is traced on meta without touching its weights."""
    import ttplan.costmodel.trace as tracing
    from tests.library_models import LIBRARY_MODELS
    from tests.varied_models import untraceable

    cases = [(name, case, case.input_shape) for name, case in VARIED_MODELS.items()]
    cases += [(name, case, case.input_shape) for name, case in LIBRARY_MODELS.items()]
    cases += [("mcunet-5fps", lambda: build_zoo_model("mcunet-5fps"), (2, 3, 64, 64)),
              ("untraceable", untraceable, (1, 3, 32, 32))]
    real_zero_input = tracing._zero_input
    fell_back = set()

    def noting_fallbacks(shape, name):
        if tracing.META_INPUT_ELEMENTS == 0:
            fell_back.add(name)
        return real_zero_input(shape, name)

    monkeypatch.setattr(tracing, "_zero_input", noting_fallbacks)
    for name, make, shape in cases:
        for tracer in ("auto", "hooks"):
            model = make()
            weights = {k: v.clone() for k, v in model.state_dict().items()}
            monkeypatch.setattr(tracing, "META_INPUT_ELEMENTS", 0)
            on_meta = trace(model, shape, name, tracer)
            monkeypatch.setattr(tracing, "META_INPUT_ELEMENTS", 1 << 62)
            for_real = trace(model, shape, name, tracer)
            assert _graph_record(on_meta) == _graph_record(for_real), (name, tracer)
            state = model.state_dict()  # the meta pass put every real tensor back
            assert all(state[k].device.type == "cpu" and state[k].equal(v)
                       for k, v in weights.items())
    assert "mcunet-5fps" not in fell_back and "untraceable" in fell_back
    assert len(fell_back) < len(cases) // 2, sorted(fell_back)
