"""The paper's Table 2 setting for any model, beside the paper's printed figures for the zoo.

Setting (§3.2, A.3, A.4): FullTrain and TinyTL at batch 100; LastLayer, SparseUpdate and
TinyTrain at batch 1; SGD with momentum (A.3) unless told otherwise. TinyTrain is planned
within the budgets (default 1 MB and 15 % of full training's backward MACs, §2.2);
SparseUpdate is the released scheme as released (no budget) for a zoo model, and the
evolutionary search within TinyTrain's budgets for any other model. Every method is planned
once (under the `paper` convention, so one policy means the same layers) and that update is
then costed under both conventions at the method's batch size.

Per row:
* memory_bytes.paper / .pytorch: the configuration's `peak_bytes` under each convention.
* backward_macs: the exact backward MACs for ONE sample (the paper's compute column is per
  sample, also for the batch-100 rows).
* backward_macs_paper_count: A.4's count, "the backward pass incurs 2x more MACs than the
  forward pass": 2 x forward MACs when every layer is trained (FullTrain); the exact count
  otherwise (the paper's LastLayer figures, e.g. 0.80M for MobileNetV2, are the exact weight
  gradient with no input gradient).
* memory_ratio / compute_ratio: to the TinyTrain row, per convention / per count.
* paper: the paper's printed Table 2 (zoo models), memory in MB, compute in millions. Its
  "MB" is compared as MiB (2^20 B): that is the unit in which ttplan reproduces FullTrain's
  906 / 1,049 / 857 MB (docs/cost-model.md, "Memory").
* compared / difference_pct: which ttplan figure each printed figure is set against, and the
  relative difference (ttplan / paper - 1). Memory: the `pytorch` convention for the batch-100
  rows (the documented FullTrain accounting), the `paper` convention (A.4's engine) for the
  batch-1 rows; compute: the paper count.
"""

from __future__ import annotations

import csv
import io
import json
import sys

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.options import PAPER
from ttplan.costmodel.profile import ModelSource, profile, resolve_model
from ttplan.costmodel.zoo import ZOO_MODELS
from ttplan.planner.api import plan
from ttplan.planner.support.sources import load_support
from ttplan.planner.fisher import default_candidate_layers, fisher_information

from matplotlib.ticker import FuncFormatter, NullFormatter

from .figures import (COLUMN_WIDTH_IN, MIN_FONT_PT, TEXT_WIDTH_IN, figure_bytes, new_figure,
                      styled)
from .predict import for_model, predict
from .render import fit_table, wrap_lines

METHODS = ("fulltrain", "lastlayer", "tinytl", "sparseupdate", "tinytrain")  # the paper's order
METHOD_LABELS = {"fulltrain": "FullTrain", "lastlayer": "LastLayer", "tinytl": "TinyTL",
                 "sparseupdate": "SparseUpdate", "tinytrain": "TinyTrain"}
MODEL_LABELS = {"mcunet-5fps": "MCUNet", "mbv2-w0.35": "MobileNetV2",
                "proxyless-w0.3": "ProxylessNASNet"}
BATCH_SIZES = {"fulltrain": 100, "tinytl": 100}  # §3.2; the others train with batch 1
TABLE2_FORMATS = ("table", "md", "csv", "json", "latex")
MIB = 2**20

# Table 2 of the paper as printed: (memory in MB, backward compute in millions of MACs).
PAPER_TABLE2 = {
    "mcunet-5fps": {"fulltrain": (906, 44.9), "lastlayer": (2.03, 1.57), "tinytl": (542, 26.4),
                    "sparseupdate": (1.43, 11.9), "tinytrain": (0.89, 6.51)},
    "mbv2-w0.35": {"fulltrain": (1049, 34.9), "lastlayer": (1.64, 0.80), "tinytl": (587, 16.4),
                   "sparseupdate": (2.08, 8.10), "tinytrain": (1.06, 4.90)},
    "proxyless-w0.3": {"fulltrain": (857, 38.4), "lastlayer": (1.06, 0.59),
                       "tinytl": (541, 17.8), "sparseupdate": (1.74, 7.60),
                       "tinytrain": (0.78, 5.00)},
}

PROBE_SAMPLES = 25
PROBE_SEED = 0


def synthetic_fisher(module, input_shape, samples: int = PROBE_SAMPLES, seed: int = PROBE_SEED,
                     vocab: int | None = None):
    """The Fisher probe on synthetic samples (as `ttplan fisher --synthetic`); `input_shape`
    may be `costmodel.inputs.ModelInputs` (`vocab`: synthetic token ids' range)."""
    x, y, _ = load_support(None, input_shape, samples, seed, True, vocab)
    return fisher_information(module, default_candidate_layers(module), x, y, seed=seed)


