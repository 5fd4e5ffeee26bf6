"""The device time/energy model: the fit recovers what made the data, leave-one-out is what it
says, the built-in calibrations regenerate, files are strict, and planning meets a time budget."""

import ast
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.config import LayerUpdate
from ttplan.costmodel.errors import SpecError, TtplanError
from ttplan.devices.builtin import builtin_calibration_texts
from ttplan.devices.calibrate import (builtin_calibration, calibrate, leave_one_out,
                                      included_time_terms, load_calibration, measured_runs)
from ttplan.devices.logs import LOG_COLUMNS, load_device_logs
from ttplan.devices.model import ENERGY_NAMES, TIME_NAMES, Run, predict
from ttplan.devices.profiles import DeviceProfile, builtin_profiles, resolve_device
from ttplan.devices.stepcost import StepCost
from ttplan.costmodel.options import cost_options
from ttplan.planner.api import PlanSearch

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TRUE_TIME = {"load_s": 4.0, "fisher_mac_s": 2.6e-8, "plan_s": 2.5, "step_s": 0.2,
             "dense_mac_s": 3e-9, "depthwise_mac_s": 1.2e-8, "weight_grad_mac_s": 2e-8,
             "depthwise_weight_grad_mac_s": 6e-8, "tensor_update_s": 0.004,
             "swap_s_per_byte": 5e-8, "operator_s": 2e-4, "backward_operator_s": 5e-4,
             "element_s": 4e-9, "backward_element_s": 9e-9}
TRUE_POWER = {"overhead_w": 2.2, "compute_w": 1.1, "swap_w": 0.7}
DEVICE = DeviceProfile("synthetic", ram_bytes=512 * 2**20, reserve_bytes=256 * 2**20)


