"""`ttplan profile MODEL --update policy.json` takes the policy's settings as its defaults.

A policy records the convention, optimiser, bit-widths and input shape it was planned with;
profiling it with no other option must reproduce its `predicted` memory and totals exactly,
an option that contradicts it is a one-line error (exit 2), and a policy whose cost options
are not ones the cost model accepts is refused before anything is traced.
"""

import json

import pytest
from typer.testing import CliRunner

from ttplan.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
MODEL = "mcunet-5fps"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def planned(tmp_path, *options, method="lastlayer", shape="1,3,64,64") -> dict:
    path = tmp_path / "policy.json"
    result = run("plan", MODEL, "--method", method, "--input-shape", shape, *options,
                 "--out", path)
    assert result.exit_code == 0, result.output
    return path


def assert_one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not result.stdout.strip()


@pytest.mark.parametrize("options, method, shape", [
    (("--convention", "pytorch"), "lastlayer", "1,3,64,64"),
    (("--convention", "pytorch", "--optimizer", "adam"), "fulltrain", "1,3,64,64"),
    (("--optimizer", "momentum"), "lastlayer", "1,3,64,64"),
    (("--weight-bits", "8", "--activation-bits", "8", "--gradient-bits", "8"),
     "fulltrain", "1,3,64,64"),
    (("--optimizer", "adam", "--weight-bits", "8"), "lastlayer", "2,3,64,64"),
    (("--convention", "pytorch"), "fulltrain", "2,3,64,64"),
], ids=["pytorch", "pytorch-adam", "momentum", "paper-8bit", "adam-8bit-batch2",
        "pytorch-batch2"])
def test_profile_of_a_policy_alone_reproduces_its_prediction(tmp_path, options, method, shape):
    path = planned(tmp_path, *options, method=method, shape=shape)
    policy = json.loads(path.read_text())
    recorded = dict(policy["cost_options"], convention=policy["convention"])
    for flag, value in zip(options[::2], options[1::2]):  # the policy holds what was planned
        assert str(recorded[flag[2:].replace("-", "_")]) == value
    assert policy["input_shape"] == [int(d) for d in shape.split(",")]
    result = run("profile", MODEL, "--update", path, "--format", "json")
    assert result.exit_code == 0, result.output
    profiled = json.loads(result.stdout)
    assert profiled["memory"] == policy["predicted"]["memory"]
    assert profiled["totals"] == policy["predicted"]["totals"]
    assert profiled["input_shape"] == policy["input_shape"]
    assert profiled["convention"] == policy["convention"]


@pytest.mark.parametrize("option, needle", [
    (("--convention", "pytorch"), "convention"),
    (("--optimizer", "sgd"), "optimizer"),
    (("--weight-bits", "32"), "weight-bits"),
    (("--input-shape", "1,3,64,64"), "input shape"),
    (("--batch-size", "1"), "input shape"),
])
def test_an_option_contradicting_the_policy_is_one_line_exit_2(tmp_path, option, needle):
    path = planned(tmp_path, "--optimizer", "adam", "--weight-bits", "8", shape="2,3,64,64")
    assert_one_line_error(run("profile", MODEL, "--update", path, *option), needle)


@pytest.mark.parametrize("key, value, needle", [
    ("weight_bits", 7, "cost_options: invalid weight bit-width 7"),
    ("optimizer", "evil", "cost_options: unknown optimizer 'evil'"),
])
def test_a_policy_with_cost_options_the_model_refuses_is_refused(tmp_path, key, value, needle):
    path = planned(tmp_path)
    policy = json.loads(path.read_text())
    policy["cost_options"][key] = value
    path.write_text(json.dumps(policy))
    assert_one_line_error(run("profile", MODEL, "--update", path), needle)
