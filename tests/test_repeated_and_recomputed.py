"""A tensor passed twice to one call, weights computed by the older weight_norm/spectral_norm
hooks, and activation checkpointing: the saved bytes autograd keeps, on both tracers, in the
cost model and in `ttplan train` (notes/pytorch_saved_tensors.md, "Repeated arguments,
computed weights, checkpointed calls")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

import ttplan
from ttplan.costmodel.config import TrainConfig, node_grads, resolve_updates
from ttplan.costmodel.measure import verify_saved_bytes
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import profile
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.devices.layermodel import RECOMPUTE, layer_passes, priced_by, recomputed_elements
from ttplan.planner.fisher.probe import fisher_information
from ttplan.devices.owntable import passes_seconds
from ttplan.devices.trainrequest import RunSettings, Support

pytestmark = [  # what these models are built to do
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated"),
    pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad"),
]


class SquaredGate(nn.Module):
    """y * y and addcmul(y, y, w): one tensor in two argument slots."""

    def __init__(self, einsum=False):
        super().__init__()
        self.l, self.h = nn.Linear(8, 8), nn.Linear(8, 4)
        self.w = nn.Parameter(torch.randn(8, 8) if einsum else torch.randn(8))
        self.einsum = einsum

    def forward(self, x):
        y = self.l(x)
        if self.einsum:
            return self.h(torch.einsum("btd,de,bte->bte", y, self.w, y))
        return self.h(torch.addcmul(y, y, self.w) + y * y)


class NormedLayers(nn.Module):
    """spectral_norm and weight_norm on layers in the middle, as torch.nn.utils' older hooks
    (`hooks=True`) or its parametrizations."""

    def __init__(self, hooks=False):
        super().__init__()
        utils = nn.utils if hooks else nn.utils.parametrizations
        self.c0 = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = utils.spectral_norm(nn.Conv2d(8, 8, 3, padding=1))
        self.t = utils.spectral_norm(nn.ConvTranspose2d(8, 4, 2, stride=2))
        self.l = utils.weight_norm(nn.Linear(4, 6))
        self.h = nn.Linear(6, 3)

    def forward(self, x):
        y = F.leaky_relu(self.c1(F.relu(self.c0(x))), 0.2)
        return self.h(F.gelu(self.l(self.t(y).mean((2, 3)))))


class CheckpointedNet(nn.Module):
    """Blocks run through torch.utils.checkpoint (imported by name, as libraries do)."""

    def __init__(self, reentrant=False, sequential=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(*[nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))
            for _ in range(4)])
        self.head = nn.Linear(8, 5)
        self.reentrant, self.sequential = reentrant, sequential

    def forward(self, x):
        x = F.relu(self.stem(x))
        if self.sequential:
            x = checkpoint_sequential(self.blocks, 2, x, use_reentrant=self.reentrant)
        else:
            for block in self.blocks:
                x = x + checkpoint(block, x, use_reentrant=self.reentrant)
        return self.head(x.mean((2, 3)))


def _verified(model, shape, update, tracer="auto", training=True):
    torch.manual_seed(0)
    graph = trace(model, shape, "m", tracer=tracer)
    updates = resolve_updates(parse_update(update), graph)
    result = verify_saved_bytes(model, graph, updates, training_mode=training)
    return result["predicted_bytes"], result["measured_bytes"]


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("update", ["all", "bias-only"])
@pytest.mark.parametrize("einsum", [False, True])
def test_a_tensor_passed_twice_keeps_what_each_slot_keeps(tracer, update, einsum):
    model = SquaredGate(einsum)
    predicted, measured = _verified(model, (2, 5, 8), update, tracer)
    assert predicted == measured > 0


def test_each_argument_slot_is_an_input_of_the_node():
    graph = trace(SquaredGate(), (2, 8), "m", tracer="fx")
    mul = next(n for n in graph.ops() if n.op == "mul")
    assert mul.inputs == ["l", "l"]
    assert mul.distinct_in_numel == 16  # read once: what a pass reads, for device time


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("hooks", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2"])
def test_spectral_and_weight_norm_keep_what_autograd_keeps(tracer, hooks, training, update):
    predicted, measured = _verified(NormedLayers(hooks), (2, 3, 8, 8), update, tracer, training)
    assert predicted == measured


def test_the_older_hooks_trace_as_the_parametrizations_do():
    # u, v: 8 and 72 elements for c1 (dim 0), 4 and 32 for the transposed conv (dim 1)
    graphs = [trace(NormedLayers(hooks), (2, 3, 8, 8), "m") for hooks in (False, True)]
    assert graphs[0].fingerprint() == graphs[1].fingerprint()
    c1 = graphs[1]["c1"]
    assert c1.weight_shape == (8, 8, 3, 3) and c1.attrs["spectral_norm"] == [8, 72]
    # the parametrization's, measured: sigma and copies of u and v, 4 B each
    assert graphs[0]["t"].attrs["parametrization_saved_bytes"] == (1 + 4 + 32) * 4
    assert graphs[1]["l"].attrs["param_names"]["weight"] == ["l.weight_g", "l.weight_v"]


class PrunedAndOrthogonal(nn.Module):
    """torch.nn.utils.prune's hook (weight_orig times a mask buffer) and the orthogonal
    parametrization (a matrix function of its original)."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.q = nn.utils.parametrizations.orthogonal(nn.Linear(8, 8))
        self.h = nn.Linear(8, 3)
        prune.l1_unstructured(self.c1, "weight", amount=0.5)
        prune.random_unstructured(self.h, "weight", amount=0.3)

    def forward(self, x):
        y = F.relu(self.c1(F.relu(self.c0(x)))).mean((2, 3))
        return self.h(F.relu(self.q(y)))


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2"])
def test_pruned_and_orthogonal_weights_keep_what_autograd_keeps(tracer, update):
    predicted, measured = _verified(PrunedAndOrthogonal(), (2, 3, 8, 8), update, tracer)
    assert predicted == measured


