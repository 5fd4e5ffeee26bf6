"""One report per model: profile summary, the plan and why, Table 2, what-if maps, layers.

`build_report` computes every section's data once; `render_html` makes one self-contained
HTML file (figures as base64 PNG, the data as embedded JSON, no network), `write_markdown`
a folder with report.md, the PNGs and the data as JSON/CSV. Nothing depends on the clock:
the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from ttplan.costmodel.config import channel_count
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.fileio import write_bytes_atomic, write_text_atomic
from ttplan.costmodel.profile import ModelSource, resolve_model
from ttplan.costmodel.specs import Budgets
from ttplan.planner.api import PlanSearch, plan
from ttplan.planner.context import PlanningContext
from ttplan.planner.selection.score import ranked
from ttplan.planner.selection.select import Budget

from .figures import VECTOR_FORMATS
from .layers import layer_rows, plot_layers, render_layers
from .predict import for_model, predict
from .table2_paper import PAPER_BUDGETS
from .table2 import (METHOD_LABELS, csv_table2, plot_table2, synthetic_fisher, table2_rows)
from .whatif import (parse_methods, parse_range, plot_heatmaps, plot_pareto, render_whatif,
                     run_whatif, whatif_data)

VERSION_LINE = "ttplan report"


@dataclass
class Report:
    title: str
    summary: list[tuple[str, str]]
    data: dict  # section -> JSON-ready data
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    # figure stem -> draw(format): the vector files (SVG, PDF) the Markdown folder holds too,
    # drawn only when written
    drawers: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WhatifAxes:
    """A report's what-if grid: `memory` and `compute` ranges as `whatif.parse_range` reads
    them ("50KB:300KB:3"; memory by default half to twice the plan's budget) and the
    `methods` planned in each cell (a tuple, or comma-separated text), checked when built."""

    memory: str | None = None
    compute: str = "2%:60%:6"
    methods: tuple = ("tinytrain", "sparseupdate")

    def __post_init__(self) -> None:
        # Checked when built, before any work: the ranges' and methods' one-line messages.
        if isinstance(self.methods, str):
            object.__setattr__(self, "methods", parse_methods(self.methods))
        if self.memory is not None:
            parse_range(self.memory, "memory")
        parse_range(self.compute, "compute")


def build_report(model, *, fisher=None, budgets: Budgets = PAPER_BUDGETS,
                 solver: str = "greedy", input_shape=(1, 3, 128, 128),
                 whatif: WhatifAxes | None = None, predictor=None, log=None) -> Report:
    """The report of one model (module docstring): `model` as `plan` takes it (a
    `ModelSource` names it), its plan under `budgets` (both memory and compute), the
    what-if grid `whatif`, the device `predictor` (`reports.predict`)."""
    whatif = whatif if whatif is not None else WhatifAxes()
    if budgets.memory_bytes is None or budgets.compute is None:
        raise SpecError("a report plans within a memory and a compute budget: give both")
    memory_bytes, budget_compute = budgets.memory_bytes, budgets.compute
    module, name = resolve_model(model)
    predictor = for_model(predictor, module)
    if fisher is None:
        if log is not None:
            log(f"{name}: no Fisher file given; using the synthetic probe (25 samples, seed 0)")
        fisher = synthetic_fisher(module, (1,) + tuple(input_shape)[1:])
    context = PlanningContext(ModelSource(module, name), fisher=fisher, inputs=input_shape)
    name = context.model_name
    policy = plan(ModelSource(context.module, name), fisher=context.fisher,
                  memory_bytes=memory_bytes, compute=budget_compute, search=PlanSearch(solver),
                  inputs=context.input_shape)
    budgets = policy.budgets
    chosen = _why_chosen(context, policy.updates(), Budget(budgets["memory_bytes"],
                                                           budgets["compute_macs"]))
    predicted = policy.predicted
    device = predict(predictor, policy.method, policy.graph, policy.updates(), policy.options)

    rows2 = table2_rows(ModelSource(context.module, name), fisher=context.fisher,
                        input_shape=context.input_shape, memory_bytes=memory_bytes,
                        compute=budget_compute, predictor=predictor)
    grid_memory = parse_range(whatif.memory or f"{memory_bytes // 2}:{memory_bytes * 2}:6",
                              "memory")
    grid_compute = parse_range(whatif.compute, "compute")
    cells = run_whatif(context, grid_memory, grid_compute, methods=whatif.methods,
                       solver=solver, predictor=predictor)
    whatif = whatif_data(context, cells, solver)
    layers = layer_rows(context, policy.updates())

    totals, nothing = predicted["totals"], context.nothing
    summary = [
        ("model", name), ("input", "x".join(map(str, context.input_shape))),
        ("parameters (BN folded)", f"{sum(r['params'] for r in nothing.rows):,}"),
        ("forward MACs", f"{totals['forward_macs']:,}"),
        ("full training backward MACs", f"{context.full_backward_macs:,}"),
        ("inference I/O peak (F2)", f"{nothing.memory.io_buffer_bytes:,} B"),
        ("convention", "paper (A.4: BN folded, frozen weights in flash, fp32)"),
        ("budgets", f"memory {budgets['memory_bytes']:,} B, compute "
                    f"{budgets['compute_macs']:,} backward MACs"),
        ("plan", f"{policy.method} ({solver}): {len(policy.layers)} layers, peak "
                 f"{predicted['memory']['peak_bytes']:,} B, {totals['backward_macs']:,} "
                 f"backward MACs, {_percent(context.fisher_fraction(policy.updates()))} "
                 "of the Fisher potential"),
        ("device", _device_line(predictor, device)),
    ]
    data = {"summary": dict(summary), "plan": {"policy": policy.to_dict(), "why": chosen,
                                               "device": device,
                                               "device_model": getattr(predictor, "label", None)
                                               if predictor is not None else None},
            "table2": {"rows": rows2}, "whatif": whatif, "layers": {"layers": layers}}
    drawers = {"table2": lambda fmt: plot_table2(rows2, fmt),
               "whatif": lambda fmt: plot_heatmaps(whatif, fmt),
               "pareto": lambda fmt: plot_pareto(whatif, fmt),
               "layers": lambda fmt: plot_layers(layers, f"{name}: per-layer cost and value", fmt)}
    figures = {f"{stem}.png": draw("png") for stem, draw in drawers.items()}
    return Report(f"ttplan report: {name}", summary, data, figures, drawers)


def _device_line(predictor, device: dict) -> str:
    if predictor is None:
        return "no device model given"
    fits = {True: "yes", False: "no", None: "unknown (RAM not known)"}[device["fits_ram"]]
    label = getattr(predictor, "label", "device model")
    return (f"{label}: time {_num(device['time_s'])} s, energy {_num(device['energy_j'])} J, "
            f"fits RAM: {fits}")


def _why_chosen(context, updates: dict, budget: Budget) -> list[dict]:
    """The plan's layers in Eq. 3 order (Algorithm 1's order), each with what the plan costs
    once it and every layer before it are in, and the budget left."""
    order = [c for c in ranked(context.candidates) if c.name in updates]
    extra = [n for n in updates if n not in {c.name for c in order}]
    steps, so_far = [], {}
    by_name = {c.name: c for c in context.candidates}
    for name in [c.name for c in order] + extra:
        so_far[name] = updates[name]
        ev = context.coster.evaluate(so_far)
        cand = by_name.get(name)
        peak, macs = ev.memory.peak_bytes, ev.totals["backward_macs"]
        steps.append({
            "layer": name, "score": cand.score.score if cand else None,
            "channels": context.channels_updated({name: updates[name]}),
            "channels_total": (channel_count(context.graph[name], updates[name].channel_axis)
                               if updates[name].weight else 0),
            "bias": bool(updates[name].bias),
            "fisher_fraction": context.fisher_fraction({name: updates[name]}),
            "peak_bytes": peak, "backward_macs": macs,
            "memory_left_bytes": None if budget.memory_bytes is None else budget.memory_bytes - peak,
            "compute_left_macs": None if budget.compute_macs is None else budget.compute_macs - macs,
        })
    return steps


# ---------------------------------------------------------------------------- cells

def _percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}%"


def _int(value) -> str:
    return "-" if value is None else f"{value:,}"


def _of(count, total) -> str:
    """A channel count with the total it is chosen from: '60 of 240'."""
    return _int(count) if not total else f"{count:,} of {total:,}"


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def why_table(steps) -> tuple[list[str], list[list[str]]]:
    heads = ["layer", "s_i", "channels", "bias", "Fisher", "peak B", "memory left B",
             "backward MACs", "compute left MACs"]
    return heads, [[s["layer"], _num(s["score"]), _of(s["channels"], s.get("channels_total")),
                    "yes" if s["bias"] else "no", _percent(s["fisher_fraction"]),
                    _int(s["peak_bytes"]), _int(s["memory_left_bytes"]),
                    _int(s["backward_macs"]), _int(s["compute_left_macs"])] for s in steps]


def plan_device_table(plan_data) -> tuple[list[str], list[list[str]]]:
    return ["device model"] + DEVICE_HEADS, [[plan_data["device_model"]]
                                             + _device_cells(plan_data["device"])]


def table2_table(rows) -> tuple[list[str], list[list[str]]]:
    heads = ["method", "batch", "memory B (paper conv.)", "memory B (pytorch conv.)",
             "backward MACs", "backward MACs (paper count)", "paper MB", "paper M MACs",
             "memory diff", "compute diff"]
    out = []
    for r in rows:
        paper, diff = r["paper"], r["difference_pct"]
        out.append([METHOD_LABELS[r["method"]], str(r["batch_size"]),
                    _int(r["memory_bytes"]["paper"]), _int(r["memory_bytes"]["pytorch"]),
                    _int(r["backward_macs"]), _int(r["backward_macs_paper_count"]),
                    "-" if paper is None else f"{paper['memory_mb']:g}",
                    "-" if paper is None else f"{paper['compute_m']:g}",
                    "-" if diff is None else f"{diff['memory']:+.1f}%",
                    "-" if diff is None else f"{diff['compute']:+.1f}%"]
                   + (_device_cells(r["device"]) if "device" in r else []))
    if any("device" in r for r in rows):
        heads += DEVICE_HEADS
    return heads, out


DEVICE_HEADS = ["device time s", "device energy J", "fits RAM"]


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _device_cells(device: dict) -> list[str]:
    return [_num(device["time_s"]), _num(device["energy_j"]), _yes_no(device["fits_ram"])]


def whatif_table(cells) -> tuple[list[str], list[list[str]]]:
    heads = ["method", "memory budget B", "compute budget MACs", "feasible", "layers",
             "channels", "Fisher", "backward MACs", "peak B"] + DEVICE_HEADS
    return heads, [[c["method"], _int(c["memory_bytes"]), _int(c["compute_macs"]),
                    "yes" if c["feasible"] else "no", _int(c["layers"]), _int(c["channels"]),
                    _percent(c["fisher_fraction"]), _int(c["backward_macs"]),
                    _int(c["peak_bytes"])] + _device_cells(c)
                   for c in cells]


def layers_table(rows) -> tuple[list[str], list[list[str]]]:
    heads = ["layer", "kind", "weights B", "saved input B", "backward weight MACs",
             "backward input MACs", "Fisher", "s_i", "rank", "selected"]
    return heads, [[r["name"], r["kind"], _int(r["weight_bytes"]), _int(r["saved_input_bytes"]),
                    _int(r["backward_weight_macs"]), _int(r["backward_input_macs"]),
                    _percent(r["fisher_fraction"]), _num(r["score"]), _int(r["rank"]),
                    "" if not r["selected"] else
                    ("bias" if r["channels_selected"] is None
                     else _of(r["channels_selected"], r["channels"]))] for r in rows]


def _sections(report: Report):
    d = report.data
    return [
        ("plan", "The plan, and why each layer", "Layers in the order Algorithm 1 takes them "
         "(highest s_i first); each line is the plan with that layer and all above it.",
         [why_table(d["plan"]["why"])] + ([plan_device_table(d["plan"])]
                                          if d["plan"]["device_model"] else []), []),
        ("table2", "Table 2 setting", "FullTrain and TinyTL at batch 100, the others at batch 1; "
         "backward MACs per sample; the paper's figures beside ttplan's for the zoo models.",
         [table2_table(d["table2"]["rows"])], ["table2.png"]),
        ("whatif", "What-if: budgets against captured Fisher", "Each cell is a plan; '-' where nothing "
         "fits. Fisher is the share of the task's total Fisher potential the plan updates.",
         [whatif_table(d["whatif"]["cells"])], ["whatif.png", "pareto.png"]),
        ("layers", "Per layer (Figure 3 style)", "Candidate layers in execution order; the plan's "
         "layers highlighted.", [layers_table(d["layers"]["layers"])], ["layers.png"]),
    ]


# ---------------------------------------------------------------------------- HTML

# A page that never scrolls sideways: wide tables scroll inside their own box, figures shrink
# to the page; long tables are collapsed (<details>) so the figures stay together.
_CSS = ("body{font-family:sans-serif;margin:2em auto;padding:0 1em;max-width:1100px;"
        "line-height:1.4}"
        ".scroll{overflow-x:auto;max-width:100%}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
        "th{background:#eee}td:first-child,th:first-child{text-align:left}"
        "table.summary td,table.summary th{white-space:normal;text-align:left}"
        "img{max-width:100%;height:auto;display:block;margin:0.5em 0}"
        "summary{cursor:pointer;color:#245;margin:0.5em 0}")

# Tables longer than this are collapsed under a one-line summary.
COLLAPSE_ROWS = 12


def _html_table(heads, rows, cls: str) -> str:
    out = [f'<div class="scroll"><table class="{cls}">',
           "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</table></div>")
    table = "\n".join(out)
    if len(rows) > COLLAPSE_ROWS:
        return (f"<details><summary>{len(rows)} rows: show the table</summary>\n{table}\n"
                "</details>")
    return table


def _html_summary(pairs) -> str:
    """The profile summary: one row per item, the item as the row's header (no header row)."""
    rows = "\n".join(f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>'
                     for k, v in pairs)
    return f'<div class="scroll"><table class="summary">\n{rows}\n</table></div>'


