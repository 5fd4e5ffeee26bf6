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
  estimate, not measured here, with its source). For `host` it is measured
  (devices.runtime_probe): a fresh `python -m ttplan train` of a negligible model
  (`tiny_model`: a 3->4 channel conv, 4 synthetic 3x8x8 samples, one pass) reports its peak
  resident set. Measured once per machine, Python and torch (two child processes, ~10 s,
  after a run, never during one) and cached in $XDG_CACHE_HOME/ttplan/host_runtime.json
  (default ~/.cache/ttplan/).
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
import os
import warnings
from dataclasses import dataclass

from ttplan.costmodel.errors import SpecError

from .profiles import HOST, DeviceProfile
from .runtime_probe import PROBE_ENV, host_runtime, support_bytes  # noqa: F401 (re-exported)

# For the built-in boards, which run the same Python code on the same allocator (glibc) but
# were not measured: this host's slope between fresh processes (6.3-6.8 from 128² to 256²;
# the probe itself finds 4.6-5.8 from run to run; notes/process_memory.md).
DEFAULT_SUPPORT_COPIES = 6.5


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
                         "measured on this machine: `python -m ttplan.devices.runtime_probe` "
                         "(ttplan train on a negligible model in a fresh process, its peak "
                         "resident set), cached per machine, Python and torch")


@functools.lru_cache(maxsize=1)
def measured_host_runtime() -> tuple[int, float]:
    """(runtime bytes, support copies) of this machine: measured by two fresh probe processes
    once per machine, Python and torch, then read from the cache (devices.runtime_probe)."""
    return host_runtime()


def tiny_model():
    """The probe's negligible model: a 3->4 channel conv, BatchNorm, ReLU, pooled, linear."""
    import torch
    from torch import nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
