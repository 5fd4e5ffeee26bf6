"""The benchmark scripts run against the installed package: each answers --help when started
as `python benchmarks/NAME.py` from outside the checkout (a script that put the checkout first
on sys.path would import its ttplan/ folder instead of the installed namespace).

One child process imports the third-party libraries the scripts share (torch, pandas) once and
then forks a fresh process per script, which sets itself up as `python benchmarks/NAME.py
--help` would (sys.argv, sys.path[0] the script's folder, the working directory outside the
checkout, `__main__`) and imports ttplan and the checkout's modules itself. Nothing is ever
unloaded (dropping torch's modules and importing torch again crashes it): each script starts
from a copy of a process that has never seen ttplan. One torch import instead of thirteen."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py")
                 if p.name not in ("common.py", "unseen_models.py"))  # modules, not scripts

FORK_EACH = r"""
import json, os, runpy, sys, traceback
import torch, pandas  # shared by the scripts, imported once before forking
folder, scripts, results = sys.argv[1], json.loads(sys.argv[2]), {}
assert not any(n == "ttplan" or n.startswith("ttplan.") for n in sys.modules)
for script in scripts:
    out, err = f"{script}.out", f"{script}.err"
    pid = os.fork()
    if pid == 0:  # the child: as if started by `python FOLDER/SCRIPT --help`
        code = 1
        try:
            for fd, name in ((1, out), (2, err)):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = [os.path.join(folder, script), "--help"]
            sys.path[0] = folder
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(out) as o, open(err) as e:
        results[script] = {"code": os.waitstatus_to_exitcode(status), "stdout": o.read(),
                           "stderr": e.read()}
sys.__stdout__.write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("outside_checkout")
    done = subprocess.run([sys.executable, "-c", FORK_EACH, str(BENCHMARKS), json.dumps(SCRIPTS)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script, help_runs):
    done = help_runs[script]
    assert done["code"] == 0, done["stderr"].strip().splitlines()[-1:]
    assert "usage:" in done["stdout"]