def render_html(report: Report) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>", "<h2>Profile summary</h2>",
             _html_summary(report.summary)]
    for key, title, text, tables, figures in _sections(report):
        parts += [f'<h2 id="{key}">{html.escape(title)}</h2>', f"<p>{html.escape(text)}</p>"]
        for name in figures:
            encoded = base64.b64encode(report.figures[name]).decode("ascii")
            parts.append(f'<img alt="{name}" src="data:image/png;base64,{encoded}">')
        for heads, rows in tables:
            parts.append(_html_table(heads, rows, key))
    data = json.dumps(report.data, indent=1, sort_keys=True).replace("</", "<\\/")
    parts += ['<h2>Data</h2><p>Every table and figure above as JSON:</p>',
              f'<script type="application/json" id="ttplan-data">{data}</script>',
              f"<p><small>{VERSION_LINE}</small></p></body></html>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- Markdown

def _md_table(heads, rows) -> str:
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    table = "\n".join(lines)
    if len(rows) > COLLAPSE_ROWS:  # GitHub and most renderers fold <details>
        return (f"<details><summary>{len(rows)} rows: show the table</summary>\n\n{table}\n\n"
                "</details>")
    return table


def write_markdown(report: Report, folder) -> list[str]:
    """report.md, the figures and the data files into `folder` (created); the names written."""
    directory = Path(folder)
    if directory.exists() and not directory.is_dir():
        raise SpecError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# {report.title}", "", "## Profile summary", ""]
    lines += [f"- **{k}**: {v}" for k, v in report.summary] + [""]
    for _, title, text, tables, figures in _sections(report):
        lines += [f"## {title}", "", text, ""]
        lines += [f"![{name}]({name}) (vector: [SVG]({name[:-4]}.svg), [PDF]({name[:-4]}.pdf))"
                  for name in figures] + [""]
        for heads, rows in tables:
            lines += [_md_table(heads, rows), ""]
    written = {}
    written["report.md"] = "\n".join(lines).rstrip("\n") + "\n"
    written["report.json"] = json.dumps(report.data, indent=1, sort_keys=True) + "\n"
    written["table2.csv"] = csv_table2(report.data["table2"]["rows"])
    written["whatif.csv"] = render_whatif(report.data["whatif"], "csv")
    written["layers.csv"] = render_layers(report.data["layers"]["layers"], "csv")
    for name, text in written.items():
        write_text_atomic(directory / name, text)
    for name, png in report.figures.items():
        write_bytes_atomic(directory / name, png)
    vectors = {f"{stem}.{fmt}": draw(fmt) for stem, draw in report.drawers.items()
               for fmt in VECTOR_FORMATS}
    for name, data in vectors.items():
        write_bytes_atomic(directory / name, data)
    return sorted(list(written) + list(report.figures) + list(vectors))
