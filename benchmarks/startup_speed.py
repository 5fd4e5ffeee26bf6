"""What a `ttplan` command costs as a whole process, start-up included.  (A script, not a test.)

    python benchmarks/startup_speed.py [--pairs 5]

Each command runs as a fresh process, `--pairs` times, the compared commands interleaved (one
of each per round, so a change in machine load hits both alike). Measured: the process's CPU
time (user + system, from `resource.getrusage(RUSAGE_CHILDREN)` around the child) and its
wall time; printed are medians, and for the profile the median of the per-round ratios.

* `ttplan --help`, `ttplan profile --help` and a usage error (`ttplan profile --bogus`), and
  whether they imported torch or pandas (run through `python -c`, checking `sys.modules`);
* `ttplan profile mcunet-5fps` against fvcore's `FlopCountAnalysis` on the same model as a
  whole process (import torch and fvcore, build the model, count: forward FLOPs only), and
  against a plain script that builds the model and runs one forward and backward.

OMP_NUM_THREADS=1 for every child, as the tests and the other benchmarks run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

MODEL = "mcunet-5fps"
SHAPE = "(1, 3, 128, 128)"

IMPORTS_AFTER = """
import sys
sys.argv = {argv!r}
from ttplan.__main__ import main
try:
    main()
except SystemExit:
    pass
heavy = [m for m in ("torch", "pandas", "scipy", "matplotlib", "networkx") if m in sys.modules]
sys.__stderr__.write("IMPORTED " + ",".join(heavy) + "\\n")
"""

FVCORE = f"""
import logging, warnings
import torch
from fvcore.nn import FlopCountAnalysis
from ttplan.costmodel.zoo import build_zoo_model
logging.getLogger("fvcore").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
model = build_zoo_model({MODEL!r}).eval()
analysis = FlopCountAnalysis(model, torch.zeros{SHAPE})
analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
print(analysis.total())
"""

PLAIN = f"""
import torch
from ttplan.costmodel.zoo import build_zoo_model
model = build_zoo_model({MODEL!r}).eval()
model(torch.zeros{SHAPE}).sum().backward()
"""


def ttplan_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ttplan", *args]


COMMANDS = {
    "ttplan --help": ttplan_command("--help"),
    "ttplan profile --help": ttplan_command("profile", "--help"),
    "usage error": ttplan_command("profile", MODEL, "--bogus"),
    f"ttplan profile {MODEL}": ttplan_command("profile", MODEL),
    "fvcore FlopCountAnalysis": [sys.executable, "-c", FVCORE],
    "plain forward+backward": [sys.executable, "-c", PLAIN],
}


def run(argv: list[str]) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, stderr) of one child process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stderr


def imported_by(args: list[str]) -> str:
    code = IMPORTS_AFTER.format(argv=["ttplan", *args])
    _, _, err = run([sys.executable, "-c", code])
    line = [ln for ln in err.splitlines() if ln.startswith("IMPORTED")]
    return line[-1].removeprefix("IMPORTED ").strip() or "none of them" if line else "?"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {load()}; {os.cpu_count()} CPUs; {args.pairs} rounds, "
          "commands interleaved\n")
    cpu = {name: [] for name in COMMANDS}
    wall = {name: [] for name in COMMANDS}
    for _ in range(args.pairs):
        for name, argv in COMMANDS.items():
            c, w, _ = run(argv)
            cpu[name].append(c)
            wall[name].append(w)
    header = f"{'command':<28}{'CPU s (median)':>16}{'wall s':>9}"
    print(header)
    print("-" * len(header))
    for name in COMMANDS:
        print(f"{name:<28}{statistics.median(cpu[name]):>16.3f}"
              f"{statistics.median(wall[name]):>9.3f}")
    profile = cpu[f"ttplan profile {MODEL}"]
    for other in ("fvcore FlopCountAnalysis", "plain forward+backward"):
        ratios = [a / b for a, b in zip(profile, cpu[other])]
        print(f"\nttplan profile {MODEL} / {other}, process CPU: median of {len(ratios)} "
              f"rounds {statistics.median(ratios):.2f} (rounds: "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print("\nimported (of torch, pandas, scipy, matplotlib, networkx):")
    for label, argv in (("--help", ["--help"]), ("profile --help", ["profile", "--help"]),
                        ("usage error", ["profile", MODEL, "--bogus"]),
                        (f"profile {MODEL}", ["profile", MODEL])):
        print(f"  {label:<24}{imported_by(argv)}")
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
