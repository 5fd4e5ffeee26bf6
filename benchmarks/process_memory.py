"""Predicted against measured peak resident memory of `ttplan train` runs.  (A script.)

    PYTHONPATH=benchmarks python benchmarks/process_memory.py [--models resnet_basic,...]
        [--input-shape 1,3,96,96] [--iterations 5] [--repeats 1] [--memory 1MB] [--compute 15%]

For each model of benchmarks/unseen_models.py (none of them is in any calibration) and each
configuration — `--update all`, `bias-only`, `last-blocks:2` and a TinyTrain policy (`ttplan
fisher --synthetic`, then `ttplan plan --fisher ... --memory ... --compute ...`) — one
`ttplan train ... --synthetic --format json` in its own process (resident memory is per
process), and from its JSON `measured.peak_rss_bytes` (the process's ru_maxrss) beside
`predicted.peak_rss_bytes` (devices/process.py: the host's runtime baseline, measured by the
run itself in two child processes after training, + the support set's share + the pytorch
convention's peak of the step). Prints one row per run, the largest absolute error (target
10 %), and per model whether the measured order of the configurations is the predicted one.

With OMP_NUM_THREADS=1. The iterations only lengthen the run (the peak is reached in the first
pass); a few keep the benchmark short.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 2**20
UPDATES = ("all", "bias-only", "last-blocks:2", "policy")


def ttplan(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "ttplan", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode:
        raise SystemExit(f"ttplan {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def policy_file(model: str, shape: str, memory: str, compute: str, workdir: Path) -> Path:
    fisher = workdir / f"{model}.fisher.json"
    policy = workdir / f"{model}.policy.json"
    ttplan("fisher", f"unseen_models:{model}", "--synthetic", "--input-shape", shape,
           "--out", str(fisher))
    ttplan("plan", f"unseen_models:{model}", "--fisher", str(fisher), "--memory", memory,
           "--compute", compute, "--input-shape", shape, "--out", str(policy))
    return policy


def run(model: str, update: str, shape: str, iterations: int, policy: Path | None) -> dict:
    spec = ["--policy", str(policy)] if update == "policy" else ["--update", update]
    data = json.loads(ttplan("train", f"unseen_models:{model}", *spec, "--synthetic",
                             "--input-shape", shape, "--iterations", str(iterations),
                             "--format", "json"))
    measured = data["measured"]["peak_rss_bytes"]
    predicted = data["predicted"]["peak_rss_bytes"]
    parts = data["predicted"]["process_memory"]
    return {"model": model, "update": update, "measured": measured, "predicted": predicted,
            "error_pct": 100.0 * (predicted - measured) / measured,
            "runtime": parts["runtime_bytes"],
            "support": round(parts["support_copies"] * parts["support_bytes"]),
            "training": parts["training_bytes"]}


def order_agreement(rows: list[dict]) -> tuple[int, int, int]:
    """(concordant, discordant, tied) pairs of configurations: measured vs predicted order."""
    agree = disagree = tied = 0
    for a, b in itertools.combinations(rows, 2):
        m, p = a["measured"] - b["measured"], a["training"] - b["training"]
        if m == 0 or p == 0:
            tied += 1
        elif (m > 0) == (p > 0):
            agree += 1
        else:
            disagree += 1
    return agree, disagree, tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet_basic,separable_hswish,small_vit")
    parser.add_argument("--input-shape", default="1,3,96,96")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory", default="1MB")
    parser.add_argument("--compute", default="15%")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
          f" on {os.cpu_count()} cores; input {args.input_shape}, {args.iterations} iterations, "
          f"25 synthetic samples, batch 1, SGD")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            policy = policy_file(model, args.input_shape, args.memory, args.compute, Path(tmp))
            for update in UPDATES:
                for _ in range(args.repeats):
                    row = run(model, update, args.input_shape, args.iterations, policy)
                    rows.append(row)
                    print(f"  {model:17s} {update:14s} measured {row['measured'] / MiB:7.1f} MiB"
                          f"  predicted {row['predicted'] / MiB:7.1f} MiB  {row['error_pct']:+6.2f} %"
                          f"   (runtime {row['runtime'] / MiB:.1f} + support "
                          f"{row['support'] / MiB:.1f} + step {row['training'] / MiB:.2f} MiB)",
                          flush=True)
    worst = max(rows, key=lambda r: abs(r["error_pct"]))
    print(f"max |error| {abs(worst['error_pct']):.2f} % ({worst['model']}, {worst['update']}); "
          f"median |error| {sorted(abs(r['error_pct']) for r in rows)[len(rows) // 2]:.2f} %; "
          "target 10 %")
    for model in args.models.split(","):
        mine = [r for r in rows if r["model"] == model]
        by_measured = " > ".join(r["update"] for r in sorted(mine, key=lambda r: -r["measured"]))
        by_predicted = " > ".join(r["update"] for r in sorted(mine, key=lambda r: -r["training"]))
        agree, disagree, tied = order_agreement(mine)
        spread = (max(r["measured"] for r in mine) - min(r["measured"] for r in mine)) / MiB
        print(f"order {model}: measured {by_measured}; predicted {by_predicted}; "
              f"{agree} pairs agree, {disagree} disagree, {tied} tied; measured spread "
              f"{spread:.1f} MiB")


if __name__ == "__main__":
    main()
