"""What the benchmark scripts share: timing, plain-text tables and running the CLI."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def median_time(fn, repeats: int) -> float:
    """The median wall time of `repeats` calls of `fn`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_header(header: str) -> None:
    """A table's header line and a rule under it."""
    print(header)
    print("-" * len(header))


def plain_forward_backward(model, x, clock=time.perf_counter) -> float:
    """Seconds on `clock` of one forward and backward per sample of `x` with every parameter
    trainable: what the Fisher probe costs at the least."""
    model.eval()  # the probe runs in eval mode too (BatchNorm on a batch of one)
    for p in model.parameters():
        p.requires_grad_(True)
    start = clock()
    for i in range(len(x)):
        model(x[i:i + 1]).square().sum().backward()
    elapsed = clock() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def run_ttplan(*args: str, pythonpath: str | None = None) -> str:
    """The stdout of `python -m ttplan ARGS` on one thread (with `pythonpath` before the
    inherited PYTHONPATH); a failure ends the benchmark with the command's last error."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        inherited = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, inherited]))
    done = subprocess.run([sys.executable, "-m", "ttplan", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"ttplan {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout
