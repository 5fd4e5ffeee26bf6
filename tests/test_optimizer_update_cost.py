"""The optimiser's work per updated element: measured per optimiser in the tables' step
reference, priced by the run's optimiser over its updated elements (notes/device_time_model.md
§30). Hand-derived counts; the measurement itself only for its shape (no timing asserted)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttplan.devices import layermodel as lm
from ttplan.devices.layerrun import measured_optimizer_rates, run_description
from ttplan.devices.planning import DeviceContext, layer_run
from ttplan.devices.profiles import DeviceProfile
from ttplan.devices.stepreference import merged_step_reference, update_element_seconds
from ttplan.devices.trainrequest import OPTIMIZERS


def net() -> nn.Module:
    torch.manual_seed(0)
    # conv 3 -> 8 (1x1, bias): 24 + 8; BatchNorm 8: 8 + 8; linear 8 -> 4: 32 + 4
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Flatten(),
                         nn.Linear(8, 4)).eval()


def test_a_run_counts_the_elements_its_optimiser_updates():
    run = run_description(net(), "all", (1, 3, 1, 1), iterations=2, samples=4)
    assert run["updated_elements"] == 24 + 8 + 8 + 8 + 32 + 4
    assert run["optimizer"] == "sgd"  # the runner's default
    last = run_description(net(), "last-layers:1", (1, 3, 1, 1), iterations=2, samples=4)
    assert last["updated_elements"] == 36
    ctx = DeviceContext(DeviceProfile("host", None), None, 2, 4)
    assert layer_run(net(), "all", (1, 3, 1, 1), ctx, probes=False,
                     optimizer="adam")["optimizer"] == "adam"


def test_the_update_costs_its_optimiser_s_rate_per_element_and_step():
    run = run_description(net(), "all", (2, 3, 1, 1), iterations=3, samples=4)
    glue = {**dict.fromkeys(lm.GLUE_TERMS, 0.0),
            "update_element_s": {"sgd": 1e-10, "momentum": 3e-10, "adam": 2e-9}}
    steps = 3 * 2  # 3 iterations of 4 samples at batch 2
    assert lm.glue_seconds(run, glue) == pytest.approx(steps * 84 * 1e-10)
    assert lm.glue_seconds(dict(run, optimizer="adam"), glue) == pytest.approx(steps * 84 * 2e-9)
    # beyond SGD's per tensor (4: the cost model counts an attached BatchNorm's scale and shift
    # with its conv's weight and bias, config.updated_tensor_count) and per step call
    assert run["updated_tensors"] == 4
    glue.update(optimizer_tensor_s={"sgd": 0.0, "adam": 2e-5}, optimizer_call_s={"adam": 1e-5})
    assert lm.update_seconds(dict(run, optimizer="adam"), glue) == pytest.approx(
        steps * (84 * 2e-9 + 4 * 2e-5 + 1e-5))
    assert lm.update_seconds(run, glue) == pytest.approx(steps * 84 * 1e-10)
    # nothing updated, a calibration or a run from before: nothing
    none = run_description(net(), "none", (2, 3, 1, 1), iterations=3, samples=4)
    assert lm.update_seconds(none, glue) == 0.0
    assert lm.update_seconds(run, dict.fromkeys(lm.GLUE_TERMS, 0.0)) == 0.0
    assert lm.update_seconds({k: v for k, v in run.items() if k != "updated_elements"},
                             glue) == 0.0


def test_the_step_reference_measures_each_optimiser_and_tables_merge_their_medians():
    element, tensor, call = update_element_seconds(1)
    for rates in (element, tensor, call):
        assert set(rates) == set(OPTIMIZERS) and all(v >= 0.0 for v in rates.values())
    assert tensor["sgd"] == 0.0 and call["sgd"] == 0.0  # SGD's: tensor_update_s and step_s
    records = [{"train_cpu_s": [1.0, 2.0], "update_element_cpu_s": {"sgd": s, "adam": a}}
               for s, a in ((1e-10, 2e-9), (3e-10, 1e-9), (2e-10, 3e-9))]
    assert merged_step_reference(records)["update_element_cpu_s"] == {"sgd": 2e-10,
                                                                      "adam": 2e-9}
    tables = [{"step_reference": r} for r in records] + [{}]  # {}: a table from before
    assert measured_optimizer_rates(tables) == {"sgd": 2e-10, "adam": 2e-9}
    assert measured_optimizer_rates([{}]) is None


def test_a_fit_of_the_glue_keeps_the_measured_rates_and_counts_them_as_measured():
    from test_layer_model import synthetic_table

    runs = synthetic_table("a", 1.0)["runs"]
    kinds = lm.fit_kinds(synthetic_table("a", 1.0)["layers"])
    rates = {"sgd": 1e-7, "momentum": 2e-7, "adam": 5e-7}
    with_rates = lm.fit_glue(runs, kinds, measured={"update_element_s": rates})
    assert with_rates["update_element_s"] == rates
    assert "update_element_s" not in lm.fit_glue(runs, kinds)
    # the rate prices each run's updates in the prediction as in the fit
    run = next(r for r in runs if r["updated_tensors"])
    assert lm.glue_seconds(run, with_rates) - lm.glue_seconds(
        run, {k: v for k, v in with_rates.items() if k != "update_element_s"}) == \
        pytest.approx(lm.update_seconds(run, with_rates))


def test_predict_takes_the_optimiser_the_run_will_use_and_refuses_an_unknown_one(tmp_path):
    from typer.testing import CliRunner

    from ttplan.cli import app
    from ttplan.costmodel.errors import SpecError
    from ttplan.devices.planning import device_context, predict_training
    from test_own_table import own_model_table
    from test_layer_model import synthetic_table, tiny_net
    from ttplan.devices.calibrate import calibrate_layers

    path = tmp_path / "cal.json"
    cal = calibrate_layers([own_model_table(tiny_net()), synthetic_table("b", 1.0)],
                           DeviceProfile("host", None))
    cal.layers["glue"]["update_element_s"] = {"sgd": 1e-9, "momentum": 2e-9, "adam": 1e-6}
    cal.save(path)
    ctx = device_context("host", calibration=str(path), iterations=2, samples=4)
    sgd = predict_training(tiny_net(), "all", ctx, inputs=(1, 3, 4, 4))
    adam = predict_training(tiny_net(), "all", ctx, inputs=(1, 3, 4, 4), optimizer="adam")
    assert adam["phases"]["train_s"] > sgd["phases"]["train_s"]
    assert adam["peak_bytes"] > sgd["peak_bytes"]  # Adam's two moments per weight
    with pytest.raises(SpecError, match="unknown optimizer 'bogus'"):
        predict_training(tiny_net(), "all", ctx, inputs=(1, 3, 4, 4), optimizer="bogus")
    result = CliRunner().invoke(app, ["predict", "test_layer_model:tiny_net", "--update", "all",
                                      "--device", str(path), "--input-shape", "1,3,4,4",
                                      "--optimizer", "bogus"])
    assert result.exit_code == 2 and "unknown optimizer 'bogus'" in result.output
