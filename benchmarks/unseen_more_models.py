"""Ten more models a calibration never saw: predicted train_s, peak RSS and saved bytes against
what `ttplan train` measures.  (A script.)

    OMP_NUM_THREADS=1 python benchmarks/unseen_more_models.py --calibration HOST.json
        [--rounds 3] [--iterations 5] [--samples 25] [--only NAME ...]

HOST.json: a per-layer calibration of this machine (`benchmarks/unseen_device_model.py`
leaves one in its workdir as host.json). The models (`more_unseen_models.py`: library
constructs the calibration's three zoo models do not have, images, token ids, audio and
sequences) are each trained at batch 1 under `all` and `last-blocks:2`, each run a fresh
process, the rounds interleaved so that every configuration sees the machine's speed moving
alike (on this VM process CPU time moves by up to 20 % within minutes:
notes/device_time_model.md §16, §28). Per configuration: the prediction against the median of
the rounds' measured train_s (process CPU time) and every round's error; the median and
largest absolute error over the configurations (the issue's targets: 15 % and 30 %); the
largest peak-RSS error of any run; saved bytes predicted against measured.
Wall time: ~6-8 minutes with 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from datetime import datetime, timezone
from pathlib import Path

from common import run_ttplan as ttplan
from more_unseen_models import CASES

UPDATES = ("all", "last-blocks:2")


def pct(predicted: float, measured: float) -> float:
    return 100 * (predicted - measured) / measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", default="5")
    ap.add_argument("--samples", default="25")
    ap.add_argument("--only", nargs="*", default=None, help="model names (default: all ten)")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.only or c[0] in args.only]
    folder = str(Path(__file__).resolve().parent)
    one, five, _ = os.getloadavg()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {one:.2f} / {five:.2f}"
          f" on {os.cpu_count()} cores; calibration {args.calibration}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for name, inputs in cases:
            for update in UPDATES:
                out = json.loads(ttplan(
                    "train", f"more_unseen_models:{name}", "--update", update, *inputs,
                    "--synthetic", "--samples", args.samples, "--iterations", args.iterations,
                    "--holdout", "0", "--calibration", args.calibration, "--format", "json",
                    pythonpath=folder))
                runs.setdefault((name, update), []).append(out)
    errors, rss, saved_equal = [], [], 0
    print(f"\n{'model':18s} {'update':14s} {'predicted':>9s} {'measured':>9s} {'error':>8s}  rounds")
    for (name, update), outs in runs.items():
        predicted = outs[0]["predicted"]["phases"]["train_s"]
        measured = statistics.median(o["measured"]["cpu_phases"]["train_s"] for o in outs)
        each = " ".join(f"{pct(predicted, o['measured']['cpu_phases']['train_s']):+.0f}"
                        for o in outs)
        errors.append(abs(pct(predicted, measured)))
        rss += [abs(pct(o["predicted"]["peak_rss_bytes"], o["measured"]["peak_rss_bytes"]))
                for o in outs]
        saved_equal += outs[0]["predicted"]["saved_bytes"] == outs[0]["measured"]["saved_bytes"]
        print(f"{name:18s} {update:14s} {predicted:8.3f}s {measured:8.3f}s "
              f"{pct(predicted, measured):+7.1f}%  [{each}]")
    one, five, _ = os.getloadavg()
    print(f"\ntrain_s error: median {statistics.median(errors):.1f} %, max {max(errors):.1f} % "
          f"over {len(errors)} configurations (targets 15 / 30 %); peak RSS error max "
          f"{max(rss):.2f} %; saved bytes equal in {saved_equal} of {len(runs)}; load average "
          f"{one:.2f} / {five:.2f}")


if __name__ == "__main__":
    main()
