"""Options of the model and what it is called with: the model and its weights, its inputs
(`--input-shape`, `--input`, `--inputs`, `--batch-size`), the blocks' module paths, and the
support samples of `fisher` and `train` (`options` says how options are declared)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ttplan.specs import MAX_INPUT_ELEMENTS

from .options import Seed, count_option, group

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
WeightsFile = Annotated[Optional[str], typer.Option(
    "--weights", help="state_dict file (loaded with weights_only=True)")]
Update = Annotated[str, typer.Option(
    help="what is trained: all | none | bias-only | last-layers:K | last-blocks:K | "
    "policy.json")]
Classifier = Annotated[bool, typer.Option(help="zoo models: keep the ImageNet classifier")]
Blocks = Annotated[Optional[str], typer.Option(
    "--blocks", help="regular expression naming the blocks' module paths, e.g. "
    "'stages\\.\\d+\\.blocks\\.\\d+' (default: the repeated units, see docs/guides/profile.md)")]
BatchSize = Annotated[Optional[int], count_option("replaces N of --input-shape (dim 0 of every "
                                                  "--input)",
                                                  maximum=MAX_INPUT_ELEMENTS)]
DEFAULT_INPUT_SHAPE = "1,3,128,128"  # as text, for the commands that always need one
# The support set of `fisher` and `train`.
SupportData = Annotated[Optional[str], typer.Option(
    "--data", help="support set: folder of class sub-folders, or an .npz with x and y")]
Synthetic = Annotated[bool, typer.Option(help="use synthetic Gaussian samples instead")]
SupportSamples = Annotated[Optional[int], count_option(
    "at most this many samples (class-balanced); synthetic default 25", maximum=10_000_000)]


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
class TracerChoice:
    """How `profile` reads the model: the tracer and the blocks' module paths."""
    tracer: Annotated[str, typer.Option(help="auto | fx | hooks")] = "auto"
    blocks: Blocks = None
