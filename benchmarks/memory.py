"""Peak resident memory of `ttplan fisher` and `ttplan profile` as the work grows.  (A script.)

    python benchmarks/memory.py [--model mcunet-5fps] [--input-size 64] [--samples 100,10000]
                                [--batches 1,100]

Each measurement is one `ttplan` command in its own subprocess (so one run's memory cannot
leak into the next), and its peak resident set is the child's `ru_maxrss` from
`resource.getrusage(RUSAGE_CHILDREN)` after it exited (on Linux, in KiB). Prints:

1. `fisher MODEL --synthetic --samples N` for each N (default 100 and 10,000, 5 classes, on
   --input-size x --input-size images): peak RSS and the ratio to the smallest N. The samples
   are generated and read one batch at a time, so the ratio should stay near 1 (target < 2).
2. `profile MODEL --batch-size B` for each B (default 1 and 100, 128x128): peak RSS and the
   ratio to the smallest B. Tracing drops each intermediate after its last reader, as the
   forward itself does, so the ratio stays well under the target of 2.

Both run with OMP_NUM_THREADS=1; times are printed for orientation only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_kib(args: list[str]) -> tuple[int, float]:
    """(peak resident KiB, wall seconds) of `python -m ttplan ARGS` in a fresh subprocess."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "if done.returncode: sys.exit(done.returncode)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    start = time.perf_counter()
    # A wrapper process per run, so RUSAGE_CHILDREN holds this one command only.
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "ttplan", *args],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"ttplan {' '.join(args)} failed: {done.stderr.strip()}")
    return int(done.stdout.strip()), time.perf_counter() - start


def table(title: str, rows: list[tuple[str, int, float]]) -> None:
    print(title)
    base = rows[0][1]
    print(f"  {'run':<34} {'peak RSS':>12} {'ratio':>7} {'time':>8}")
    for label, kib, seconds in rows:
        print(f"  {label:<34} {kib / 1024:>9.1f} MiB {kib / base:>7.2f} {seconds:>7.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mcunet-5fps")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--samples", default="100,10000")
    parser.add_argument("--batches", default="1,100")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        rows = []
        for n in (int(v) for v in args.samples.split(",")):
            out = os.path.join(scratch, f"fisher{n}.json")
            kib, seconds = peak_rss_kib(["fisher", args.model, "--synthetic", "--samples", str(n),
                                         "--input-shape", f"1,3,{args.input_size},{args.input_size}",
                                         "--out", out])
            rows.append((f"fisher --samples {n}", kib, seconds))
        table(f"fisher {args.model}, synthetic {args.input_size}x{args.input_size} images:", rows)

    rows = []
    for b in (int(v) for v in args.batches.split(",")):
        kib, seconds = peak_rss_kib(["profile", args.model, "--batch-size", str(b),
                                     "--update", "all", "--format", "json"])
        rows.append((f"profile --batch-size {b}", kib, seconds))
    table(f"profile {args.model}, 128x128:", rows)


if __name__ == "__main__":
    main()
