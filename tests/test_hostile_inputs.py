"""Hostile but fair input, one test per class of promise (docs/errors.md):

1. `--out` never replaces what is at the path blindly (devices, FIFOs, symlinks, read-only and
   hard-linked files, directories, the command's own inputs, an empty name);
2. a data file never names code that runs (a policy's model name is never imported);
3. every hostile value of every numeric option and of every JSON file is one `error:` line and
   exit status 2, never a traceback; so are usage errors, a closed or full stdout, Ctrl-C while
   importing, and models or samples the tools cannot use;
4. no silent wrong answers: warnings for uncosted operators, nothing but the result on stdout,
   a Fisher file from other weights refused;
5. the Fisher file is byte-identical whatever the thread count;
6. samples are streamed, bit for bit what loading them whole gives;
7. a model calling one module twice plans with every method.
"""

from __future__ import annotations

import builtins
import importlib
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.errors import PolicyError, SpecError
from ttplan.costmodel.fileio import command_io, note_input, write_text_atomic
from ttplan.planner.support import sources as support_data
from ttplan.planner.api import plan
from ttplan.planner.support.sources import SyntheticSupport, load_support, synthetic_data
from ttplan.planner.fisher import default_candidate_layers, fisher_information, load_fisher

runner = CliRunner()
SMALL = "1,3,16,16"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, needle=""):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert needle.lower() in lines[0].lower(), lines[0]


