"""The `pytorch` memory convention against a real measurement.

For every model and configuration: set requires_grad exactly as the configuration says, run
one forward in train mode under `saved_tensors_hooks` (costmodel.measure), and compare the
de-duplicated bytes autograd keeps with the analytic `saved_activation_bytes`. The issue asks
for agreement within 1%; the rules are exact, so most cases agree to the byte.
"""

import pytest
import torch

from ttplan.costmodel.config import (TrainConfig, mac_blocks, parameter_requires_grad,
                                     resolve_updates)
from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.measure import measure_saved_bytes
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model
from tests.varied_models import VARIED_MODELS

UPDATES = ["all", "bias-only", "last-layers:1", "last-layers:3", "last-blocks:2", "none"]


@pytest.fixture(scope="module")
def traced():
    """get(key, build, shape) -> (model, graph), built and traced once per key and shape for
    every update tested on it: a graph is never changed after tracing, and each test sets
    every parameter's requires_grad and the train mode itself (BatchNorm's running statistics,
    which a measurement updates, change no byte count)."""
    cache = {}

    def get(key, build, shape):
        if (key, shape) not in cache:
            model = build()
            cache[key, shape] = (model, trace(model, shape, str(key)))
        return cache[key, shape]
    return get


def predicted_and_measured(model, input_shape, update, graph=None):
    graph = graph if graph is not None else trace(model, input_shape, "m")
    config = TrainConfig(resolve_updates(parse_update(update), graph), CostOptions("pytorch"))
    predicted = evaluate(graph, config).memory.saved_activation_bytes
    flags = parameter_requires_grad(graph, config)
    for name, param in model.named_parameters():
        param.requires_grad_(flags.get(name, False))
    model.train()
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    return predicted, measure_saved_bytes(model, x).saved_bytes


def assert_close(predicted, measured):
    assert abs(predicted - measured) <= 0.01 * max(measured, 1), (predicted, measured)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("update", ["all", "last-blocks:3", "last-layers:5", "bias-only"])
@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_models_match_saved_tensors_hooks(name, update, batch, traced):
    shape = (batch, 3, 64, 64)
    model, graph = traced(name, lambda: build_zoo_model(name), shape)
    predicted, measured = predicted_and_measured(model, shape, update, graph)
    assert measured > 0
    assert_close(predicted, measured)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("case", sorted(VARIED_MODELS))
def test_varied_models_match_saved_tensors_hooks(case, update, batch, traced):
    spec = VARIED_MODELS[case]
    shape = (batch,) + tuple(spec.input_shape[1:])
    model, graph = traced(case, spec, shape)
    available = {"last-layers": len(graph.mac_layers()), "last-blocks": len(mac_blocks(graph))}
    kind, _, k = update.partition(":")
    if k and int(k) > available[kind]:
        pytest.skip(f"{case} has only {available[kind]} {kind.split('-')[1]}")
    predicted, measured = predicted_and_measured(model, shape, update, graph)
    assert_close(predicted, measured)


def test_nothing_trained_keeps_nothing():
    predicted, measured = predicted_and_measured(build_zoo_model("mcunet-5fps"), (1, 3, 64, 64), "none")
    assert predicted == measured == 0
