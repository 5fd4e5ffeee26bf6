"""The cost commands: `ttplan profile`, `ttplan sweep`, `ttplan compare`."""

from __future__ import annotations

import typer

# Only modules that import neither torch nor pandas at the top: the rest is imported inside
# the command that needs it, so `--help` and usage errors stay fast.
from ttplan.render import percent, render, render_rows
from ttplan.specs import SpecError, parse_input_shape

from .common import emit, model_inputs, note, run_safely, table_width, tell, warn_uncosted
from .options import option_groups
from .options_device import DeviceWorkload
from .options_model import (DEFAULT_INPUT_SHAPE, Blocks, Inputs, Model, ModelArg, ProfileInputs,
                            TracerChoice, Update)
from .options_output import ProfileOutput, TableOutput
from .options_plan import BudgetOptions, CostChoices, FisherFile, PolicyCosts, SweepConvention


@run_safely
@option_groups
def profile(
    model: Model,
    inputs: ProfileInputs,
    costs: PolicyCosts,
    tracing: TracerChoice,
    output: ProfileOutput,
    update: Update = "all",
    verify: bool = typer.Option(False, help="run the configuration once in PyTorch and "
                                "compare what autograd keeps with the pytorch prediction"),
    train_mode: bool = typer.Option(True, "--train-mode/--eval-mode",
                                    help="pytorch convention: modules in train mode (BatchNorm "
                                    "keeps batch statistics) or eval mode, as `ttplan train` "
                                    "runs them"),
):
    """Per-layer parameters, forward/backward MACs and the memory of training a model.

    All of it is trained by default; --update picks what is trained. With --update
    policy.json, the policy's input shape, convention, optimizer and bit widths are used
    unless given."""
    from ttplan import Tracing
    from ttplan import profile as profile_model

    shape = parse_input_shape(inputs.input_shape) if inputs.input_shape is not None else None
    given = model_inputs(None, inputs.input_specs, inputs.inputs_file) \
        if inputs.input_specs or inputs.inputs_file else None
    if given is not None and shape is not None:
        raise SpecError("give one of --input-shape and --input/--inputs, not both")
    # Only the cost options given: an --update policy's own values fill the rest.
    options = {"convention": costs.convention, "optimizer": costs.optimizer,
               "weights_in_flash": costs.weights_in_flash, **costs.bit_widths()}
    prof = profile_model(model.source(), shape, update=update, batch_size=inputs.batch_size,
                         inputs=given, options=options,
                         tracing=Tracing(tracing.tracer, blocks=tracing.blocks,
                                         training_mode=train_mode),
                         verify=verify)
    warn_uncosted(prof.graph, prof.warnings)
    if prof.verification:
        v = prof.verification
        tell(f"verify: autograd kept {v['measured_bytes']:,} B for backward; the pytorch "
             f"convention predicts {v['predicted_bytes']:,} B ({v['difference_pct']:+.2f}%)"
             + ("" if len(v["measured_batches"]) == 1 else
                " (BatchNorm in train mode sees one value per channel at this batch, "
                "which PyTorch refuses: measured at batches 2 and 3, affine in the batch)"))
    emit(render(prof.to_dict(), output.fmt, table_width(), output.wide), output.out)


@run_safely
@option_groups
def sweep(
    model: ModelArg,
    inputs: Inputs,
    output: TableOutput,
    unit: str = typer.Option("blocks", help="blocks | layers: update the last K of them"),
    k: str = typer.Option("1-6", help="K values: 1-6 or 1,2,4"),
    convention: SweepConvention = "both",
    blocks: Blocks = None,
):
    """What-if sweep: memory and backward MACs of training the last K blocks or layers.

    Saved activations, peak memory and backward MACs for each K, the shape of the paper's
    Table 7."""
    from ttplan import sweep as sweep_costs
    from ttplan.render import SWEEP_FIELDS

    swept = sweep_costs(model, unit=unit, ks=k,
                        conventions=("paper", "pytorch") if convention == "both" else
                        (convention,),
                        inputs=inputs.resolve(DEFAULT_INPUT_SHAPE), blocks=blocks)
    warn_uncosted(swept.graph, swept.graph.warnings)
    emit(render_rows(swept.rows, SWEEP_FIELDS, output.fmt, table_width(), output.wide),
         output.out)


@run_safely
@option_groups
def compare(
    model: ModelArg,
    limits: BudgetOptions,
    inputs: Inputs,
    costs: CostChoices,
    workload: DeviceWorkload,
    output: TableOutput,
    fisher: FisherFile = None,
):
    """Table-2-style comparison of every method's memory and backward MACs on one model.

    --convention defaults to paper; with --device, to the device's runtime."""
    from ttplan import compare as compare_methods
    from ttplan.render import COMPARE_DEVICE_FIELDS as DEVICE_FIELDS
    from ttplan.render import COMPARE_FIELDS

    budgets, on = limits.budgets(), workload.context()
    options = costs.options(on.device.runtime if on else "paper")
    compared = compare_methods(model, fisher=fisher, device=on, budgets=budgets, options=options,
                               inputs=inputs.resolve(DEFAULT_INPUT_SHAPE))
    for text in compared.notes:
        note(text)
    rows, fields = compared.rows, COMPARE_FIELDS + (DEVICE_FIELDS if on else ())
    fmt, wide = output.fmt, output.wide
    if fmt == "table" and not wide:  # Fisher as a share of the potential, as everywhere
        total = compared.fisher_total or 0.0
        rows = [{**r, "fisher_captured": None if r["fisher_captured"] is None or not total
                 else percent(r["fisher_captured"] / total)} for r in rows]
    emit(render_rows(rows, fields, fmt, table_width(), wide, heads=COMPARE_HEADS,
                     optional=("saved_activation_bytes", "trainable_params")), output.out)


# Short names for people (`--wide`, CSV and JSON keep the fields' own names).
COMPARE_HEADS = {"memory_ratio": "x mem", "compute_ratio": "x MACs", "backward_macs": "bwd MACs", "saved_activation_bytes":
                 "saved", "trainable_params": "params", "fisher_captured": "Fisher",
                 "within_budget": "budget ok", "total_s": "time", "energy_j": "energy",
                 "fits_ram": "fits RAM"}

