"""The `ttplan` command: a thin Typer layer over the Python API.

Every user error (`TtplanError`) becomes one line on stderr and exit status 2; output files
are written atomically, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Optional

import typer

from costmodel.errors import SpecError, TtplanError
from costmodel.fileio import write_text_atomic
from costmodel.profile import profile as profile_model
from costmodel.specs import parse_bits, parse_input_shape
from reports.render import FORMATS, render
from ttplan.options import (DEFAULT_INPUT_SHAPE, ActivationBits, Classifier, Convention,
                            GradientBits, InputShape, ModelArg, Optimizer, Out, WeightBits,
                            WeightsFile, WeightsInFlash)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Exact costs of on-device training, and budgeted layer/channel plans.")


@app.callback()
def _commands() -> None:
    """Exact costs of on-device training, and budgeted layer/channel plans."""


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def run_safely(fn):
    """Turn user errors into one line and exit 2; let Typer's own exits through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch/fx chatter is not for the user
                return fn(*args, **kwargs)
        except TtplanError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted")
    return wrapper


def emit(text: str, out: Optional[str]) -> None:
    if out:
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}", err=True)
    else:
        sys.stdout.write(text)


@app.command()
@run_safely
def profile(
    model: ModelArg,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    batch_size: Optional[int] = typer.Option(None, help="replaces N of --input-shape"),
    update: str = typer.Option("none", help="none | all | bias-only | last-layers:K | "
                               "last-blocks:K | policy.json"),
    convention: Convention = "paper",
    optimizer: Optimizer = "sgd",
    weight_bits: WeightBits = "32",
    activation_bits: ActivationBits = "32",
    gradient_bits: GradientBits = "32",
    weights_in_flash: WeightsInFlash = None,
    weights: WeightsFile = None,
    classifier: Classifier = False,
    tracer: str = typer.Option("auto", help="auto | fx | hooks"),
    fmt: str = typer.Option("table", "--format", help="table | json | csv | md"),
    out: Out = None,
):
    """Per-layer parameters, forward/backward MACs and the memory of a training configuration."""
    if fmt not in FORMATS:
        raise SpecError(f"unknown --format {fmt!r}: use {', '.join(FORMATS)}")
    shape = parse_input_shape(input_shape)
    prof = profile_model(model, shape, update=update, convention=convention,
                         batch_size=batch_size, optimizer=optimizer,
                         weight_bits=parse_bits(weight_bits),
                         activation_bits=parse_bits(activation_bits),
                         gradient_bits=parse_bits(gradient_bits),
                         weights_in_flash=weights_in_flash, weights=weights,
                         classifier=classifier, tracer=tracer)
    for warning in prof.warnings:
        typer.echo(f"warning: {warning}", err=True)
    emit(render(prof.to_dict(), fmt), out)


@app.command()
@run_safely
def sweep(
    model: ModelArg,
    unit: str = typer.Option("blocks", help="blocks | layers: update the last K of them"),
    k: str = typer.Option("1-6", help="K values: 1-6 or 1,2,4"),
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    convention: str = typer.Option("both", help="paper | pytorch | both"),
    fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    out: Out = None,
):
    """What-if sweep: saved activations, peak memory and backward MACs of training the last K
    blocks or layers (the shape of the paper's Table 7)."""
    from costmodel.profile import resolve_model
    from costmodel.trace import trace
    from reports.sweep import SWEEP_FIELDS, parse_k_range, sweep_last_k
    from reports.render import render_rows

    conventions = ("paper", "pytorch") if convention == "both" else (convention,)
    module, name = resolve_model(model)
    graph = trace(module, parse_input_shape(input_shape), name)
    rows = sweep_last_k(graph, unit, parse_k_range(k), conventions)
    emit(render_rows(rows, SWEEP_FIELDS, fmt), out)


@app.command()
@run_safely
def compare(
    model: ModelArg,
    fisher: Optional[str] = typer.Option(None, help="Fisher file from `ttplan fisher` "
                                         "(needed for tinytrain)"),
    memory: Optional[str] = typer.Option(None, help="memory budget, e.g. 1MB"),
    compute: Optional[str] = typer.Option(None, help="compute budget, e.g. 15% or 6.5M"),
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    convention: Convention = "paper",
    optimizer: Optimizer = "sgd",
    weights_in_flash: WeightsInFlash = None,
    fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    out: Out = None,
):
    """Table-2-style comparison of every method's memory and backward MACs on one model."""
    from costmodel.specs import parse_compute
    from reports.compare import COMPARE_FIELDS, METHODS, compare_methods
    from reports.render import render_rows

    methods = METHODS if fisher else tuple(m for m in METHODS if m != "tinytrain")
    rows = compare_methods(model, fisher=fisher, methods=methods, memory_bytes=memory,
                           compute=parse_compute(compute) if compute else None,
                           input_shape=parse_input_shape(input_shape), convention=convention,
                           optimizer=optimizer, weights_in_flash=weights_in_flash)
    emit(render_rows(rows, COMPARE_FIELDS, fmt), out)


def _register_planner_commands() -> None:
    try:
        from ttplan.cli_planner import register
    except ImportError:  # the planner commands are optional while it is being built
        return
    register(app)


_register_planner_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()