USER_MODELS = """
    import os
    import torch
    from torch import nn

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 8, 1)
        def forward(self, x):
            x = self.stem(x).relu()
            x = self.body(x).relu()
            x = self.body(x).relu()
            return self.head(x).mean((2, 3))

    def twice():
        torch.manual_seed(0)
        return Twice()

    def scripted():
        return torch.jit.script(twice())

    def noisy():
        print("PRINTED BY THE MODEL")
        os.write(1, b"WRITTEN TO FD 1 BY THE MODEL\\n")
        return twice()

    class NaNNet(Twice):
        def forward(self, x):
            return super().forward(x) * float("nan")

    def nan_net():
        return NaNNet()

    class Erf(Twice):
        def forward(self, x):
            return torch.special.erf(super().forward(x))

    def erf():
        torch.manual_seed(0)
        return Erf()

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 4)
        def forward(self, x):
            return self.fc(x)

    def flat():
        return Flat()
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "hostile_models.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("hostile_models", None)


@pytest.fixture(scope="module")
def fisher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fisher") / "f.json"
    result = run("fisher", "mcunet-5fps", "--synthetic", "--samples", "4", "--input-shape",
                 "1,3,32,32", "--out", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "p.json"
    result = run("plan", "mcunet-5fps", "--method", "lastlayer", "--input-shape", "1,3,32,32",
                 "--out", path)
    assert result.exit_code == 0, result.output
    return path


# ------------------------------------------------------------------ 1. what --out does

def test_out_writes_through_devices_and_fifos(tmp_path):
    assert run("sweep", "mcunet-5fps", "--k", "1", "--out", os.devnull).exit_code == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # still the device, not a file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("sweep", "mcunet-5fps", "--k", "1", "--format", "json", "--out", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(received[0])[0]["k"] == 1


def test_out_follows_a_symlink_and_keeps_it(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    assert run("sweep", "mcunet-5fps", "--k", "1", "--format", "json", "--out", link).exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())[0]["k"] == 1
    (tmp_path / "dangling").symlink_to("nowhere")
    assert_one_line_error(run("sweep", "mcunet-5fps", "--k", "1", "--out", tmp_path / "dangling"),
                          "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_out_keeps_the_mode_of_an_existing_file(tmp_path):
    target = tmp_path / "private.json"
    target.write_text("old")
    target.chmod(0o600)
    assert run("sweep", "mcunet-5fps", "--k", "1", "--out", target).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() != "old"


@pytest.mark.parametrize("kind,needle", [
    ("read-only", "read-only"), ("hard link", "hard links"), ("directory", "directory"),
    ("empty", "empty"),
])
def test_out_refuses_what_it_would_damage(tmp_path, kind, needle):
    target = tmp_path / "target.json"
    if kind == "read-only":
        target.write_text("keep")
        target.chmod(0o444)
    elif kind == "hard link":
        target.write_text("keep")
        os.link(target, tmp_path / "other-name.json")
    elif kind == "directory":
        target.mkdir()
    elif kind == "empty":
        target = ""
    assert_one_line_error(run("sweep", "mcunet-5fps", "--k", "1", "--out", target), needle)
    if kind in ("read-only", "hard link"):
        assert target.read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_out_never_overwrites_an_input_of_the_command(tmp_path, fisher_file, policy_file):
    fisher_copy, policy_copy = tmp_path / "f.json", tmp_path / "p.json"
    fisher_copy.write_bytes(fisher_file.read_bytes())
    policy_copy.write_bytes(policy_file.read_bytes())
    (tmp_path / "alias.json").symlink_to("f.json")
    cases = [
        ["plan", "mcunet-5fps", "--fisher", fisher_copy, "--input-shape", "1,3,32,32",
         "--out", fisher_copy],
        ["plan", "mcunet-5fps", "--fisher", tmp_path / "alias.json", "--input-shape",
         "1,3,32,32", "--out", fisher_copy],  # another name for the same file
        ["export", policy_copy, "--out", policy_copy],
        ["profile", "mcunet-5fps", "--input-shape", "1,3,32,32", "--update", policy_copy,
         "--out", policy_copy],
    ]
    for args in cases:
        assert_one_line_error(run(*args), "input of this command")
    assert fisher_copy.read_bytes() == fisher_file.read_bytes()
    assert policy_copy.read_bytes() == policy_file.read_bytes()


def test_inputs_are_only_recorded_inside_a_command(tmp_path):
    path = tmp_path / "in.json"
    path.write_text("{}")
    note_input(path)  # outside a command: nothing to protect
    write_text_atomic(path, "[]")
    with command_io(), pytest.raises(SpecError, match="input of this command"):
        note_input(path)
        write_text_atomic(path, "{}")
    assert path.read_text() == "[]"


# ------------------------------------------------------------------ 2. files never name code

@pytest.mark.parametrize("name", ["os:abort", "sys:exit", "os:fork", "hostile_models:twice",
                                  "never_imported_module_xyz:f", "mcunet-5fps:x"])
def test_a_policy_naming_an_import_path_is_refused_without_importing(
        workdir, policy_file, monkeypatch, name):
    policy = json.loads(policy_file.read_text())
    policy["model"]["name"] = name
    path = workdir / "evil.json"
    path.write_text(json.dumps(policy))
    imported = []
    real_import_module = importlib.import_module
    real_import = builtins.__import__
    modules_before = set(sys.modules)

    def spy_import_module(module, *args, **kwargs):
        imported.append(module)
        return real_import_module(module, *args, **kwargs)

    def spy_import(module, *args, **kwargs):
        if module.split(".")[0] in ("hostile_models", "never_imported_module_xyz"):
            imported.append(module)
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", spy_import_module)
    monkeypatch.setattr(builtins, "__import__", spy_import)
    result = run("export", path)
    assert_one_line_error(result, "not a zoo model")
    assert not [m for m in imported if not m.startswith(("ttplan", "torch", "typer"))]
    assert not {"hostile_models", "never_imported_module_xyz"} & (set(sys.modules) - modules_before)


def test_the_working_directory_is_searched_only_for_command_line_models(workdir):
    from ttplan.costmodel.zoo import command_line_models, load_model

    before = list(sys.path)
    with pytest.raises(Exception, match="hostile_models"):
        load_model("hostile_models:twice")  # Python API: sys.path only
    with command_line_models():
        model, _ = load_model("hostile_models:twice")
    assert isinstance(model, torch.nn.Module) and sys.path == before
    assert run("profile", "hostile_models:twice", "--input-shape", SMALL).exit_code == 0
    assert sys.path == before


# ------------------------------------------------------------------ 3. hostile values

HUGE = "9" * 5000
NUMERIC_OPTIONS = [
    ["profile", "mcunet-5fps", "--batch-size"],
    ["profile", "mcunet-5fps", "--input-shape"],
    ["profile", "mcunet-5fps", "--weight-bits"],
    ["profile", "mcunet-5fps", "--update", "last-layers:{}"],
    ["plan", "mcunet-5fps", "--method", "sparseupdate", "--memory"],
    ["plan", "mcunet-5fps", "--method", "sparseupdate", "--memory", "1MB", "--compute"],
    ["plan", "mcunet-5fps", "--method", "lastlayer", "--seed"],
    ["fisher", "mcunet-5fps", "--synthetic", "--samples"],
    ["fisher", "mcunet-5fps", "--synthetic", "--seed"],
    ["fisher", "mcunet-5fps", "--synthetic", "--layers"],
    ["fisher", "mcunet-5fps", "--synthetic", "--batch-size"],
    ["sweep", "mcunet-5fps", "--k"],
    ["compare", "mcunet-5fps", "--memory"],
]
HOSTILE_NUMBERS = [HUGE, "1" + "0" * 40, "١٢", "１２", "nan", "inf", "-1", "1e3", "1_000", "",
                   "6-1", "0x10"]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
@pytest.mark.parametrize("option", NUMERIC_OPTIONS, ids=lambda o: " ".join(o[2:]))
def test_hostile_numbers_in_every_option(option, value):
    args = list(option)
    if "{}" in args[-1]:
        args[-1] = args[-1].format(value)
    else:
        args.append(value)
    assert_one_line_error(run(*args))


def _json_variants(good: dict) -> dict[str, str]:
    """Hostile texts of a file whose valid content is `good`."""
    text = json.dumps(good)
    return {
        "huge int": json.dumps({**good, "version": 1}).replace('"version": 1', '"version": ' + HUGE),
        "64-bit overflow": text.replace('"version": ' + str(good["version"]),
                                        '"version": 18446744073709551616'),
        "deep": "[" * 100_000 + "]" * 100_000,
        "NaN": text.replace('"version": ' + str(good["version"]), '"version": NaN'),
        "Infinity": text.replace('"version": ' + str(good["version"]), '"version": 1e999'),
        "non-ASCII digits": text.replace('"version": ' + str(good["version"]), '"version": ١'),
        "float version": json.dumps({**good, "version": float(good["version"])}),
        "bool version": json.dumps({**good, "version": True}),
        "not UTF-8": "\udcff",
        "truncated": text[: len(text) // 2],
        "a list": "[]",
    }


@pytest.mark.parametrize("variant", ["huge int", "64-bit overflow", "deep", "NaN", "Infinity",
                                     "non-ASCII digits", "float version", "bool version",
                                     "not UTF-8", "truncated", "a list"])
def test_hostile_json_files(tmp_path, fisher_file, policy_file, variant):
    fisher_text = _json_variants(json.loads(fisher_file.read_text()))[variant]
    policy_text = _json_variants(json.loads(policy_file.read_text()))[variant]
    bad_fisher, bad_policy = tmp_path / "f.json", tmp_path / "p.json"
    for path, text in ((bad_fisher, fisher_text), (bad_policy, policy_text)):
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert_one_line_error(run("plan", "mcunet-5fps", "--fisher", bad_fisher, "--input-shape",
                              "1,3,32,32"))
    assert_one_line_error(run("compare", "mcunet-5fps", "--fisher", bad_fisher, "--input-shape",
                              "1,3,32,32"))
    assert_one_line_error(run("profile", "mcunet-5fps", "--input-shape", "1,3,32,32",
                              "--update", bad_policy))
    assert_one_line_error(run("export", bad_policy))


@pytest.mark.parametrize("value", [1e308, 1e101, -1.0])
def test_fisher_values_beyond_any_probe_are_refused(tmp_path, fisher_file, value):
    d = json.loads(fisher_file.read_text())
    d["layers"][0]["channel_fisher"] = [value] * len(d["layers"][0]["channel_fisher"])
    d["layers"][0]["potential"] = math.fsum(d["layers"][0]["channel_fisher"]) \
        if value < 1e300 else 1e308
    path = tmp_path / "f.json"
    path.write_text(json.dumps(d))
    assert_one_line_error(run("plan", "mcunet-5fps", "--fisher", path, "--input-shape",
                              "1,3,32,32"), "channel_fisher")


def test_endless_or_oversized_files_are_refused(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: 65 MiB of zeros
    for path, needle in (("/dev/zero", "not a regular file"), (big, "larger than")):
        assert_one_line_error(run("plan", "mcunet-5fps", "--fisher", path, "--input-shape",
                                  "1,3,32,32"), needle)


@pytest.mark.parametrize("args,needle", [
    (["profile", "mcunet-5fps", "--nosuch"], "no such option"),
    (["profile"], "missing argument"),
    (["nosuch-command"], "no such command"),
    (["fisher", "mcunet-5fps", "--synthetic", "--progress", "maybe"], "extra argument"),
    (["profile", "mcunet-5fps", "--batch-size", "x"], "--batch-size"),
])
def test_usage_errors_are_one_line(args, needle):
    assert_one_line_error(run(*args), needle)


# `python -m ttplan` as a process, for the tests below that are about the process (its stdout
# file descriptor, what reaches it, its thread count). Each run is a copy forked from the
# suite's fork server (tests/fork_server.py: a child that imported torch once, never ttplan),
# which points its fd 1 and fd 2 where that run's would go, changes to its working directory
# and runs `ttplan` as `__main__` (runpy, as `-m` does). The copy ends through the
# interpreter's own exit, so a stdout that cannot be flushed at exit fails as it would. A run
# started with fd 1 closed gets what Python gives such a process (fd 1 closed, `sys.stdout` and
# `sys.__stdout__` None); a run with two threads sets torch's intra-op thread count to 2 before
# ttplan starts, as OMP_NUM_THREADS=2 does when torch loads (libgomp read OMP_NUM_THREADS=1
# once in the server, so the copy sets the count itself and checks it took).
ENTRY_POINT = r"""
import os, runpy, sys
import torch
os.chdir(run["cwd"])
sys.path[0] = run["cwd"]  # `-m` puts the working directory first
if run["stdout"] is None:  # started with fd 1 closed
    os.close(1)
    sys.stdout = sys.__stdout__ = None
