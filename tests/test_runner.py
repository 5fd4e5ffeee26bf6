"""`ttplan train` and `ttplan measure`: the runner realises what the cost model predicts.

Small models, synthetic samples, one or two iterations; no timing is asserted.
"""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.devices import grid, process, runner
from ttplan.devices.host import EnergyCounter, peak_rss_bytes
from ttplan.devices.probecost import run_probe_macs
from ttplan.devices.logs import LOG_COLUMNS, append_log_row, load_device_logs
from ttplan.devices.stepcost import step_cost
from ttplan.devices.sparse import sparse_forward
from ttplan.planner.support.sources import synthetic_data
from ttplan.planner.fisher import default_candidate_layers, fisher_information
from ttplan.costmodel.options import cost_options
from ttplan.devices.runner import RunSettings, Support

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 3, 16, 16)


class TinyNet(nn.Module):
    """Stem + two inverted-residual-like blocks (1x1 expand, depthwise, 1x1 project), pooled."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)

        def cbr(cin, cout, k=1, groups=1, act=True):
            layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                      nn.BatchNorm2d(cout)]
            return nn.Sequential(*layers, *( [nn.ReLU6()] if act else []))

        self.stem = cbr(3, 8, 3)
        self.block1 = nn.Sequential(cbr(8, 16), cbr(16, 16, 3, groups=16), cbr(16, 8, act=False))
        self.block2 = nn.Sequential(cbr(8, 24), cbr(24, 24, 3, groups=24), cbr(24, 12, act=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.dim() == 1 else 0.0))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block1(x)
        return self.pool(self.block2(x)).flatten(1)


def tinytrain_policy(model, shape=SHAPE, compute=0.4, samples=10):
    x, y = synthetic_data(samples, 5, shape[1:], 0)
    fisher = fisher_information(model, default_candidate_layers(model, 0.7), x, y)
    return ttplan.plan(model, fisher=fisher, inputs=shape, compute=compute,
                       options=cost_options(convention="pytorch"))


# ----------------------------------------------------------------------------- sparse backward

SPARSE_CASES = [
    ("conv", dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, stride=2), [1, 4, 7], 0),
    ("conv", dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6), [0, 2, 5], 0),
    ("conv", dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, groups=2), [0, 3, 6], 0),
    ("conv", dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, groups=2), [1, 2], 1),
    ("conv", dict(in_channels=6, out_channels=8, kernel_size=1, dilation=2), [0, 5], 1),
    ("conv", dict(in_channels=6, out_channels=8, kernel_size=1), [2, 3, 7], 0),  # pointwise
    ("linear", dict(in_features=6, out_features=5), [1, 3], 0),
    ("linear", dict(in_features=6, out_features=5), [0, 4, 5], 1),
]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind,kwargs,channels,axis", SPARSE_CASES)
def test_sparse_gradient_equals_dense_on_selected_channels(kind, kwargs, channels, axis, batch):
    torch.manual_seed(0)
    module = nn.Conv2d(**kwargs) if kind == "conv" else nn.Linear(**kwargs)
    x = torch.randn(batch, 6, 9, 9) if kind == "conv" else torch.randn(batch, 4, 6)
    x.requires_grad_(True)
    dense_out = module(x)
    g = torch.randn_like(dense_out)
    dense = torch.autograd.grad(dense_out, (x, module.weight, module.bias), g)
    sparse_out = sparse_forward(module, channels, axis)(x)
    sparse = torch.autograd.grad(sparse_out, (x, module.weight, module.bias), g)

    selected = torch.zeros_like(module.weight, dtype=torch.bool)
    if axis == 0:
        selected[channels] = True
    else:
        selected[:, channels] = True
    assert torch.equal(dense_out, sparse_out)
    torch.testing.assert_close(sparse[0], dense[0])  # input gradient in full
    torch.testing.assert_close(sparse[1][selected], dense[1][selected])
    assert torch.count_nonzero(sparse[1][~selected]) == 0
    torch.testing.assert_close(sparse[2], dense[2])  # bias gradient in full


# ----------------------------------------------------------------------------- the run


def test_only_selected_entries_change_and_saved_bytes_match():
    model = TinyNet()
    policy = tinytrain_policy(model)
    assert any(layer["channels"] for layer in policy.layers)  # a channel-sparse policy
    before = copy.deepcopy(model.state_dict())
    result = ttplan.train(model, policy=policy, support=Support(synthetic=True, samples=10),
                          run=RunSettings(iterations=2, batch_size=2, lr=0.05))
    after = model.state_dict()

    allowed = {}
    for layer in policy.layers:
        weight = torch.zeros_like(before[f"{layer['name']}.weight"], dtype=torch.bool)
        if layer["update_weight"]:
            if layer["channels"] is None:
                weight[:] = True
            else:
                weight[layer["channels"]] = True
        allowed[f"{layer['name']}.weight"] = weight
        bn = layer["name"][:-1] + "1"  # the BatchNorm attached to the conv
        gamma = torch.zeros_like(before[f"{bn}.weight"], dtype=torch.bool)
        if layer["update_weight"]:
            gamma[layer["channels"] if layer["channels"] is not None else slice(None)] = True
        allowed[f"{bn}.weight"] = gamma
        allowed[f"{bn}.bias"] = torch.full_like(gamma, layer["update_bias"])
    changed_somewhere = False
    for key, old in before.items():
        moved = after[key] != old
        mask = allowed.get(key, torch.zeros_like(old, dtype=torch.bool))
        assert not moved[~mask].any(), key  # running statistics included: BN in eval mode
        changed_somewhere |= bool(moved.any())
    assert changed_somewhere
    assert result.policy["channel_sparse"] and not result.policy["dense_masked"]
    measured, predicted = result.measured["saved_bytes"], result.predicted["saved_bytes"]
    assert measured > 0 and abs(measured - predicted) <= 0.02 * predicted


def test_mcunet_small_input_saved_bytes_match_pytorch_convention():
    shape = (1, 3, 32, 32)
    model = ttplan.build_zoo_model("mcunet-5fps")
    policy = tinytrain_policy(model, shape, compute=0.15)
    assert any(layer["channels"] for layer in policy.layers)
    result = ttplan.train("mcunet-5fps", policy=policy,
                          support=Support(synthetic=True, samples=5, holdout=0),
                          run=RunSettings(iterations=1, batch_size=2))
    measured, predicted = result.measured["saved_bytes"], result.predicted["saved_bytes"]
    assert abs(measured - predicted) <= 0.02 * predicted, (measured, predicted)
    assert result.accuracy == {"before": None, "after": None}
    # The prediction is the cost model's for the same configuration, modules in eval mode.
    profile = ttplan.profile("mcunet-5fps", (2, 3, 32, 32), update=policy.updates(),
                             options={"convention": "pytorch"},
                             tracing=ttplan.Tracing(training_mode=False))
    assert predicted == profile.memory.saved_activation_bytes
    assert result.costs["backward_weight_macs"] == profile.totals["backward_weight_macs"]


def test_no_grad_prefix_keeps_nothing_before_the_first_updated_layer():
    model = TinyNet()
    calls: dict[str, list[tuple[bool, bool]]] = {}  # (grad mode on, output recorded)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU6)):
            module.register_forward_hook(lambda m, a, out, name=name: calls.setdefault(
                name, []).append((torch.is_grad_enabled(), out.requires_grad)))
    # TinyNet's blocks are the stem and the Sequential children block1.0 ... block2.2.
    result = ttplan.train(model, update="last-blocks:3",
                          support=Support(synthetic=True, samples=6, holdout=0),
                          run=RunSettings(iterations=1, batch_size=2))
    prefix = [n for n in calls if n.startswith(("stem", "block1"))]
    # The prefix runs with gradients off in every call, training steps included ...
    assert prefix and not any(enabled or kept for n in prefix for enabled, kept in calls[n])
    # ... and the updated block with them on in the training steps.
    assert any(kept for _, kept in calls["block2.0.0"])
    assert any(enabled for enabled, _ in calls["block2.0.0"])
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"]
    # The first updated layer's input gradient is never computed.
    profile = ttplan.profile(model, (2, 3, 16, 16), update="last-blocks:3",
                             options={"convention": "pytorch"},
                             tracing=ttplan.Tracing(training_mode=False))
    assert profile.table.set_index("name").loc["block2.0.0", "backward_input_macs"] == 0


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("update", ["all", "bias-only", "last-blocks:2", "policy"])
def test_train_measures_the_saved_bytes_it_predicts(update, batch):
    # One definition: the batch a step feeds, not the support set it is cut from (under
    # `all` the stem saves the input; its storage was once the whole x_train).
    model = TinyNet()
    spec = {"policy": tinytrain_policy(model)} if update == "policy" else {"update": update}
    result = ttplan.train(model, **spec, inputs=SHAPE,
                          support=Support(synthetic=True, samples=8, holdout=0),
                          run=RunSettings(iterations=1, batch_size=batch))
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"] > 0


class PlainNet(nn.Module):
    """No BatchNorm: a well-conditioned net from a seeded init, to check the loop learns."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.f = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 32))

    def forward(self, x):
        return self.f(x)


