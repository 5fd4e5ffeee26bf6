"""Table 2's rows (`reports.table2`) as text: the terminal table (compact, or every column
with --wide), markdown, CSV, JSON and a booktabs LaTeX tabular; and the Figure-1-style plot."""

from __future__ import annotations

import csv
import io
import json

from matplotlib.ticker import FuncFormatter, NullFormatter

from ttplan.costmodel.errors import SpecError

from .figures import (COLUMN_WIDTH_IN, MIN_FONT_PT, TEXT_WIDTH_IN, figure_bytes, new_figure,
                      styled)
from .render import fit_table, wrap_lines
from .table2_paper import METHOD_LABELS, MIB, MODEL_LABELS

TABLE2_FORMATS = ("table", "md", "csv", "json", "latex")

_COLUMNS = ("model", "method", "batch", "paper MB", "ttplan MiB", "vs", "mem diff",
            "mem ratio", "A.4 MiB", "PyTorch MiB", "mem ratio A.4", "mem ratio PyTorch", "paper M",
            "ttplan M (paper count)", "exact M", "compute diff", "compute ratio")


def _flat(row: dict) -> dict:
    paper, diff = row["paper"], row["difference_pct"]
    return {
        "model": row["model"], "method": METHOD_LABELS[row["method"]],
        "batch": row["batch_size"],
        "paper MB": "-" if paper is None else f"{paper['memory_mb']:,g}",
        "ttplan MiB": _mib(row["memory_bytes"][row["compared"]["memory"]]),
        "vs": row["compared"]["memory"],
        "mem diff": "-" if diff is None else f"{diff['memory']:+.1f}%",
        "mem ratio": ratio_text(row["memory_ratio"]["compared"]),
        "A.4 MiB": _mib(row["memory_bytes"]["paper"]),
        "PyTorch MiB": _mib(row["memory_bytes"]["pytorch"]),
        "mem ratio A.4": ratio_text(row["memory_ratio"]["paper"]),
        "mem ratio PyTorch": ratio_text(row["memory_ratio"]["pytorch"]),
        "paper M": "-" if paper is None else f"{paper['compute_m']:g}",
        "ttplan M (paper count)": f"{row['backward_macs_paper_count'] / 1e6:.2f}",
        "exact M": f"{row['backward_macs'] / 1e6:.2f}",
        "compute diff": "-" if diff is None else f"{diff['compute']:+.1f}%",
        "compute ratio": ratio_text(row["compute_ratio"]["paper_count"]),
    }


def ratio_text(value: float) -> str:
    """As the paper prints ratios: whole numbers from 100 on, two decimals below."""
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def _mib(n: int) -> str:
    value = n / MIB
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


# The paper's compact layout (md, and the terminal table): one line per method, the model
# named once, ttplan's memory and compute beside the paper's with the relative difference;
# a difference over 10 % in bold (md). `--wide`, csv and json keep every column.
COMPACT_COLUMNS = ("model", "method", "batch", "paper MB", "ttplan MiB (convention)", "diff",
                   "paper MMACs", "ttplan (paper count)", "diff")
# The same columns in a terminal, under names that fit 100 columns.
TERMINAL_COLUMNS = ("model", "method", "batch", "paper MB", "ttplan MiB", "diff", "paper M",
                    "ttplan M", "diff")
FLAGGED_PCT = 10.0


