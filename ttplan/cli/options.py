"""Command-line options shared by several commands, defined once.

Each is an `Annotated` type: a command declares `optimizer: Optimizer = "sgd"` and gets the
same flag name and help text as every other command that takes it. Every number goes through
`ttplan.specs` (ASCII digits, bounded): integer options use `parser=`, so a bad value is a
usage error (one line, exit status 2) naming the option.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ttplan.specs import MAX_INPUT_ELEMENTS, MAX_INT, SpecError, parse_fraction, parse_int


def _number(parse, *bounds):
    def parser(value):
        if not isinstance(value, str):  # a default already of the right type
            return value
        try:
            return parse(value, "value", *bounds)
        except SpecError as exc:
            raise typer.BadParameter(str(exc).replace("invalid value ", "")) from None
    return parser


_NO_DEFAULT = object()


def count_option(help_text: str, minimum: int = 1, maximum: int = MAX_INT, default=_NO_DEFAULT):
    """An integer option parsed by `ttplan.specs.parse_int` (no default inside `Annotated`)."""
    first = () if default is _NO_DEFAULT else (default,)
    return typer.Option(*first, help=help_text, parser=_number(parse_int, minimum, maximum),
                        metavar="<int>")


def fraction_option(help_text: str, default: float):
    """A decimal in (0, 1] parsed by `ttplan.specs.parse_fraction`."""
    return typer.Option(default, help=help_text, parser=_number(parse_fraction),
                        metavar="<fraction>")


ModelArg = Annotated[str, typer.Argument(
    help="zoo name (mcunet-5fps, mbv2-w0.35, proxyless-w0.3) or import path module:callable")]
InputShape = Annotated[Optional[str], typer.Option(
    help="N,C,H,W of one input batch")]
# Inputs other than one float image (`ttplan.specs.ModelInputs`); `model_inputs` reads the three.
InputSpecs = Annotated[Optional[list[str]], typer.Option(
    "--input", help="one input of the model as [NAME:]DTYPE[D0,D1,...] (D0 is the batch), "
    "e.g. ids:int64[1,128] or float32[1,40,100]; repeat for several: no name = positional, in "
    "order, name: = keyword argument. Instead of --input-shape")]
InputsFile = Annotated[Optional[str], typer.Option(
    "--inputs", help=".npz of real input tensors (dim 0 the batch): arr_0, arr_1, ... "
    "positional, other names keyword arguments. Instead of --input-shape")]
Vocab = Annotated[Optional[int], count_option(
    "--synthetic token ids are drawn from [0, VOCAB) (default: the first nn.Embedding's size)")]
# profile: a policy given as --update brings its own shape (and convention, optimizer, bits).
ProfileInputShape = Annotated[Optional[str], typer.Option(
    "--input-shape", help="N,C,H,W of one input batch",
    show_default="1,3,128,128, or the --update policy's")]
Convention = Annotated[Optional[str], typer.Option(
    help="paper (appendix A.4's engine, BN folded) | pytorch (what eager PyTorch 2.13 keeps)")]
Optimizer = Annotated[Optional[str], typer.Option(
    help="sgd | momentum | adam")]
WeightBits = Annotated[Optional[str], typer.Option(
    help="1 | 2 | 4 | 8 | 16 | 32, paper convention only")]
ActivationBits = Annotated[Optional[str], typer.Option(
    help="1 | 2 | 4 | 8 | 16 | 32, paper convention only")]
GradientBits = Annotated[Optional[str], typer.Option(
    help="1 | 2 | 4 | 8 | 16 | 32, paper convention only")]
WeightsInFlash = Annotated[Optional[bool], typer.Option(
    "--weights-in-flash/--weights-in-ram",
    help="where frozen weights live; default: flash under paper (A.4), RAM under pytorch")]
WeightsFile = Annotated[Optional[str], typer.Option(
    "--weights", help="state_dict file (loaded with weights_only=True)")]
Classifier = Annotated[bool, typer.Option(help="zoo models: keep the ImageNet classifier")]
Blocks = Annotated[Optional[str], typer.Option(
    "--blocks", help="regular expression naming the blocks' module paths, e.g. "
    "'stages\\.\\d+\\.blocks\\.\\d+' (default: the repeated units, see README)")]
Out = Annotated[Optional[str], typer.Option(
    help="write to this file instead of stdout (a symlink is followed; /dev/null, a terminal "
         "or a FIFO is written through; a directory, a hard-linked, read-only or input file "
         "is refused)")]
Wide = Annotated[bool, typer.Option(
    "--wide", help="the whole table with exact values, however wide (default: fit $COLUMNS, "
    "else 100 columns, in human units)")]
Seed = Annotated[int, count_option("random seed", minimum=0)]
BatchSize = Annotated[Optional[int], count_option("replaces N of --input-shape (dim 0 of every "
                                                  "--input)",
                                                  maximum=MAX_INPUT_ELEMENTS)]

DEFAULT_INPUT_SHAPE = "1,3,128,128"  # as text, for the commands that always need one

# Device-aware planning (plan, compare): see `ttplan.plan_for_device`.
Device = Annotated[Optional[str], typer.Option(
    help="plan for a device (pi-zero-2, jetson-nano, ..., a device or calibration JSON): "
         "memory budget = its RAM minus its reserve unless --memory; predicted time/energy")]
TimeBudget = Annotated[Optional[str], typer.Option(
    "--time", help="training-time budget on --device through its calibration, e.g. 10min")]
Iterations = Annotated[int, typer.Option(help="with --device: passes over the samples")]
Samples = Annotated[int, typer.Option(help="with --device: support samples")]
FisherProbe = Annotated[Optional[str], typer.Option(
    "--fisher", help="Fisher file from `ttplan fisher` (default: the synthetic probe)")]
Solver = Annotated[str, typer.Option(help="greedy (Algorithm 1) | exact (MILP)")]
Channels = Annotated[str, typer.Option(help="fisher | l2norm | random")]
