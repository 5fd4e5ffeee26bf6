"""Seconds per MAC of every depthwise conv of the zoo models, forward, on this machine.

    OMP_NUM_THREADS=1 python notes/probe_depthwise_speed.py [--batch 16] [--size 64]

Each depthwise layer is run alone (no gradient) on an input of the shape it sees in the model,
median of 20 runs after 3 warm-ups; printed with its shape, kernel, stride, microseconds and
nanoseconds per MAC. Used by notes/device_time_model.md.
"""

import argparse
import statistics
import timeit

import torch
from torch import nn

from ttplan.costmodel.zoo import build_zoo_model

MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")


def median_s(fn, repeats=20):
    fn(), fn(), fn()  # warm-up
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"input {args.batch}x3x{args.size}x{args.size}")
    for name in MODELS:
        model = build_zoo_model(name).eval()
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape)))
                 for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        with torch.no_grad():
            model(torch.randn(args.batch, 3, args.size, args.size))
            for h in hooks:
                h.remove()
            for conv, shape in seen:
                x = torch.randn(shape)
                seconds = median_s(lambda: conv(x))
                out = conv(x)
                macs = out.numel() * conv.weight[0].numel()
                print(f"{name:15s} in {tuple(shape)} k{conv.kernel_size[0]} s{conv.stride[0]} "
                      f"out {out.shape[2]}x{out.shape[3]}: {seconds * 1e6:7.0f} us "
                      f"{seconds / macs * 1e9:5.2f} ns/MAC")


if __name__ == "__main__":
    main()