def synthetic_log(n=24, seed=0, measure_phases=True) -> pd.DataFrame:
    """Runs whose times and energies are exactly the model's with TRUE_TIME / TRUE_POWER."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        batch = rng.choice([1, 1, 8, 100])
        method = ["tinytrain", "sparseupdate", "fulltrain", "lastlayer"][i % 4]
        forward = rng.randint(10, 30) * 1_000_000 * batch
        input_grad, weight_grad = rng.randint(0, forward), rng.randint(0, forward // 2)
        cost = StepCost(batch, forward, input_grad, weight_grad,
                        rng.randint(2, 120), rng.randint(10**5, 10**6),
                        rng.choice([3 * 10**6, 10**8, 6 * 10**8, 9 * 10**8]),
                        *(rng.randint(0, total // 3) for total in (forward, input_grad,
                                                                   weight_grad)),
                        operators := rng.randint(40, 200), elements := rng.randint(1, 5) * 10**6 * batch,
                        rng.randint(0, operators), rng.randint(0, elements))
        samples = rng.choice([10, 25, 50])
        probe_macs = samples * rng.randint(20, 60) * 1_000_000 if method == "tinytrain" else 0
        run = Run(method, rng.choice([10, 40]), samples, cost, probe_macs)
        p = predict(run, TRUE_TIME, TRUE_POWER, DEVICE)
        row = dict.fromkeys(LOG_COLUMNS, math.nan)
        row.update(device="synthetic", model=f"m{i % 3}", method=method, policy="",
                   batch_size=batch, iterations=run.iterations, samples=run.samples,
                   total_s=p.total_s, energy_j=p.energy_j, torch_version="", source="synthetic",
                   probe_macs=probe_macs, **cost.columns())
        if measure_phases and i % 2 == 0:
            row.update(load_s=p.phases["load_s"], train_s=p.phases["train_s"])
            if method == "tinytrain":
                row.update(fisher_s=p.phases["fisher_s"], plan_s=p.phases["plan_s"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(LOG_COLUMNS))


def test_fit_recovers_known_parameters():
    cal = calibrate(synthetic_log(), DEVICE, "synthetic.csv")
    for name, value in TRUE_TIME.items():
        assert cal.time_terms[name] == pytest.approx(value, rel=0.01), name
    for name, value in TRUE_POWER.items():
        assert cal.energy_terms[name] == pytest.approx(value, rel=0.01), name
    assert cal.time_loo["max_abs_pct"] < 0.1
    terms = cal.to_dict()["time"]["terms"]
    assert terms["swap_s_per_byte"]["unit"] == "s per byte per step"
    assert all(t["identified"] for t in terms.values())


def test_unmeasured_phases_are_not_fitted():
    cal = calibrate(synthetic_log(measure_phases=False), DEVICE, "synthetic.csv")
    assert cal.time_terms["load_s"] == 0.0 and cal.time_terms["plan_s"] == 0.0
    assert any("load_s not fitted" in n for n in cal.to_dict()["notes"])
    no_ram = DeviceProfile("synthetic", ram_bytes=None)
    assert calibrate(synthetic_log(), no_ram, "x.csv").time_terms["swap_s_per_byte"] == 0.0


def test_leave_one_out_is_a_fit_without_the_run():
    log = load_device_logs()
    log = log[log.device == "pi-zero-2"].reset_index(drop=True)
    device = builtin_profiles()["pi-zero-2"]
    runs = measured_runs(log)
    left_out = included_time_terms(runs, device)
    times, energies = leave_one_out(runs, device, left_out)
    for i in (0, 6, 14):
        without = calibrate(log.drop(index=i), device, "x.csv")
        p = without.predict(runs[i].run)
        assert times[i] == pytest.approx(p.total_s, rel=1e-9)
        assert energies[i] == pytest.approx(p.energy_j, rel=1e-9)


def test_builtin_calibrations_regenerate_byte_identically():
    texts = builtin_calibration_texts((ROOT / "devices/data/device_logs.csv").read_text())
    for name, text in texts.items():
        assert text == (ROOT / f"devices/data/calibrations/{name}.json").read_text(), name
        cal = builtin_calibration(name)
        assert set(cal.time_terms) == set(TIME_NAMES)
    assert set(builtin_calibration("pi-zero-2").energy_terms) == set(ENERGY_NAMES)
    assert builtin_calibration("jetson-nano").energy_terms is None


def test_validate_builtin_logs_meets_the_pi_target(tmp_path):
    result = runner.invoke(app, ["validate", "--format", "json", "--plot", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    pi, nano = data["devices"]["pi-zero-2"], data["devices"]["jetson-nano"]
    assert pi["loo"]["time"]["median_abs_pct"] <= 15.0
    assert pi["loo"]["energy"]["median_abs_pct"] <= 15.0
    assert nano["loo"]["time"]["median_abs_pct"] is not None
    assert nano["loo"]["energy"] == {"median_abs_pct": None, "max_abs_pct": None}
    assert len(pi["rows"]) == 15 and set(pi["rows"][0]) == {
        "model", "method", "measured_s", "predicted_s", "error_pct", "model_out_predicted_s",
        "model_out_error_pct", "measured_j", "predicted_j"}
    # issue 16: a model the calibration never saw, from the Pi's shipped rows
    assert pi["loo_model"]["median_abs_pct"] <= 10.0 and pi["loo_model"]["max_abs_pct"] <= 20.0
    assert 0 < pi["within_10_pct"]["run_out"] <= 1 and pi["within_10_pct"]["model_out"] > 0
    assert nano["caveat"].startswith("too few rows: 6 runs fit 4 free terms")
    assert nano["free_terms"] == 4
    # the Fisher phase alone, where Table 6 measured it: one coefficient per probe MAC
    assert pi["fisher_phase"] is None  # Figure 5 has totals only
    fisher = nano["fisher_phase"]
    assert [r["model"] for r in fisher["rows"]] == ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"]
    assert [r["measured_s"] for r in fisher["rows"]] == [35.0, 32.2, 26.8]
    assert fisher["loo_model"]["max_abs_pct"] is not None
    again = runner.invoke(app, ["validate", "--plot", str(tmp_path / "b.png")])
    assert again.exit_code == 0 and "pi-zero-2 (leave-one-out fit): time median" in again.stdout
    assert "Fisher phase (3 runs measured it): median |error|" in again.stdout
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_calibrate_then_validate_and_predict_with_it(tmp_path):
    log = tmp_path / "synthetic.csv"
    frame = synthetic_log()
    frame.to_csv(log, index=False)
    device = tmp_path / "synthetic.json"
    device.write_text(json.dumps({"format": "ttplan-device", "version": 1, "name": "synthetic",
                                  "ram_bytes": "512MiB", "reserve_bytes": 256 * 2**20}))
    cal = tmp_path / "cal.json"
    result = runner.invoke(app, ["calibrate", str(log), "--device", str(device), "--out", str(cal)])
    assert result.exit_code == 0, result.output
    checked = runner.invoke(app, ["validate", str(log), "--calibration", str(cal), "--format", "json"])
    assert checked.exit_code == 0, checked.output
    rows = json.loads(checked.stdout)["devices"]["synthetic"]["rows"]
    assert max(abs(r["error_pct"]) for r in rows) < 0.01
    # The calibration file stands for its device wherever a device is taken.
    predicted = runner.invoke(app, ["predict", "mcunet-5fps", "--update", "last-blocks:2",
                                    "--device", str(cal), "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["device"] == "synthetic"


def test_predict_contract_and_phases(tmp_path):
    keys = {"model", "device", "calibration", "iterations", "samples", "batch_size", "phases",
            "total_s", "energy_j", "peak_bytes", "fits_ram", "error_band_pct"}
    full = json.loads(runner.invoke(app, ["predict", "mcunet-5fps", "--update", "all",
                                          "--batch-size", "100", "--device", "pi-zero-2",
                                          "--format", "json"]).stdout)
    assert keys <= set(full) and full["fits_ram"] is False  # the paper's point about FullTrain
    assert full["phases"]["fisher_s"] == 0 and full["phases"]["plan_s"] == 0
    assert full["total_s"] == pytest.approx(sum(full["phases"].values()), rel=1e-5)
    policy = tmp_path / "p.json"
    made = runner.invoke(app, ["plan", "mcunet-5fps", "--method", "sparseupdate", "--out",
                               str(policy)])
    assert made.exit_code == 0, made.output
    sparse = json.loads(runner.invoke(app, ["predict", "mcunet-5fps", "--update", str(policy),
                                            "--device", "jetson-nano", "--format", "json"]).stdout)
    assert sparse["batch_size"] == 1 and sparse["fits_ram"] is True
    assert sparse["energy_j"] is None  # the Jetson log measured no energy
    # A tinytrain run probes and plans on the device: the same model puts time there.
    runs = measured_runs(load_device_logs())
    tiny = next(m.run for m in runs if m.run.method == "tinytrain")
    assert builtin_calibration("jetson-nano").predict(tiny).phases["fisher_s"] > 0


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("make,needle", [
    (lambda d: ["calibrate", str(ROOT / "devices/data/device_logs.csv"), "--device", "nope"],
     "unknown device 'nope': use one of host, jetson-nano, pi-zero-2"),
    (lambda d: ["predict", "mcunet-5fps", "--update", "all", "--device", "stm32f746"],
     "no calibration for device stm32f746"),
    (lambda d: ["predict", "mcunet-5fps", "--update", "all", "--device", "pi-zero-2",
                "--calibration", _write(d / "c.json", '{"format": "ttplan-calibration", '
                                        '"version": 4}')],
     "is not a valid calibration: missing key(s) device"),
    (lambda d: ["predict", "mcunet-5fps", "--update", "all", "--device", "pi-zero-2",
                "--calibration", _write(d / "c.json", '{"format": "ttplan-calibration", '
                                        '"version": 1}')],
     "has calibration version 1; this ttplan reads version 4"),
    (lambda d: ["predict", "mcunet-5fps", "--update", "all", "--device", "pi-zero-2",
                "--calibration", _write(d / "c.json", "{not json")], "is not valid JSON"),
    (lambda d: ["devices", "--device", _write(d / "x.json", json.dumps(
        {"format": "ttplan-device", "version": 1, "name": "x", "ram_bytes": -1}))],
     "ram_bytes must be a positive number of bytes"),
    (lambda d: ["devices", "--device", _write(d / "x.json", json.dumps(
        {"format": "ttplan-device", "version": 1, "name": "x", "ram_bytes": 10, "gpu": 1}))],
     "unknown key(s) gpu"),
    (lambda d: ["validate", _write(d / "l.csv", "device,model\n")], "missing column(s)"),
    (lambda d: ["plan", "mcunet-5fps", "--method", "lastlayer", "--time", "10min"],
     "--time needs --device"),
    (lambda d: ["plan", "mcunet-5fps", "--method", "sparseupdate", "--device", "pi-zero-2",
                "--time", "1min"], "is below what any sparseupdate run takes on pi-zero-2"),
    (lambda d: ["plan", "mcunet-5fps", "--device", "pi-zero-2", "--time", "ten"],
     "invalid time budget 'ten'"),
])
def test_bad_device_input_is_one_line_exit_2(tmp_path, make, needle):
    result = runner.invoke(app, make(tmp_path))
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_devices_command_lists_profiles_with_sources():
    data = json.loads(runner.invoke(app, ["devices", "--format", "json"]).stdout)
    by_name = {d["name"]: d for d in data["devices"]}
    for name in ("pi-zero-2", "jetson-nano", "raspberry-pi-4", "stm32f746", "stm32h743", "host"):
        assert by_name[name]["ram_bytes"] > 0 and by_name[name]["sources"]["ram_bytes"]
    assert by_name["pi-zero-2"]["ram_bytes"] == 512 * 2**20
    assert by_name["stm32f746"]["ram_bytes"] == 320 * 1024
    assert by_name["pi-zero-2"]["calibration"] == "built-in"
    with pytest.raises(SpecError, match="unknown device 'pi-zero'"):
        resolve_device("pi-zero")


def test_time_budget_is_met_by_both_solvers(tmp_path):
    fisher = tmp_path / "fisher.json"
    assert runner.invoke(app, ["fisher", "mcunet-5fps", "--synthetic", "--samples", "8",
                               "--out", str(fisher)]).exit_code == 0
    totals = {}
    for solver in ("greedy", "exact"):
        out = tmp_path / f"{solver}.json"
        result = runner.invoke(app, ["plan", "mcunet-5fps", "--fisher", str(fisher), "--device",
                                     "pi-zero-2", "--time", "9min", "--solver", solver,
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
        device = json.loads(out.read_text())["predicted"]["device"]
        assert device["within_time"] and device["total_s"] <= 540 + 1e-6
        assert device["time_limit_s"] == 540 and device["iterations"] == 40
        totals[solver] = device["total_s"]
    # Without the budget the plan (within the Pi's RAM) takes longer than 9 minutes.
    loose = runner.invoke(app, ["plan", "mcunet-5fps", "--fisher", str(fisher), "--device",
                                "pi-zero-2", "--format", "json"])
    assert json.loads(loose.stdout)["predicted"]["device"]["total_s"] > 540


def test_linear_limit_equals_the_model_within_ram():
    """The planner's LinearLimit is the calibrated model's time, minus nothing, for a
    configuration that fits the available RAM."""
    from ttplan.costmodel.profile import resolve_model
    from ttplan.devices.planning import device_context, time_limits
    from ttplan.devices.probecost import run_probe_macs
    from ttplan.devices.stepcost import step_cost
    from ttplan import profile
    ctx = device_context("pi-zero-2", time=600)
    limit = time_limits(ctx, "tinytrain", (1, 3, 128, 128), model="mcunet-5fps")[0]
    prof = profile("mcunet-5fps", update="last-blocks:3")
    cost = step_cost("mcunet-5fps", "last-blocks:3", (1, 3, 128, 128))
    probe = run_probe_macs(resolve_model("mcunet-5fps")[0], (1, 3, 128, 128), 25)
    p = ctx.calibration.predict(Run("tinytrain", 40, 25, cost, probe))
    assert 600 - limit.limit + limit.value(prof.evaluation) == pytest.approx(p.total_s, rel=1e-9)


def test_updated_tensors_is_the_same_in_both_conventions():
    from ttplan import profile
    for update in ("all", "bias-only", "last-blocks:2", "none"):
        counts = {profile("mbv2-w0.35", update=update,
                          options={"convention": c}).evaluation.updated_tensors
                  for c in ("paper", "pytorch")}
        assert len(counts) == 1, update
    assert profile("mbv2-w0.35", update="all").evaluation.updated_tensors == 2 * 52


def test_planner_does_not_import_devices():
    for path in (ROOT / "planner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any("devices" in n or "reports" in n for n in names), path


def test_python_api_refuses_what_the_cli_refuses():
    from ttplan.devices.planning import device_context, predict_training
    with pytest.raises(TtplanError, match="no calibration for device raspberry-pi-4"):
        predict_training("mcunet-5fps", "all", "raspberry-pi-4")
    with pytest.raises(TtplanError, match="iterations must be a positive integer"):
        predict_training("mcunet-5fps", "all", device_context("pi-zero-2", iterations=0))
    with pytest.raises(TtplanError):
        load_calibration(ROOT / "devices/data/device_logs.csv")


def test_device_memory_budget_and_runtime_peak():
    from ttplan.devices.planning import device_context, plan_for_device
    pi = plan_for_device("mcunet-5fps", method="lastlayer",
                         device=device_context(device="pi-zero-2"))
    assert pi.budgets["memory_bytes"] == 512 * 2**20 - 256 * 2**20  # RAM - reserve
    on_pi = pi.predicted["device"]
    assert on_pi["fits_ram"] and on_pi["total_s"] > 0 and on_pi["time_limit_s"] is None
    # A microcontroller runs a bare-metal engine: its RAM holds the paper convention's peak.
    mcu = plan_for_device("mcunet-5fps", method="lastlayer",
                          options=cost_options(weight_bits=8, activation_bits=8, gradient_bits=8),
                          device=device_context(device="stm32f746"))
    on_mcu = mcu.predicted["device"]
    assert on_mcu["peak_bytes"] == mcu.predicted["memory"]["peak_bytes"] > 320 * 1024
    assert on_mcu["fits_ram"] is False and not mcu.predicted["within_budget"]
    assert any("the paper peak" in n and "swap" not in n for n in mcu.notes)
    assert on_mcu["total_s"] is None  # no calibration, no time


def test_a_device_plans_under_its_runtime_unless_told_otherwise():
    from ttplan.devices.planning import device_context, plan_for_device
    # The Pi runs PyTorch: its RAM must hold what eager PyTorch keeps.
    pi = plan_for_device("mcunet-5fps", method="lastlayer",
                         device=device_context(device="pi-zero-2"))
    assert pi.options.convention == "pytorch"
    paper = plan_for_device("mcunet-5fps", method="lastlayer",
                            options=cost_options(convention="paper"),
                            device=device_context(device="pi-zero-2"))
    assert paper.options.convention == "paper"  # an explicit convention wins
    assert plan_for_device("mcunet-5fps", method="lastlayer",
                           device=device_context(device="stm32f746")).options.convention == "paper"
    shown = runner.invoke(app, ["plan", "mcunet-5fps", "--device", "pi-zero-2", "--method",
                                "lastlayer"])
    assert shown.exit_code == 0 and "pytorch convention" in shown.stdout
    told = runner.invoke(app, ["plan", "mcunet-5fps", "--device", "pi-zero-2", "--method",
                               "lastlayer", "--convention", "paper"])
    assert "paper convention" in told.stdout
    plain = runner.invoke(app, ["plan", "mcunet-5fps", "--method", "lastlayer"])
    assert "paper convention" in plain.stdout  # no device: the paper's convention


def test_compare_with_a_device_adds_time_energy_and_fit():
    result = runner.invoke(app, ["compare", "mcunet-5fps", "--device", "pi-zero-2",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert rows["lastlayer"]["total_s"] < rows["fulltrain"]["total_s"]
    assert all(r["fits_ram"] for r in rows.values()) and rows["lastlayer"]["energy_j"] > 0


class _Separable(torch.nn.Module):
    """3x3 depthwise (8 channels, stride 2) then 1x1 pointwise 8 -> 4, on 1x8x6x6."""

    def __init__(self):
        super().__init__()
        self.depthwise = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pointwise = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def test_depthwise_columns_by_hand():
    from ttplan.devices.stepcost import step_cost
    # depthwise: out 1x8x3x3 = 72 values x 9 taps = 648 MACs; pointwise: 1x4x3x3 x 8 = 288.
    every = step_cost(_Separable(), "all", (1, 8, 6, 6))
    assert (every.forward_macs, every.depthwise_forward_macs) == (936, 648)
    # all: the depthwise conv's weight gradient (648) and, for the pointwise conv, its input
    # gradient (288) and weight gradient (288); the depthwise input gradient is not needed.
    assert (every.depthwise_backward_weight_macs, every.backward_weight_macs) == (648, 936)
    assert (every.depthwise_backward_input_macs, every.backward_input_macs) == (0, 288)
    # two of the depthwise conv's eight channels: a quarter of its weight gradient
    sparse = step_cost(_Separable(), {"depthwise": LayerUpdate(channels=(1, 5))}, (1, 8, 6, 6))
    assert sparse.depthwise_backward_weight_macs == sparse.backward_weight_macs == 162
    assert sparse.depthwise_backward_input_macs == 0 and sparse.backward_input_macs == 288


def test_time_limit_prices_depthwise_macs_as_the_model_does(tmp_path):
    """With a depthwise rate unlike the dense one, the LinearLimit is still the model's time,
    on the planner's Evaluation and in the exact solver's constraint (the plan meets it)."""
    from ttplan import plan, profile
    from ttplan.devices.model import linear_time_limit
    from ttplan.devices.stepcost import step_cost
    from ttplan.planner.selection.select import LinearLimit
    device = DeviceProfile("synthetic", ram_bytes=None)
    terms = {**TRUE_TIME, "swap_s_per_byte": 0.0}
    coefficients, limit = linear_time_limit(terms, steps=25, probe_macs=None,
                                            limit_s=1e9)
    spec = {"blocks.12.depthwise.0": LayerUpdate(channels=(0, 3, 9)),
            "blocks.13.project.0": LayerUpdate()}
    for update in ("last-blocks:3", "all", spec):
        ev = profile("mcunet-5fps", (1, 3, 64, 64), update=update).evaluation
        cost = step_cost("mcunet-5fps", update, (1, 3, 64, 64))
        p = predict(Run("sparseupdate", 1, 25, cost), terms, None, device)
        assert 1e9 - limit + LinearLimit(coefficients, limit).value(ev) == \
            pytest.approx(p.total_s, rel=1e-9)
    full = predict(Run("sparseupdate", 1, 25, step_cost("mcunet-5fps", "all", (1, 3, 64, 64))),
                   terms, None, device).total_s
    budget_s = 0.5 * full
    coefficients, limit = linear_time_limit(terms, steps=25, probe_macs=None,
                                            limit_s=budget_s)
    fisher = tmp_path / "fisher.json"
    assert runner.invoke(app, ["fisher", "mcunet-5fps", "--synthetic", "--samples", "4",
                               "--input-shape", "1,3,64,64", "--out", str(fisher)]).exit_code == 0
    for solver in ("greedy", "exact"):
        policy = plan("mcunet-5fps", fisher=str(fisher), inputs=(1, 3, 64, 64),
                      search=PlanSearch(solver=solver,
                                        limits=(LinearLimit(coefficients, limit, "time"),)))
        cost = step_cost("mcunet-5fps", policy.updates(), (1, 3, 64, 64))
        assert cost.depthwise_backward_weight_macs > 0, solver  # the depthwise rate matters
        assert predict(Run("sparseupdate", 1, 25, cost), terms, None, device).total_s \
            <= budget_s * (1 + 1e-9), solver


class _ConvBlock(torch.nn.Module):
    """conv 3->4 (3x3) -> BatchNorm -> ReLU -> conv 4->4 (1x1) -> + the ReLU's output."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv1(x)))
        return self.conv2(h) + h


