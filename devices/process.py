"""The resident memory of a training process: what `fits_ram` compares with a device's RAM.

A tensor count is not what a Linux board must hold. A `ttplan train` process on this project's
host holds ~427 MiB before its model matters: the interpreter, torch (`import torch` alone
~218 MiB resident), ttplan's own imports (pandas, scipy, networkx, typer, matplotlib), the
optimiser's first construction (it imports torch._dynamo, ~65 MiB) and the allocator's arenas
(notes/process_memory.md has the measured parts). So the predicted peak resident set is

    peak_rss_bytes = runtime_bytes                       the device's runtime baseline
                   + support_copies x support_bytes      the samples and their working copies
                   + peak_bytes_pytorch                  weights, gradients, optimiser state
                                                         and the step's peak activations

* `runtime_bytes`: a device profile's field (devices.profiles; for the built-in boards an
  estimate, not measured here, with its source). For `host` it is measured: a fresh
  `python -m ttplan.cli.runtime_probe 0` runs the `ttplan train` command in-process on a
  negligible model (`tiny_model`: a 3->4 channel conv, 4 synthetic 3x8x8 samples, one pass)
  and reports its peak resident set (VmHWM). Measured once per process (two child
  processes, ~10 s), after a run, never during one.
* `support_bytes` = samples x C x H x W x 4 (the float32 support set). `support_copies` is
  how many bytes of resident memory each byte of it costs at the peak: the set itself, the
  synthetic generator's temporaries, the pseudo-queries of each pass (the previous pass's
  still alive while the next are built: per-sample pieces, stacked, concatenated) and the
  allocator keeping freed blocks. Measured by a second fresh probe (`... process 1`: 25
  samples of 3x160x160): the slope of the peak over the support bytes between the two.
* `peak_bytes_pytorch`: the pytorch convention's peak of one step at the run's batch
  (costmodel.memory), the configuration's own part.

Devices whose runtime is `paper` (a bare-metal engine) have no process: None.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass

from ttplan.costmodel.errors import SpecError

from .profiles import HOST, DeviceProfile

FP32_BYTES = 4
PROBE_SMALL = (4, (3, 8, 8))  # samples, C x H x W: the runtime on its own
PROBE_LARGE = (25, (3, 160, 160))  # the support set's share, as a slope
# For the built-in boards, which run the same Python code on the same allocator (glibc) but
# were not measured: this host's slope between fresh processes (6.3-6.8 from 128² to 256²;
# the probe itself finds 4.6-5.8 from run to run; notes/process_memory.md).
DEFAULT_SUPPORT_COPIES = 6.5
# Set in the probe's environment: the probe's own `train` must not start another probe.
PROBE_ENV = "TTPLAN_RUNTIME_PROBE"


@dataclass(frozen=True)
class ProcessMemory:
    runtime_bytes: int
    support_copies: float
    support_bytes: int
    training_bytes: int
    source: str

    @property
    def peak_rss_bytes(self) -> int:
        return int(self.runtime_bytes + round(self.support_copies * self.support_bytes)
                   + self.training_bytes)

    def to_dict(self) -> dict:
        return {"peak_rss_bytes": self.peak_rss_bytes, "runtime_bytes": self.runtime_bytes,
                "support_bytes": self.support_bytes, "support_copies": self.support_copies,
                "training_bytes": self.training_bytes, "runtime_source": self.source}


def support_bytes(samples: int, sample_shape) -> int:
    """Bytes of `samples` float32 samples of shape C x H x W."""
    numel = 1
    for d in sample_shape:
        numel *= int(d)
    return int(samples) * numel * FP32_BYTES


def process_memory(device: DeviceProfile, training_bytes: int, samples: int,
                   sample_shape) -> ProcessMemory | None:
    """The predicted peak resident memory of a run on `device`; None without a process
    (a bare-metal runtime) or without a known runtime baseline."""
    if device.runtime != "pytorch":
        return None
    data = support_bytes(samples, sample_shape)
    if device.runtime_bytes is not None:
        source = device.sources.get("runtime_bytes", "the device profile")
        return ProcessMemory(device.runtime_bytes, DEFAULT_SUPPORT_COPIES, data,
                             int(training_bytes), source)
    if device.name != HOST or os.environ.get(PROBE_ENV):
        return None  # the probe does not measure itself
    try:
        runtime, copies = measured_host_runtime()
    except SpecError as problem:  # a prediction left out, not a finished run thrown away
        warnings.warn(str(problem), stacklevel=2)
        return None
    return ProcessMemory(runtime, copies, data, int(training_bytes),
                         "measured on this machine: `python -m ttplan.cli.runtime_probe` "
                         "(ttplan train on a negligible model in a fresh process, its VmHWM)")


@functools.lru_cache(maxsize=1)
def measured_host_runtime() -> tuple[int, float]:
    """(runtime bytes, support copies) of this machine: the probe in two fresh processes, a
    negligible support set and a larger one (each alone, as a real run is)."""
    small, large = (_run_probe(i) for i in (0, 1))
    copies = max(0.0, (large - small) / (support_bytes(*PROBE_LARGE) - support_bytes(*PROBE_SMALL)))
    return int(small - round(copies * support_bytes(*PROBE_SMALL))), round(copies, 3)


def _run_probe(which: int) -> int:
    problem = "cannot measure this machine's runtime baseline"
    try:
        done = subprocess.run([sys.executable, "-m", "ttplan.cli.runtime_probe", str(which)],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, PROBE_ENV: "1"})
    except (OSError, subprocess.SubprocessError) as error:
        raise SpecError(f"{problem}: {error}") from None
    if done.returncode:
        raise SpecError(f"{problem}: "
                        + (done.stderr.strip().splitlines() or ["no output"])[-1])
    try:
        return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_bytes"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise SpecError(f"{problem}: the probe printed no peak") from None


def peak_resident_bytes() -> int:
    """VmHWM of this process (Linux); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    from .host import peak_rss_bytes
    return peak_rss_bytes()


def tiny_model():
    """The probe's negligible model: a 3->4 channel conv, BatchNorm, ReLU, pooled, linear."""
    import torch
    from torch import nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
