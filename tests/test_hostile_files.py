"""Every file a command reads or appends to is guarded like `--out` (issue 18), one test per
class of promise:

1. a `--log` is absent, empty, or a ttplan log with the same columns: anything else is
   refused before any work and left byte for byte as it was; a row is appended whole;
2. a FIFO, a device or a socket given as any input is refused at once (a FIFO has no writer
   here: opening it for reading would wait forever);
3. a log that is not UTF-8 is one line, wherever it is read;
4. a failed command's stderr is its `error:` line alone: warnings and notes said before the
   failure are not shown (sweep's torch.fx warning, report's notes before Ctrl-C);
5. one duration grammar for `plan --time` and `measure --time-limit`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap
import threading

import pytest
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel import specs
from ttplan.costmodel.errors import SpecError
from ttplan.devices import grid
from ttplan.devices.logs import LOG_COLUMNS, append_log_row, check_log_target

runner = CliRunner()
TRAIN = ("train", "mcunet-5fps", "--update", "last-layers:1", "--synthetic", "--samples", "4",
         "--iterations", "1", "--input-shape", "1,3,32,32", "--no-progress")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, needle=""):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle.lower() in lines[0].lower(), lines[0]
    assert result.stdout == ""


# ------------------------------------------------------------------------- 1. --log

FOREIGN = {"l.csv": "x,y,z\na,b,c\n", "policy.json": '{"schema": "ttplan.policy"}\n'}


@pytest.mark.parametrize("name", sorted(FOREIGN))
@pytest.mark.parametrize("command", ["train", "measure"])
def test_a_foreign_log_is_refused_and_untouched(tmp_path, name, command):
    log = tmp_path / name
    log.write_text(FOREIGN[name])
    before = os.stat(log)
    args = TRAIN if command == "train" else (
        "measure", "mcunet-5fps", "--time-limit", "20m", "--in-process",
        "--input-shape", "1,3,32,32", "--samples", "2", "--iterations", "1")
    assert_one_line_error(run(*args, "--log", log), "refusing to append")
    assert log.read_text() == FOREIGN[name] and os.stat(log).st_ino == before.st_ino


def test_one_command_appends_to_its_log_more_than_once_and_out_may_not_replace_it(tmp_path):
    """Within one command (`measure` appends a row per run) the log is rewritten each time;
    after the first append it is an input, which the command's --out may not replace."""
    from ttplan.costmodel.fileio import check_output_target, command_io

    log, rows = tmp_path / "runs.csv", []
    with command_io():
        for seed in range(3):
            append_log_row(log, {"device": "host", "model": "m", "method": "none",
                                 "seed": seed} if "seed" in LOG_COLUMNS else
                           {"device": "host", "model": "m", "method": "none"})
        rows = list(csv.DictReader(io.StringIO(log.read_text())))
        with pytest.raises(SpecError, match="it is an input of this command"):
            check_output_target(str(log))
    assert len(rows) == 3


def test_a_log_missing_columns_is_refused_by_the_api_too(tmp_path):
    log = tmp_path / "old.csv"
    log.write_text(",".join(LOG_COLUMNS[:-3]) + "\n")
    for call in (lambda: check_log_target(log), lambda: append_log_row(log, {})):
        with pytest.raises(SpecError, match="lacks torch_version"):
            call()
    assert log.read_text() == ",".join(LOG_COLUMNS[:-3]) + "\n"


