"""`--time SPEC`: a time budget of "no slower than SPEC", SPEC's run as the device's calibration
predicts it for the planned model (devices.planning.with_time_budget)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.devices.calibrate import calibrate_layers
from ttplan.devices.planning import device_context, predict_training, with_time_budget
from ttplan.devices.profiles import DeviceProfile
from ttplan.planner.api import fisher_captured
from ttplan.planner.fisher import load_fisher
from ttplan.costmodel.config import resolve_updates
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace

from test_layer_model import synthetic_table, tiny_net
from test_own_table import SHAPE, own_model_table

runner = CliRunner()


def test_a_spec_is_kept_until_the_model_is_known_then_is_its_predicted_seconds():
    ctx = device_context("pi-zero-2", time="last-blocks:3")
    assert ctx.time_s is None and ctx.time_as == "last-blocks:3"
    resolved = with_time_budget(ctx, "mcunet-5fps", (1, 3, 128, 128))
    expected = predict_training("mcunet-5fps", "last-blocks:3", ctx)["total_s"]
    assert resolved.time_s == expected and resolved.time_as == "last-blocks:3"
    assert with_time_budget(resolved, "mcunet-5fps", (1, 3, 128, 128)) is resolved
    assert device_context("pi-zero-2", time="90s").time_s == 90.0  # durations as before
    with pytest.raises(SpecError, match="invalid time budget 'fast': expected a positive "
                                        "duration such as 100s"):
        device_context("pi-zero-2", time="fast")
    with pytest.raises(SpecError, match="a time budget must be a positive duration"):
        device_context("pi-zero-2", time=-1.0)


def test_the_cli_refuses_a_bad_budget_as_the_api_does():
    result = runner.invoke(app, ["plan", "mcunet-5fps", "--device", "pi-zero-2",
                                 "--time", "last-block:2"])
    assert result.exit_code == 2
    with pytest.raises(SpecError) as api:
        device_context("pi-zero-2", time="last-block:2")
    assert result.stderr == f"error: {api.value}\n"


def test_a_plan_no_slower_than_a_baseline_captures_at_least_its_fisher(tmp_path):
    """On a per-layer calibration: the budget is last-layers:2's predicted run; the plan fits
    it and captures at least what last-layers:2 would (a fitting baseline is kept)."""
    cal = tmp_path / "cal.json"
    calibrate_layers([own_model_table(tiny_net()), synthetic_table("b", 1.0)],
                     DeviceProfile("host", None)).save(cal)
    fisher, out = tmp_path / "fisher.json", tmp_path / "plan.json"
    model, shape = "test_layer_model:tiny_net", ",".join(map(str, SHAPE))
    assert runner.invoke(app, ["fisher", model, "--synthetic", "--samples", "4",
                               "--input-shape", shape, "--out", str(fisher)]).exit_code == 0
    result = runner.invoke(app, ["plan", model, "--fisher", str(fisher), "--device", str(cal),
                                 "--time", "last-layers:2", "--input-shape", shape,
                                 "--iterations", "2", "--samples", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    device = plan["predicted"]["device"]
    ctx = device_context(str(cal), time="last-layers:2", iterations=2, samples=4)
    assert device["time_limit_s"] == pytest.approx(
        predict_training(model, "last-layers:2", ctx, inputs=SHAPE)["total_s"], rel=1e-6)
    assert device["within_time"] and device["total_s"] <= device["time_limit_s"]
    assert any(n.startswith("time budget: as fast as last-layers:2 on host") for n in plan["notes"])
    graph = trace(tiny_net(), SHAPE, "tiny_net")
    baseline = fisher_captured(resolve_updates(parse_update("last-layers:2"), graph),
                               load_fisher(fisher, graph.fingerprint()), graph)
    assert plan["predicted"]["fisher_captured"] >= baseline
