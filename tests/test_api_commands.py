"""Each command's whole job is one public function (`ttplan.probe_fisher`, `plan_policy`, ...,
tests/test_cli_groups.py checks the CLI makes just that call): the function refuses what the
command refuses, with the same one-line message, and returns what the command renders."""

import json

import pytest
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app
from ttplan.costmodel.errors import TtplanError

SHAPE = ["--input-shape", "1,3,32,32"]


def _api_error(call) -> str:
    with pytest.raises(TtplanError) as err:
        call()
    return str(err.value)


def _cli_error(args) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


REFUSED = [
    (lambda: ttplan.table2_report(["mcunet-5fps", "mbv2-w0.35"], fisher="f.json"),
     ["table2", "mcunet-5fps", "mbv2-w0.35", "--fisher", "f.json"], "--fisher goes with one"),
    (lambda: ttplan.table2_report(fisher_dir="no-such-folder"),
     ["table2", "--fisher-dir", "no-such-folder"], "is not a folder"),
    (lambda: ttplan.fit_calibration("pi-zero-2"),
     ["calibrate", "--device", "pi-zero-2"], "give a LOG of runs"),
    (lambda: ttplan.MeasureGrid(None),
     ["measure", "mcunet-5fps"], "--log is required"),
    (lambda: ttplan.MeasureGrid("runs.csv", "20 parsecs"),
     ["measure", "mcunet-5fps", "--log", "runs.csv", "--time-limit", "20 parsecs"],
     "invalid time limit"),
    (lambda: ttplan.WhatifAxes("1MB", "2%:60%:12", "tinytrain"),
     ["whatif", "mcunet-5fps", "--memory", "1MB"], "invalid --memory range"),
    (lambda: ttplan.WhatifAxes("128KB:2MB:12", "2%:60%:12", "nothing"),
     ["whatif", "mcunet-5fps", "--method", "nothing"], "unknown method"),
    # `report --whatif-compute` builds the same WhatifAxes (not run here: a test that runs
    # `report` leaves ttplan.build_report resolved, which test_hostile_files patches below it)
    (lambda: ttplan.WhatifAxes(compute="60%:2%:3"),
     ["whatif", "mcunet-5fps", "--compute", "60%:2%:3"], "invalid --compute range"),
    (lambda: ttplan.whatif("mcunet-5fps", search=ttplan.PlanSearch("exact", "l2norm")),
     ["whatif", "mcunet-5fps", "--solver", "exact", "--channels", "l2norm"],
     "needs channels=fisher"),
    (lambda: ttplan.sweep("mcunet-5fps", unit="rows", inputs=(1, 3, 32, 32)),
     ["sweep", "mcunet-5fps", "--unit", "rows", *SHAPE], "sweep unit must be"),
    (lambda: ttplan.sweep("mcunet-5fps", ks="3-1", inputs=(1, 3, 32, 32)),
     ["sweep", "mcunet-5fps", "--k", "3-1", *SHAPE], "malformed K range"),
]


@pytest.mark.parametrize("call,args,needle", REFUSED)
def test_each_command_function_refuses_what_the_command_refuses(call, args, needle, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    api = _api_error(call)
    assert needle in api and "\n" not in api
    assert api == _cli_error(args)


def test_list_devices_is_what_the_command_lists():
    result = CliRunner().invoke(app, ["devices", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["devices"] == json.loads(json.dumps(ttplan.list_devices()))


def test_sweep_returns_the_rows_the_command_prints():
    swept = ttplan.sweep("mcunet-5fps", ks=[1, 2], conventions=("paper",),
                         inputs=(1, 3, 32, 32))
    result = CliRunner().invoke(app, ["sweep", "mcunet-5fps", "--k", "1,2", "--convention",
                                      "paper", "--format", "json", *SHAPE])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == swept.rows
    assert [row["k"] for row in swept.rows] == [1, 2]


def test_plan_policy_returns_the_policy_and_what_its_table_shows():
    given = ttplan.Budgets("200KB", "20%")
    planned = ttplan.plan_policy("mcunet-5fps", method="lastlayer", budgets=given,
                                 inputs=(1, 3, 32, 32))
    assert given == ttplan.Budgets("200KB", "20%")  # the request is not changed
    assert planned.policy.method == "lastlayer" and planned.fisher_total is None
    assert planned.weight_shapes["blocks.0.depthwise.0"] == (16, 1, 3, 3)
    assert "blocks.0.depthwise.0" not in planned.without_bias  # its BatchNorm's shift
    result = CliRunner().invoke(app, ["plan", "mcunet-5fps", "--method", "lastlayer",
                                      "--memory", "200KB", "--compute", "20%", "--format",
                                      "json", *SHAPE])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(ttplan.io.json_text(planned.policy.to_dict()))
