"""`ttplan --help`, a command's --help and a usage error import neither torch nor pandas: the
commands import what they need when they run (ttplan/cli), so these answer in a fraction of a
second. Checked on what the process imported, not on time (benchmarks/startup_speed.py times it).
"""

import subprocess
import sys

import pytest

CHECK = """
import sys
sys.argv = {argv!r}
from ttplan.__main__ import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("torch", "pandas", "scipy", "matplotlib", "networkx") if m in sys.modules]
sys.__stderr__.write("EXIT %s IMPORTED %s\\n" % (code, ",".join(heavy)))
"""


@pytest.mark.quick
@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["profile", "--help"], 0),
    (["fisher", "--help"], 0),
    (["predict", "--help"], 0),
    (["profile", "mcunet-5fps", "--bogus"], 2),
    (["plan", "mcunet-5fps", "--seed", "x"], 2),
    (["profile", "mcunet-5fps", "--format", "xml"], 2),  # a choice, checked before any work
])
def test_help_and_usage_errors_import_no_heavy_library(args, code):
    done = subprocess.run([sys.executable, "-c", CHECK.format(argv=["ttplan", *args])],
                          capture_output=True, text=True, timeout=120)
    last = done.stderr.splitlines()[-1]
    assert last == f"EXIT {code} IMPORTED ", last


@pytest.mark.parametrize("args", [
    ["profile", "mcunet-5fps", "--format", "json"],
    # the probe compared with plain forwards and backwards (benchmarks/fisher_speed.py)
    ["fisher", "mcunet-5fps", "--synthetic", "--samples", "2", "--input-shape", "1,3,32,32"],
], ids=["profile", "fisher"])
def test_profile_and_fisher_import_neither_pandas_nor_networkx(args, tmp_path):
    done = subprocess.run([sys.executable, "-c", CHECK.format(argv=["ttplan", *args])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stderr.splitlines()[-1] == "EXIT 0 IMPORTED torch"
