"""`ttplan profile` against fvcore on ten architectures of different families.  (A script.)

    python benchmarks/profile_vs_fvcore.py [--repeats 5] [--threads 1]

The models are the library-style lookalikes of tests/library_models.py at the larger sizes of
its `BENCHMARK_SIZES` (a MobileNet with BatchNormAct2d, a ConvNeXt, two ViTs — fused and
explicit attention —, an MLP-Mixer, a ResNet, a text encoder with einsum attention, a 2-layer
LSTM, a 2-layer GRU and a gated MLP). For each: the median time of
`ttplan.profile(model, update="all", options={"convention": "pytorch"})` (trace, every cost column,
memory) against the median time of fvcore's `FlopCountAnalysis(model, x).total()` (forward
FLOPs only; a fresh analysis per run, as fvcore caches its result), and the ratio fvcore /
ttplan (> 1: ttplan is faster). fvcore's count is printed beside ttplan's forward MACs: the
two differ where fvcore has no handler (it warns and skips) or counts non-MAC ops.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import warnings
from pathlib import Path

import torch
from common import median_time

from ttplan import profile
# The lookalike models live in the checkout's tests/; appended after ttplan is imported, so
# the checkout's ttplan/ folder cannot shadow the installed package.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from tests.library_models import BENCHMARK_SIZES


def fvcore_total(model, x) -> int:
    from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}\n")
    print("| model | input | ttplan profile ms | fvcore ms | fvcore / ttplan | "
          "ttplan forward MACs | fvcore count |")
    print("|---|---|---:|---:|---:|---:|---:|")
    ratios = []
    for name, (factory, shape) in BENCHMARK_SIZES.items():
        torch.manual_seed(0)
        model = factory().eval()
        x = torch.randn(shape)
        ours = median_time(lambda: profile(model, shape, update="all",
                                           options={"convention": "pytorch"}),
                           args.repeats)
        with torch.no_grad():
            theirs = median_time(lambda: fvcore_total(model, x), args.repeats)
            count = fvcore_total(model, x)
        macs = profile(model, shape, update="all",
                       options={"convention": "pytorch"}).totals["forward_macs"]
        ratios.append(theirs / ours)
        print(f"| {name} | {'x'.join(map(str, shape))} | {1e3 * ours:.1f} | {1e3 * theirs:.1f} | "
              f"{theirs / ours:.2f} | {macs:,} | {count:,} |", flush=True)
    geo = statistics.geometric_mean(ratios)
    print(f"\ngeometric mean of fvcore / ttplan over {len(ratios)} models: {geo:.2f}")


if __name__ == "__main__":
    main()