def test_fine_tuning_learns_the_task():
    # The zoo's fixed-seed weights are not pre-trained (BatchNorm statistics as initialised),
    # so their accuracy means nothing; a plain net shows the loop itself learns.
    result = ttplan.train(PlainNet(), update="all", inputs=SHAPE,
                          support=Support(synthetic=True, samples=30),
                          run=RunSettings(iterations=6, batch_size=5, lr=1e-3, optimizer="adam"))
    loss = result.run["loss"]
    assert loss["last"] < 0.8 * loss["first"] and loss["last"] < math.log(5)
    assert result.accuracy["after"] >= result.accuracy["before"]


def test_nothing_updated_runs_forward_only():
    result = ttplan.train(TinyNet(), update="none", inputs=SHAPE,
                          support=Support(synthetic=True, samples=4, holdout=0),
                          run=RunSettings(iterations=1))
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"] == 0
    assert result.policy["trainable_tensors"] == 0 and result.costs["updated_tensors"] == 0


def test_holdout_split_keeps_every_class():
    x, y = synthetic_data(10, 5, (3, 4, 4), 0)
    x_train, y_train, x_query, y_query = runner.holdout_split(x, y, 0.2)
    assert len(x_query) == 5 and sorted(y_query.tolist()) == [0, 1, 2, 3, 4]
    assert sorted(set(y_train.tolist())) == [0, 1, 2, 3, 4]
    _, _, x_query, _ = runner.holdout_split(x[:5], y[:5], 0.2)  # one sample per class
    assert len(x_query) == 0


