"""Per-layer view in the style of the paper's Figure 3: what each candidate layer costs and
what it is worth.

One row per candidate layer (the layers the Fisher probe measured; every conv/linear layer
without a probe), in execution order, at batch 1 under the `paper` convention (BatchNorm
folded, fp32 unless the bit-widths say otherwise):
  weight_bytes        the layer's deployed parameters (weights + folded bias) in bytes
  saved_input_bytes   its input, which updating its weights keeps for backward (B4)
  backward_weight_macs / backward_input_macs   its weight- and input-gradient MACs (each
                      equals its forward MACs for a full update)
  fisher_potential    P_i (Eq. 2, summed over output channels) and its share of the total
  score               s_i (Eq. 3), and its rank (1 = chosen first by Algorithm 1)
  selected            with a policy: updated or not, and channels updated / channels
"""

from __future__ import annotations

import csv
import io
import json
import math

from ttplan.costmodel.config import channel_count
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.graph import MAC_KINDS

from ttplan.costmodel.units import human_bytes, human_macs

from .figures import MIN_FONT_PT, TEXT_WIDTH_IN, figure_bytes, new_figure, styled
from .render import DEFAULT_WIDTH, fit_table

LAYER_FIELDS = ("name", "kind", "position", "params", "weight_bytes", "saved_input_bytes",
                "forward_macs", "backward_weight_macs", "backward_input_macs",
                "fisher_potential", "fisher_fraction", "score", "rank", "selected",
                "channels_selected", "channels")
LAYER_FORMATS = ("table", "csv", "json")


def layer_rows(context, updates: dict | None = None) -> list[dict]:
    """The rows (module docstring) of a `planner.context.PlanningContext`; `updates` is a
    policy's {layer: LayerUpdate} to mark as selected."""
    costed = context.coster.costed
    rows = {r["name"]: r for r in context.nothing.rows}
    weight_bytes_per_param = context.options.weight_bits / 8
    if context.options.convention != "paper":
        raise SpecError("the per-layer view is drawn under the paper convention")
    by_name = {c.name: c for c in context.candidates}
    names = [c.name for c in context.candidates] or \
        [n.name for n in costed.ops() if n.kind in MAC_KINDS]
    ranked = sorted(context.candidates, key=lambda c: (-c.score.score, -c.position))
    rank = {c.name: i + 1 for i, c in enumerate(ranked)}
    position = {name: i for i, name in enumerate(context.graph.order)}
    batch = context.input_shape[0]
    out = []
    for name in names:
        node, row, cand = costed[name], rows[name], by_name.get(name)
        update = (updates or {}).get(name)
        forward = row["forward_macs"] // batch
        size = channel_count(node, 0)
        chosen = None
        if update is not None and update.weight:
            chosen = len(update.channels) if update.channels is not None else \
                channel_count(node, update.channel_axis)
        potential = cand.score.potential if cand else None
        out.append({
            "name": name, "kind": node.kind, "position": position[name],
            "params": node.params, "weight_bytes": math.ceil(node.params * weight_bytes_per_param),
            "saved_input_bytes": row["input_bytes"] // batch,
            "forward_macs": forward, "backward_weight_macs": forward,
            "backward_input_macs": forward,
            "fisher_potential": potential,
            "fisher_fraction": None if potential is None or not context.total_potential
            else round(potential / context.total_potential, 6),
            "score": cand.score.score if cand else None, "rank": rank.get(name),
            "selected": update is not None, "channels_selected": chosen, "channels": size,
        })
    return out


def render_layers(rows: list[dict], fmt: str, width: int | None = DEFAULT_WIDTH) -> str:
    """JSON and CSV exact; the table in human units, fitting `width` (reports.render), or
    whole and exact with `width=None` (--wide)."""
    if fmt not in LAYER_FORMATS:
        raise SpecError(f"unknown --format {fmt!r}: use {', '.join(LAYER_FORMATS)}")
    if fmt == "json":
        return json.dumps({"layers": rows}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LAYER_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    heads = ["layer", "kind", "weights", "saved in", "bwd w MACs", "bwd in MACs", "Fisher",
             "s_i", "rank", "selected"]
    size, macs = (human_bytes, human_macs) if width is not None else (_exact, _exact)
    cells = [[r["name"], r["kind"], size(r["weight_bytes"]),
              size(r["saved_input_bytes"]), macs(r["backward_weight_macs"]),
              macs(r["backward_input_macs"]),
              "-" if r["fisher_fraction"] is None else f"{100 * r['fisher_fraction']:.2f}%",
              "-" if r["score"] is None else f"{r['score']:.4g}",
              "-" if r["rank"] is None else str(r["rank"]),
              _selected_text(r)] for r in rows]
    return "\n".join(fit_table(heads, cells, left=2, width=width, squeeze=(0,),
                                optional=(1, 5))) + "\n"


def _exact(n: int) -> str:
    return f"{n:,}"


def _selected_text(row: dict) -> str:
    if not row["selected"]:
        return ""
    if row["channels_selected"] is None:
        return "bias"
    return f"{row['channels_selected']} of {row['channels']}"


@styled
def plot_layers(rows: list[dict], title: str, fmt: str = "png") -> bytes:
    """Four panels over the candidate layers: memory (weights + saved input), backward MACs,
    Fisher potential (% of the total) and s_i; selected layers drawn dark and shaded."""
    fig, axes = new_figure(TEXT_WIDTH_IN, 8.0, nrows=4)
    xs = list(range(len(rows)))
    selected = [r["selected"] for r in rows]
    colors = ["#1f5fa8" if s else "#9cbbe0" for s in selected]
    panels = axes[:, 0]
    panels[0].bar(xs, [r["weight_bytes"] / 1024 for r in rows], color=colors, label="weights")
    panels[0].bar(xs, [r["saved_input_bytes"] / 1024 for r in rows],
                  bottom=[r["weight_bytes"] / 1024 for r in rows], color=colors, hatch="///",
                  edgecolor="white", label="saved input")
    panels[0].set_ylabel("memory (KiB)")
    panels[0].legend(loc="upper left")
    panels[1].bar(xs, [(r["backward_weight_macs"] + r["backward_input_macs"]) / 1e6
                       for r in rows], color=colors)
    panels[1].set_ylabel("backward MACs (M)")
    panels[2].bar(xs, [100 * (r["fisher_fraction"] or 0) for r in rows], color=colors)
    panels[2].set_ylabel("Fisher potential (%)")
    scores = [r["score"] for r in rows]
    panels[3].bar(xs, [s if s is not None else 0 for s in scores], color=colors)
    panels[3].set_ylabel("s_i (Eq. 3)")
    if any(s for s in scores if s):
        panels[3].set_yscale("log")
    for ax in panels:
        ax.set_xlim(-0.6, len(rows) - 0.4)
        for x, chosen in zip(xs, selected):
            if chosen:
                ax.axvspan(x - 0.5, x + 0.5, color="#f2c14e", alpha=0.25, lw=0)
        ax.set_xticks(xs)
        ax.set_xticklabels([])
    # at the text width, a name every ~11 points: every k-th layer named when there are more
    every = max(1, math.ceil(len(rows) / 45))
    panels[3].set_xticks(xs[::every])
    panels[3].set_xticklabels([r["name"] for r in rows][::every], rotation=90,
                              fontsize=MIN_FONT_PT)
    panels[0].set_title(title)
    fig.tight_layout()
    return figure_bytes(fig, fmt)
