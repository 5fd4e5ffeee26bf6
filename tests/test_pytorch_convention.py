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


def predicted_and_measured(model, input_shape, update):
    graph = trace(model, input_shape, "m")
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
def test_zoo_models_match_saved_tensors_hooks(name, update, batch):
    predicted, measured = predicted_and_measured(build_zoo_model(name), (batch, 3, 64, 64), update)
    assert measured > 0
    assert_close(predicted, measured)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("case", sorted(VARIED_MODELS))
def test_varied_models_match_saved_tensors_hooks(case, update, batch):
    spec = VARIED_MODELS[case]
    shape = (batch,) + tuple(spec.input_shape[1:])
    model = spec()
    graph = trace(model, shape, case)
    available = {"last-layers": len(graph.mac_layers()), "last-blocks": len(mac_blocks(graph))}
    kind, _, k = update.partition(":")
    if k and int(k) > available[kind]:
        pytest.skip(f"{case} has only {available[kind]} {kind.split('-')[1]}")
    predicted, measured = predicted_and_measured(model, shape, update)
    assert_close(predicted, measured)


def test_nothing_trained_keeps_nothing():
    predicted, measured = predicted_and_measured(build_zoo_model("mcunet-5fps"), (1, 3, 64, 64), "none")
    assert predicted == measured == 0
