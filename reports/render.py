"""Render a profile for people (terminal table, Markdown) and for scripts (JSON, CSV).

JSON is the documented contract (see the README, "Profile JSON"); CSV is the per-layer cost
table; the terminal table and Markdown show the layers that cost something, then the totals
and the memory breakdown. Every renderer is a pure function of `Profile.to_dict()`, so the
same inputs give byte-identical output.
"""

from __future__ import annotations

import csv
import io
import json

from ttplan.costmodel.errors import SpecError

FORMATS = ("table", "json", "csv", "md")

_TABLE_COLUMNS = [("name", "layer"), ("kind", "kind"), ("output_shape", "output"),
                  ("params", "params"), ("forward_macs", "fwd MACs"),
                  ("backward_input_macs", "bwd in MACs"), ("backward_weight_macs", "bwd w MACs"),
                  ("output_bytes", "out bytes"), ("trainable", "train")]

MEMORY_LABELS = [
    ("weights_bytes", "F1 weights in RAM"),
    ("io_buffer_bytes", "F2 inference I/O buffers (peak)"),
    ("updated_weight_bytes", "   updated weights (part of F1)"),
    ("gradient_bytes", "B1 gradients"),
    ("optimizer_bytes", "B2 optimizer state"),
    ("mask_bytes", "B3 non-linearity masks etc."),
    ("saved_input_bytes", "B4 saved inputs of updated layers"),
    ("saved_activation_bytes", "   saved for backward (B3+B4)"),
    ("peak_bytes", "PEAK"),
]


def render(data: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt == "csv":
        return _csv(data)
    if fmt == "md":
        return _markdown(data)
    return _text(data)


def _shown_layers(data: dict) -> list[dict]:
    # Views and other free ops clutter a person's table; JSON and CSV keep every operator.
    return [r for r in data["layers"]
            if r["params"] or r["forward_macs"] or r["kind"] in ("unknown", "add", "cat")
            or r["trainable"]]


def _cell(value, false_text: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else false_text
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def _human_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _header(data: dict) -> list[str]:
    t = data["totals"]
    return [
        f"model {data['model']}  input {'x'.join(map(str, data['input_shape']))}  "
        f"convention {data['convention']}  update {data['update']}  optimizer {data['optimizer']}"
        f"  tracer {data['tracer']}",
        f"params {t['params']:,}  trainable {t['trainable_params']:,}  mac layers "
        f"{t['mac_layers']}  blocks {t['blocks']}",
        f"forward {t['forward_macs']:,} MACs  backward {t['backward_macs']:,} MACs "
        f"(input grad {t['backward_input_macs']:,} + weight grad {t['backward_weight_macs']:,})",
    ]


def _text(data: dict) -> str:
    rows = [[_cell(r[k]) for k, _ in _TABLE_COLUMNS] for r in _shown_layers(data)]
    heads = [h for _, h in _TABLE_COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(heads, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("")
    lines += _header(data)
    lines.append("memory (bytes):")
    for key, label in MEMORY_LABELS:
        value = data["memory"][key]
        lines.append(f"  {label:<36} {value:>14,}  {_human_bytes(value)}")
    # Warnings go to stderr once (the CLI's warn_uncosted), not a second time here.
    return "\n".join(lines) + "\n"


def _markdown(data: dict) -> str:
    heads = [h for _, h in _TABLE_COLUMNS]
    lines = [f"## {data['model']} — {data['convention']} convention, update `{data['update']}`",
             "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in _shown_layers(data):
        lines.append("| " + " | ".join(_cell(r[k]) for k, _ in _TABLE_COLUMNS) + " |")
    lines += ["", *[f"- {line}" for line in _header(data)], "", "| memory | bytes |", "|---|---|"]
    for key, label in MEMORY_LABELS:
        lines.append(f"| {label.strip()} | {data['memory'][key]:,} |")
    lines += [f"\n> WARNING: {w}" for w in data["warnings"]]
    return "\n".join(lines) + "\n"


def _csv(data: dict) -> str:
    buffer = io.StringIO()
    fields = list(data["layers"][0].keys()) if data["layers"] else ["name"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in data["layers"]:
        writer.writerow(row)
    return buffer.getvalue()


def render_rows(rows: list[dict], fields, fmt: str) -> str:
    """A list of flat records as an aligned table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt != "table":
        raise SpecError(f"unknown --format {fmt!r}: use table, json or csv")
    cells = [[_cell(r[f], "no") for f in fields] for r in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(fields)]
    lines = ["  ".join(f.rjust(w) for f, w in zip(fields, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines) + "\n"
