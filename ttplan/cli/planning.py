"""The planner's commands: `ttplan fisher`, `ttplan plan`, `ttplan export`."""

from __future__ import annotations

import sys
from typing import Optional

import typer

# Only modules that import neither torch nor pandas at the top: the rest is imported inside
# the command that needs it, so `--help` and usage errors stay fast.
from ttplan.io import json_text as dumps
from ttplan.render import (fit_table, human_bytes, human_joules, human_macs, human_seconds,
                           percent, wrap_lines)

from .common import emit, note, run_safely, table_width, tell, warn_uncosted
from .options import option_groups
from .options_device import DeviceWorkload
from .options_model import (DEFAULT_INPUT_SHAPE, Classifier, FisherInputs, Inputs, Model,
                            SupportSet, WeightedModel)
from .options_output import ExportFormat, Out, PlanOutput
from .options_plan import BudgetOptions, Costs, FisherRun, PlanSelection


@run_safely
@option_groups
def fisher(
    model: WeightedModel,
    support: SupportSet,
    inputs: FisherInputs,
    probe: FisherRun,
    out: Out = None,
):
    """Fisher information per output channel (Eq. 2) of the last layers, on your samples."""
    from ttplan import ModelSource, ProbeSettings, Support, probe_fisher

    show = sys.stderr.isatty() if probe.progress is None else probe.progress
    found = probe_fisher(ModelSource(model.model, weights=model.weights),
                         support=Support(support.data, support.synthetic, support.samples,
                                         support.vocab),
                         probe=ProbeSettings(probe.layers, probe.loss, probe.batch_size,
                                             support.seed, show),
                         inputs=inputs.resolve(DEFAULT_INPUT_SHAPE))
    text = dumps(found.to_dict())  # checked before anything is said
    result = found.result
    tell(f"fisher: {len(found.layers)} layers of {found.model_name}, {found.support}; "
         f"{result.time_s:.3f} s, peak saved {result.peak_saved_bytes:,} B")
    emit(text, out)


@run_safely
@option_groups
def plan(
    model: Model,
    selection: PlanSelection,
    limits: BudgetOptions,
    inputs: Inputs,
    costs: Costs,
    workload: DeviceWorkload,
    output: PlanOutput,
):
    """Choose the layers and channels to train within memory and compute budgets.

    --convention defaults to paper; with --device, to what trains there (its runtime:
    pytorch on a Linux board, paper on a microcontroller)."""
    from ttplan import plan_policy

    budgets, on = limits.budgets(), workload.context()
    # Without --convention: the device's runtime, else paper.
    options = costs.options(on.device.runtime if on else "paper")
    source, search = model.source(), selection.search()
    planned = plan_policy(source, method=selection.method, fisher=selection.fisher,
                          budgets=budgets, options=options,
                          inputs=inputs.resolve(DEFAULT_INPUT_SHAPE), search=search, device=on)
    policy = planned.policy
    if policy.graph is not None:
        warn_uncosted(policy.graph)
    if output.out is not None:
        emit(dumps(policy.to_dict()), output.out)
    for text in policy.notes:
        note(text)
    if output.fmt == "json":
        emit(dumps(policy.to_dict()), None)
        return
    emit(render_policy(policy.to_dict(), planned.fisher_total, planned.weight_shapes,
                       planned.without_bias), None)


@run_safely
def export(
    policy: str = typer.Argument(..., help="policy JSON from `ttplan plan`"),
    fmt: ExportFormat = "sparseupdate",
    model: Optional[str] = typer.Option(None, help="the model, if the policy's name is "
                                        "not a zoo name (import path module:callable); a "
                                        "policy's own name is never imported"),
    classifier: Classifier = False,
    out: Out = None,
):
    """Convert a policy to SparseUpdate's backward_config.

    The config's n_bias_update, manual_weight_idx and weight_update_ratio, as JSON."""
    from ttplan import export_policy

    exported = export_policy(policy, model=model, classifier=classifier)
    for text in exported.notes:
        note(text)
    emit(dumps(exported.config), out)


def render_policy(d: dict, fisher_total: float | None = None,
                  weight_shapes: dict | None = None,
                  without_bias: frozenset[str] = frozenset()) -> str:
    """A policy for people: budgets against predictions, then one row per selected layer.
    Fisher as the share of the potential `fisher_total` (the raw value is in the JSON);
    channels with the total they are chosen from when `weight_shapes` knows it; "-" for the
    bias of a layer in `without_bias`."""
    pred, budgets = d["predicted"], d["budgets"]
    peak, macs = pred["memory"]["peak_bytes"], pred["totals"]["backward_macs"]
    weight_shapes = weight_shapes or {}

    def against(value: int, budget, show) -> str:
        if budget is None:
            return f"{show(value)} (no budget)"
        return f"{show(value)} of {show(budget)} ({100 * value / budget:.1f}%)"

    lines = [
        f"model      {d['model']['name']}  input {'x'.join(map(str, d['input_shape']))}  "
        f"{d['convention']} convention",
        f"method     {d['method']}" + (f" ({d['selection']['solver']}, channels "
                                       f"{d['selection']['channels']})"
                                       if d["selection"]["solver"] else ""),
        f"memory     {against(peak, budgets['memory_bytes'], human_bytes)} peak",
        f"compute    {against(macs, budgets['compute_macs'], human_macs)} backward MACs",
    ]
    if pred["fisher_captured"] is not None:
        share = (f"{percent(pred['fisher_captured'] / fisher_total)} of the Fisher potential"
                 if fisher_total else f"{pred['fisher_captured']:.6g} captured")
        lines.append(f"fisher     {share}")
    on_device = pred.get("device")
    if on_device and on_device["total_s"] is not None:
        lines.append(f"device     {on_device['device']}: {human_seconds(on_device['total_s'])} "
                     f"(+-{on_device['error_band_pct']:.0f}%)"
                     + (f", {human_joules(on_device['energy_j'])}" if on_device["energy_j"]
                        else "")
                     + (f", budget {human_seconds(on_device['time_limit_s'])}"
                        if on_device["time_limit_s"] else ""))
    lines.append(f"layers     {len(d['layers'])} updated"
                 + ("" if pred["within_budget"] else "  -- OVER BUDGET"))
    rows = []
    for layer in d["layers"]:
        if not layer["update_weight"]:
            chans = "-"
        elif layer["channels"] is None:
            chans = "all"
        else:
            side = "out" if layer["channel_axis"] == 0 else "in"
            shape = weight_shapes.get(layer["name"])
            of = f" of {shape[layer['channel_axis']]}" if shape else ""
            chans = f"{len(layer['channels'])}{of} {side}"
        bias = ("-" if layer["name"] in without_bias
                else "yes" if layer["update_bias"] else "no")
        rows.append([layer["name"], "yes" if layer["update_weight"] else "no", bias, chans])
    lines.append("")
    lines += fit_table(["layer", "weight", "bias", "channels"], rows, left=4,
                       width=table_width(), squeeze=(0,))
    return "\n".join(wrap_lines(lines, table_width(), " " * 9)) + "\n"
