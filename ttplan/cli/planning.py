"""The planner's commands: `ttplan fisher`, `ttplan plan`, `ttplan export`."""

from __future__ import annotations

import functools
import sys
from typing import Optional

import typer

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.profile import resolve_model
from ttplan.costmodel.specs import parse_compute, parse_input_shape
from ttplan.costmodel.trace import trace
from ttplan.costmodel.zoo import zoo_model_named_in_file
from ttplan.devices.planning import plan_for_device
from ttplan.planner.api import plan as make_plan
from ttplan.planner.data import open_support
from ttplan.planner.fisher_probe import (DEFAULT_TAIL_FRACTION, default_candidate_layers,
                                         fisher_information)
from ttplan.planner.jsonio import dumps
from ttplan.planner.policy import load_policy
from ttplan.planner.sparseupdate import export_sparseupdate

from .common import emit, run_safely, warn_uncosted
from .options import (DEFAULT_INPUT_SHAPE, ActivationBits, Blocks, Classifier, Convention,
                      Device, GradientBits, InputShape, Iterations, Optimizer, Out, Samples,
                      TimeBudget, WeightBits, WeightsFile, WeightsInFlash, count_option,
                      fraction_option)


@run_safely
def fisher(
    model: str = typer.Argument(..., help="zoo name or import path module:callable"),
    data: Optional[str] = typer.Option(None, help="support set: folder of class "
                                       "sub-folders, or an .npz with x and y"),
    synthetic: bool = typer.Option(False, help="use synthetic Gaussian samples instead"),
    samples: Optional[int] = count_option("at most this many samples (class-balanced); "
                                          "synthetic default 25", maximum=10_000_000,
                                          default=None),
    seed: int = count_option("synthetic data and pseudo-query augmentation", minimum=0,
                             default=0),
    input_shape: str = typer.Option(DEFAULT_INPUT_SHAPE, help="N,C,H,W of the model input"),
    layers: float = fraction_option("probe the last fraction of conv/linear layers "
                                    "(appendix F.1: 0.30-0.44)", DEFAULT_TAIL_FRACTION),
    loss: str = typer.Option("protonet", help="protonet (feature backbone) | ce "
                             "(classifier; zoo models get their classifier)"),
    batch_size: int = count_option("queries per forward/backward", maximum=2**31 - 1,
                                   default=1),
    weights: Optional[str] = typer.Option(None, help="state_dict file (weights_only)"),
    out: Out = None,
    progress: Optional[bool] = typer.Option(
        None, help="progress bar over samples on stderr (default: when it is a terminal)"),
):
    """Fisher information per output channel (Eq. 2) of the last layers, on your samples."""

    shape = parse_input_shape(input_shape)
    if len(shape) != 4:
        raise SpecError(f"the Fisher probe reads images: --input-shape must be N,C,H,W, "
                        f"not {input_shape!r}")
    module, name = resolve_model(model, weights=weights, classifier=loss == "ce")
    graph = trace(module, shape, name)
    support = open_support(data, shape, samples, seed, synthetic)
    names = default_candidate_layers(module, layers)
    show = sys.stderr.isatty() if progress is None else progress
    result = fisher_information(module, names, support, loss=loss, seed=seed,
                                batch_size=batch_size, progress=show)
    text = dumps(result.to_json_dict(name, graph.fingerprint()))  # checked before anything is said
    typer.echo(f"fisher: {len(names)} layers of {name}, {support.description}; "
               f"{result.time_s:.3f} s, peak saved {result.peak_saved_bytes:,} B", err=True)
    emit(text, out)

