"""Options of costs, budgets and planning: the cost convention and bit widths, the memory and
compute budgets, how `plan` searches, the Fisher probe of `fisher`, the what-if grids of
`whatif` and `report` (`options` says how options are declared)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ttplan.specs import DEFAULT_TAIL_FRACTION

from .options import Progress, Seed, choice_option, count_option, fraction_option, group
from .options_model import Blocks

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
# sweep compares the two conventions by default.
SweepConvention = Annotated[str, choice_option("convention", ("paper", "pytorch", "both"),
                                               "paper | pytorch | both")]


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


# whatif's and report's groups.
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
class ReportAxes:
    """report's what-if ranges."""
    whatif_memory: Annotated[Optional[str], typer.Option(
        help="what-if memory range (default: half to twice the budget, 6 steps)")] = None
    whatif_compute: Annotated[str, typer.Option(help="what-if compute range")] = "2%:60%:6"
