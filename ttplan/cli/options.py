"""Command-line options shared by several commands, defined once.

Each is an `Annotated` type: a command declares `optimizer: Optimizer = "sgd"` and gets the
same flag name and help text as every other command that takes it. Every number goes through
`ttplan.specs` (ASCII digits, bounded): integer options use `parser=`, so a bad value is a
usage error (one line, exit status 2) naming the option.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from enum import Enum
from typing import Annotated, Optional, get_type_hints

import typer

from ttplan.specs import (DEFAULT_ITERATIONS, DEFAULT_SAMPLES, DEFAULT_TAIL_FRACTION, MAX_INPUT_ELEMENTS, MAX_INT, SpecError,
                          parse_fraction, parse_int)


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


# Typer >= 0.22 raises its own vendored copy of Click's exceptions: the UsageError that
# `common.OneLineErrors` prints as it is (a BadParameter would be "Invalid value for ...").
_USAGE_ERROR = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")


def _one_of(choices) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def choice_option(what: str, choices, help_text: str, *flags: str):
    """A text option that is one of `choices` (its default in the command's signature),
    checked while the command line is read: any other value is the usage error
    `unknown WHAT 'x': use a, b or c`, before any work."""
    choices = tuple(str(getattr(c, "value", c)) for c in choices)

    def parser(value):
        if value is None or value in choices:
            return value
        raise _USAGE_ERROR(f"unknown {what} {value!r}: use {_one_of(choices)}")

    return typer.Option(*flags, help=help_text, parser=parser,
                        metavar="[" + "|".join(choices) + "]")


class OutputFormat(str, Enum):
    """Every format a command writes; each command offers some of them (`format_option`)."""
    TABLE = "table"  # for people: fits $COLUMNS, human units (--wide: everything)
    JSON = "json"
    CSV = "csv"
    MD = "md"
    LATEX = "latex"
    HTML = "html"
    SPARSEUPDATE = "sparseupdate"  # SparseUpdate's backward_config


def format_option(*formats: OutputFormat, note: str = ""):
    """`--format`, one of `formats` (listed by --help), any other refused while the command
    line is read."""
    return choice_option("--format", formats, "output format" + (f" {note}" if note else ""),
                         "--format")


def fraction_option(help_text: str, default=_NO_DEFAULT):
    """A decimal in (0, 1] parsed by `ttplan.specs.parse_fraction` (no default inside
    `Annotated`)."""
    first = () if default is _NO_DEFAULT else (default,)
    return typer.Option(*first, help=help_text, parser=_number(parse_fraction),
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
Update = Annotated[str, typer.Option(
    help="what is trained: all | none | bias-only | last-layers:K | last-blocks:K | "
    "policy.json")]
Calibration = Annotated[Optional[str], typer.Option(
    help="calibration JSON to predict with (default: the device's built-in one)")]
Classifier = Annotated[bool, typer.Option(help="zoo models: keep the ImageNet classifier")]
Blocks = Annotated[Optional[str], typer.Option(
    "--blocks", help="regular expression naming the blocks' module paths, e.g. "
    "'stages\\.\\d+\\.blocks\\.\\d+' (default: the repeated units, see docs/guides/profile.md)")]
Out = Annotated[Optional[str], typer.Option(
    help="write to this file instead of stdout (a symlink is followed; /dev/null, a terminal "
         "or a FIFO is written through; a directory, a hard-linked, read-only or input file "
         "is refused)")]
Wide = Annotated[bool, typer.Option(
    "--wide", help="the whole table with exact values, however wide (default: fit $COLUMNS, "
    "else 100 columns, in human units)")]
Seed = Annotated[int, count_option("random seed: synthetic samples, augmentation, sample "
                                   "order, random channels, sparseupdate's search", minimum=0)]
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
Iterations = Annotated[int, count_option("passes over the support samples (plan, compare, "
                                         "whatif, report: with --device)")]
Samples = Annotated[int, typer.Option(help="support samples of the predicted run (plan, "
                                      "compare, whatif, report: with --device)")]
FisherFile = Annotated[Optional[str], typer.Option(
    "--fisher", help="Fisher file from `ttplan fisher` (needed for tinytrain)")]
FisherProbe = Annotated[Optional[str], typer.Option(
    "--fisher", help="Fisher file from `ttplan fisher` (default: the synthetic probe)")]
MemoryBudget = Annotated[Optional[str], typer.Option(
    "--memory", help="peak memory budget, e.g. 1MB, 512KiB")]
ComputeBudget = Annotated[Optional[str], typer.Option(
    "--compute", help="backward MACs budget: a share of full training (15%) or MACs (6.5M)")]
Solver = Annotated[str, choice_option("solver", ("greedy", "exact"),
                                      "greedy (Algorithm 1) | exact (MILP)")]
Channels = Annotated[str, typer.Option(help="fisher | l2norm | random")]

# The support set of `fisher` and `train`.
SupportData = Annotated[Optional[str], typer.Option(
    "--data", help="support set: folder of class sub-folders, or an .npz with x and y")]
Synthetic = Annotated[bool, typer.Option(help="use synthetic Gaussian samples instead")]
SupportSamples = Annotated[Optional[int], count_option(
    "at most this many samples (class-balanced); synthetic default 25", maximum=10_000_000)]
StepBatchSize = Annotated[int, count_option("samples per training step")]  # train
# `measure`'s grid of runs.
MaxIterations = Annotated[int, count_option(
    "at most this many passes per run (fewer when time is short)")]
RunSamples = Annotated[int, count_option("synthetic samples per run")]
Progress = Annotated[Optional[bool], typer.Option(
    help="progress bars on stderr (default: when it is a terminal)")]

# --format: the formats each command offers, each declared once.
_F = OutputFormat
TableFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, _F.CSV)]
ProfileFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, _F.CSV, _F.MD)]
PlanFormat = Annotated[str, format_option(_F.TABLE, _F.JSON, note="(on stdout)")]
ExportFormat = Annotated[str, format_option(_F.SPARSEUPDATE)]
# Default None: from --out's suffix (`reports._format`).
_BY_SUFFIX = "(default: from --out's suffix, else table)"
Table2Format = Annotated[Optional[str], format_option(_F.TABLE, _F.MD, _F.CSV, _F.JSON,
                                                      _F.LATEX, note=_BY_SUFFIX)]
ReportTableFormat = Annotated[Optional[str], format_option(_F.TABLE, _F.CSV, _F.JSON,
                                                           note=_BY_SUFFIX)]
ReportFormat = Annotated[str, format_option(
    _F.HTML, _F.MD, note="(html: one file; md: a folder, with each figure as PNG, SVG and "
    "PDF)")]
# sweep compares the two conventions by default.
SweepConvention = Annotated[str, choice_option("convention", ("paper", "pytorch", "both"),
                                               "paper | pytorch | both")]


# --- Option groups ---------------------------------------------------------------------------
# What travels together is one frozen dataclass whose fields are the options above; a command
# callback takes the group (`inputs: Inputs`) and `option_groups` shows Typer its fields, so
# a flag is declared once and a callback builds its request in one step. A command that needs
# another default or help text for one option of a group takes a variant: a subclass that
# re-annotates that field (it keeps its place in the group).

# Frozen, without __eq__/__hash__: a group is built once per run and read; each method
# dataclass generates is compiled at import, and `ttplan --help` imports every group (eq=False
# halves the cost of declaring one: 0.36 against 0.70 ms, Python 3.11).
group = dataclasses.dataclass(frozen=True, eq=False)


@functools.cache
def _group_options(kind) -> tuple[inspect.Parameter, ...]:
    """The options a group shows Typer: its fields, keyword-only, annotated."""
    hints = get_type_hints(kind, include_extras=True)
    return tuple(inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
        default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(kind))


def option_groups(command):
    """Show Typer each dataclass-typed parameter of `command` as its fields (through
    `__signature__`, which Typer reads) and call `command` with the dataclasses built from
    them. Field names are the flags' parameter names, so they must be unique in a command."""
    hints = get_type_hints(command, include_extras=True)
    shown, groups = [], {}
    for name, param in inspect.signature(command).parameters.items():
        kind = hints.get(name, param.annotation)
        if not dataclasses.is_dataclass(kind):
            shown.append(param.replace(annotation=kind, kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        options = _group_options(kind)
        groups[name] = (kind, tuple(option.name for option in options))
        shown.extend(options)
    names = [p.name for p in shown]
    if len(names) != len(set(names)):
        raise TypeError(f"{command.__name__}: an option appears in two groups")

    @functools.wraps(command)
    def flat(**options):
        for name, (kind, fields) in groups.items():
            options[name] = kind(**{field: options.pop(field) for field in fields})
        return command(**options)

    flat.__signature__ = inspect.Signature(shown)
    del flat.__wrapped__  # Typer must see the flat signature, not the grouped one
    flat.__annotations__ = {p.name: p.annotation for p in shown}
    flat.grouped = command
    return flat


@group
class Model:
    """The model: a zoo name or import path, its weights, the zoo classifier."""
    model: ModelArg
    weights: WeightsFile = None
    classifier: Classifier = False

    def source(self):
        from ttplan import ModelSource
        return ModelSource(self.model, weights=self.weights, classifier=self.classifier)


@group
class WeightedModel:
    """The model and its weights (a command without --classifier)."""
    model: ModelArg
    weights: WeightsFile = None


@group
class Inputs:
    """What the model is called with: --input-shape, --input (repeatable) or --inputs."""
    input_shape: InputShape = None
    input_specs: InputSpecs = None
    inputs_file: InputsFile = None

    def resolve(self, default: Optional[str] = None):
        """A `ttplan.specs.ModelInputs` (`default`, a shape, when none is given, else None)."""
        from .common import model_inputs
        return model_inputs(self.input_shape, self.input_specs, self.inputs_file, default)


@group
class FisherInputs(Inputs):
    input_shape: Annotated[Optional[str], typer.Option(
        help="N,C,H,W of the model input (default 1,3,128,128)")] = None


@group
class TrainInputs(Inputs):
    input_shape: Annotated[Optional[str], typer.Option(
        help="N,C,H,W (default: the policy's, else 1,3,128,128; N is --batch-size)")] = None


@group
class BatchedInputs(Inputs):
    """The inputs with --batch-size replacing their batch dimension (profile, predict)."""
    batch_size: BatchSize = None


@group
class ProfileInputs(BatchedInputs):
    input_shape: ProfileInputShape = None


@group
class SupportSet:
    """The support samples of `fisher` and `train`: --data or --synthetic."""
    data: SupportData = None
    synthetic: Synthetic = False
    samples: SupportSamples = None
    seed: Seed = 0
    vocab: Vocab = None


@group
class CostChoices:
    """How costs are counted, without the bit widths (compare)."""
    convention: Convention = None
    optimizer: Optimizer = "sgd"
    weights_in_flash: WeightsInFlash = None

    def options(self, default_convention: str = "paper"):
        """The one `CostOptions` (`default_convention` when --convention is not given)."""
        from ttplan import cost_options
        return cost_options(self.convention or default_convention, self.optimizer,
                            **self.bit_widths(), weights_in_flash=self.weights_in_flash)

    def bit_widths(self) -> dict:
        return {}


@group
class Costs(CostChoices):
    """How costs are counted: convention, optimizer, bit widths, where frozen weights live."""
    weight_bits: WeightBits = "32"
    activation_bits: ActivationBits = "32"
    gradient_bits: GradientBits = "32"

    def bit_widths(self) -> dict:
        return {"weight_bits": self.weight_bits, "activation_bits": self.activation_bits,
                "gradient_bits": self.gradient_bits}


@group
class PolicyCosts(Costs):
    """`profile`'s: each None unless given, so an --update policy's own value is used."""
    optimizer: Optimizer = None
    weight_bits: WeightBits = None
    activation_bits: ActivationBits = None
    gradient_bits: GradientBits = None


@group
class BudgetOptions:
    """--memory and --compute (no budget unless given)."""
    memory: MemoryBudget = None
    compute: ComputeBudget = None

    def budgets(self):
        from ttplan.specs import Budgets
        return Budgets(self.memory, self.compute)


@group
class PaperBudgets(BudgetOptions):
    """The paper's budgets by default (table2, report)."""
    memory: MemoryBudget = "1MB"
    compute: ComputeBudget = "15%"


@group
class PaperCostChoices(CostChoices):
    """whatif's: the paper convention unless given."""
    convention: Convention = "paper"

    def options(self, default_convention: str = "paper"):
        from ttplan import cost_options  # --convention as given (its default is paper)
        return cost_options(self.convention, self.optimizer,
                            weights_in_flash=self.weights_in_flash)


@group
class DevicePrediction:
    """A device to predict on and the predicted run's size (whatif, report)."""
    device: Device = None
    iterations: Iterations = 40
    samples: Samples = 25

    def predictor(self):
        """The device predictor, checked before any work (an unknown device is a one-line
        error), or None without --device."""
        from ttplan import device_context, device_predictor

        if self.device is None:
            return None
        return device_predictor(device_context(self.device, iterations=self.iterations,
                                               samples=self.samples))


@group
class DeviceWorkload(DevicePrediction):
    """A device to plan for, its training-time budget and the predicted run's size."""
    time: TimeBudget = None

    def context(self):
        """The resolved device (`ttplan.device_for`), or None without --device."""
        from ttplan import device_for
        return device_for(self.device, time=self.time, iterations=self.iterations,
                          samples=self.samples)


@group
class FormatOutput:
    """--format table|json|csv, --out (predict)."""
    fmt: TableFormat = "table"
    out: Out = None


@group
class TableOutput(FormatOutput):
    """--format table|json|csv, --out, --wide."""
    wide: Wide = False


@group
class ProfileOutput(TableOutput):
    fmt: ProfileFormat = "table"


# `ttplan train`'s groups.
@group
class TrainedPart(BudgetOptions):
    """What `train` updates: a policy file, a method planned on the device, or an update spec."""
    policy: Annotated[Optional[str], typer.Option(help="policy JSON from `ttplan plan`")] = None
    method: Annotated[Optional[str], typer.Option(
        help="plan on the device instead: tinytrain (Fisher probe + planner) | lastlayer | "
        "fulltrain | none | sparseupdate | tinytl")] = None
    update: Annotated[Optional[str], typer.Option(
        help="or an update spec: none | all | bias-only | last-layers:K | last-blocks:K")] = None
    convention: Convention = None


@group
class TrainSupport(SupportSet):
    holdout: Annotated[float, typer.Option(
        help="fraction of each class held out to measure accuracy (0: none)")] = 0.2


@group
class TrainRun:
    """The training loop: passes, batch, learning rate, optimizer, progress bars."""
    iterations: Iterations = DEFAULT_ITERATIONS
    batch_size: StepBatchSize = 1
    lr: Annotated[str, typer.Option(help="learning rate")] = "0.01"
    optimizer: Annotated[Optional[str], typer.Option(
        help="sgd | momentum | adam (default: the policy's, else sgd); no weight decay")] = None
    progress: Progress = None


@group
class TrainDevice:
    """The device the run is logged as and predicted on."""
    device_name: Annotated[Optional[str], typer.Option(
        help="the device column of the log row (default: --device's name, else host)")] = None
    device: Annotated[Optional[str], typer.Option(
        help="predict the run's phases with this device's calibrated model: a built-in name, "
        "host, a device or calibration JSON")] = None
    calibration: Calibration = None


@group
class TrainOutput:
    log: Annotated[Optional[str], typer.Option(help="append one row to this CSV log")] = None
    fmt: TableFormat = "table"
    out: Out = None


# `ttplan plan`'s groups.
@group
class PlanSelection:
    """How `plan` chooses: the method, its Fisher file and the search's settings."""
    method: Annotated[str, typer.Option(
        help="tinytrain | none | fulltrain | lastlayer | tinytl | sparseupdate")] = "tinytrain"
    fisher: FisherFile = None
    solver: Solver = "greedy"
    channels: Channels = "fisher"
    scheme: Annotated[str, typer.Option(help="sparseupdate: auto | released | search")] = "auto"
    seed: Seed = 0
    blocks: Blocks = None

    def search(self):
        from ttplan import PlanSearch
        return PlanSearch(self.solver, self.channels, self.seed, self.scheme, blocks=self.blocks)


@group
class PlanOutput:
    out: Out = None
    fmt: PlanFormat = "table"


@group
class FisherRun:
    """`fisher`'s probe: which layers, the loss, queries per step, progress bars."""
    layers: Annotated[float, fraction_option(
        "probe the last fraction of conv/linear layers (appendix F.1: 0.30-0.44)")] = \
        DEFAULT_TAIL_FRACTION
    loss: Annotated[str, typer.Option(
        help="protonet (feature backbone) | ce (classifier; zoo models get their "
        "classifier)")] = "protonet"
    batch_size: Annotated[int, count_option("queries per forward/backward",
                                            maximum=2**31 - 1)] = 1
    progress: Progress = None


@group
class TracerChoice:
    """How `profile` reads the model: the tracer and the blocks' module paths."""
    tracer: Annotated[str, typer.Option(help="auto | fx | hooks")] = "auto"
    blocks: Blocks = None


# The report commands' groups.
@group
class WhatifGrid:
    """whatif's grid of budgets and how each cell is planned."""
    memory: Annotated[str, typer.Option(help="LOW:HIGH:STEPS, log-spaced")] = "128KB:2MB:12"
    compute: Annotated[str, typer.Option(
        help="LOW:HIGH:STEPS, linear (% or MACs)")] = "2%:60%:12"
    method: Annotated[str, typer.Option(
        help="comma-separated: tinytrain, sparseupdate, fulltrain, lastlayer")] = "tinytrain"
    solver: Solver = "greedy"
    channels: Channels = "fisher"


@group
class WhatifOutput:
    plot: Annotated[Optional[str], typer.Option(
        help="heat maps of captured Fisher, and of predicted time with --device (.png, .svg "
        "or .pdf)")] = None
    pareto_plot: Annotated[Optional[str], typer.Option(
        help="Pareto frontier figure (.png, .svg or .pdf)")] = None
    fmt: ReportTableFormat = None
    out: Out = None
    progress: Progress = None


@group
class ReportTableOutput:
    """--format from --out's suffix by default, --wide, --out (layers)."""
    fmt: ReportTableFormat = None
    wide: Wide = False
    out: Out = None


@group
class Table2Output(ReportTableOutput):
    fmt: Table2Format = None


@group
class ReportAxes:
    """report's what-if ranges."""
    whatif_memory: Annotated[Optional[str], typer.Option(
        help="what-if memory range (default: half to twice the budget, 6 steps)")] = None
    whatif_compute: Annotated[str, typer.Option(help="what-if compute range")] = "2%:60%:6"


@group
class ReportOutput:
    out: Annotated[str, typer.Option(help="the HTML file, or the folder for md")]
    fmt: ReportFormat = "html"


# The device commands' groups.
@group
class PredictDevice:
    """predict's device, its calibration and the predicted run's size."""
    device: Annotated[str, typer.Option(
        help="pi-zero-2, jetson-nano, a device or calibration JSON")]
    calibration: Calibration = None
    iterations: Iterations = DEFAULT_ITERATIONS
    samples: Samples = DEFAULT_SAMPLES

    def context(self):
        from ttplan import device_context
        return device_context(self.device, calibration=self.calibration,
                              iterations=self.iterations, samples=self.samples)


@group
class MeasureRuns:
    """measure's runs: batch sizes, samples, passes, seed, one process each or not."""
    batch_sizes: Annotated[str, typer.Option(
        help="the grid's batch sizes, in the order to run them")] = "1,4,16"
    samples: RunSamples = DEFAULT_SAMPLES
    iterations: MaxIterations = DEFAULT_ITERATIONS
    seed: Seed = 0
    isolate: Annotated[bool, typer.Option(
        "--isolate/--in-process", help="each run in a fresh Python process (its own peak "
        "memory and load time), or all in this one (faster; later runs' peaks include memory "
        "earlier runs left resident)")] = True


@group
class MeasureLog:
    """measure's grid: its time limit and the CSV log its rows go to."""
    time_limit: Annotated[str, typer.Option(
        help="wall-time bound for the whole grid: 100s, 20min (20m), 1h")] = "20min"
    log: Annotated[Optional[str], typer.Option(
        help="append one row per run to this CSV log (required for the grid)")] = None
    device_name: Annotated[str, typer.Option(help="the device column of the log rows")] = "host"
