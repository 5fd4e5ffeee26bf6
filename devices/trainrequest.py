"""What a `train` run is asked to do, checked when built: the support samples (`Support`),
how it trains and is recorded (`RunSettings`), and planning on the device first
(`OnDevicePlan`). The run itself: `devices.runner`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import Budgets
from ttplan.planner.fisher import DEFAULT_TAIL_FRACTION
from ttplan.planner.policy.file import METHODS

from .workload import DEFAULT_ITERATIONS

DEFAULT_HOLDOUT = 0.2
DEFAULT_LR = 0.01
OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class Support:
    """The support samples of a run, checked when built: `data` (a folder of class
    sub-folders or an .npz) or `synthetic` (`samples` of them, seeded by the run's seed;
    token ids below `vocab`, default the first nn.Embedding's size, for an integer input);
    `holdout`: the share of each class held out as queries (module docstring)."""

    data: str | None = None
    synthetic: bool = False
    samples: int | None = None
    vocab: int | None = None
    holdout: float = DEFAULT_HOLDOUT

    def __post_init__(self) -> None:
        h = self.holdout
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 <= h < 1:
            raise SpecError(f"holdout must be a fraction in [0, 1), not {h!r}")


@dataclass(frozen=True)
class RunSettings:
    """How a run trains and is recorded, checked when built: `iterations` passes in steps of
    `batch_size`; `optimizer` sgd | momentum (0.9) | adam, no weight decay (None: the
    policy's cost_options optimizer, else sgd); `seed` for the samples, the probe, the plan
    and the order; `device_name` the log row's device column (default: the device's name,
    else host); `own_peak_rss` measures the peak resident memory from the start of this run
    (Linux; `devices.host.reset_peak_rss`) instead of since the process started."""

    iterations: int = DEFAULT_ITERATIONS
    batch_size: int = 1
    lr: float = DEFAULT_LR
    optimizer: str | None = None
    seed: int = 0
    progress: bool = False
    device_name: str | None = None
    own_peak_rss: bool = False

    def __post_init__(self) -> None:
        for label, value in (("iterations", self.iterations), ("batch size", self.batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{label} must be a positive integer, not {value!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or \
                not (math.isfinite(lr) and lr > 0):
            raise SpecError(f"learning rate (--lr) must be a positive number, not {lr!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise SpecError(f"unknown optimizer {self.optimizer!r}: use sgd, momentum or adam")


@dataclass(frozen=True)
class OnDevicePlan:
    """Plan on the device before training: `method` (tinytrain runs the Fisher probe on the
    training samples first, over the last `fisher_layers` share of layers), its `budgets`
    and `convention` (default: the device's runtime with a device, else paper)."""

    method: str
    budgets: Budgets = Budgets()
    convention: str | None = None
    fisher_layers: float = DEFAULT_TAIL_FRACTION

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SpecError(f"unknown method {self.method!r}: use {', '.join(METHODS)}")

    @classmethod
    def given(cls, method: str | None, budgets: Budgets, convention: str | None = None):
        """The request when a method is given, else None (then budgets are refused)."""
        if method is None:
            if budgets.memory_bytes is not None or budgets.compute is not None:
                raise SpecError("memory and compute budgets apply to planning on the device "
                                "(a method)")
            return None
        return cls(method, budgets, convention)


def check_one_way(policy, plan_request, update) -> None:
    chosen = [name for name, value in (("policy", policy), ("method", plan_request),
                                       ("update", update)) if value is not None]
    if len(chosen) != 1:
        raise SpecError("give exactly one of a policy, a method (plan on the device) or an "
                        f"update spec{'' if not chosen else ', not ' + ' and '.join(chosen)}")
