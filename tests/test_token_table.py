"""A per-layer table of a model called with token ids (`ttplan measure --input ... --layer-table`):
the table records its inputs, its whole runs train on synthetic token ids, and a calibration of
it prices that model from its own table. Tiny sizes, no timing asserted."""

from __future__ import annotations

import torch
from torch import nn

from ttplan.costmodel.inputs import parse_input_specs
from ttplan.devices import layermeasure
from ttplan.devices.calibrate import calibrate_layers
from ttplan.devices.planning import device_context, predict_training
from ttplan.devices.profiles import DeviceProfile

from test_layer_model import synthetic_table


class TokenNet(nn.Module):
    """Token ids → embedding → flattened → two linear layers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 8)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, ids):
        return self.fc(self.embed(ids))


def token_net() -> nn.Module:
    return TokenNet()


INPUTS = parse_input_specs(["int64[1,6]"])


def test_a_token_model_table_records_its_inputs_and_prices_its_own_runs(tmp_path):
    table = layermeasure.measure_table(
        TokenNet(), input_shape=INPUTS, sweep=False, repeats=1, run_repeats=1,
        updates=("none", "all"),
        runs=layermeasure.GridRuns(batch_sizes=(1,), samples=4, iterations=1, isolate=False))
    assert table["inputs"] == [{"name": None, "dtype": "int64", "shape": [1, 6]}]
    assert table["input_shape"] == [1, 6] and "augment" not in table  # no image to augment
    assert {r["update"] for r in table["runs"]} == {"none", "all"}
    assert all(r["measured"]["train_cpu_s"] > 0 for r in table["runs"])
    # the embedding timed on ids of its table (no input gradient: ids pass none on)
    embed = {r["pass"] for r in table["layers"] if r["layer"] == "embed"}
    assert embed == {"forward", "weight_grad"}
    assert {r["layer"] for r in table["layers"]} >= {"fc.1", "fc.2", "fc.3"}

    cal = calibrate_layers([table, synthetic_table("b", 1.0)], DeviceProfile("host", None))
    path = tmp_path / "cal.json"
    cal.save(path)
    ctx = device_context("host", calibration=str(path), iterations=1, samples=4)
    predicted = predict_training(TokenNet(), "all", ctx, inputs=INPUTS)
    assert predicted["time_model"] == "per-layer, own table"


def test_measure_takes_input_specs_for_a_layer_table_only(tmp_path):
    from typer.testing import CliRunner

    from ttplan.cli import app

    runner = CliRunner()
    grid = runner.invoke(app, ["measure", "test_token_table:token_net", "--input", "int64[1,6]",
                               "--log", str(tmp_path / "log.csv")])
    assert grid.exit_code == 2
    assert "--input is for a per-layer table (--layer-table)" in grid.output
    both = runner.invoke(app, ["measure", "test_token_table:token_net", "--input", "int64[1,6]",
                               "--input-shape", "1,6", "--layer-table",
                               str(tmp_path / "t.json")])
    assert both.exit_code == 2 and "not both" in both.output
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "log.csv").exists()
