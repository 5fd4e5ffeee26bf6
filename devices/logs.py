"""Measured on-device training logs: time and energy of real runs.

The built-in log (`devices/data/device_logs.csv`) holds the paper's measurements on a
Raspberry Pi Zero 2 (Figure 5) and a Jetson Nano (Table 6): end-to-end training time in
seconds and energy in kJ, for 25 support samples and 40 iterations (batch 100 for FullTrain
and TinyTL, 1 otherwise); `fisher_s` is the part of `total_s` spent computing Fisher
information. Users can load their own logs of the same columns; a malformed file is a
one-line error.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

import pandas as pd

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.fileio import read_text_input, write_text_atomic

# The one log schema: what `ttplan train` appends (one row per run) and what calibration reads.
# Cost columns are for ONE training step at the row's batch size; a step is one forward and
# backward of `batch_size` samples, and a run has iterations x ceil(samples / batch_size) steps.
# Empty cells mean "not measured" and are never invented.
LOG_COLUMNS = (
    "device", "model", "method", "policy", "batch_size", "iterations", "samples",
    "load_s", "fisher_s", "plan_s", "train_s", "total_s", "energy_j",
    "forward_macs", "backward_input_macs", "backward_weight_macs", "updated_tensors",
    "peak_bytes_paper", "peak_bytes_pytorch", "saved_bytes_measured", "peak_rss_bytes",
    "torch_version", "threads", "source",
)


def append_log_row(path: str | Path, row: dict) -> None:
    """Append one run to a log (header first if the file is new), written atomically: the old
    file plus the new row replace the old file in one rename."""
    import io

    unknown = sorted(set(row) - set(LOG_COLUMNS))
    if unknown:
        raise SpecError(f"unknown log column(s) {', '.join(unknown)}")
    target = Path(path)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow({k: "" if row.get(k) is None else row[k] for k in LOG_COLUMNS})
    write_text_atomic(target, old + buffer.getvalue())


COLUMNS = ("device", "model", "method", "batch_size", "iterations", "fisher_s", "total_s",
           "energy_kj", "source")
_INTS = ("batch_size", "iterations")
_FLOATS = ("fisher_s", "total_s", "energy_kj")  # fisher_s and energy_kj may be empty
_REQUIRED_FLOATS = ("total_s",)


def load_device_logs(path: str | Path | None = None) -> pd.DataFrame:
    """The built-in measurements, or a user's CSV with the same columns, validated."""
    if path is None:
        text = resources.files("ttplan.devices").joinpath("data/device_logs.csv").read_text()
        source = "built-in device log"
    else:
        text = read_text_input(path, "device log")  # size-capped, one-line errors
        source = str(path)
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise SpecError(f"{source} has no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise SpecError(f"{source} lacks column(s) {', '.join(missing)}")
    records = []
    for line, row in enumerate(rows, start=2):
        record = {"device": row["device"], "model": row["model"], "method": row["method"],
                  "source": row["source"]}
        for key in _INTS:
            record[key] = _number(row[key], int, source, line, key, required=True)
        for key in _FLOATS:
            record[key] = _number(row[key], float, source, line, key,
                                  required=key in _REQUIRED_FLOATS)
        records.append(record)
    return pd.DataFrame(records, columns=list(COLUMNS))


def _number(text, kind, source, line, key, required):
    text = (text or "").strip()
    if not text:
        if required:
            raise SpecError(f"{source} line {line}: {key} is empty")
        return math.nan
    try:
        if not text.isascii() or len(text) > 40:  # int()/float() accept "١٢"; 5,000 digits
            raise ValueError
        value = kind(text)
    except ValueError:
        raise SpecError(f"{source} line {line}: {key} {text[:40]!r} is not a number") from None
    if not value >= 0 or (kind is float and math.isinf(value)):
        raise SpecError(f"{source} line {line}: {key} must be a non-negative finite number")
    return value