def test_log_rows_load(tmp_path):
    log = tmp_path / "runs.csv"
    for iterations in (1, 2):
        result = ttplan.train(TinyNet(), update="last-layers:1", inputs=SHAPE,
                              support=Support(synthetic=True, samples=6, holdout=0),
                              run=RunSettings(iterations=iterations))
        append_log_row(log, result.log_row())
    with open(log, newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == LOG_COLUMNS
    rows = load_device_logs(log)  # the strict loader calibration reads
    assert list(rows.iterations) == [1, 2] and set(rows.source) == {"ttplan train"}
    assert rows.energy_j.isna().all()  # no counter here: empty, not invented
    assert (rows.total_s - rows[["load_s", "fisher_s", "plan_s", "train_s"]].sum(axis=1)).abs().max() < 1e-5
    assert (rows.saved_bytes_measured > 0).all() and (rows.peak_rss_bytes > 0).all()
    # The cost columns are devices.stepcost's, as in the shipped logs: BatchNorm folded, so
    # the last conv updates its weight and its (folded) bias.
    expected = step_cost(TinyNet(), "last-layers:1", SHAPE).columns()
    assert {k: int(rows.iloc[0][k]) for k in expected} == expected
    assert expected["updated_tensors"] == 2


# ----------------------------------------------------------------------------- host facts


def test_energy_counter_reads_powercap(tmp_path):
    zone, sub = tmp_path / "intel-rapl:0", tmp_path / "intel-rapl:0:0"
    for path, value in ((zone, 1_000_000), (sub, 7)):
        path.mkdir()
        (path / "energy_uj").write_text(f"{value}\n")
        (path / "max_energy_range_uj").write_text("9999999\n")
    counter = EnergyCounter(tmp_path)
    assert counter.zones == [zone]  # the sub-zone is part of the package
    counter.start()
    (zone / "energy_uj").write_text("3500000\n")
    assert counter.joules() == pytest.approx(2.5)
    counter.start()
    (zone / "energy_uj").write_text("500000\n")  # wrapped past 9999999
    assert counter.joules() == pytest.approx((9_999_999 + 1 - 3_500_000 + 500_000) / 1e6)
    assert EnergyCounter(tmp_path / "absent").joules() is None
    assert peak_rss_bytes() > 10_000_000  # a process with torch loaded


# ----------------------------------------------------------------------------- measure


def test_parse_duration():
    assert grid.parse_duration("100s") == 100
    assert grid.parse_duration("20min") == 1200
    assert grid.parse_duration("1h") == 3600
    assert grid.parse_duration("90") == 90
    for bad in ("", "0s", "5 minutes", "-3s", "1d"):
        with pytest.raises(SpecError):
            grid.parse_duration(bad)


def test_measure_grid_in_order(tmp_path):
    log = tmp_path / "grid.csv"
    model = TinyNet()
    rows = grid.measure(model, time_limit_s=600, log=log, input_shape=SHAPE,
                        runs=grid.GridRuns(samples=4, iterations=1, isolate=False))
    expected = [(u, b) for b in (1, 4) for u in grid.GRID_UPDATES]  # batch 16 > 4 samples
    assert [(r["method"], r["batch_size"]) for r in rows] == expected
    with open(log, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(expected)
    tiny = next(r for r in rows if r["method"] == "tinytrain")
    assert tiny["fisher_s"] > 0 and tiny["plan_s"] > 0
    # the probe's MACs (devices.probecost) for the run that probed, 0 for the others
    probe = run_probe_macs(model, SHAPE, tiny["samples"])
    assert tiny["probe_macs"] == probe > 0
    assert all(r["probe_macs"] == 0 for r in rows if r["method"] != "tinytrain")


def test_measure_grid_at_chosen_batch_sizes(tmp_path):
    rows = grid.measure(TinyNet(), time_limit_s=600, log=tmp_path / "grid.csv", input_shape=SHAPE,
                        runs=grid.GridRuns((2,), samples=4, iterations=1, isolate=False))
    assert [(r["method"], r["batch_size"]) for r in rows] == [(u, 2) for u in grid.GRID_UPDATES]
    for bad in ((), (0,), (8,)):  # nothing, not positive, nothing fits 4 samples
        with pytest.raises(SpecError, match="batch size"):
            grid.measure(TinyNet(), time_limit_s=60, log=tmp_path / "bad.csv", input_shape=SHAPE,
                         runs=grid.GridRuns(bad, samples=4, isolate=False))
    assert not (tmp_path / "bad.csv").exists()


def test_measure_runs_isolated_in_a_fresh_process(monkeypatch):
    # "none" builds no optimiser, whose first construction imports torch._dynamo (seconds).
    # The child inherits the environment: as everywhere in the tests (conftest), the host's
    # runtime baseline is not probed (two more fresh processes, ~7 s of CPU); the real probe
    # runs once in tests/test_process_memory.py.
    monkeypatch.setenv(process.PROBE_ENV, "1")
    row = grid._run_isolated({"model": "mcunet-5fps", "update": "none",
                              "input_shape": [1, 3, 32, 32], "synthetic": True, "samples": 4,
                              "iterations": 1, "batch_size": 1, "holdout": 0.0,
                              "device_name": "box"}, timeout_s=120)
    assert row["device"] == "box" and row["method"] == "none" and row["iterations"] == 1
    assert row["saved_bytes_measured"] == 0 and row["peak_rss_bytes"] > 0


# ----------------------------------------------------------------------------- CLI


def cli(*args):
    return CliRunner().invoke(app, list(args))


def test_train_cli_json_contract(tmp_path):
    log = tmp_path / "runs.csv"
    result = cli("train", "mcunet-5fps", "--update", "last-blocks:1", "--synthetic",
                 "--samples", "10", "--input-shape", "1,3,32,32", "--iterations", "1",
                 "--batch-size", "2", "--format", "json", "--log", str(log))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"model", "policy", "measured", "predicted", "accuracy"}
    assert set(data["measured"]) == {"phases", "cpu_phases", "iteration_s", "saved_bytes",
                                     "peak_rss_bytes", "energy_j", "energy_basis", "clock",
                                     "load", "reference_s", "first_steps_excess_cpu_s"}
    # 5 training samples at batch 2: two full steps, none warm to compare them with
    assert data["measured"]["first_steps_excess_cpu_s"] is None
    assert set(data["measured"]["phases"]) == {"load_s", "fisher_s", "plan_s", "train_s"}
    assert set(data["measured"]["cpu_phases"]) == {"load_s", "fisher_s", "plan_s", "train_s"}
    assert data["measured"]["energy_basis"] in (None, "powercap counter")
    assert set(data["predicted"]) == {"saved_bytes", "peak_bytes", "backward_macs", "phases",
                                      "total_s", "energy_j", "calibration", "time_model",
                                      "time_model_notes", "energy_basis", "peak_rss_bytes",
                                      "process_memory"}
    assert any("too short to time" in w for w in data["warnings"])  # one tiny iteration
    assert data["predicted"]["phases"] is None  # no device model asked for
    assert data["predicted"]["total_s"] is None and data["predicted"]["energy_j"] is None
    assert data["measured"]["saved_bytes"] == data["predicted"]["saved_bytes"]
    assert set(data["accuracy"]) == {"before", "after"}
    assert 0 <= data["accuracy"]["before"] <= 1  # 2 per class: one held out
    assert log.read_text().startswith(",".join(LOG_COLUMNS) + "\n")


def test_train_with_device_predicts_the_same_configuration_as_validate(tmp_path):
    """--device fills predicted.phases with the calibrated model's prediction of exactly the
    run that was logged: what `ttplan validate LOG --calibration` predicts for its row."""
    log = tmp_path / "runs.csv"
    result = cli("train", "mcunet-5fps", "--update", "last-blocks:1", "--synthetic",
                 "--samples", "6", "--input-shape", "1,3,32,32", "--iterations", "1",
                 "--batch-size", "2", "--holdout", "0", "--device", "pi-zero-2",
                 "--format", "json", "--log", str(log))
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)["predicted"]
    assert set(predicted["phases"]) == {"load_s", "fisher_s", "plan_s", "train_s"}
    assert predicted["phases"]["fisher_s"] == predicted["phases"]["plan_s"] == 0
    assert predicted["total_s"] == pytest.approx(sum(predicted["phases"].values()), rel=1e-5)
    assert predicted["energy_j"] > 0 and predicted["calibration"] == "built-in pi-zero-2"
    assert "pi-zero-2" in log.read_text().splitlines()[1]  # the row's device: --device's name
    checked = cli("validate", str(log), "--calibration", str(builtin_calibration_path()),
                  "--format", "json")
    assert checked.exit_code == 0, checked.output
    row = json.loads(checked.stdout)["devices"]["pi-zero-2"]["rows"][0]
    assert row["predicted_s"] == pytest.approx(predicted["total_s"], rel=1e-5)