def test_a_row_goes_whole_into_a_ttplan_log_in_its_column_order(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("")  # empty: the header is written
    result = run(*TRAIN, "--log", log)
    assert result.exit_code == 0, result.output
    assert "appended a row" in result.stderr
    # The same columns in another order: the row follows the file's order.
    header = list(reversed(LOG_COLUMNS))
    rows = list(csv.DictReader(io.StringIO(log.read_text())))
    other = tmp_path / "reversed.csv"
    with open(other, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerow(rows[0])
    append_log_row(other, rows[0])
    again = list(csv.DictReader(io.StringIO(other.read_text())))
    assert len(again) == 2 and again[0] == again[1] == rows[0]


# ------------------------------------------------------------------- 2. special files

def _fifo_inputs(tmp_path):
    """(arguments, needle) for each way a command reads a file, the file being a FIFO."""
    for name in ("fifo", "fifo.json", "fifo.npz"):
        os.mkfifo(tmp_path / name)
    f = str(tmp_path / "fifo")
    j = str(tmp_path / "fifo.json")
    z = str(tmp_path / "fifo.npz")
    shape = ("--input-shape", "1,3,32,32")
    return [
        (["calibrate", f, "--device", "host"], "FIFO"),
        (["validate", f], "FIFO"),
        (["predict", "mcunet-5fps", "--update", "none", "--device", "pi-zero-2",
          "--calibration", f], "FIFO"),
        ([*TRAIN, "--log", f], "FIFO"),
        (["plan", "mcunet-5fps", "--fisher", f, *shape], "FIFO"),
        (["compare", "mcunet-5fps", "--fisher", f, *shape], "FIFO"),
        (["plan", "mcunet-5fps", "--method", "lastlayer", "--device", j, *shape], "FIFO"),
        (["profile", "mcunet-5fps", "--update", j, *shape], "FIFO"),
        (["export", j], "FIFO"),
        (["layers", "mcunet-5fps", "--policy", j, *shape], "FIFO"),
        (["whatif", "mcunet-5fps", "--fisher", f, *shape], "FIFO"),
        (["profile", "mcunet-5fps", "--weights", f, *shape], "regular file"),
        (["fisher", "mcunet-5fps", "--data", z, *shape], "FIFO"),
        (["fisher", "mcunet-5fps", "--data", f, *shape], "FIFO"),
        (["train", "mcunet-5fps", "--policy", j, "--synthetic", *shape], "FIFO"),
    ]


def test_fifos_as_every_input_are_refused_at_once(tmp_path):
    cases = _fifo_inputs(tmp_path)
    rescued = []

    def watchdog(stop: threading.Event):
        # Should a command open a FIFO to read it, it would wait for a writer forever: after
        # 20 s become that writer (and close at once), so the test fails instead of hanging.
        while not stop.wait(20):
            for name in ("fifo", "fifo.json", "fifo.npz"):
                fd = os.open(tmp_path / name, os.O_RDWR | os.O_NONBLOCK)
                os.close(fd)
            rescued.append(True)

    for args, needle in cases:
        stop = threading.Event()
        thread = threading.Thread(target=watchdog, args=(stop,), daemon=True)
        thread.start()
        try:
            result = run(*args)
        finally:
            stop.set()
            thread.join()
        assert not rescued, f"{args[0]} waited on a FIFO"
        assert_one_line_error(result, needle)


@pytest.mark.parametrize("path,needle", [("/dev/zero", "character device"),
                                         ("/dev/null", "character device")])
def test_devices_as_logs_are_refused(path, needle):
    assert_one_line_error(run("validate", path), needle)
    assert_one_line_error(run(*TRAIN, "--log", path), needle)


# ------------------------------------------------------------------- 3. encodings

def test_a_log_that_is_not_utf8_is_one_line(tmp_path):
    log = tmp_path / "log.csv"
    log.write_bytes(",".join(LOG_COLUMNS).encode() + b"\n\xff\xfe\n")
    before = log.read_bytes()
    for args in ((*TRAIN, "--log", log), ("calibrate", log, "--device", "host"),
                 ("validate", log)):
        assert_one_line_error(run(*args), "not UTF-8")
    assert log.read_bytes() == before


# ------------------------------------------------------- 4. a failure is its error line

UNTRACEABLE = """
    import torch
    from torch import nn

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() >= 0 else -x

    def build():
        torch.manual_seed(0)
        return DataDependent()
"""


@pytest.fixture
def untraceable(tmp_path, monkeypatch):
    (tmp_path / "untraceable_models.py").write_text(textwrap.dedent(UNTRACEABLE))
    monkeypatch.chdir(tmp_path)
    yield "untraceable_models:build"
    sys.modules.pop("untraceable_models", None)


def test_sweep_failure_is_one_line_and_its_success_warns_once(untraceable):
    assert_one_line_error(run("sweep", untraceable, "--unit", "layers", "--k", "4",
                              "--input-shape", "2,4"), "K=4 is out of range")
    done = run("sweep", untraceable, "--unit", "layers", "--k", "1", "--input-shape", "2,4")
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if "torch.fx could not trace" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert "WARNING" not in done.stdout + done.stderr


def test_ctrl_c_during_report_is_the_error_line_alone(tmp_path, monkeypatch):
    import ttplan
    from ttplan.reports import report as report_command  # the CLI imports it when it runs

    def interrupted(*args, log, **kwargs):
        log("mcunet-5fps: no Fisher file given; using the synthetic probe")
        raise KeyboardInterrupt

    # the CLI calls ttplan.build_report, which may already be bound there
    monkeypatch.setattr(report_command, "build_report", interrupted)
    monkeypatch.setattr(ttplan, "build_report", interrupted, raising=False)
    result = run("report", "mcunet-5fps", "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and result.stderr == "error: interrupted\n"
    assert not (tmp_path / "r.html").exists()


def test_profile_prints_each_warning_once(untraceable):
    done = run("profile", untraceable, "--input-shape", "2,4")
    assert done.exit_code == 0, done.output
    text = done.stdout + done.stderr
    assert text.count("could not trace") == 1


# ------------------------------------------------------------------- 5. durations

def test_one_duration_grammar():
    assert grid.parse_duration is specs.parse_duration
    for text, seconds in (("20m", 1200), ("20min", 1200), ("1.5h", 5400), ("90", 90),
                          ("100 s", 100)):
        assert specs.parse_duration(text) == seconds
    result = run("measure", "mcunet-5fps", "--time-limit", "20m", "--log", "",
                 "--in-process")
    assert_one_line_error(result, "--log file name is empty")