@run_safely
def plan(
    model: str = typer.Argument(..., help="zoo name or import path module:callable"),
    method: str = typer.Option("tinytrain", help="tinytrain | none | fulltrain | "
                               "lastlayer | tinytl | sparseupdate"),
    fisher: Optional[str] = typer.Option(None, help="Fisher JSON from `ttplan fisher`"),
    memory: Optional[str] = typer.Option(None, help="peak memory budget, e.g. 1MB, 512KiB"),
    compute: Optional[str] = typer.Option(None, help="backward MACs budget: 15% of full "
                                          "training, or 6.5M"),
    solver: str = typer.Option("greedy", help="greedy (Algorithm 1) | exact (MILP)"),
    channels: str = typer.Option("fisher", help="fisher | l2norm | random"),
    scheme: str = typer.Option("auto", help="sparseupdate: auto | released | search"),
    convention: Convention = None,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    optimizer: Optimizer = "sgd",
    weight_bits: WeightBits = "32",
    activation_bits: ActivationBits = "32",
    gradient_bits: GradientBits = "32",
    weights_in_flash: WeightsInFlash = None,
    classifier: Classifier = False,
    weights: WeightsFile = None,
    seed: int = count_option("random channels, sparseupdate search", minimum=0, default=0),
    blocks: Blocks = None,
    device: Device = None,
    time: TimeBudget = None,
    iterations: Iterations = 40,
    samples: Samples = 25,
    out: Out = None,
    fmt: str = typer.Option("table", "--format", help="table | json (on stdout)"),
):
    """Choose the layers and channels to train within memory and compute budgets.
    --convention defaults to paper; with --device, to what trains there (its runtime:
    pytorch on a Linux board, paper on a microcontroller)."""

    if fmt not in ("table", "json"):
        raise SpecError(f"unknown --format {fmt!r}: use table or json")
    if time is not None and device is None:
        raise SpecError("--time needs --device: the time model is a device's calibration")
    module, name = resolve_model(model, weights=weights, classifier=classifier)
    if device is None:
        make, convention = make_plan, convention or "paper"
    else:  # convention None: the device's runtime decides (devices.planning.plan_for_device)
        make = functools.partial(plan_for_device, device=device, time=time,
                                 iterations=iterations, samples=samples)
    policy = make(
        module, model_name=name, method=method, fisher=fisher, convention=convention,
        memory_bytes=memory, compute=parse_compute(compute) if compute is not None else None,
        input_shape=parse_input_shape(input_shape), solver=solver, channels=channels,
        scheme=scheme, seed=seed, optimizer=optimizer, weight_bits=weight_bits,
        activation_bits=activation_bits, gradient_bits=gradient_bits,
        weights_in_flash=weights_in_flash, blocks=blocks)
    if policy.graph is not None:
        warn_uncosted(policy.graph)
    if out is not None:
        emit(dumps(policy.to_dict()), out)
    for note in policy.notes:
        typer.echo(f"note: {note}", err=True)
    emit(dumps(policy.to_dict()) if fmt == "json" else render_policy(policy.to_dict()), None)

@run_safely
def export(
    policy: str = typer.Argument(..., help="policy JSON from `ttplan plan`"),
    fmt: str = typer.Option("sparseupdate", "--format", help="sparseupdate"),
    model: Optional[str] = typer.Option(None, help="the model, if the policy's name is "
                                        "not a zoo name (import path module:callable); a "
                                        "policy's own name is never imported"),
    classifier: bool = typer.Option(False, help="zoo models: the policy was made with "
                                    "the classifier"),
    out: Out = None,
):
    """Convert a policy to SparseUpdate's backward_config (n_bias_update,
    manual_weight_idx, weight_update_ratio)."""

    if fmt != "sparseupdate":
        raise SpecError(f"unknown --format {fmt!r}: use sparseupdate")
    loaded = load_policy(policy)
    if loaded.method == "tinytl":
        raise SpecError("a tinytl policy trains lite-residual modules SparseUpdate's "
                        "backward_config cannot express")
    if model is not None:
        module, name = resolve_model(model, classifier=classifier)
    else:  # a name from a data file: built from the zoo, never imported
        module, name = zoo_model_named_in_file(loaded.model_name, policy, classifier=classifier)
    graph = trace(module, loaded.input_shape, name)
    notes: list[str] = []
    config = export_sparseupdate(loaded, graph, notes)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    emit(dumps(config), out)


def render_policy(d: dict) -> str:
    """A policy for people: budgets against predictions, then one row per selected layer."""
    pred, budgets = d["predicted"], d["budgets"]
    peak, macs = pred["memory"]["peak_bytes"], pred["totals"]["backward_macs"]

    def against(value: int, budget, unit: str) -> str:
        if budget is None:
            return f"{value:,} {unit} (no budget)"
        return f"{value:,} {unit} of {budget:,} ({100 * value / budget:.1f}%)"

    lines = [
        f"model      {d['model']['name']}  input {'x'.join(map(str, d['input_shape']))}  "
        f"{d['convention']} convention",
        f"method     {d['method']}" + (f" ({d['selection']['solver']}, channels "
                                       f"{d['selection']['channels']})"
                                       if d["selection"]["solver"] else ""),
        f"memory     {against(peak, budgets['memory_bytes'], 'B')}",
        f"compute    {against(macs, budgets['compute_macs'], 'backward MACs')}",
    ]
    if pred["fisher_captured"] is not None:
        lines.append(f"fisher     {pred['fisher_captured']:.6g} captured")
    on_device = pred.get("device")
    if on_device and on_device["total_s"] is not None:
        lines.append(f"device     {on_device['device']}: {on_device['total_s']:,.0f} s "
                     f"(+-{on_device['error_band_pct']:.0f}%)"
                     + (f", {on_device['energy_j']:,.0f} J" if on_device["energy_j"] else "")
                     + (f", budget {on_device['time_limit_s']:g} s"
                        if on_device["time_limit_s"] else ""))
    lines.append(f"layers     {len(d['layers'])} updated"
                 + ("" if pred["within_budget"] else "  -- OVER BUDGET"))
    rows = [("layer", "weight", "bias", "channels")]
    for layer in d["layers"]:
        if not layer["update_weight"]:
            chans = "-"
        elif layer["channels"] is None:
            chans = "all"
        else:
            side = "out" if layer["channel_axis"] == 0 else "in"
            chans = f"{len(layer['channels'])} {side}"
        rows.append((layer["name"], "yes" if layer["update_weight"] else "no",
                     "yes" if layer["update_bias"] else "no", chans))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
