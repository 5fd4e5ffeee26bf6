"""Where the channel-sparse backward spends its time at small sizes.  (A script.)

    OMP_NUM_THREADS=1 python notes/probe_sparse_backward.py

1. One depthwise conv's backward at sizes of MCUNet's last blocks, median microseconds (timeit):
   both gradients in one `convolution_backward` call (PyTorch's own backward), the weight
   gradient alone, the weight gradient of a quarter of the channels as `devices.sparse` computes
   it (sliced inputs, a contiguous placeholder weight), and the same by `F.unfold` + matmul.
2. torch.profiler over 50 backwards of MCUNet's last block's three convs at batch 1 (eval mode,
   3x128x128), updated whole by PyTorch and at 25 % of their output channels through
   `devices.sparse`: microseconds per layer in the conv backward, and the interpreter time of the
   sparse `autograd.Function` itself (its self time). Used by notes/device_time_model.md §4.
"""

import statistics
import timeit

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ttplan.costmodel.config import LayerUpdate
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import build_zoo_model
from ttplan.devices.sparse import install_sparse_layers
from ttplan.planner.policy.apply import apply_updates

BACKWARD = torch.ops.aten.convolution_backward.default
# channels, kernel, output side, stride, batch
SIZES = ((96, 3, 8, 1, 1), (192, 5, 4, 1, 1), (144, 7, 4, 1, 1), (240, 7, 4, 2, 1),
         (96, 3, 8, 1, 8), (64, 3, 32, 1, 1))


def median_us(fn, repeats=50):
    fn(), fn(), fn()  # warm-up
    return 1e6 * statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def depthwise_backward():
    print("channels kernel out stride batch | both  weight  quarter(ours)  quarter(unfold)  [us]")
    for c, k, side, s, n in SIZES:
        x, w = torch.randn(n, c, side * s, side * s), torch.randn(c, 1, k, k)
        g, pad, idx = torch.randn(n, c, side, side), k // 2, torch.arange(0, c, 4)
        quarter, placeholder = len(idx), torch.empty(len(idx), 1, k, k)

        def call(grad, inp, weight, groups, mask):
            return BACKWARD(grad, inp, weight, None, [s, s], [pad, pad], [1, 1], False,
                            [0, 0], groups, mask)

        def ours():
            return call(g.index_select(1, idx), x.index_select(1, idx), placeholder, quarter,
                        [False, True, False])[1]

        def unfolded():
            cols = F.unfold(x.index_select(1, idx), (k, k), 1, pad, s)
            cols = cols.view(n, quarter, k * k, -1)
            return torch.matmul(cols, g.index_select(1, idx).reshape(n, quarter, -1, 1)).sum(0)

        assert torch.allclose(ours(), unfolded().reshape(quarter, 1, k, k), atol=1e-3, rtol=1e-4)
        times = (median_us(lambda: call(g, x, w, c, [True, True, False])),
                 median_us(lambda: call(g, x, w, c, [False, True, False])),
                 median_us(ours), median_us(unfolded))
        print(f"{c:8d} {k:6d} {side:3d} {s:6d} {n:5d} | " + "  ".join(f"{t:6.0f}" for t in times))


def profiled_block():
    model = build_zoo_model("mcunet-5fps").eval()
    shape = (1, 3, 128, 128)
    graph = trace(model, shape, "mcunet-5fps")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    block = graph.declared_blocks[-1]
    convs = [n.name for n in graph.mac_layers() if n.name.startswith(block + ".")]
    quarter = {n: LayerUpdate(channels=tuple(range(0, graph[n].weight_shape[0], 4))) for n in convs}
    for label, updates in (("PyTorch, whole layers", {n: LayerUpdate() for n in convs}),
                           ("devices.sparse, 25 %", quarter)):
        applied = apply_updates(model, graph, updates)
        with install_sparse_layers(model, updates) as (sparse, _):
            for name in sparse:
                applied.unmask(f"{name}.weight")
            for _ in range(10):
                model(x).square().sum().backward()
            losses = [model(x).square().sum() for _ in range(50)]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for loss in losses:
                    loss.backward()
        applied.remove()
        for p in model.parameters():
            p.grad = None
        events = {e.key: e for e in prof.key_averages()}
        node = "SparseConv2dFunctionBackward" if sparse else "ConvolutionBackward0"
        per_layer = events[node].cpu_time_total / events[node].count
        print(f"{label}: {node} {per_layer:.0f} us per layer, of which "
              f"{events[node].self_cpu_time_total / events[node].count:.0f} us its own")


if __name__ == "__main__":
    torch.set_num_threads(1)
    depthwise_backward()
    profiled_block()
