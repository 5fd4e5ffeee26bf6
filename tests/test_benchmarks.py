"""The benchmark scripts run against the installed package: each answers --help when started
as `python benchmarks/NAME.py` from outside the checkout (a script that put the checkout first
on sys.path would import its ttplan/ folder instead of the installed namespace)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py")
                 if p.name not in ("common.py", "unseen_models.py"))  # modules, not scripts


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert "usage:" in done.stdout
