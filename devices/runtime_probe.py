"""The host's runtime baseline (devices.process), measured once per machine, Python and torch.

    python -m ttplan.devices.runtime_probe [--again]

prints this machine's {runtime_bytes, support_copies} as one JSON line (run it on a board to
measure its `runtime_bytes` for a device profile). They come from two fresh child processes,
each running the `ttplan train` command as a user does (`python -m ttplan train`, the CLI's
own entry point, so its imports count) on a negligible model (`devices.process.tiny_model`)
with a small (4 samples of 3x8x8) and a large (25 of 3x160x160) synthetic support set: the
peak resident set each reports (`measured.peak_rss_bytes`, the process's since it started)
gives the runtime (the small one, less its support set's share) and the support set's copies
(the slope between the two). ~8-10 s of two child processes, so:

The cache. The result is kept in `$XDG_CACHE_HOME/ttplan/host_runtime.json` (default
`~/.cache/ttplan/`), one entry per (machine name, architecture, Python version and
executable, torch version, ttplan version): a `ttplan train` on the host measures it once,
not after every run. The file is written atomically (a new file renamed over the old), read
strictly (format "ttplan-host-runtime", version 1; positive whole runtime_bytes, finite
non-negative support_copies); a file that is not valid is ignored with a warning and
replaced; a cache that cannot be written is a warning, the measurement still used. `--again`
(or deleting the file) measures anew, after upgrading the machine's memory allocator, say.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

from ttplan.costmodel.errors import SpecError, TtplanError
from ttplan.costmodel.fileio import write_text_atomic

FP32_BYTES = 4
PROBE_SMALL = (4, (3, 8, 8))  # samples, C x H x W: the runtime on its own
PROBE_LARGE = (25, (3, 160, 160))  # the support set's share, as a slope
# Set in the probe's environment: the probe's own `train` must not start another probe.
PROBE_ENV = "TTPLAN_RUNTIME_PROBE"
CACHE_FORMAT = "ttplan-host-runtime"
CACHE_VERSION = 1
CACHE_MAX_BYTES = 1 << 20


def support_bytes(samples: int, sample_shape) -> int:
    """Bytes of `samples` float32 samples of shape C x H x W (devices.process)."""
    numel = 1
    for d in sample_shape:
        numel *= int(d)
    return int(samples) * numel * FP32_BYTES


def cache_path() -> Path:
    """$XDG_CACHE_HOME/ttplan/host_runtime.json (an absolute XDG_CACHE_HOME only, as the XDG
    specification says), else ~/.cache/ttplan/host_runtime.json."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "ttplan" / "host_runtime.json"


def runtime_key() -> dict:
    """What the baseline depends on: the machine, the Python, torch and ttplan."""
    import torch
    from importlib.metadata import PackageNotFoundError, version
    try:
        ours = version("ttplan")
    except PackageNotFoundError:
        ours = "unknown"
    return {"machine": platform.node(), "arch": platform.machine(),
            "python": platform.python_version(), "executable": sys.executable,
            "torch": torch.__version__, "ttplan": ours}


def host_runtime(again: bool = False) -> tuple[int, float]:
    """(runtime bytes, support copies) of this machine: from the cache, else measured (and
    cached)."""
    path, key = cache_path(), runtime_key()
    entries = _read_cache(path)
    for entry in entries:
        if entry["key"] == key and not again:
            return entry["runtime_bytes"], entry["support_copies"]
    runtime, copies = measure_host_runtime()
    kept = [e for e in entries if e["key"] != key]
    _write_cache(path, kept + [{"key": key, "runtime_bytes": runtime, "support_copies": copies}])
    return runtime, copies


def measure_host_runtime() -> tuple[int, float]:
    """The probe in two fresh processes, a negligible support set and a larger one (each
    alone, as a real run is)."""
    small, large = (run_probe(i) for i in (0, 1))
    copies = max(0.0, (large - small) / (support_bytes(*PROBE_LARGE) - support_bytes(*PROBE_SMALL)))
    return int(small - round(copies * support_bytes(*PROBE_SMALL))), round(copies, 3)


