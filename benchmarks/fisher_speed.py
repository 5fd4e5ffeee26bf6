"""The Fisher probe against the plain forwards and backwards over the same samples.  (A script.)

    python benchmarks/fisher_speed.py [--model mcunet-5fps] [--samples 25] [--rounds 5]

Two comparisons, each measured in this run as CPU time, the compared sides interleaved per
round, printed as medians and the median of the per-round ratios:

1. In one process: `fisher_information(model, default_candidate_layers(model), x, y)`
   (protonet loss, batch 1: the prototypes' no-grad pass, the augmented queries' forwards and
   the backwards from the loss to the probed layers) against a plain loop over the same
   samples, one at a time, `model(x_i).square().sum().backward()` in eval mode with every
   parameter trainable (`time.process_time`).
2. As whole processes (`resource.getrusage(RUSAGE_CHILDREN)`): `ttplan fisher MODEL
   --synthetic --samples N --out FILE` against `python -c` doing that plain loop on the same
   synthetic samples (both import torch and build the model).

OMP_NUM_THREADS=1 for the children; the probe runs on one thread whatever it says.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from common import plain_forward_backward

from ttplan.costmodel.zoo import build_zoo_model
from ttplan.planner.support.sources import synthetic_data
from ttplan.planner.fisher.probe import default_candidate_layers, fisher_information

SHAPE = (3, 128, 128)
CLASSES = 5

PLAIN = """
import sys, torch
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.planner.support.sources import synthetic_data
torch.set_num_threads(1)
model = build_zoo_model(sys.argv[1]).eval()
x, _ = synthetic_data(int(sys.argv[2]), {classes}, {shape}, 0)
for i in range(len(x)):
    model(x[i:i + 1]).square().sum().backward()
""".format(classes=CLASSES, shape=SHAPE)


def plain_loop(model, x) -> float:
    return plain_forward_backward(model, x, clock=time.process_time)


def probe(model, layers, x, y) -> float:
    start = time.process_time()
    fisher_information(model, layers, x, y, seed=0)
    return time.process_time() - start


def child_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {done.stderr.strip().splitlines()[-1:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(label: str, ours: list[float], theirs: list[float]) -> None:
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{label}: probe {statistics.median(ours):.3f} s, plain {statistics.median(theirs):.3f} "
          f"s CPU; ratio median {statistics.median(ratios):.2f} (rounds "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mcunet-5fps")
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"{args.model}, {args.samples} synthetic {'x'.join(map(str, SHAPE))} samples, "
          f"{args.rounds} rounds; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    model = build_zoo_model(args.model)
    x, y = synthetic_data(args.samples, CLASSES, SHAPE, 0)
    layers = default_candidate_layers(model)
    probe(model, layers, x, y), plain_loop(model, x)  # first calls untimed
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(probe(model, layers, x, y))
        theirs.append(plain_loop(model, x))
    report("in one process", ours, theirs)

    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fisher.json")
        for _ in range(args.rounds):
            ours.append(child_cpu([sys.executable, "-m", "ttplan", "fisher", args.model,
                                   "--synthetic", "--samples", str(args.samples),
                                   "--out", out]))
            theirs.append(child_cpu([sys.executable, "-c", PLAIN, args.model,
                                     str(args.samples)]))
    report("whole processes", ours, theirs)


if __name__ == "__main__":
    main()
