"""Table-2-style comparison: every method planned for one model under the same settings.

Each method is planned with `planner.api.plan` (so each row is a policy a training loop could
follow) and its predicted memory and backward MACs are shown with their ratio to TinyTrain's,
the way the paper's Table 2 reports them. Budgets bind the methods that take them
(TinyTrain, SparseUpdate); the baselines show what they cost, and a note says when that is
over budget.
"""

from __future__ import annotations

from ttplan.costmodel.inputs import resolve_inputs
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.specs import Budgets
from ttplan.devices.planning import (DeviceContext, device_prediction, plan_on,
                                     with_time_budget)
from ttplan.planner.api import plan

METHODS = ("fulltrain", "lastlayer", "tinytl", "sparseupdate", "tinytrain")
COMPARE_FIELDS = ("method", "peak_bytes", "memory_ratio", "saved_activation_bytes",
                  "backward_macs", "compute_ratio", "trainable_params", "fisher_captured",
                  "within_budget")
# With a device (devices.planning.DeviceContext): each method's predicted end-to-end time,
# energy and whether its PyTorch peak fits the device's available RAM.
DEVICE_FIELDS = ("total_s", "energy_j", "fits_ram")


def compare_methods(model, *, fisher=None, methods=METHODS, device: DeviceContext | None = None,
                    budgets: Budgets | None = None, options: CostOptions | None = None,
                    inputs=None) -> list[dict]:
    """One row per method, each planned with the same `budgets`, `options` and `inputs` (as
    `plan` takes them); ratios are to the TinyTrain row (None without one). With `device`,
    budgets come from it as `ttplan plan --device` takes them, and DEVICE_FIELDS are added."""
    rows = []
    budgets = budgets if budgets is not None else Budgets()
    given = resolve_inputs(inputs)
    if device is not None:
        device = with_time_budget(device, model, given)
    for method in methods:
        method_fisher = fisher if method != "tinytl" else None
        if device is None:
            policy = plan(model, method=method, fisher=method_fisher,
                          memory_bytes=budgets.memory_bytes, compute=budgets.compute,
                          options=options, inputs=given)
        else:
            policy = plan_on(device, model, method, method_fisher, budgets, options, given, None)
        predicted = device_prediction(device, policy, model)[0] if device is not None else {}
        memory, totals = policy.predicted["memory"], policy.predicted["totals"]
        rows.append({"method": method, "peak_bytes": memory["peak_bytes"],
                     "saved_activation_bytes": memory["saved_activation_bytes"],
                     "backward_macs": totals["backward_macs"],
                     "trainable_params": totals["trainable_params"],
                     "fisher_captured": policy.predicted["fisher_captured"],
                     "within_budget": policy.predicted["within_budget"],
                     **{k: predicted[k] for k in DEVICE_FIELDS if device is not None}})
    reference = next((r for r in rows if r["method"] == "tinytrain"), None)
    for row in rows:
        row["memory_ratio"] = _ratio(row["peak_bytes"], reference and reference["peak_bytes"])
        row["compute_ratio"] = _ratio(row["backward_macs"],
                                      reference and reference["backward_macs"])
    fields = COMPARE_FIELDS + (DEVICE_FIELDS if device is not None else ())
    return [{k: r[k] for k in fields} for r in rows]


def _ratio(value, reference):
    return round(value / reference, 2) if reference else None