def table2_rows(model, *, fisher=None, input_shape=(1, 3, 128, 128), memory_bytes=1_000_000,
                compute=0.15, optimizer: str = "momentum", log=None,
                predictor=None) -> list[dict]:
    """The five rows of one model (see the module docstring). `fisher`: a Fisher file, a
    FisherResult, or None (the synthetic probe, seed 0, 25 samples; `log` is told). With a
    device `predictor` (`reports.predict`) each row also has `device`: {time_s, energy_j,
    fits_ram} of the method's run at its batch size."""
    module, name = resolve_model(model)
    predictor = for_model(predictor, module)
    sample_shape = (1,) + tuple(int(d) for d in input_shape)[1:]
    if fisher is None:
        if log is not None:
            log(f"{name}: no Fisher file given; using the synthetic probe "
                f"({PROBE_SAMPLES} samples, seed {PROBE_SEED})")
        fisher = synthetic_fisher(module, sample_shape)
    zoo = name in ZOO_MODELS
    options = PAPER.replace(optimizer=optimizer)
    rows = []
    for method in METHODS:
        batch = BATCH_SIZES.get(method, 1)
        shape = (batch,) + sample_shape[1:]
        budgets = {}
        if method == "tinytrain" or (method == "sparseupdate" and not zoo):
            budgets = {"memory_bytes": memory_bytes, "compute": compute}
        policy = plan(ModelSource(module, name), method=method, inputs=shape,
                      fisher=fisher if method in ("tinytrain", "sparseupdate") else None,
                      options=options, **budgets)
        updates = policy.updates()
        costs = {c: profile(ModelSource(module, name), shape, update=updates,
                            options=policy.options.under(c), graph=policy.graph)
                 for c in ("paper", "pytorch")}
        totals = costs["paper"].totals
        backward = totals["backward_macs"] // batch
        # "2 x forward" is A.4's count of a full backward pass: every weight updated.
        full = all(r["backward_weight_macs"] == r["forward_macs"]
                   for r in costs["paper"].evaluation.rows if r["forward_macs"])
        printed = PAPER_TABLE2.get(name, {}).get(method)
        rows.append({
            "model": name, "method": method, "batch_size": batch,
            "memory_bytes": {c: costs[c].memory.peak_bytes for c in costs},
            "backward_macs": backward,
            "backward_macs_paper_count": 2 * totals["forward_macs"] // batch if full else backward,
            "paper": None if printed is None else {"memory_mb": printed[0], "compute_m": printed[1]},
            "compared": {"memory": "pytorch" if batch > 1 else "paper",
                         "compute": "backward_macs_paper_count"},
        })
        if predictor is not None:
            rows[-1]["device"] = predict(predictor, method, policy.graph, updates, policy.options)
    _ratios_and_differences(rows)
    return rows


def _ratios_and_differences(rows: list[dict]) -> None:
    ref = next(r for r in rows if r["method"] == "tinytrain")
    for row in rows:
        row["memory_ratio"] = {c: round(v / ref["memory_bytes"][c], 2)
                               for c, v in row["memory_bytes"].items()}
        # As the paper's Ratio column: the figure shown over TinyTrain's figure shown.
        shown = row["memory_bytes"][row["compared"]["memory"]]
        row["memory_ratio"]["compared"] = round(
            shown / ref["memory_bytes"][ref["compared"]["memory"]], 2)
        row["compute_ratio"] = {
            "exact": round(row["backward_macs"] / ref["backward_macs"], 2),
            "paper_count": round(row["backward_macs_paper_count"]
                                 / ref["backward_macs_paper_count"], 2)}
        paper = row["paper"]
        if paper is None:
            row["difference_pct"] = None
            continue
        memory = row["memory_bytes"][row["compared"]["memory"]] / MIB
        row["difference_pct"] = {
            "memory": round(100 * (memory / paper["memory_mb"] - 1), 1),
            "compute": round(100 * (row["backward_macs_paper_count"] / 1e6
                                    / paper["compute_m"] - 1), 1)}


def table2(models, *, fishers: dict | None = None, log=None, **options) -> dict:
    """{rows, settings}: the rows of every model, in order."""
    rows = []
    for model in models:
        fisher = (fishers or {}).get(model if isinstance(model, str) else None)
        rows += table2_rows(model, fisher=fisher, log=log, **options)
    settings = {k: options.get(k, v) for k, v in (("memory_bytes", 1_000_000),
                                                   ("compute", 0.15), ("optimizer", "momentum"))}
    if not isinstance(settings["compute"], (int, float)):
        settings["compute"] = str(settings["compute"])
    return {"rows": rows, "settings": settings, "note": NOTE}


NOTE = ("memory: peak bytes (paper = A.4's engine, BN folded, frozen weights in flash; "
        "pytorch = what eager PyTorch keeps); the paper's MB compared as MiB, against the "
        "pytorch convention at batch 100 and the paper convention at batch 1. compute: "
        "backward MACs per sample; paper count = 2 x forward for FullTrain (A.4), exact "
        "otherwise.")


# ---------------------------------------------------------------------------- rendering

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


def stderr_log(message: str) -> None:
    sys.stderr.write(f"note: {message}\n")