def probe_command(which: int) -> list[str]:
    """`ttplan train` of the negligible model on the small (0) or the large (1) support set."""
    samples, chw = (PROBE_SMALL, PROBE_LARGE)[which]
    return [sys.executable, "-m", "ttplan", "train", "ttplan.devices.process:tiny_model",
            "--update", "all", "--synthetic", "--samples", str(samples), "--iterations", "1",
            "--holdout", "0", "--input-shape", ",".join(map(str, (1, *chw))),
            "--format", "json"]


def run_probe(which: int) -> int:
    """The peak resident bytes of one probe process (its own `train` report)."""
    problem = "cannot measure this machine's runtime baseline"
    try:
        done = subprocess.run(probe_command(which), capture_output=True, text=True,
                              timeout=600, env={**os.environ, PROBE_ENV: "1"})
    except (OSError, subprocess.SubprocessError) as error:
        raise SpecError(f"{problem}: {error}") from None
    if done.returncode:
        raise SpecError(f"{problem}: "
                        + (done.stderr.strip().splitlines() or ["no output"])[-1])
    try:
        peak = json.loads(done.stdout)["measured"]["peak_rss_bytes"]
    except (ValueError, KeyError, TypeError):
        raise SpecError(f"{problem}: the probe printed no peak") from None
    if isinstance(peak, bool) or not isinstance(peak, int) or peak <= 0:
        raise SpecError(f"{problem}: the probe printed no peak")
    return peak


# ------------------------------------------------------------------------------ the cache

def _read_cache(path: Path) -> list[dict]:
    """The cache's entries; [] when there is none, and (with a warning) when it is not valid."""
    try:
        if path.stat().st_size > CACHE_MAX_BYTES:
            raise ValueError(f"larger than {CACHE_MAX_BYTES} bytes")
        data = json.loads(path.read_text("utf-8"))
        return _check_cache(data)
    except (FileNotFoundError, NotADirectoryError):  # no cache yet
        return []
    except (OSError, ValueError) as problem:
        warnings.warn(f"ignoring the runtime-baseline cache {path}: {problem}; measuring this "
                      "machine's runtime baseline again", stacklevel=3)
        return []


def _check_cache(data) -> list[dict]:
    if not (isinstance(data, dict) and data.get("format") == CACHE_FORMAT):
        raise ValueError(f"not a {CACHE_FORMAT} file")
    if data.get("version") != CACHE_VERSION or isinstance(data.get("version"), bool):
        raise ValueError(f"version {data.get('version')!r}, this ttplan reads {CACHE_VERSION}")
    entries = data.get("entries")
    if set(data) != {"format", "version", "entries"} or not isinstance(entries, list):
        raise ValueError("expected keys format, version, entries (a list)")
    for entry in entries:
        if not (isinstance(entry, dict) and set(entry) == {"key", "runtime_bytes",
                                                            "support_copies"}
                and isinstance(entry["key"], dict)
                and all(isinstance(v, str) for v in entry["key"].values())):
            raise ValueError("an entry is not {key, runtime_bytes, support_copies}")
        runtime, copies = entry["runtime_bytes"], entry["support_copies"]
        if isinstance(runtime, bool) or not isinstance(runtime, int) or runtime <= 0:
            raise ValueError("runtime_bytes must be a positive whole number")
        if isinstance(copies, bool) or not isinstance(copies, (int, float)) or \
                not math.isfinite(copies) or copies < 0:
            raise ValueError("support_copies must be a finite non-negative number")
    return entries


def _write_cache(path: Path, entries: list[dict]) -> None:
    text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries},
                      indent=1, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except (OSError, TtplanError) as problem:
        warnings.warn(f"cannot cache this machine's runtime baseline in {path}: {problem}",
                      stacklevel=3)


if __name__ == "__main__":
    runtime_bytes, support_copies = host_runtime(again="--again" in sys.argv[1:])
    print(json.dumps({"runtime_bytes": runtime_bytes, "support_copies": support_copies,
                      "cache": str(cache_path()), **runtime_key()}))