else:
    os.dup2(os.open(run["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
os.dup2(os.open(run["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
os.environ["OMP_NUM_THREADS"] = str(run["threads"])
torch.set_num_threads(run["threads"])
if torch.get_num_threads() != run["threads"]:
    sys.stderr.write("the copy runs on %d threads\n" % torch.get_num_threads())
    os._exit(99)
sys.argv = ["-m", *run["args"]]
runpy.run_module("ttplan", run_name="__main__", alter_sys=True)
sys.exit(0)
"""


@pytest.fixture(scope="module")
def entry_point_runs(tmp_path_factory, fork_server):
    """{name: (exit status, stdout, stderr)} of the `python -m ttplan` runs forked from the
    fork server, and the files the one- and two-thread `fisher` runs wrote."""
    folder = tmp_path_factory.mktemp("entry_point")
    models = folder / "models"
    models.mkdir()
    (models / "hostile_models.py").write_text(textwrap.dedent(USER_MODELS))
    fisher = ["fisher", "mcunet-5fps", "--synthetic", "--samples", "6", "--batch-size", "3",
              "--input-shape", "1,3,64,64", "--out"]
    closed = object()
    runs = {  # name: (args, working directory, stdout, threads)
        "sweep to a full disk": (["sweep", "mcunet-5fps", "--k", "1"], folder, "/dev/full", 1),
        "sweep with stdout closed": (["sweep", "mcunet-5fps", "--k", "1"], folder, closed, 1),
        "noisy model": (["profile", "hostile_models:noisy", "--input-shape", SMALL,
                         "--format", "json"], models, None, 1),
        "fisher on one thread": (fisher + [str(folder / "fisher1.json")], folder, None, 1),
        "fisher on two threads": (fisher + [str(folder / "fisher2.json")], folder, None, 2),
    }
    results = {}
    for i, (name, (args, cwd, stdout, threads)) in enumerate(runs.items()):
        run = {"args": args, "cwd": str(cwd), "threads": threads,
               "stdout": None if stdout is closed else stdout or str(folder / f"{i}.out"),
               "stderr": str(folder / f"{i}.err")}
        code = fork_server.run(ENTRY_POINT, run)
        out = "" if run["stdout"] in (None, "/dev/full") else Path(run["stdout"]).read_text()
        results[name] = (code, out, Path(run["stderr"]).read_text())
    for threads in (1, 2):
        results[f"fisher file, {threads} thread(s)"] = (folder / f"fisher{threads}.json").read_bytes()
    return results


def test_usage_errors_and_broken_stdout_through_the_real_entry_point(tmp_path, entry_point_runs):
    python = [sys.executable, "-m", "ttplan"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(python + ["profile", "--nosuch"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error:")
    code, _, stderr = entry_point_runs["sweep to a full disk"]  # stdout is /dev/full
    assert code == 2 and stderr.strip().splitlines() == [
        "error: cannot write to stdout: No space left on device"]
    code, _, stderr = entry_point_runs["sweep with stdout closed"]  # fd 1 closed
    assert code == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error:")


def test_ctrl_c_while_importing_is_one_line(monkeypatch, capsys):
    from ttplan.__main__ import main

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "ttplan.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: interrupted\n"


def _npz(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy_header(shape, dtype="<f4") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize("case,needle", [
    ("bomb", "claims"), ("mislabelled", "archive holds"), ("object", "not plain numbers"),
    ("labels uint64", "labels"), ("labels float", "labels"), ("not a zip", "not an .npz"),
])
def test_hostile_npz_files_are_checked_from_their_headers(tmp_path, workdir, case, needle):
    path = tmp_path / "data.npz"
    y = np.array([0, 1, 0, 1])
    if case == "bomb":
        _npz(path, {"x.npy": _npy_header((10**9, 3, 128, 128)), "y.npy": _npy_header((10**9,), "<i8")})
    elif case == "mislabelled":
        _npz(path, {"x.npy": _npy_header((4, 3, 16, 16)) + b"\0" * 100,
                    "y.npy": _npy_header((4,), "<i8") + y.astype("<i8").tobytes()})
    elif case == "object":
        _npz(path, {"x.npy": _npy_header((4,), "|O") + b"\0" * 32,
                    "y.npy": _npy_header((4,), "<i8") + y.astype("<i8").tobytes()})
    elif case == "labels uint64":
        np.savez(path, x=np.zeros((4, 3, 16, 16), np.float32),
                 y=np.array([0, 1, 2**64 - 1, 1], dtype=np.uint64))
    elif case == "labels float":
        np.savez(path, x=np.zeros((4, 3, 16, 16), np.float32), y=np.array([0, 1, 1e30, 1]))
    else:
        path.write_bytes(b"PK\x03\x04 not really")
    assert_one_line_error(run("fisher", "hostile_models:twice", "--data", path,
                              "--input-shape", SMALL), needle)


def test_decompression_bombs_are_refused_before_decoding(workdir, monkeypatch):
    for label in ("a", "b"):
        (workdir / "imgs" / label).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(workdir / "imgs" / label / "1.png")
    monkeypatch.setattr(support_data, "MAX_IMAGE_PIXELS", 1000)  # a 40x40 image is 1,600
    assert_one_line_error(run("fisher", "hostile_models:twice", "--data", workdir / "imgs",
                              "--input-shape", SMALL), "pixels")


@pytest.mark.parametrize("args,needle", [
    (["profile", "hostile_models:scripted", "--input-shape", SMALL], "TorchScript"),
    (["fisher", "hostile_models:nan_net", "--synthetic", "--samples", "4", "--input-shape", SMALL,
      "--out", "nan.json"], "nan"),
    # (issue 17: a non-image input is probed now; this model does not take token ids)
    (["fisher", "hostile_models:flat", "--synthetic", "--input", "int64[1,10]"],
     "fails on inputs int64[1,10]"),
    (["fisher", "hostile_models:flat", "--synthetic", "--input", "a:int64[1,10]",
      "--input", "b:int64[1,10]"], "does not take a:int64[1,10] b:int64[1,10]"),
    (["fisher", "hostile_models:twice", "--synthetic", "--input-shape", "1,4,16,16"], "fails"),
    (["profile", "mcunet-5fps", "--batch-size", "2000000"], "elements"),
    (["profile", "hostile_models:twice", "--weights", "/dev/zero", "--input-shape", SMALL],
     "regular file"),
])
def test_models_and_inputs_the_tools_cannot_use(workdir, args, needle):
    assert_one_line_error(run(*args), needle)
    assert not (workdir / "nan.json").exists()


# ------------------------------------------------------------------ 4. no silent wrong answers

def test_plan_warns_once_per_uncosted_kind(workdir):
    result = run("plan", "hostile_models:erf", "--method", "lastlayer", "--input-shape", SMALL)
    assert result.exit_code == 0, result.output
    warnings = [l for l in result.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "erf" in warnings[0] and "derived" in warnings[0]


def test_only_the_result_reaches_stdout(entry_point_runs):
    code, stdout, stderr = entry_point_runs["noisy model"]  # python -m ttplan profile ...
    assert code == 0, stderr
    assert json.loads(stdout)["input_shape"] == [1, 3, 16, 16]
    assert "PRINTED BY THE MODEL" in stderr and "WRITTEN TO FD 1" in stderr


def test_a_fisher_file_of_other_weights_is_refused(workdir):
    from ttplan.costmodel.zoo import build_zoo_model

    model = build_zoo_model("mcunet-5fps")
    x, y = synthetic_data(4, 2, (3, 32, 32), 0)
    result = fisher_information(model, default_candidate_layers(model), x, y)
    with torch.no_grad():
        model.blocks[13].project[0].weight.mul_(2)
    with pytest.raises(PolicyError, match="other weights") as info:
        plan(model, fisher=result, inputs=(1, 3, 32, 32), memory_bytes="2MB")
    assert result.weights in str(info.value)

    torch.save(model.state_dict(), workdir / "w.pt")
    assert run("fisher", "mcunet-5fps", "--synthetic", "--samples", "4", "--input-shape",
               "1,3,32,32", "--out", "f.json").exit_code == 0
    assert load_fisher("f.json", None).weights == result.weights
    assert_one_line_error(run("plan", "mcunet-5fps", "--fisher", "f.json", "--weights", "w.pt",
                              "--input-shape", "1,3,32,32"), "other weights")


# ------------------------------------------------------------------ 5. determinism

def test_fisher_files_are_byte_identical_across_thread_counts(entry_point_runs):
    for threads in ("one thread", "two threads"):  # OMP_NUM_THREADS=1, then 2
        code, _, stderr = entry_point_runs[f"fisher on {threads}"]
        assert code == 0, stderr
    outputs = [entry_point_runs[f"fisher file, {n} thread(s)"] for n in (1, 2)]
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------ 6. streamed samples

@pytest.mark.parametrize("chw", [(3, 8, 8), (1, 3, 5), (2, 4, 2)])
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_streamed_synthetic_samples_equal_the_whole_tensor(chw, batch):
    whole, labels = synthetic_data(7, 3, chw, 11)
    stream = SyntheticSupport(7, 3, chw, 11)
    assert torch.equal(torch.cat(list(stream.batches(batch))), whole)
    assert torch.equal(stream.labels, labels)


def test_streamed_npz_equals_loading_it_whole(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(9, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2] * 3)
    np.savez_compressed(tmp_path / "d.npz", x=pixels, y=labels)
    x, y, _ = load_support(str(tmp_path / "d.npz"), (3, 8, 8), 5, 0, False)
    keep = support_data.balanced_subset(labels.tolist(), 5)
    mean = torch.tensor(support_data.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(support_data.IMAGENET_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(pixels[keep]).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.equal(x, expected) and y.tolist() == labels[keep].tolist()


# ------------------------------------------------------------------ 7. a module called twice

@pytest.mark.parametrize("method", ["sparseupdate", "lastlayer", "fulltrain"])
def test_a_module_called_twice_plans_with_every_method(workdir, method):
    for seed in range(3):
        result = run("plan", "hostile_models:twice", "--method", method, "--memory", "60kB",
                     "--input-shape", SMALL, "--seed", seed, "--format", "json")
        assert result.exit_code == 0, result.output
        names = [layer["name"] for layer in json.loads(result.stdout)["layers"]]
        assert not [n for n in names if "#" in n]