def _autograd_nodes(output) -> int:
    """Nodes of the backward graph PyTorch built, parameters' AccumulateGrad left out."""
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("update,operators,elements", [
    ("all", 5, 192),  # every operator; BatchNorm, ReLU and add write 4x4x4 = 64 elements each
    ({"conv2": LayerUpdate()}, 2, 64),  # conv2's weight gradient, and the add it feeds
    ("none", 0, 0),
])
def test_operator_columns_by_hand_and_against_autograd(update, operators, elements):
    from ttplan.costmodel.config import TrainConfig, parameter_requires_grad, resolve_updates
    from ttplan.costmodel.specs import parse_update
    from ttplan.costmodel.trace import trace
    from ttplan.devices.stepcost import step_cost
    model = _ConvBlock()
    cost = step_cost(model, update, (2, 3, 4, 4))  # batch 2: the elements double
    assert (cost.forward_operators, cost.forward_elements) == (5, 2 * 192)
    assert (cost.backward_operators, cost.backward_elements) == (operators, 2 * elements)
    # The independent count: the autograd nodes PyTorch builds for the same update.
    graph = trace(model, (2, 3, 4, 4), "conv-block")
    updates = resolve_updates(parse_update(update), graph) if isinstance(update, str) else update
    flags = parameter_requires_grad(graph, TrainConfig(updates))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(flags.get(name, False))
    output = model(torch.randn(2, 3, 4, 4))
    assert (_autograd_nodes(output) if output.requires_grad else 0) == operators
