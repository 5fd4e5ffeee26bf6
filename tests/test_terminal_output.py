"""What people read (issue 18): tables fit 100 columns (the whole table with --wide or in
JSON/CSV), no line ends in spaces, quantities in human units in tables and exact in JSON,
Fisher as a share of the potential, channels with their totals, a caveat on accuracy that
means nothing, and `--help` as one manual."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.units import human_bytes, human_macs, human_seconds

runner = CliRunner(env={"COLUMNS": "100"})
SHAPE = ("--input-shape", "1,3,32,32")
TRAIN = ("train", "mcunet-5fps", "--update", "last-layers:1", "--synthetic", "--samples", "4",
         "--iterations", "1", *SHAPE, "--no-progress", "--device", "pi-zero-2")


def run(*args, **kwargs):
    result = runner.invoke(app, [str(a) for a in args], **kwargs)
    assert result.exit_code == 0, result.output
    return result


def assert_fits(text: str, width: int = 100):
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} columns: {line!r}"
        assert line == line.rstrip(), f"trailing spaces: {line!r}"


@pytest.fixture(scope="module")
def fisher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fisher") / "f.json"
    run("fisher", "mcunet-5fps", "--synthetic", "--samples", "4", *SHAPE, "--out", path)
    return path


@pytest.mark.parametrize("args", [
    ("profile", "mcunet-5fps"),
    ("compare", "mcunet-5fps", *SHAPE),
    ("compare", "mcunet-5fps", *SHAPE, "--device", "pi-zero-2"),
    ("devices",),
    ("predict", "mcunet-5fps", "--update", "last-layers:2", "--device", "pi-zero-2"),
    ("predict", "mcunet-5fps", "--device", "pi-zero-2", "--update", "last-blocks:2"),
    ("validate",),
    ("sweep", "mcunet-5fps", "--k", "1-2", *SHAPE),
    TRAIN,
])
def test_tables_fit_100_columns(args):
    result = run(*args)
    assert_fits(result.stdout)
    assert_fits(result.stderr)
    said = [line for line in result.output.splitlines() if "warning" in line.lower()]
    assert len(said) == len(set(said)), said  # every warning once
    if args[0] == "predict":
        assert re.search(r"^  process peak .* resident = runtime", result.stdout, re.M)


def test_timing_warnings_fit_100_columns():
    # The busy-machine warning appears only under load, so the table test cannot rely on it.
    from ttplan.devices.layertable import busy_warning
    line = "warning: " + busy_warning({"load_1min": 999.99, "cores": 128})
    assert_fits(line)
    assert "the machine is busy" in line


def test_narrower_columns_are_honoured():
    result = run("devices", env={"COLUMNS": "60"})
    assert_fits(result.stdout, 60)


def test_wide_and_json_keep_exact_values():
    table = run("profile", "mcunet-5fps").stdout
    assert "7,227,744" in table and "6.89 MiB" in table  # PEAK: exact and human
    assert "1.77M" in table and "1,769,472" not in table
    wide = run("profile", "mcunet-5fps", "--wide").stdout
    assert "1,769,472" in wide  # stem's forward MACs, exact
    data = json.loads(run("compare", "mcunet-5fps", *SHAPE, "--format", "json").stdout)
    assert all(isinstance(r["peak_bytes"], int) for r in data)
    assert "description" in run("devices", "--wide").stdout.splitlines()[0]


def test_units_one_convention():
    assert human_bytes(463_310_848) == "441.8 MiB"
    assert human_bytes(1_876_896) == "1.79 MiB" and human_bytes(640 * 1024) == "640.0 KiB"
    assert human_macs(6_510_000) == "6.51M" and human_macs(589_824) == "589.8k"
    assert human_seconds(0.0123) == "12.3 ms" and human_seconds(464.2) == "7.74 min"


def test_plan_reports_fisher_share_and_channel_totals(fisher_file):
    text = run("plan", "mcunet-5fps", "--fisher", fisher_file, "--memory", "1MB",
               "--compute", "15%", *SHAPE).stdout
    assert re.search(r"^fisher +\d+\.\d\d% of the Fisher potential$", text, re.M), text
    assert re.search(r"\b\d+ of \d+ out$", text, re.M), text
    compare = run("compare", "mcunet-5fps", "--fisher", fisher_file, *SHAPE).stdout
    assert re.search(r"\d\.\d\d%", compare) and "Fisher" in compare.splitlines()[0]


def test_accuracy_on_random_weights_is_labelled():
    text = run(*TRAIN).stdout
    accuracy = text[text.index("accuracy"):text.index("loss")]
    assert "random fixed-seed weights" in accuracy and "--weights" in accuracy
    assert "peak RSS" in text and re.search(r"peak RSS [\d.]+ [KMG]iB", text)


COMMANDS = ("profile", "fisher", "plan", "export", "compare", "sweep", "devices", "calibrate",
            "predict", "validate", "train", "measure", "table2", "whatif", "layers", "report")


def test_help_reads_as_one_manual():
    # Each command's summary (its docstring's first paragraph, what `ttplan --help` lists) is
    # one sentence on one line: a summary spread over lines is shown broken mid-sentence.
    listed = {c.callback.__name__: c.callback.__doc__ for c in app.registered_commands}
    assert set(listed) == set(COMMANDS)
    for command, doc in listed.items():
        summary = doc.strip().split("\n\n")[0]
        assert "\n" not in summary and summary.endswith("."), (command, summary)
    for command in COMMANDS:
        text = run(command, "--help").stdout
        labels = set(re.findall(r"(INTEGER|FRACTION|TEXT|FLOAT|<\w+>)", text))
        assert labels <= {"<str>", "<int>", "<float>", "<fraction>", "<bool>", "<model>"}, \
            (command, labels)
    assert "profiling a policy" not in run("plan", "--help").stdout
    assert "1,3,128,128" in run("profile", "--help").stdout
