"""Installed, the project is one namespace: `ttplan` and its subpackages, nothing else."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, pathlib, sys
root = pathlib.Path(sys.argv[1])
import ttplan.costmodel, ttplan.planner, ttplan.devices, ttplan.reports, ttplan.cli
for generic in ("costmodel", "planner", "devices", "reports"):
    spec = importlib.util.find_spec(generic)
    assert spec is None or root not in pathlib.Path(spec.origin).parents, generic
print("ok")
"""


def test_only_ttplan_is_installed_from_outside_the_repository(tmp_path):
    # From another directory, so the checkout is not on sys.path.
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ttplan", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "profile" in result.stdout
