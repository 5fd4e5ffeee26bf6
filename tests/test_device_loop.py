"""The docs' device loop (docs/guides/train.md), run as written: train → log → calibrate → predict → train → validate."""

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.devices.logs import LOG_COLUMNS

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "train.md").read_text()


def loop_commands() -> list[list[str]]:
    start = PAGE.index("## The loop: train → log → calibrate → predict")
    block = re.search(r"```bash\n(.*?)```", PAGE[start:], re.S).group(1)
    return [line.split("#")[0].split()[1:] for line in block.strip().splitlines()]


def test_device_loop_from_the_docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    commands = loop_commands()
    assert [c[0] for c in commands] == ["train", "train", "train", "calibrate", "predict",
                                        "train", "validate"]
    outputs = []
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(result.stdout)

    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0]) == list(LOG_COLUMNS)
    assert {r["device"] for r in rows} == {"host"}
    calibration = json.loads((tmp_path / "host.json").read_text())
    assert calibration["format"] == "ttplan-calibration" and calibration["log"]["rows"] == 3
    assert calibration["device"]["name"] == "host"

    predicted = json.loads(outputs[4])
    trained = json.loads(outputs[5])
    # The same configuration: `predict` and the run's own prediction agree.
    assert trained["run"]["samples"] == predicted["samples"] == 5
    assert trained["run"]["iterations"] == predicted["iterations"] == 1
    assert trained["predicted"]["phases"] == predicted["phases"]
    assert trained["predicted"]["total_s"] == predicted["total_s"] > 0
    assert trained["predicted"]["calibration"] == "host.json"

    # validate --calibration predicts the logged row of that run with the same number.
    # (the table's human units round: --wide shows exact seconds)
    last = runner.invoke(app, [*commands[6], "--wide"]).stdout.splitlines()[4]
    assert "last-blocks:1" in last
    assert float(last.split()[4]) == pytest.approx(predicted["total_s"], rel=1e-3)
    assert "host (host.json): time median |error|" in outputs[6]


def test_public_api_predict_is_the_cli_predict():
    import ttplan
    assert {"predict", "plan_for_device", "train"} <= set(ttplan.__all__)
    result = CliRunner().invoke(app, ["predict", "mcunet-5fps", "--update", "last-blocks:2",
                                      "--device", "pi-zero-2", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert ttplan.predict("mcunet-5fps", "last-blocks:2", "pi-zero-2") == json.loads(result.stdout)