@pytest.mark.parametrize("variant", [{}, {"reentrant": True}, {"sequential": True}])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2"])
def test_checkpointed_calls_keep_their_arguments(variant, training, update):
    predicted, measured = _verified(CheckpointedNet(**variant), (2, 3, 8, 8), update,
                                    training=training)
    assert predicted == measured


def test_checkpointed_operators_are_marked_and_fx_gives_way():
    graph = trace(CheckpointedNet(), (2, 3, 8, 8), "m")
    assert graph.tracer == "hooks"
    assert {n.attrs.get("checkpoint") for n in graph.ops() if n.block.startswith("blocks")} \
        == {1, 2, 3, 4}
    assert any("checkpoints activations in 4 call(s)" in w for w in graph.warnings)
    with pytest.raises(ttplan.costmodel.errors.TraceError, match="checkpoints activations"):
        trace(CheckpointedNet(), (2, 3, 8, 8), "m", tracer="fx")


def test_checkpointing_keeps_less_than_keeping_everything():
    def saved(graph):
        return profile(None, (2, 3, 8, 8), update="all", graph=graph,
                       options=PYTORCH).evaluation.memory.saved_activation_bytes

    kept = saved(trace(CheckpointedNet(), (2, 3, 8, 8), "m"))
    plain = trace(CheckpointedNet(), (2, 3, 8, 8), "m")
    for node in plain.ops():  # the same operators unmarked: the model without checkpointing
        node.attrs.pop("checkpoint", None)
    assert kept < saved(plain)


def test_a_reentrant_call_without_gradient_arguments_trains_nothing_inside():
    graph = trace(CheckpointedNet(reentrant=True), (2, 3, 8, 8), "m")
    updates = resolve_updates(parse_update("last-layers:2"), graph)  # blocks.3.3 and head
    grads = node_grads(graph, TrainConfig(dict(updates), PYTORCH))
    assert not grads["blocks.3.3"].weight and grads["head"].weight
    warnings = profile(None, (2, 3, 8, 8), update="last-layers:2", graph=graph,
                       options=PYTORCH).evaluation.warnings
    assert any("blocks.3.3" in w and "no gradient" in w for w in warnings)


