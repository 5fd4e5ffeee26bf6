"""`python -m ttplan.cli.runtime_probe 0|1`: the runtime baseline probe (devices.process).

Runs the `ttplan train` command in this fresh process on a negligible model
(`devices.process.tiny_model`) with the small (0: 4 samples of 3x8x8) or the large (1: 25
samples of 3x160x160) synthetic support set, and prints one JSON line with the process's peak
resident set (VmHWM). `devices.process.measured_host_runtime` runs both on the host; run them
on a board to measure its `runtime_bytes` (the first's peak, less its support set's share).
It lives with the CLI because it runs the command as a user does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import torch

from ttplan.devices.process import PROBE_ENV, PROBE_LARGE, PROBE_SMALL, peak_resident_bytes

from . import app


def probe(which: int) -> dict:
    os.environ[PROBE_ENV] = "1"  # its own train must not start another probe
    samples, chw = (PROBE_SMALL, PROBE_LARGE)[which]
    with contextlib.redirect_stdout(io.StringIO()):
        app(["train", "ttplan.devices.process:tiny_model", "--update", "all", "--synthetic",
             "--samples", str(samples), "--iterations", "1", "--holdout", "0",
             "--input-shape", ",".join(map(str, (1, *chw))), "--format", "json"],
            standalone_mode=False)
    return {"peak_rss_bytes": peak_resident_bytes(), "samples": samples,
            "sample_shape": list(chw), "torch_version": torch.__version__}


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
