"""How fast are the Fisher probe and the planners?  (A script, not a test.)

    python benchmarks/plan_speed.py [--samples 25] [--repeats 3] [--threads 1]
                                    [--memory 1MB] [--compute 15%]

Everything below is measured in this run with time.perf_counter, per zoo model at
1x3x128x128, on synthetic support data (5 classes, seed 0):

* probe: `fisher_information` over the last 44% of conv layers (protonet loss, one query per
  forward/backward, prototypes included), against a plain forward + backward of the same
  model over the same samples one at a time with every parameter trainable (what one epoch
  of full fine-tuning costs without the optimiser step); ratio = probe / plain.
* greedy, exact: `greedy` and `solve_exact` (given the greedy's result) on the probe's
  Fisher with a --memory / --compute budget (weights in flash, paper convention): median
  time over --repeats, configurations costed, and Fisher captured (exact's gap over greedy).
  Tracing and the per-model set-up are excluded; each is a few tens of ms.
* evolution: SparseUpdate's evolutionary search (`sparseupdate_search`, 300 configurations)
  under the same budget, with the probe's potentials as the proxy.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from common import plain_forward_backward, print_header

from ttplan.costmodel.specs import parse_bytes, parse_compute
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model
from ttplan.planner.selection import baselines, sparseupdate
from ttplan.planner.support.sources import synthetic_data
from ttplan.planner.selection.exact import solve_exact
from ttplan.planner.fisher.probe import default_candidate_layers, fisher_information
from ttplan.planner.selection.score import build_candidates
from ttplan.costmodel.options import PAPER
from ttplan.planner.selection.select import Budget, Coster, greedy

SHAPE = (1, 3, 128, 128)


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", default="1MB")
    parser.add_argument("--compute", default="15%")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    memory = parse_bytes(args.memory)
    compute = parse_compute(args.compute)
    print(f"{args.samples} synthetic samples, budget {memory:,} B and {args.compute} backward "
          f"MACs (paper convention, weights in flash), {args.threads} thread(s)\n")
    header = (f"{'model':<16}{'probe s':>9}{'plain s':>9}{'ratio':>7}{'greedy s':>10}{'evals':>7}"
              f"{'exact s':>9}{'evals':>7}{'gap %':>7}{'evolution s':>13}{'evals':>7}")
    print_header(header)
    for name in ZOO_MODELS:
        model = build_zoo_model(name)
        x, y = synthetic_data(args.samples, 5, SHAPE[1:], 0)
        layers = default_candidate_layers(model)
        probe = fisher_information(model, layers, x, y, seed=0)
        plain = plain_forward_backward(model, x)

        graph = trace(model, SHAPE, name)
        coster = Coster(graph, PAPER)
        full = coster.evaluate(baselines.fulltrain_updates(graph)).totals["backward_macs"]
        budget = Budget(memory, compute.resolve(full))
        candidates = build_candidates(graph, probe.layers)

        def run_greedy():
            before = coster.calls
            return greedy(coster, candidates, budget), coster.calls - before

        greedy_s, (first, greedy_evals) = timed(run_greedy, args.repeats)

        def run_exact():
            before = coster.calls
            return solve_exact(coster, candidates, budget, incumbent=first), coster.calls - before

        exact_s, (best, exact_evals) = timed(run_exact, args.repeats)
        gap = 100 * (best.fisher_captured - first.fisher_captured) / best.fisher_captured

        def run_search():
            before = coster.calls
            return (sparseupdate.sparseupdate_search(coster, budget, probe.potential, seed=0),
                    coster.calls - before)

        search_s, (_, search_evals) = timed(run_search, 1)
        print(f"{name:<16}{probe.time_s:>9.3f}{plain:>9.3f}{probe.time_s / plain:>7.2f}"
              f"{greedy_s:>10.3f}{greedy_evals:>7}{exact_s:>9.3f}{exact_evals:>7}{gap:>7.2f}"
              f"{search_s:>13.3f}{search_evals:>7}")


if __name__ == "__main__":
    main()