@pytest.mark.parametrize("model,update", [
    (lambda: NormedLayers(hooks=True), "last-layers:2"),  # weight_norm's hook runs first
    (lambda: CheckpointedNet(reentrant=True), "last-layers:2"),  # grad mode inside a Function
    (lambda: CheckpointedNet(), "last-layers:3"),
    (PrunedAndOrthogonal, "last-layers:3"),  # prune's hook runs first too
])
def test_train_measures_the_saved_bytes_it_predicts(model, update):
    result = ttplan.train(model(), update=update, inputs=(2, 3, 8, 8),
                          support=Support(synthetic=True, samples=4, holdout=0),
                          run=RunSettings(iterations=1, batch_size=2))
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"] > 0


def test_the_backward_runs_a_checkpointed_forward_again():
    graph = trace(CheckpointedNet(), (2, 3, 8, 8), "m")
    ev = profile(None, (2, 3, 8, 8), update="all", graph=graph, options=PYTORCH).evaluation
    # per block: a 3x3 conv 8 -> 8 and a 1x1 on 2 x 8 x 8 x 8 outputs (the norm has no MACs)
    block = 2 * 8 * 8 * 8 * (8 * 9) + 2 * 8 * 8 * 8 * 8
    totals = ev.totals
    assert totals["backward_recompute_macs"] == 4 * block
    assert totals["backward_macs"] == totals["backward_input_macs"] \
        + totals["backward_weight_macs"] + 4 * block
    passes = layer_passes(ev)
    again = [p[0] for p in passes if p[2] == RECOMPUTE]
    assert again and all(name.startswith("blocks.") for name in again)
    assert len(again) == sum(1 for n in graph.ops() if n.attrs.get("checkpoint"))
    # priced as the forward: a calibration's kinds have no recompute pass of their own, and
    # a model's own table its layer's forward as timed
    assert priced_by({"conv/forward": {"identified": True}}, "conv", RECOMPUTE) == "conv/forward"
    # inside a model it pays the forward's excess per element too (glue forward_element_s)
    assert recomputed_elements({"conv/recompute": [9.0, 100.0, 0.0, 2.0, 0.0],
                                "conv/forward": [9.0, 70.0, 0.0, 2.0, 0.0]}) == 100.0
    table = {"layers": {"blocks.0.0": {"passes": {"forward": {"2": 0.25}}}}}
    seconds = passes_seconds([["blocks.0.0", "conv", RECOMPUTE, 1.0, 1.0, 0.0, 1.0, 0]], table,
                             lambda *a: 1.0, 2, {})
    assert seconds == 0.25