def _paper_number(value: float) -> str:
    """As the paper prints: 906, 1,049, 44.9, 2.03, 0.80."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _difference(pct, bold: bool) -> str:
    if pct is None:
        return "-"
    text = f"{pct:+.1f} %".replace("-", "\u2212")
    return f"**{text}**" if bold and abs(pct) > FLAGGED_PCT else text


def compact_rows(rows: list[dict], bold: bool = False) -> list[list[str]]:
    out, previous = [], None
    for r in rows:
        paper, diff = r["paper"], r["difference_pct"] or {}
        convention = r["compared"]["memory"]
        out.append([
            MODEL_LABELS.get(r["model"], r["model"]) if r["model"] != previous else "",
            METHOD_LABELS[r["method"]], str(r["batch_size"]),
            "-" if paper is None else _paper_number(paper["memory_mb"]),
            f"{_mib(r['memory_bytes'][convention])} ({convention})",
            _difference(diff.get("memory"), bold),
            "-" if paper is None else _paper_number(paper["compute_m"]),
            f"{r['backward_macs_paper_count'] / 1e6:.2f}",
            _difference(diff.get("compute"), bold)])
        previous = r["model"]
    return out


def render_table2(data: dict, fmt: str, width: int | None = None, wide: bool = False) -> str:
    if fmt not in TABLE2_FORMATS:
        raise SpecError(f"unknown --format {fmt!r}: use {', '.join(TABLE2_FORMATS)}")
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "latex":
        return latex_table2(data["rows"])
    if fmt == "csv":
        return csv_table2(data["rows"])
    if fmt == "md":
        rows = compact_rows(data["rows"], bold=True)
        lines = ["| " + " | ".join(COMPACT_COLUMNS) + " |", "|" + "---|" * len(COMPACT_COLUMNS)]
        lines += ["|" + "|".join(f" {c} " if c else " " for c in r) + "|" for r in rows]
        return "\n".join(lines) + f"\n\n{data['note']}\n"
    if wide:
        flat = [_flat(r) for r in data["rows"]]
        cells = [[str(f[c]) for c in _COLUMNS] for f in flat]
        lines = fit_table(list(_COLUMNS), cells, left=2, width=None)
        return "\n".join(lines) + f"\n{data['note']}\n"
    lines = fit_table(list(TERMINAL_COLUMNS), compact_rows(data["rows"]), left=2, width=width)
    return "\n".join(lines + wrap_lines([data["note"]], width, "")) + "\n"


CSV_FIELDS = ("model", "method", "batch_size", "memory_bytes_paper", "memory_bytes_pytorch",
              "backward_macs", "backward_macs_paper_count", "paper_memory_mb", "paper_compute_m",
              "memory_compared", "memory_difference_pct", "compute_difference_pct",
              "memory_ratio_compared", "memory_ratio_paper", "memory_ratio_pytorch",
              "compute_ratio_exact",
              "compute_ratio_paper_count")


def csv_table2(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        paper, diff = r["paper"] or {}, r["difference_pct"] or {}
        writer.writerow({
            "model": r["model"], "method": r["method"], "batch_size": r["batch_size"],
            "memory_bytes_paper": r["memory_bytes"]["paper"],
            "memory_bytes_pytorch": r["memory_bytes"]["pytorch"],
            "backward_macs": r["backward_macs"],
            "backward_macs_paper_count": r["backward_macs_paper_count"],
            "paper_memory_mb": paper.get("memory_mb"), "paper_compute_m": paper.get("compute_m"),
            "memory_compared": r["compared"]["memory"],
            "memory_difference_pct": diff.get("memory"),
            "compute_difference_pct": diff.get("compute"),
            "memory_ratio_compared": r["memory_ratio"]["compared"],
            "memory_ratio_paper": r["memory_ratio"]["paper"],
            "memory_ratio_pytorch": r["memory_ratio"]["pytorch"],
            "compute_ratio_exact": r["compute_ratio"]["exact"],
            "compute_ratio_paper_count": r["compute_ratio"]["paper_count"]})
    return buffer.getvalue()


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex_memory(n_bytes: int) -> str:
    return f"{_mib(n_bytes)} MB"  # MiB, written "MB" as the paper writes it


def _latex_ratio(value: float) -> str:
    text = "1" if value == 1 else ratio_text(value)[:-1]
    return text + r" $\times$"


def latex_table2(rows: list[dict]) -> str:
    """The paper's Table 2 layout as a booktabs tabular (needs \\usepackage{booktabs}): Model,
    Method, Memory, Ratio, Compute, Ratio; the model named on its first row, TinyTrain in
    italics with its figures in bold, ratios to TinyTrain. ttplan's memory is the compared
    convention's peak (PyTorch at batch 100, A.4 at batch 1; MiB written "MB" as the paper
    does), compute the paper count per sample. The paper's own figures: md, csv, json."""
    lines = [r"\begin{tabular}{llrrrr}", r"\toprule",
             r"Model & Method & Memory & Ratio & Compute & Ratio \\", r"\midrule"]
    previous = None
    for r in rows:
        if previous is not None and r["model"] != previous:
            lines.append(r"\midrule")
        model = latex_escape(MODEL_LABELS.get(r["model"], r["model"])) \
            if r["model"] != previous else ""
        previous = r["model"]
        ours = r["method"] == "tinytrain"
        memory = _latex_memory(r["memory_bytes"][r["compared"]["memory"]])
        compute = f"{_paper_number(r['backward_macs_paper_count'] / 1e6)}M"
        if ours:
            memory, compute = r"\textbf{" + memory + "}", r"\textbf{" + compute + "}"
        method = METHOD_LABELS[r["method"]]
        cells = [model, r"\textit{" + method + "}" if ours else method, memory,
                 _latex_ratio(r["memory_ratio"]["compared"]), compute,
                 _latex_ratio(r["compute_ratio"]["paper_count"])]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- figure

_LABEL_OFFSET = {"fulltrain": 15, "tinytl": -17, "lastlayer": 13, "sparseupdate": 14,
                 "tinytrain": -14}  # points above (+) or below (-) the marker
_MARKERS = {"fulltrain": "o", "lastlayer": "v", "tinytl": "s", "sparseupdate": "D",
            "tinytrain": "*"}


@styled
def plot_table2(rows: list[dict], fmt: str = "png") -> bytes:
    """Figure-1-style: backward MACs per sample (x, log) against peak memory under the PyTorch
    convention (y, log; one quantity for every method, at the paper's batch sizes), one marker
    per method, labelled with its memory ratio to TinyTrain."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = new_figure(TEXT_WIDTH_IN if len(models) > 1 else COLUMN_WIDTH_IN, 2.9,
                           ncols=len(models))
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        for r in mine:
            memory = r["memory_bytes"]["pytorch"] / MIB
            macs = r["backward_macs_paper_count"] / 1e6
            ax.scatter([macs], [memory], s=45, marker=_MARKERS[r["method"]],
                       label=METHOD_LABELS[r["method"]], alpha=0.85, edgecolors="black",
                       linewidths=0.5)
            ax.annotate(ratio_text(r["memory_ratio"]["pytorch"]).replace("x", "\u00d7"),
                        (macs, memory), textcoords="offset points",
                        xytext=(0, 9 if _LABEL_OFFSET[r["method"]] > 0 else -10),
                        fontsize=MIN_FONT_PT, ha="center", va="center")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.margins(0.2)
        ax.set_title(MODEL_LABELS.get(model, model))
        ax.set_xlabel("backward MACs per sample (M)")
    axes[0][0].set_ylabel("peak memory, PyTorch (MiB)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    across = len(labels) if len(models) > 1 else 3  # one column: the legend on two lines
    fig.legend(handles, labels, loc="lower center", ncol=across, frameon=False,
               markerscale=0.8, handletextpad=0.2, columnspacing=1.0)
    fig.tight_layout(rect=(0, 0.1 if len(models) > 1 else 0.17, 1, 1))
    return figure_bytes(fig, fmt)
