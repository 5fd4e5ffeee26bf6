"""How long does a what-if grid take?  (A script, not a test.)

    python benchmarks/whatif_speed.py [--model mcunet-5fps] [--memory 128KB:2MB:12]
                                      [--compute 2%:60%:12] [--methods tinytrain]
                                      [--threads 1]

Measured in this run with time.perf_counter, on the synthetic probe (25 samples, seed 0):
* set-up: tracing, scoring and costing the reference configurations once
  (`PlanningContext`);
* per solver (greedy, exact): the whole grid (`run_whatif`), cells per second, and the
  configurations costed (how many the cache answered);
* for comparison, `plan()` called afresh for a few cells (it traces and scores every time):
  its median per cell times the number of cells is what the grid would cost without the
  shared context.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from ttplan.costmodel.profile import ModelSource
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.planner.api import plan
from ttplan.planner.context import PlanningContext
from ttplan.reports.table2 import synthetic_fisher
from ttplan.reports.whatif import parse_methods, parse_range, run_whatif


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mcunet-5fps")
    parser.add_argument("--memory", default="128KB:2MB:12")
    parser.add_argument("--compute", default="2%:60%:12")
    parser.add_argument("--methods", default="tinytrain")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    memory, compute = parse_range(args.memory, "memory"), parse_range(args.compute, "compute")
    methods = parse_methods(args.methods)
    model = build_zoo_model(args.model)
    fisher = synthetic_fisher(model, (1, 3, 128, 128))
    cells = len(memory) * len(compute) * len(methods)
    print(f"{args.model}: grid {len(memory)} x {len(compute)} x {len(methods)} method(s) = "
          f"{cells} cells, {args.threads} thread(s)")

    for solver in ("greedy", "exact"):
        start = time.perf_counter()
        context = PlanningContext(ModelSource(model, args.model), fisher=fisher)
        setup_s = time.perf_counter() - start
        start = time.perf_counter()
        result = run_whatif(context, memory, compute, methods=methods, solver=solver)
        grid_s = time.perf_counter() - start
        feasible = sum(c["feasible"] for c in result)
        print(f"  {solver:6s}: set-up {setup_s:.3f} s, grid {grid_s:.2f} s "
              f"({cells / grid_s:.1f} cells/s, {feasible} feasible), "
              f"{len(context.coster._cache)} configurations costed, "
              f"{context.coster.calls} asked for")

    samples = []
    for mem in memory[-3:]:
        start = time.perf_counter()
        plan(args.model, fisher=fisher, memory_bytes=mem, compute=compute[len(compute) // 2])
        samples.append(time.perf_counter() - start)
    per_cell = statistics.median(samples)
    print(f"  plan() afresh: {per_cell:.3f} s per cell (median of {len(samples)}), "
          f"~{per_cell * cells:.1f} s for the grid without a shared context (greedy)")


if __name__ == "__main__":
    main()
