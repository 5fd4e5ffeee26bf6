"""How fast is `ttplan`'s profile, against fvcore and as networks grow?  (A script, not a test.)

    python benchmarks/profile_speed.py [--repeats 5] [--threads 1] [--max-layers 10000]
                                       [--skip-after 2.0] [--tables zoo,scaling,step]

Prints three tables (--tables picks), all measured in this run:

1. Zoo models at 1x3x128x128: the median time of `profile(model, update="all")` (trace +
   evaluate) under each convention, against the median time of fvcore's
   `FlopCountAnalysis(model, x).total()` (a fresh analysis per run: fvcore caches its result),
   and the ratio fvcore / ttplan (> 1: ttplan is faster).
2. Generated plain networks of n conv-BN-ReLU layers (8 channels, 8x8 input, n = 100, 1,000,
   10,000), both as a flat Sequential and nested one level down (`features.i`, as torchvision
   models are): trace time, evaluate time per convention, and total time per layer. Constant
   time per layer means linear growth. A size is skipped when the size before it (10x fewer
   layers) already took more than --skip-after seconds.
3. Profile against one training step (CPU time, time.process_time): on the ten architectures
   of tests/library_models.py (`BENCHMARK_SIZES`, as benchmarks/profile_vs_fvcore.py) and on
   the MobileOne/RepVGG-style net of tests/reparam_models.py: the median of `--repeats`
   `profile(model, shape, update="all", options={"convention": "pytorch"})` against the median
   of as many plain forward+backward passes (train mode, every parameter trainable,
   `.sum().backward()`), interleaved, their ratio (the target is <= 2), and the first profile
   of the model in this process (the first model also pays the process's first-call costs).

Threads: torch runs on one thread by default. The forward pass inside each tracer is tiny, and
on a shared, loaded machine OpenMP's thread barriers can make a 1x8x8x8 conv take milliseconds
instead of microseconds, which would swamp what is being measured; both tools get the same
setting.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from common import median_time, print_header
from torch import nn

from ttplan.costmodel.costs import evaluate
from ttplan.costmodel.options import CONVENTIONS, cost_options
from ttplan.costmodel.profile import build_config
from ttplan import profile
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model

ZOO_SHAPE = (1, 3, 128, 128)



def fvcore_total(model: nn.Module, x: torch.Tensor) -> float:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total()


def zoo_table(repeats: int) -> None:
    print(f"Zoo models, input {'x'.join(map(str, ZOO_SHAPE))}, median of {repeats} runs (ms)")
    header = f"{'model':<16}{'paper':>9}{'pytorch':>9}{'fvcore':>9}{'fv/paper':>10}{'fv/pytorch':>11}"
    print_header(header)
    for name in ZOO_MODELS:
        model = build_zoo_model(name).eval()
        x = torch.zeros(ZOO_SHAPE)
        # One untimed run of each, so that lazy imports and first-call setup are not timed.
        for convention in CONVENTIONS:
            profile(model, ZOO_SHAPE, update="all", options={"convention": convention})
        fvcore_total(model, x)
        ours = {c: median_time(lambda c=c: profile(model, ZOO_SHAPE, update="all",
                                                   options={"convention": c}),
                               repeats) for c in CONVENTIONS}
        theirs = median_time(lambda: fvcore_total(model, x), repeats)
        print(f"{name:<16}{ours['paper'] * 1e3:>9.1f}{ours['pytorch'] * 1e3:>9.1f}"
              f"{theirs * 1e3:>9.1f}{theirs / ours['paper']:>10.2f}"
              f"{theirs / ours['pytorch']:>11.2f}")
    print()


class Nested(nn.Module):
    """The stack one level down, as `features.0`, `features.1`, …"""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.features = layers

    def forward(self, x):
        return self.features(x)


def plain_network(layers: int, nested: bool) -> nn.Module:
    modules = []
    for _ in range(layers):
        modules += [nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    stack = nn.Sequential(*modules)
    return Nested(stack) if nested else stack


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def scaling_table(sizes, repeats: int, skip_after: float) -> None:
    shape = (1, 8, 8, 8)
    print(f"Plain conv-BN-ReLU networks, input {'x'.join(map(str, shape))}, update=all "
          f"(seconds; median of {repeats} runs below 10,000 layers, else 1 run)")
    header = (f"{'layers':>7} {'layout':<8}{'trace':>9}{'eval paper':>11}{'eval pytorch':>13}"
              f"{'total':>9}{'us/layer':>10}")
    print_header(header)
    previous_total = {False: 0.0, True: 0.0}
    for layers in sizes:
        for nested in (False, True):
            if previous_total[nested] > skip_after:
                # 10x the layers of a run that already took this long: minutes at best.
                print(f"{layers:>7} {'nested' if nested else 'flat':<8}  skipped: "
                      f"{layers // 10} layers already took {previous_total[nested]:.1f} s")
                continue
            model = plain_network(layers, nested)
            runs = repeats if layers < 10_000 else 1
            # The median of `runs` traces; the graph of the last one is evaluated below.
            trace_times = [timed(lambda: trace(model, shape)) for _ in range(runs)]
            t_trace, graph = statistics.median(t for t, _ in trace_times), trace_times[-1][1]
            t_eval = {}
            for convention in CONVENTIONS:
                config, _ = build_config(graph, "all", cost_options(convention))
                t_eval[convention] = median_time(lambda: evaluate(graph, config), runs)
            total = t_trace + sum(t_eval.values())
            previous_total[nested] = total
            print(f"{layers:>7} {'nested' if nested else 'flat':<8}{t_trace:>9.3f}"
                  f"{t_eval['paper']:>11.3f}{t_eval['pytorch']:>13.3f}{total:>9.3f}"
                  f"{total / layers * 1e6:>10.0f}", flush=True)
    print()


def step_table(repeats: int) -> None:
    # The checkout's tests/ hold the models; appended after ttplan is imported, so the
    # checkout's ttplan/ folder cannot shadow the installed package.
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from tests.library_models import BENCHMARK_SIZES
    from tests.reparam_models import RepNet

    models = {**BENCHMARK_SIZES, "repnet (MobileOne-S0-like)": (RepNet, (1, 3, 128, 128))}
    print(f"profile(update='all', options={{'convention': 'pytorch'}}) against one forward+backward, CPU ms, "
          f"median of {repeats} interleaved")
    header = f"{'model':<28}{'input':>12}{'ops':>6}{'first':>9}{'profile':>9}{'fwd+bwd':>9}{'ratio':>7}"
    print_header(header)
    ratios = []
    for name, (factory, shape) in models.items():
        torch.manual_seed(0)
        model = factory()
        x = torch.randn(shape)
        start = time.process_time()
        ops = len(profile(model, shape, update="all",
                          options={"convention": "pytorch"}).graph.order)
        first = time.process_time() - start
        ours, step = [], []
        for _ in range(repeats):
            step.append(_cpu(lambda: _forward_backward(model, x)))
            ours.append(_cpu(lambda: profile(model, shape, update="all",
                                             options={"convention": "pytorch"})))
        ratio = statistics.median(ours) / statistics.median(step)
        ratios.append(ratio)
        print(f"{name:<28}{'x'.join(map(str, shape)):>12}{ops:>6}{first * 1e3:>9.1f}"
              f"{statistics.median(ours) * 1e3:>9.1f}{statistics.median(step) * 1e3:>9.1f}"
              f"{ratio:>7.2f}", flush=True)
    print(f"\nprofile / step: median {statistics.median(ratios):.2f}, max {max(ratios):.2f}\n")


def _forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-layers", type=int, default=10_000)
    parser.add_argument("--skip-after", type=float, default=2.0,
                        help="skip a network size when the previous size took longer (s)")
    parser.add_argument("--tables", default="zoo,scaling,step",
                        help="which tables, comma-separated: zoo, scaling, step")
    args = parser.parse_args()
    tables = args.tables.split(",")
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")  # fvcore's jit trace warnings say nothing about speed
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    if "step" in tables:  # first: its first-call column is a first call in the process
        step_table(args.repeats)
    if "zoo" in tables:
        zoo_table(args.repeats)
    if "scaling" in tables:
        scaling_table([n for n in (100, 1_000, 10_000) if n <= args.max_layers], 3,
                      args.skip_after)


if __name__ == "__main__":
    main()
