"""Table-2-style comparison: every method planned for one model under the same settings.

Each method is planned with `planner.api.plan` (so each row is a policy a training loop could
follow) and its predicted memory and backward MACs are shown with their ratio to TinyTrain's,
the way the paper's Table 2 reports them. Budgets bind the methods that take them
(TinyTrain, SparseUpdate); the baselines show what they cost, and a note says when that is
over budget.
"""

from __future__ import annotations

from ttplan.devices.planning import DeviceContext, attach_prediction, plan_budgets
from ttplan.planner.api import plan

METHODS = ("fulltrain", "lastlayer", "tinytl", "sparseupdate", "tinytrain")
COMPARE_FIELDS = ("method", "peak_bytes", "memory_ratio", "saved_activation_bytes",
                  "backward_macs", "compute_ratio", "trainable_params", "fisher_captured",
                  "within_budget")
# With a device (devices.planning.DeviceContext): each method's predicted end-to-end time,
# energy and whether its PyTorch peak fits the device's available RAM.
DEVICE_FIELDS = ("total_s", "energy_j", "fits_ram")


def compare_methods(model, *, fisher=None, methods=METHODS, device: DeviceContext | None = None,
                    **plan_options) -> list[dict]:
    """One row per method; ratios are to the TinyTrain row (None without one). With `device`,
    budgets come from it as `ttplan plan --device` takes them, and DEVICE_FIELDS are added."""
    rows = []
    for method in methods:
        options = dict(plan_options)
        if device is not None:
            options.update(plan_budgets(device, method, options.get("input_shape", (1, 3, 128, 128)),
                                        options.pop("memory_bytes", None), model))
        policy = plan(model, method=method, fisher=fisher if method != "tinytl" else None,
                      **options)
        predicted = attach_prediction(device, policy, model) if device is not None else {}
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