class AutocastNet(nn.Module):
    """A CPU autocast region (bfloat16) around convs and linear layers, float32 after it."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.a, self.b, self.h = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.c1(F.relu(self.c0(x))).mean((2, 3))
            y = self.b(F.gelu(self.a(y)))
        return self.h(y.float())


class AutocastAttention(nn.Module):
    """Attention inside an autocast region: explicit products and SDPA (its math path keeps
    float32 copies under autocast)."""

    def __init__(self):
        super().__init__()
        self.qkv, self.o, self.h = nn.Linear(16, 48), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q, k, v = self.qkv(x).chunk(3, -1)
            a = (q @ k.transpose(-2, -1)).softmax(-1)
            y = self.o(a @ v + F.scaled_dot_product_attention(q, k, v))
        return self.h(y.float().mean(1) + x.mean(1))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:2", "last-layers:3"])
def test_autocast_layers_keep_casts_of_their_operands(training, update):
    predicted, measured = _verified(AutocastNet(), (2, 3, 8, 8), update, training=training)
    assert predicted == measured
    if update != "last-layers:3":  # three layers only
        predicted, measured = _verified(AutocastAttention(), (2, 5, 16), update,
                                        training=training)
        assert predicted == measured


def test_an_autocast_region_is_traced_by_hooks_and_noted():
    graph = trace(AutocastNet(), (2, 3, 8, 8), "m")
    assert graph.tracer == "hooks"
    # the first conv casts the float32 image (a new tensor); the second reads bfloat16 already
    assert graph["c0"].attrs["autocast_casts_input"] and \
        "autocast_casts_input" not in graph["c1"].attrs
    assert graph["c1"].dtype_bytes == 2 and graph["h"].dtype_bytes == 4
    assert any("under torch.autocast" in w for w in graph.warnings)


@pytest.mark.parametrize("reentrant", [False, True])
def test_the_fisher_probe_sees_a_checkpointed_model_as_the_same_model(reentrant):
    torch.manual_seed(1)
    model = CheckpointedNet(reentrant=reentrant)
    plain = CheckpointedNet(reentrant=reentrant)
    plain.load_state_dict(model.state_dict())

    def unchecked(x):  # the same blocks called directly
        x = F.relu(plain.stem(x))
        for block in plain.blocks:
            x = x + block(x)
        return plain.head(x.mean((2, 3)))

    plain.forward = unchecked
    x, y = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)), \
        torch.tensor([0, 1, 2, 0, 1, 2])
    layers = ["blocks.2.0", "blocks.3.3", "head"]
    assert fisher_information(model, layers, x, y).layers == \
        fisher_information(plain, layers, x, y).layers


class LiteralIndex(nn.Module):
    """An index tensor written as a literal in forward: fx makes it a constant of its own."""

    def __init__(self):
        super().__init__()
        self.l, self.h = nn.Linear(8, 8), nn.Linear(3, 4)

    def forward(self, x):
        return self.h(self.l(x)[:, torch.tensor([0, 2, 5])])


class BufferIndex(nn.Module):
    """Swin's relative-position index: a buffer, viewed in forward (fx folds the view into a
    constant of its own, which is still the model's state)."""

    def __init__(self):
        super().__init__()
        self.l, self.h = nn.Linear(8, 8), nn.Linear(3, 4)
        self.register_buffer("index", torch.tensor([[0, 2, 5]]), persistent=False)

    def forward(self, x):
        return self.h(self.l(x)[:, self.index.view(-1)])


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:1"])
def test_a_literal_index_is_kept_as_autograd_keeps_it(tracer, update):
    predicted, measured = _verified(LiteralIndex(), (2, 8), update, tracer)
    # the 3 int64 indices are 24 B, as is the head's input (2 x 3 floats)
    assert predicted == measured == {"all": 112, "bias-only": 24, "last-layers:1": 24}[update]
    predicted, measured = _verified(BufferIndex(), (2, 8), update, tracer)  # indices: state
    assert predicted == measured == {"all": 88, "bias-only": 0, "last-layers:1": 24}[update]


class Unpooled(nn.Module):
    """MaxPool2d(return_indices=True) feeding MaxUnpool2d (SegNet), or its indices unused."""

    def __init__(self, unpool=True, first_only=False):
        super().__init__()
        self.c, self.d = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.p, self.u = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
        self.unpool, self.first_only = unpool, first_only

    def forward(self, x):
        if self.first_only:
            return self.d(self.p(F.relu(self.c(x)))[0])
        y, indices = self.p(F.relu(self.c(x)))
        return self.d(self.u(y, indices) if self.unpool else y)


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("variant", [{}, {"unpool": False}, {"first_only": True}])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-layers:1"])
def test_a_pools_indices_are_kept_once(tracer, variant, update):
    predicted, measured = _verified(Unpooled(**variant), (2, 3, 8, 8), update, tracer)
    assert predicted == measured


class StackedTwice(nn.Module):
    """One tensor twice inside one list argument."""

    def __init__(self):
        super().__init__()
        self.l, self.h = nn.Linear(8, 8), nn.Linear(16, 4)

    def forward(self, x):
        y = self.l(x)
        return self.h(torch.cat([y, y], -1) * torch.stack([y, y], -1).flatten(1))


@pytest.mark.parametrize("tracer", ["fx", "hooks"])
@pytest.mark.parametrize("update", ["all", "bias-only"])
def test_a_tensor_twice_in_a_list_argument(tracer, update):
    graph = trace(StackedTwice(), (2, 8), "m", tracer=tracer)
    assert next(n for n in graph.ops() if n.kind == "cat").inputs == ["l", "l"]
    predicted, measured = _verified(StackedTwice(), (2, 8), update, tracer)
    assert predicted == measured
