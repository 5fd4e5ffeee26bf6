"""Command-line options shared by several commands, defined once.

Each is an `Annotated` type: a command declares `optimizer: Optimizer = "sgd"` and gets the
same flag name and help text as every other command that takes it.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ModelArg = Annotated[str, typer.Argument(
    help="zoo name (mcunet-5fps, mbv2-w0.35, proxyless-w0.3) or import path module:callable")]
InputShape = Annotated[Optional[str], typer.Option(
    help="N,C,H,W of one input batch (profiling a policy: the policy's)")]
Convention = Annotated[Optional[str], typer.Option(
    help="paper (appendix A.4's engine, BN folded) or pytorch (what eager PyTorch 2.13 keeps) "
         "(profiling a policy: the policy's)")]
Optimizer = Annotated[Optional[str], typer.Option(
    help="sgd | momentum | adam (profiling a policy: the policy's)")]
WeightBits = Annotated[Optional[str], typer.Option(
    help="1|2|4|8|16|32, paper convention only (profiling a policy: the policy's)")]
ActivationBits = Annotated[Optional[str], typer.Option(
    help="1|2|4|8|16|32, paper convention only (profiling a policy: the policy's)")]
GradientBits = Annotated[Optional[str], typer.Option(
    help="1|2|4|8|16|32, paper convention only (profiling a policy: the policy's)")]
WeightsInFlash = Annotated[Optional[bool], typer.Option(
    "--weights-in-flash/--weights-in-ram",
    help="where frozen weights live; default: flash under paper (A.4), RAM under pytorch")]
WeightsFile = Annotated[Optional[str], typer.Option(
    "--weights", help="state_dict file (loaded with weights_only=True)")]
Classifier = Annotated[bool, typer.Option(help="zoo models: keep the ImageNet classifier")]
Blocks = Annotated[Optional[str], typer.Option(
    "--blocks", help="regular expression naming the blocks' module paths, e.g. "
    "'stages\\.\\d+\\.blocks\\.\\d+' (default: the repeated units, see README)")]
Out = Annotated[Optional[str], typer.Option(help="write to this file instead of stdout")]

DEFAULT_INPUT_SHAPE = "1,3,128,128"  # as text, for the commands that always need one

# Device-aware planning (plan, compare): see devices.planning.
Device = Annotated[Optional[str], typer.Option(
    help="plan for a device (pi-zero-2, jetson-nano, ..., a device or calibration JSON): "
         "memory budget = its RAM minus its reserve unless --memory; predicted time/energy")]
TimeBudget = Annotated[Optional[str], typer.Option(
    "--time", help="training-time budget on --device through its calibration, e.g. 10min")]
Iterations = Annotated[int, typer.Option(help="with --device: passes over the samples")]
Samples = Annotated[int, typer.Option(help="with --device: support samples")]
