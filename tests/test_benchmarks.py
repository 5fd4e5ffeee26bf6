"""The benchmark scripts run against the installed package: each answers --help when started
as `python benchmarks/NAME.py` from outside the checkout (a script that put the checkout first
on sys.path would import its ttplan/ folder instead of the installed namespace).

All scripts run in one child process (one torch import instead of one per script): each as
`__main__` with its own argv, with sys.path[0] its folder (as `python benchmarks/NAME.py` sets
it) and the working directory outside the checkout; between scripts sys.path is restored and
every module loaded from the checkout or the installed ttplan is dropped, so each script
imports ttplan afresh through its own sys.path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py")
                 if p.name not in ("common.py", "unseen_models.py"))  # modules, not scripts

RUN_EACH = r"""
import contextlib, io, json, os, runpy, sys, traceback
folder, root, scripts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base_path, results = list(sys.path), {}


def from_checkout_or_ttplan(name, module):
    if name == "ttplan" or name.startswith("ttplan.") or name in ("tests", "common") \
            or name.startswith("tests."):
        return True
    where = getattr(module, "__file__", None) or ""
    return where.startswith(root)


for script in scripts:
    before = set(sys.modules)
    sys.path[:] = [folder] + base_path[1:]
    sys.argv = [os.path.join(folder, script), "--help"]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[script] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    for name in [n for n in sys.modules if n not in before
                 and from_checkout_or_ttplan(n, sys.modules[n])]:
        del sys.modules[name]
sys.path[:] = base_path
sys.__stdout__.write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("outside_checkout")
    done = subprocess.run([sys.executable, "-c", RUN_EACH, str(BENCHMARKS),
                           str(BENCHMARKS.parent), json.dumps(SCRIPTS)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script, help_runs):
    done = help_runs[script]
    assert done["code"] == 0, done["stderr"].strip().splitlines()[-1:]
    assert "usage:" in done["stdout"]
