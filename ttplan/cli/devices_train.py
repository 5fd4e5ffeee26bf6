"""Training on the device: `ttplan train` (one measured run) and `ttplan measure` (a grid)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

# Only modules that import neither torch nor pandas at the top: the rest is imported inside
# the command that needs it, so `--help` and usage errors stay fast.
from ttplan.render import human_bytes, human_macs, human_seconds, render_rows, wrap_lines
from ttplan.specs import SpecError, parse_input_shape, parse_int

from .common import emit, run_safely, table_width, tell
from .options import option_groups
from .options_device import (MeasureLog, MeasureRuns, TrainDevice, TrainRun, TrainSupport,
                             TrainedPart)
from .options_model import (DEFAULT_INPUT_SHAPE, InputSpecs, ModelArg, TrainInputs,
                            WeightedModel)
from .options_output import TableOutput, TrainOutput

MEASURE_TABLE_FIELDS = ("method", "batch_size", "iterations", "load_s", "fisher_s", "plan_s",
                        "train_s", "saved_bytes_measured", "peak_bytes_pytorch", "peak_rss_bytes")


@run_safely
@option_groups
def train(
    model: WeightedModel,
    what: TrainedPart,
    support: TrainSupport,
    inputs: TrainInputs,
    run: TrainRun,
    on: TrainDevice,
    output: TrainOutput,
):
    """Fine-tune on the support samples following a policy, measured beside its prediction."""
    from ttplan import ModelSource, OnDevicePlan, RunSettings, Support, device_for
    from ttplan import train as train_model
    from ttplan.io import LOG_COLUMNS, append_log_row, check_log_target

    log, fmt = output.log, output.fmt
    if log:
        check_log_target(log)  # before the run, not after it
    show = sys.stderr.isatty() if run.progress is None else run.progress
    result = train_model(
        ModelSource(model.model, weights=model.weights), policy=what.policy,
        update=what.update, method=OnDevicePlan.given(what.method, what.budgets(),
                                                      what.convention),
        support=Support(support.data, support.synthetic, support.samples, support.vocab,
                        support.holdout),
        inputs=inputs.resolve(),
        run=RunSettings(run.iterations, run.batch_size, _learning_rate(run.lr),
                        run.optimizer, support.seed, show, on.device_name),
        device=device_for(on.device, calibration=on.calibration))
    for warning in result.warnings:
        tell(f"warning: {warning}")
    if log:
        append_log_row(log, result.log_row())
        tell(f"appended a row to {log}")
    if fmt == "json":
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    elif fmt == "csv":
        text = render_rows([result.log_row()], LOG_COLUMNS, "csv")
    else:
        text = render_train(result.to_dict(),
                            _accuracy_caveat(model.model, model.weights, support.synthetic),
                            table_width())
    emit(text, output.out)


def _accuracy_caveat(model: str, weights: Optional[str], synthetic: bool) -> Optional[str]:
    """Why the accuracy line means nothing, if it does not: a zoo model without --weights has
    fixed-seed random weights; synthetic samples are Gaussian blobs, not a task."""
    from ttplan import ZOO_MODELS

    if weights is None and model in ZOO_MODELS:
        return ("meaningless: random fixed-seed weights (a zoo model without --weights); "
                "pass --weights with trained weights")
    if synthetic:
        return "synthetic samples: not a measure of the model"
    return None


@run_safely
@option_groups
def measure(
    model: ModelArg,
    grid: MeasureLog,
    runs: MeasureRuns,
    output: TableOutput,
    input_shape: Optional[str] = typer.Option(
        None, help="N,C,H,W (N is each run's batch size)", show_default=DEFAULT_INPUT_SHAPE),
    input_specs: InputSpecs = None,
    layer_table: Optional[str] = typer.Option(
        None, help="instead of the grid: write this model's per-layer device table (every "
        "layer timed alone at each batch size, short runs for the overheads; JSON) here"),
):
    """Calibration runs: a fixed grid of updates and batch sizes within a time limit."""
    from ttplan import GridRuns, MeasureGrid
    from ttplan import measure as measure_runs
    from ttplan.io import LOG_COLUMNS
    from ttplan.io import save_layer_table as save_table

    # The grid's bounds (no grid: the per-layer table); the table's whole runs run each in a
    # fresh process, as a user's `ttplan train` does, unless --in-process says otherwise.
    bounds = None if layer_table else MeasureGrid(grid.log, grid.time_limit, grid.device_name)
    measured = measure_runs(model, grid=bounds,
                            runs=GridRuns(_batch_sizes(runs.batch_sizes), runs.samples,
                                          runs.iterations, runs.seed, runs.isolate),
                            input_shape=_measured_inputs(input_shape, input_specs,
                                                         layer_table),
                            report=lambda line: typer.echo(line, err=True))
    if layer_table:
        table = measured.table
        save_table(layer_table, table)
        for warning in table["warnings"]:
            tell(f"warning: {warning}")
        tell(f"wrote {layer_table}: {len(table['layers'])} layer timings, "
             f"{len(table['runs'])} runs")
        return
    rows, log = measured.rows, bounds.log
    tell(f"appended {len(rows)} row(s) to {log}")
    if output.fmt == "table":
        text = (render_rows(rows, MEASURE_TABLE_FIELDS, "table", table_width(), output.wide)
                if rows else "no runs\n")
    else:
        text = render_rows(rows, LOG_COLUMNS, output.fmt)
    emit(text, output.out)


def _measured_inputs(input_shape: Optional[str], input_specs, layer_table):
    """What `measure` calls the model with: --input-shape (default 1,3,128,128), or --input
    specs (a per-layer table only: the grid's runs log an image shape)."""
    if not input_specs:
        return parse_input_shape(input_shape or DEFAULT_INPUT_SHAPE)
    if not layer_table:
        raise SpecError("--input is for a per-layer table (--layer-table); the grid's runs "
                        "take --input-shape")
    from .common import model_inputs
    return model_inputs(input_shape, input_specs, None)


def _batch_sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_int(part, "--batch-sizes entry", minimum=1) for part in text.split(","))


