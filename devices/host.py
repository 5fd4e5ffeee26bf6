"""What the machine itself can tell about a run: peak resident memory and energy counters.

* Peak resident memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss`, the process's peak since
  it started (kibibytes on Linux, bytes on macOS), returned in bytes. It covers everything the
  process did, including importing torch. On Linux `reset_peak_rss()` starts a new peak (the
  kernel resets the high-water mark that ru_maxrss reports when "5" is written to
  /proc/self/clear_refs), so several runs in one process can each have their own peak.
* Energy: Linux powercap (Intel RAPL and the AMD driver that exposes the same files),
  /sys/class/powercap/<zone>/energy_uj for the top-level zones (`intel-rapl:0`, one per
  package; their sub-zones `intel-rapl:0:0` are parts of it and are not added again). The
  counter wraps at `max_energy_range_uj`. When no zone exists or it cannot be read (often
  root-only), energy is None: never estimated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
import sys
from pathlib import Path

POWERCAP_ROOT = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^[a-z-]+:\d+$")  # intel-rapl:0, not intel-rapl:0:0


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Make the peak resident size start again from what is resident now; False where the
    system cannot (not Linux, or /proc/self/clear_refs not writable). Unused heap is handed
    back to the system first (glibc malloc_trim), so memory an earlier run freed does not
    count in the next run's peak."""
    gc.collect()
    _malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


class EnergyCounter:
    """Joules consumed by the package(s) between `start()` and `joules()`, or None."""

    def __init__(self, root: str | Path = POWERCAP_ROOT):
        self.zones = _readable_zones(Path(root))
        self._start: dict[Path, int] = {}

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def start(self) -> None:
        self._start = {zone: _read_int(zone / "energy_uj") for zone in self.zones}

    def joules(self) -> float | None:
        if not self.zones or not self._start:
            return None
        total_uj = 0
        for zone, before in self._start.items():
            after = _read_int(zone / "energy_uj")
            if after is None or before is None:
                return None
            if after < before:  # the counter wrapped around once
                wrap = _read_int(zone / "max_energy_range_uj")
                if wrap is None:
                    return None
                after += wrap + 1
            total_uj += after - before
        return total_uj / 1e6


def _readable_zones(root: Path) -> list[Path]:
    try:
        candidates = sorted(p for p in root.iterdir() if _TOP_ZONE.match(p.name))
    except OSError:
        return []
    return [zone for zone in candidates if _read_int(zone / "energy_uj") is not None]


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
