"""Does a channel-sparse update make backward faster?  (A script, not a test.)

    python benchmarks/sparse_backward.py [--model mcunet-5fps] [--batch-sizes 1,8]
                                         [--repeats 30] [--threads 1] [--fraction 0.25]

For each case, the same conv layers of a zoo model (3x128x128 inputs, eval mode, everything
else frozen) are updated three ways: on all their output channels by PyTorch's own backward
(`dense 100%`: dense weight gradients, what `ttplan train` runs for a whole layer); on all of
them through ttplan's channel-sparse backward (`ours 100%`: the same kernels as the sparse
case, so the comparison with it isolates what fewer channels save); and on `--fraction` of
them, evenly spaced (`ours 25%`: `ttplan.devices.sparse`, the weight gradient of the selected
channels only, as `ttplan train` runs a channel-sparse policy). The time of `loss.backward()`
is measured with time.perf_counter, the three variants interleaved, after 3 warm-up steps of
each. Printed: the median time of each, the medians of the per-round ratios of the sparse
time to each 100 % time (robust to the machine's load drifting), and the cost model's ratio
of backward MACs (pytorch convention, eval mode).

Cases: the last conv, the last block's convs, and every conv of the last four blocks — where
TinyTrain's policies put their updates.

The sparse backward pays a fixed cost per layer (a Python autograd.Function, a full-size zero
gradient the selected rows are copied into, a sliced copy of the output gradient): on layers
whose convolutions take tens of microseconds (MCUNet's last blocks at batch 1 run on 4x4 and
8x8 feature maps) that cost exceeds the MACs saved; with more work per layer the MAC saving
shows. Read the ratio for your batch size and machine rather than assuming either.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ttplan.costmodel.config import LayerUpdate, resolve_updates
from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import EVAL_MODE, profile
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.devices.sparse import install_sparse_layers
from ttplan.planner.policy.apply import apply_updates


def spaced(count: int, fraction: float) -> tuple[int, ...]:
    keep = max(1, round(count * fraction))
    return tuple(sorted({int(i * count / keep) for i in range(keep)}))


def cases(graph) -> dict[str, list[str]]:
    convs = [n.name for n in graph.mac_layers()]
    last_block = graph.declared_blocks[-1]
    last4 = list(resolve_updates(parse_update("last-blocks:4"), graph))
    return {"last conv": convs[-1:],
            "last block convs": [c for c in convs if c.startswith(last_block + ".")],
            "last-blocks:4 convs": [c for c in last4 if c in convs]}


def backward_time(model, graph, updates, x) -> float:
    """Seconds of one backward; partial layers run through the sparse backward."""
    applied = apply_updates(model, graph, updates)
    with install_sparse_layers(model, updates) as (sparse, _):
        for name in sparse:
            applied.unmask(f"{name}.weight")
        loss = model(x).square().sum()
        start = time.perf_counter()
        loss.backward()
        elapsed = time.perf_counter() - start
    applied.remove()
    for p in model.parameters():
        p.grad = None
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mcunet-5fps")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_zoo_model(args.model).eval()
    print(f"{args.model} 3x128x128, {args.threads} thread(s), torch {torch.__version__}; "
          f"backward median of {args.repeats} (ms); {args.fraction:.0%} of output channels")
    print(f"{'batch':>5s}  {'case':22s} {'dense 100%':>10s} {'ours 100%':>9s} "
          f"{'ours ' + format(args.fraction, '.0%'):>9s} {'/dense':>8s} {'/ours':>8s} "
          f"{'MACs ratio':>10s}")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        shape = (batch_size, 3, 128, 128)
        graph = trace(model, shape, args.model)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        for label, layers in cases(graph).items():
            dense = {name: LayerUpdate() for name in layers}
            every = {name: LayerUpdate(channels=tuple(range(graph[name].weight_shape[0])))
                     for name in layers}
            partial = {name: LayerUpdate(channels=spaced(graph[name].weight_shape[0],
                                                         args.fraction)) for name in layers}
            macs = [profile(model, shape, update=u, options=PYTORCH, graph=graph,
                            tracing=EVAL_MODE).totals["backward_macs"] for u in (dense, partial)]
            variants = (dense, every, partial)
            for _ in range(3):
                for u in variants:
                    backward_time(model, graph, u, x)
            runs = [[backward_time(model, graph, u, x) for u in variants]
                    for _ in range(args.repeats)]
            d, e, s = (statistics.median(r[i] for r in runs) for i in range(3))
            to_dense = statistics.median(r[2] / r[0] for r in runs)
            to_every = statistics.median(r[2] / r[1] for r in runs)
            print(f"{batch_size:5d}  {label:22s} {1e3 * d:10.3f} {1e3 * e:9.3f} {1e3 * s:9.3f} "
                  f"{to_dense:8.2f} {to_every:8.2f} {macs[1] / macs[0]:10.2f}", flush=True)


if __name__ == "__main__":
    main()
