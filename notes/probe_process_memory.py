"""What a training process's resident memory is made of, step by step.  (Linux only.)

    OMP_NUM_THREADS=1 python notes/probe_process_memory.py            # the baseline's parts
    OMP_NUM_THREADS=1 python notes/probe_process_memory.py --graph    # autograd graph per node

Each run is one fresh process; VmRSS from /proc/self/status after each step (the first
table of notes/process_memory.md). `--graph`: a chain of 4,000 Linear(8, 8) + ReLU kept for
backward, the RSS it adds against the bytes its saved tensors hold (the per-node overhead).
"""

import argparse
import gc
import re


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def show(label: str) -> None:
    print(f"{label:44s} VmRSS {rss_bytes() / 2**20:8.1f} MiB", flush=True)


def baseline() -> None:
    show("python")
    import torch
    show("import torch")
    from torch import nn
    import ttplan.devices.runner  # noqa: F401
    show("import ttplan.devices.runner (the API's train)")
    import ttplan.cli  # noqa: F401
    show("import ttplan.cli (the ttplan command)")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    show("a tiny forward + backward")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    show("torch.optim.SGD constructed")
    optimizer.step()
    show("optimizer.step()")


def graph(n: int = 4000) -> None:
    import torch
    from torch import nn

    from ttplan.costmodel.measure import measure_saved_bytes
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(n)])
    x = torch.randn(1, 8)
    with torch.no_grad():
        model(x)
    gc.collect()
    before = rss_bytes()
    out = model(x)  # the graph is kept while `out` lives
    kept = rss_bytes() - before
    saved = measure_saved_bytes(model, x).saved_bytes
    print(f"{2 * n} autograd nodes: RSS +{kept:,} B, saved tensors {saved:,} B, "
          f"{(kept - saved) / (2 * n):.0f} B per node beyond them")
    del out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", action="store_true")
    graph() if parser.parse_args().graph else baseline()
