"""Render a profile for people (terminal table, Markdown) and for scripts (JSON, CSV).

JSON is the documented contract (docs/contracts.md, "Profile JSON"); CSV is the per-layer cost
table; the terminal table and Markdown show the layers that cost something, then the totals
and the memory breakdown. Every renderer is a pure function of `Profile.to_dict()`, so the
same inputs give byte-identical output.
"""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.units import (human_bytes, human_hertz, human_joules, human_macs,
                                    human_seconds)

# Tables for people fit this many columns unless told otherwise (COLUMNS, see ttplan.cli);
# `wide=True` gives the whole table with exact integers, whatever its width.
DEFAULT_WIDTH = 100

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


def render(data: dict, fmt: str, width: int | None = DEFAULT_WIDTH, wide: bool = False) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt == "csv":
        return _csv(data)
    if fmt == "md":
        return _markdown(data)
    return _text(data, width, wide)


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
    return human_bytes(n)


def _header(data: dict, human: bool = False) -> list[str]:
    t = data["totals"]
    macs = human_macs if human else (lambda n: f"{n:,}")
    return [
        f"model {data['model']}  input {'x'.join(map(str, data['input_shape']))}  "
        f"convention {data['convention']}  update {data['update']}  optimizer {data['optimizer']}"
        f"  tracer {data['tracer']}",
        f"params {t['params']:,}  trainable {t['trainable_params']:,}  mac layers "
        f"{t['mac_layers']}  blocks {t['blocks']}",
        f"forward {macs(t['forward_macs'])} MACs  backward {macs(t['backward_macs'])} MACs "
        f"(input grad {macs(t['backward_input_macs'])} + weight grad "
        f"{macs(t['backward_weight_macs'])})",
    ]


def _profile_cell(key: str, value, wide: bool) -> str:
    if wide or value is None or isinstance(value, bool):
        return _cell(value)
    if key.endswith("_macs"):
        return human_macs(value)
    if key.endswith("_bytes"):
        return human_bytes(value)
    return _cell(value)


def _text(data: dict, width: int | None = DEFAULT_WIDTH, wide: bool = False) -> str:
    rows = [[_profile_cell(k, r[k], wide) for k, _ in _TABLE_COLUMNS]
            for r in _shown_layers(data)]
    heads = [h for _, h in _TABLE_COLUMNS]
    lines = fit_table(heads, rows, left=3, width=None if wide else width, squeeze=(0, 2))
    lines.append("")
    lines += wrap_lines(_header(data, human=not wide), None if wide else width)
    lines.append("memory (bytes):")
    for key, label in MEMORY_LABELS:
        value = data["memory"][key]
        lines.append(f"  {label:<36} {value:>14,}  {_human_bytes(value)}".rstrip())
    # Warnings go to stderr once (the CLI's warn_uncosted), not a second time here.
    return "\n".join(lines) + "\n"


def fit_table(heads: list[str], rows: list[list[str]], *, left: int | set = 1,
              width: int | None = DEFAULT_WIDTH, squeeze=(), optional=(),
              hidden_note: bool = True) -> list[str]:
    """An aligned table (the first `left` columns, or those in the set `left`, flush left, the
    others right) in at most `width` columns: the `squeeze` columns (long text such as names)
    are cut short after the `optional` columns are left out (in that order), then columns go
    from the right, and a last line says which (--wide shows them). No line ends in spaces. `width=None`: everything, as it is."""
    lefts = set(range(left)) if isinstance(left, int) else set(left)
    keep = list(range(len(heads)))
    cells = [list(r) for r in rows]

    def widths(columns):
        return {i: max(len(heads[i]), *(len(c[i]) for c in cells)) if cells else len(heads[i])
                for i in columns}

    w = widths(keep)

    def total(columns):
        return sum(w[i] for i in columns) + 2 * (len(columns) - 1)

    dropped: list[int] = []
    if width is not None and total(keep) > width:
        for i in optional:
            if total(keep) <= width:
                break
            keep.remove(i)
            dropped.append(i)
        for i in squeeze:  # cut long text down, but not below 16 characters
            excess = total(keep) - width
            if excess <= 0:
                break
            target = max(16, len(heads[i]), w[i] - excess)
            if target < w[i]:
                for c in cells:
                    if len(c[i]) > target:
                        c[i] = c[i][:target - 3] + "..."
                w[i] = target
        while total(keep) > width and len(keep) > 1:
            dropped.append(keep.pop())
        dropped.sort()
    out = []
    for row in [heads, *cells]:
        parts = [row[i].ljust(w[i]) if i in lefts else row[i].rjust(w[i]) for i in keep]
        out.append("  ".join(parts).rstrip())
    if dropped and hidden_note:
        names = ", ".join(heads[i] for i in dropped)
        out += wrap_lines([f"({len(dropped)} more column(s): {names}; --wide or "
                           "--format csv/json shows them)"], width)
    return out


