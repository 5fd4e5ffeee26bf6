"""Options of a device and its runs: the device and its calibration, a training-time budget,
the predicted run's size, `train`'s run and `measure`'s grid (`options` says how options are
declared)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ttplan.specs import DEFAULT_ITERATIONS, DEFAULT_SAMPLES

from .options import Progress, Seed, count_option, group
from .options_model import SupportSet
from .options_plan import BudgetOptions, Convention

Calibration = Annotated[Optional[str], typer.Option(
    help="calibration JSON to predict with (default: the device's built-in one)")]
# Device-aware planning (plan, compare): see `ttplan.plan_for_device`.
Device = Annotated[Optional[str], typer.Option(
    help="plan for a device (pi-zero-2, jetson-nano, ..., a device or calibration JSON): "
         "memory budget = its RAM minus its reserve unless --memory; predicted time/energy")]
TimeBudget = Annotated[Optional[str], typer.Option(
    "--time", help="training-time budget on --device through its calibration, e.g. 10min "
    "(a configuration the calibration ran on the model meets it to 10 %, what a run is held "
    "to; any other is planned below it by the calibration's timing resolution, at most 5 %); "
    "or an update spec or policy file to be no slower than, e.g. last-blocks:2 (its run as "
    "the calibration predicts it for this model)")]
Iterations = Annotated[int, count_option("passes over the support samples (plan, compare, "
                                         "whatif, report: with --device)")]
Samples = Annotated[int, typer.Option(help="support samples of the predicted run (plan, "
                                      "compare, whatif, report: with --device)")]
StepBatchSize = Annotated[int, count_option("samples per training step")]  # train
# `measure`'s grid of runs.
MaxIterations = Annotated[int, count_option(
    "at most this many passes per run (fewer when time is short)")]
RunSamples = Annotated[int, count_option("synthetic samples per run")]


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


# `ttplan train`'s groups.
@group
class TrainedPart(BudgetOptions):
    """What `train` updates: a policy file, a method planned on the device, or an update spec."""
    policy: Annotated[Optional[str], typer.Option(help="policy JSON from `ttplan plan`")] = None
    method: Annotated[Optional[str], typer.Option(
        help="plan on the device instead: tinytrain (Fisher probe + planner) | lastlayer | "
        "fulltrain | none | sparseupdate | tinytl")] = None
    update: Annotated[Optional[str], typer.Option(
        help="or an update spec: none | all | bias-only | last-layers:K | last-blocks:K | "
             "policy.json (as --policy)")] = None
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