def builtin_calibration_path():
    from importlib import resources
    return resources.files("ttplan.devices").joinpath("data/calibrations/pi-zero-2.json")


BAD = [
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--device", "host"],
     "no calibration"),
    (["measure", "mcunet-5fps", "--time-limit", "20 minutes", "--log", "x.csv"], "time limit"),
    (["measure", "mcunet-5fps", "--time-limit", "1min", "--log", "x.csv", "--batch-sizes",
      "1,four"], "--batch-sizes"),
    (["measure", "mcunet-5fps", "--time-limit", "1min", "--log", "x.csv", "--samples",
      "\u0661\u0662"], "--samples"),
    (["train", "mcunet-5fps", "--policy", "missing.json", "--synthetic"], "missing.json"),
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--iterations", "0"],
     "--iterations"),
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--iterations", "abc"],
     "--iterations"),
    (["train", "mcunet-5fps", "--synthetic"], "exactly one"),
    (["train", "mcunet-5fps", "--update", "all", "--method", "lastlayer", "--synthetic"],
     "exactly one"),
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--samples", "4",
      "--batch-size", "8"], "batch size 8"),
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--optimizer", "rmsprop"],
     "optimizer"),
    (["train", "mcunet-5fps", "--update", "all", "--synthetic", "--lr", "-1"], "--lr"),
    (["train", "mcunet-5fps", "--update", "all", "--memory", "1MB", "--synthetic"], "budget"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = cli(*args, "--out", "out.txt")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle.lower() in lines[0].lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no log


def test_train_measures_what_its_first_steps_pay_beyond_warm_ones():
    # Six steps: the first two against the median of the other four (first calls of the
    # backward and the optimiser), what layerrun.measured_first_call_s reads from table runs.
    result = cli("train", "mcunet-5fps", "--update", "last-blocks:1", "--synthetic",
                 "--samples", "6", "--holdout", "0", "--input-shape", "1,3,32,32",
                 "--iterations", "1", "--batch-size", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["measured"]["first_steps_excess_cpu_s"] >= 0.0


@pytest.mark.parametrize("update", ["all", "bias-only"])
def test_the_prediction_follows_the_modules_in_eval_mode(update):
    """`train` runs its modules in eval mode, and predicts the bytes it keeps from the model
    traced so: Hugging Face's `dropout_p=p if self.training else 0.0` takes SDPA's fused path
    then, whose output's layout makes the transpose-reshape after it a view (a trace in train
    mode takes the math path and copies: 1,536 B over under `all`;
    notes/pytorch_saved_tensors.md)."""
    from tests.test_construct_models import TrainingDropoutSDPA
    torch.manual_seed(0)
    result = ttplan.train(TrainingDropoutSDPA(), update=update, inputs="float32[2,6,32]",
                          support=Support(synthetic=True, samples=4, holdout=0),
                          run=RunSettings(iterations=1, batch_size=2))
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"]