def wrap_lines(lines: list[str], width: int | None, indent: str = "  ") -> list[str]:
    """Each line in at most `width` columns, continued on indented lines (words are not
    split: a single word longer than the width stays whole)."""
    if width is None:
        return [line.rstrip() for line in lines]
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line.rstrip())
            continue
        lead = line[:len(line) - len(line.lstrip())]
        out += textwrap.wrap(line, width, initial_indent="", subsequent_indent=lead + indent,
                             break_long_words=False, break_on_hyphens=False) or [""]
    return out


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


def render_rows(rows: list[dict], fields, fmt: str, width: int | None = DEFAULT_WIDTH,
                wide: bool = False, squeeze=(), heads: dict | None = None,
                optional=()) -> str:
    """A list of flat records as an aligned table, JSON or CSV. The table writes quantities
    for people by their field's unit (`_bytes`, `_macs`, `_s`, `_hz`; costmodel.units) and
    fits `width` (see `fit_table`; `squeeze` names the long text fields to cut first; `heads`
    short column names for some fields); `wide=True` gives every column with exact values
    under the fields' own names. JSON and CSV are exact."""
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
    fields = list(fields)
    cells = [[_row_cell(f, r[f], wide) for f in fields] for r in rows]
    text = {i for i, f in enumerate(fields)
            if any(isinstance(r[f], str) and not _NUMBER_LIKE.fullmatch(r[f]) for r in rows)
            and all(isinstance(r[f], str) or r[f] is None for r in rows)}
    heads = fields if wide else _heads(fields, heads or {})
    lines = fit_table(heads, cells, left=text, width=None if wide else width,
                      squeeze=[fields.index(f) for f in squeeze if f in fields],
                      optional=[fields.index(f) for f in optional if f in fields])
    return "\n".join(lines) + "\n"


_NUMBER_LIKE = re.compile(r"[-+]?[\d,.]*\s*%?")


_UNIT_SUFFIXES = (("_bytes", ""), ("_macs", " MACs"), ("_s", ""), ("_hz", ""), ("_j", ""))


def _heads(fields: list[str], given: dict) -> list[str]:
    """Columns' names for people: the unit is in the cells ('peak_bytes' -> 'peak'), unless
    that makes two names the same ('measured_s', 'measured_j' -> 'measured s', 'measured J')."""
    def short(field):
        for suffix, shown in _UNIT_SUFFIXES:
            if field.endswith(suffix) and len(field) > len(suffix):
                return field[: -len(suffix)] + shown
        return field

    names = [given.get(f) or short(f) for f in fields]
    return [(n if names.count(n) == 1 else f.replace("_j", "_J")).replace("_", " ")
            for n, f in zip(names, fields)]


def _row_cell(field: str, value, wide: bool) -> str:
    if wide or value is None or isinstance(value, (bool, str)):
        return _cell(value, "no")
    if isinstance(value, float) and value != value:  # NaN: not measured
        return "-"
    if field.endswith("_bytes"):
        return human_bytes(value)
    if field.endswith("_macs"):
        return human_macs(value)
    if field.endswith("_s"):
        return human_seconds(value)
    if field.endswith("_hz"):
        return human_hertz(value)
    if field.endswith("_j"):
        return human_joules(value)
    return _cell(value, "no")