def _learning_rate(text: str) -> float:
    """--lr as a number; `RunSettings` refuses what is not a positive one, with the message
    the Python API gives."""
    try:
        return float(str(text).strip())
    except ValueError:
        raise SpecError(f"learning rate (--lr) must be a positive number, not {text!r}") from None


def _phases(p: dict) -> str:
    return (f"load {human_seconds(p['load_s'])}, fisher {human_seconds(p['fisher_s'])}, plan "
            f"{human_seconds(p['plan_s'])}, train {human_seconds(p['train_s'])}")


def _predicted_phases(pred: dict, measured: dict) -> str:
    if pred["phases"] is None:
        return "predicted    n/a (no device model: --device or --calibration)"
    total = sum(measured[key] for key in ("load_s", "fisher_s", "plan_s", "train_s"))
    error = f" ({100 * (pred['total_s'] - total) / total:+.1f}% vs measured)" if total else ""
    energy = "" if pred["energy_j"] is None else f", {pred['energy_j']:.2f} J"
    return (f"predicted    {_phases(pred['phases'])} = {human_seconds(pred['total_s'])}"
            f"{error}{energy} ({pred['calibration']})")


def render_train(d: dict, accuracy_caveat: Optional[str] = None, width: Optional[int] = None
                 ) -> str:
    """A run for people: what was trained, then measured beside predicted (in `width`
    columns; `accuracy_caveat` says why the accuracy means nothing, when it does not)."""
    pol, run, got, pred = d["policy"], d["run"], d["measured"], d["predicted"]
    phases = got["phases"]

    def pct(measured, predicted):
        return f" ({100 * (measured - predicted) / predicted:+.1f}%)" if predicted else ""

    def acc(value):
        return "n/a" if value is None else f"{value:.3f}"

    sparse = f", {len(pol['channel_sparse'])} channel-sparse" if pol["channel_sparse"] else ""
    lines = [
        f"model        {d['model']}",
        f"update       {pol['method']} ({pol['source']}): {pol['layers']} layer(s), "
        f"{pol['trainable_tensors']} parameter tensor(s){sparse}"
        + (f"; policy {pol['fingerprint']}" if pol["fingerprint"] else ""),
        f"run          {run['samples']} samples, batch {run['batch_size']}, "
        f"{run['iterations']} iteration(s) = {run['steps']} steps, {run['optimizer']} "
        f"lr {run['lr']:g}; {run['threads']} thread(s), torch {run['torch_version']}",
        f"phases       {_phases(phases)} ({human_seconds(got['iteration_s'])} per iteration)",
        _predicted_phases(pred, phases),
        f"saved        {human_bytes(got['saved_bytes'])} measured, "
        f"{human_bytes(pred['saved_bytes'])} predicted (pytorch)"
        f"{pct(got['saved_bytes'], pred['saved_bytes'])}",
        f"memory       peak RSS {human_bytes(got['peak_rss_bytes'])} (process); predicted "
        f"training peak {human_bytes(pred['peak_bytes'])}",
        f"backward     {human_macs(pred['backward_macs'])} MACs per step (predicted)",
        "energy       " + ("n/a (no energy counter on this machine)" if got["energy_j"] is None
                           else f"{got['energy_j']:.2f} J"),
        f"accuracy     before {acc(d['accuracy']['before'])}, after "
        f"{acc(d['accuracy']['after'])} ({run['query_samples']} held-out queries)"
        + (f"; {accuracy_caveat}" if accuracy_caveat else ""),
        f"loss         first pass {run['loss']['first']:.4f}, last pass {run['loss']['last']:.4f}",
    ]
    if pol["dense_masked"]:
        lines.append(f"note         dense masked gradient for {', '.join(pol['dense_masked'])}")
    return "\n".join(wrap_lines(lines, width, " " * 13)) + "\n"
