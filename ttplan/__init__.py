"""ttplan: what on-device training costs, and what to update within a budget.

The public Python API. Everything the CLI does is a call to one of these:

    import ttplan
    prof = ttplan.profile("mcunet-5fps", update="last-blocks:4", convention="paper")
    prof.table          # pandas cost table, one row per operator
    prof.memory         # F1/F2/B1–B4 breakdown and peak, in bytes
    prof.to_dict()      # the documented JSON contract

    policy = ttplan.plan("mcunet-5fps", fisher=..., memory_bytes=1_000_000, compute=0.15)
    ttplan.apply_policy(model, policy)

    ttplan.train("mcunet-5fps", policy=policy, support=ttplan.Support(synthetic=True),
                 device="pi-zero-2")
    ttplan.predict("mcunet-5fps", "last-blocks:2", "pi-zero-2")   # `ttplan predict` JSON
    pi = ttplan.device_context("pi-zero-2", time="10min")       # the device, resolved once
    ttplan.plan_for_device("mcunet-5fps", device=pi, fisher=...)

Loose values become typed ones once, at this boundary: `cost_options(...)` -> CostOptions,
`Budgets(memory, compute)`, `PlanSearch(solver, channels, seed, ...)`, `ModelSource(model,
name, weights)`, `device_context(...)`, `Support`/`RunSettings` for `train`
(notes/api_requests.md).

Layers, each importing only those before it: `ttplan.costmodel` (tracing, cost rules, memory),
`ttplan.planner` (Fisher, selection, policies), `ttplan.devices`, `ttplan.reports`; the CLI
(`ttplan.cli`) sits on top and nothing imports it.

The names are loaded on first use (PEP 562), so that `import ttplan` — which the `ttplan`
command does first — does not import torch before the command can catch Ctrl-C.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    "LayerUpdate": ("ttplan.costmodel.config", "LayerUpdate"),
    "TrainConfig": ("ttplan.costmodel.config", "TrainConfig"),
    "TtplanError": ("ttplan.costmodel.errors", "TtplanError"),
    "CostOptions": ("ttplan.costmodel.options", "CostOptions"),
    "cost_options": ("ttplan.costmodel.options", "cost_options"),
    "Budgets": ("ttplan.costmodel.specs", "Budgets"),
    "ModelSource": ("ttplan.costmodel.profile", "ModelSource"),
    "Profile": ("ttplan.costmodel.profile", "Profile"),
    "Rule": ("ttplan.costmodel.rules", "Rule"),
    "Saved": ("ttplan.costmodel.rules", "Saved"),
    "Grad": ("ttplan.costmodel.rules", "Grad"),
    "register_rule": ("ttplan.costmodel.rules", "register_rule"),
    "trace": ("ttplan.costmodel.trace", "trace"),
    "ZOO_MODELS": ("ttplan.costmodel.zoo", "ZOO_MODELS"),
    "build_zoo_model": ("ttplan.costmodel.zoo", "build_zoo_model"),
    "load_model": ("ttplan.costmodel.zoo", "load_model"),
    "profile": ("ttplan.planner.profiling", "profile"),
    "plan": ("ttplan.planner.api", "plan"),
    "PlanSearch": ("ttplan.planner.api", "PlanSearch"),
    "apply_policy": ("ttplan.planner.apply", "apply_policy"),
    "load_policy": ("ttplan.planner.policy", "load_policy"),
    "Policy": ("ttplan.planner.policy", "Policy"),
    "fisher_information": ("ttplan.planner.fisher_probe", "fisher_information"),
    "train": ("ttplan.devices.runner", "train"),
    "Support": ("ttplan.devices.runner", "Support"),
    "RunSettings": ("ttplan.devices.runner", "RunSettings"),
    "OnDevicePlan": ("ttplan.devices.runner", "OnDevicePlan"),
    "predict": ("ttplan.devices.planning", "predict_training"),
    "plan_for_device": ("ttplan.devices.planning", "plan_for_device"),
    "device_context": ("ttplan.devices.planning", "device_context"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ttplan' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
