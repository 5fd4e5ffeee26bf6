"""What a `train` run updates: planned on the device (the Fisher probe for tinytrain, then
the planner, both timed as phases), or a given policy checked against the traced model, or an
update spec resolved on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ttplan.costmodel.config import resolve_updates, validate_updates
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.profile import ModelSource
from ttplan.costmodel.specs import parse_update
from ttplan.costmodel.trace import trace
from ttplan.planner.api import PlanSearch
from ttplan.planner.api import plan as make_plan
from ttplan.planner.fisher import default_candidate_layers, fisher_information
from ttplan.planner.policy.file import check_at_any_batch
from ttplan.planner.selection.tinytl import LITE_ATTR, add_lite_residuals
from ttplan.planner.support.sequences import feeding

from .trainloop import Phases, Samples
from .trainrequest import OnDevicePlan, RunSettings


@dataclass
class Chosen:
    """What the run updates and where that came from."""

    updates: dict
    label: str
    origin: str


def plan_on_device(request: OnDevicePlan, module, name, shape, samples: Samples,
                   run: RunSettings, options: CostOptions, phases: Phases):
    """The Fisher probe (tinytrain) and the planner under `options`, timed as the device
    runs them; the policy, and the model it is for (TinyTL adds modules)."""
    fisher = None
    if request.method == "tinytrain":
        with phases.timed("fisher_s"), feeding(module, shape):
            fisher = fisher_information(
                module, default_candidate_layers(module, request.fisher_layers),
                samples.x_train, samples.y_train, loss="protonet", seed=run.seed,
                batch_size=run.batch_size, progress=run.progress)
    with phases.timed("plan_s"):
        planned = make_plan(ModelSource(module, name), method=request.method, fisher=fisher,
                            memory_bytes=request.budgets.memory_bytes,
                            compute=request.budgets.compute, options=options, inputs=shape,
                            search=PlanSearch(seed=run.seed))
        if request.method == "tinytl":
            module, name = with_lite_residuals(module, name, shape)
    return planned, module, name


def chosen_updates(policy, loaded, plan_request, update, graph, module, shape, name) -> Chosen:
    if loaded is not None:
        check_at_any_batch(loaded, graph, lambda n: trace(module, shape.with_batch(n), name),
                           str(policy) if isinstance(policy, (str, Path)) else "policy")
        origin = "planned on the device" if plan_request else (
            str(policy) if isinstance(policy, (str, Path)) else "policy object")
        updates = loaded.updates()
        validate_updates(updates, graph)
        return Chosen(updates, loaded.method, origin)
    # a policy file given as the update spec arrives as `loaded` (runner.train)
    updates = resolve_updates(parse_update(update), graph)
    validate_updates(updates, graph)
    return Chosen(updates, update, "update spec")


def with_lite_residuals(module: nn.Module, name: str, shape) -> tuple[nn.Module, str]:
    if any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
        return module, name
    return add_lite_residuals(module, shape), f"{name}+lite-residual"
