"""The benchmark scripts run against the installed package: each answers --help when started
as `python benchmarks/NAME.py` from outside the checkout (a script that put the checkout first
on sys.path would import its ttplan/ folder instead of the installed namespace).

Each run is a copy forked from the suite's fork server (tests/fork_server.py: one child that
imported the third-party libraries the scripts share, torch and pandas, and never ttplan),
which sets itself up as `python benchmarks/NAME.py --help` would (sys.argv, sys.path[0] the
script's folder, the working directory outside the checkout, `__main__`) and imports ttplan and
the checkout's modules itself. Nothing is ever unloaded (dropping torch's modules and importing
torch again crashes it): each script starts from a copy of a process that has never seen
ttplan. One torch import for the suite instead of thirteen."""

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py")
                 if p.name not in ("common.py", "unseen_models.py",
                                   "more_unseen_models.py"))  # modules, not scripts

HELP = r"""
import os, runpy, sys, traceback
code = 1
try:  # as if started by `python FOLDER/SCRIPT --help` in the folder run["cwd"]
    os.chdir(run["cwd"])
    for fd, name in ((1, run["stdout"]), (2, run["stderr"])):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv = [os.path.join(run["folder"], run["script"]), "--help"]
    sys.path[0] = run["folder"]
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
"""


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory, fork_server):
    cwd = tmp_path_factory.mktemp("outside_checkout")
    results = {}
    for script in SCRIPTS:
        run = {"cwd": str(cwd), "folder": str(BENCHMARKS), "script": script,
               "stdout": str(cwd / f"{script}.out"), "stderr": str(cwd / f"{script}.err")}
        code = fork_server.run(HELP, run)
        results[script] = {"code": code, "stdout": Path(run["stdout"]).read_text(),
                           "stderr": Path(run["stderr"]).read_text()}
    return results


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script, help_runs):
    done = help_runs[script]
    assert done["code"] == 0, done["stderr"].strip().splitlines()[-1:]
    assert "usage:" in done["stdout"]
