"""ttplan: what on-device training costs, and what to update within a budget.

The public Python API. Every `ttplan` command is one call to one of these (the section
"Commands" below; tests/test_cli_groups.py checks it):

    import ttplan
    prof = ttplan.profile("mcunet-5fps", update="last-blocks:4", options={"convention": "paper"})
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

Commands, one call each (each returns a result value; its docstring says what it raises)
    ttplan profile: profile          ttplan fisher: probe_fisher with ProbeSettings
    ttplan plan: plan_policy         ttplan export: export_policy
    ttplan sweep: sweep              ttplan compare: compare
    ttplan devices: list_devices     ttplan calibrate: fit_calibration
    ttplan predict: predict          ttplan validate: validate_log
    ttplan train: train              ttplan measure: measure with MeasureGrid
    ttplan table2: table2_report     ttplan whatif: whatif
    ttplan layers: layer_report      ttplan report: build_report

Loose values become typed ones once, at this boundary: `cost_options(...)` -> CostOptions,
`Budgets(memory, compute)`, `PlanSearch(solver, channels, seed, ...)`, `ModelSource(model,
name, weights)`, `Tracing(tracer, rules, blocks, training_mode)`, `device_context(...)`,
`Support`/`RunSettings` for `train` (notes/api_requests.md).

What the `ttplan` command uses besides these lives in three public modules beside this one:
`ttplan.specs` (text into typed values: sizes, budgets, durations, shapes), `ttplan.io`
(files written whole or not at all, logs, calibrations) and `ttplan.render` (tables, units,
figures). The command imports nothing else (tests/test_layers.py checks it).

Layers, each importing only those before it: `ttplan.costmodel` (tracing, cost rules, memory),
`ttplan.planner` (Fisher, selection, policies), `ttplan.devices`, `ttplan.reports`; the CLI
(`ttplan.cli`) sits on top and nothing imports it.

The names are loaded on first use (PEP 562), so that `import ttplan` — which the `ttplan`
command does first — does not import torch before the command can catch Ctrl-C.

Models, traces and costs (each function's own docstring says how it is called)
    profile -> Profile          per-operator costs and the memory of a configuration
    resolve_model               a zoo name or module:callable -> (module, name)
    ZOO_MODELS, build_zoo_model, load_model; model_named_in_file (a model name read from a
                                file: built from the zoo, never imported)
    trace                       a model -> its layer graph; fold_batchnorm (the paper's graph)
    CostOptions, TrainConfig, LayerUpdate   what is trained and how it is counted
    cost_options                the one factory of CostOptions (convention, optimiser, bits)
    ModelSource, Budgets        a model with its name and weights; a memory and compute budget
    Tracing                     how profile traces: tracer, rules, blocks, train/eval mode
    Rule, Saved, Grad, register_rule        cost rules for operators ttplan does not know
    TtplanError                 every error in what a person gave
Fisher information
    fisher_information; fisher_layers (the last layers a probe sees); open_support (the
    support set: folder, .npz or synthetic); feeding, infer_vocab (models of several or
    integer inputs); synthetic_fisher with PROBE_SAMPLES, PROBE_SEED (the default probe)
Plans and policies
    plan -> Policy; PlanningContext (a model traced once, planned many times); PlanSearch
    (solver, channels, seed, scheme, blocks, extra limits)
    load_policy, check_policy (a policy against a model's graph), apply_policy
    export_sparseupdate         a policy as SparseUpdate's backward_config
Devices
    predict, plan_for_device, train with Support, RunSettings, OnDevicePlan (the samples,
    the run's settings, a plan made on the device); device_context, device_for (a device
    resolved once, with its calibration; device_for: none without a name, --time needs a
    device), device_predictor; resolve_device, builtin_devices, detect_host,
    BUILTIN_CALIBRATIONS; calibrate, calibrate_layers, measure_grid with GridRuns,
    measure_layer_table, validate_runs (calibration runs, their fit and its leave-one-out
    error)
Reports
    sweep_last_k with sweep_options, compare_methods with COMPARE_METHODS, table2,
    run_whatif and whatif_data, layer_rows, build_report with WhatifAxes
"""

from __future__ import annotations

from ttplan._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    # models, traces and their costs
    "LayerUpdate": ("ttplan.costmodel.config", "LayerUpdate"),
    "TrainConfig": ("ttplan.costmodel.config", "TrainConfig"),
    "TtplanError": ("ttplan.costmodel.errors", "TtplanError"),
    "CostOptions": ("ttplan.costmodel.options", "CostOptions"),
    "cost_options": ("ttplan.costmodel.options", "cost_options"),
    "Budgets": ("ttplan.costmodel.specs", "Budgets"),
    "ModelSource": ("ttplan.costmodel.profile", "ModelSource"),
    "Profile": ("ttplan.costmodel.profile", "Profile"),
    "Tracing": ("ttplan.costmodel.profile", "Tracing"),
    "resolve_model": ("ttplan.costmodel.profile", "resolve_model"),
    "Rule": ("ttplan.costmodel.rules", "Rule"),
    "Saved": ("ttplan.costmodel.rules", "Saved"),
    "Grad": ("ttplan.costmodel.rules", "Grad"),
    "register_rule": ("ttplan.costmodel.rules", "register_rule"),
    "trace": ("ttplan.costmodel.trace", "trace"),
    "fold_batchnorm": ("ttplan.costmodel.transforms", "fold_batchnorm"),
    "ZOO_MODELS": ("ttplan.costmodel.zoo", "ZOO_MODELS"),
    "build_zoo_model": ("ttplan.costmodel.zoo", "build_zoo_model"),
    "load_model": ("ttplan.costmodel.zoo", "load_model"),
    "model_named_in_file": ("ttplan.costmodel.zoo", "zoo_model_named_in_file"),
    "profile": ("ttplan.planner.policy.profile", "profile"),
    # Fisher information and the support set
    "fisher_information": ("ttplan.planner.fisher.probe", "fisher_information"),
    "fisher_layers": ("ttplan.planner.fisher.probe", "default_candidate_layers"),
    "open_support": ("ttplan.planner.support.sources", "open_support"),
    "feeding": ("ttplan.planner.support.sequences", "feeding"),
    "infer_vocab": ("ttplan.planner.support.sequences", "infer_vocab"),
    "synthetic_fisher": ("ttplan.reports.table2", "synthetic_fisher"),
    "PROBE_SAMPLES": ("ttplan.reports.table2", "PROBE_SAMPLES"),
    "PROBE_SEED": ("ttplan.reports.table2", "PROBE_SEED"),
    # plans and policies
    "plan": ("ttplan.planner.api", "plan"),
    "PlanningContext": ("ttplan.planner.context", "PlanningContext"),
    "PlanSearch": ("ttplan.planner.api", "PlanSearch"),
    "apply_policy": ("ttplan.planner.policy.apply", "apply_policy"),
    "load_policy": ("ttplan.planner.policy.file", "load_policy"),
    "check_policy": ("ttplan.planner.policy.file", "check_against_graph"),
    "Policy": ("ttplan.planner.policy.file", "Policy"),
    "export_sparseupdate": ("ttplan.planner.selection.sparseupdate", "export_sparseupdate"),
    # devices: profiles, predictions, runs, calibration
    "train": ("ttplan.devices.runner", "train"),
    "Support": ("ttplan.devices.trainrequest", "Support"),
    "RunSettings": ("ttplan.devices.trainrequest", "RunSettings"),
    "OnDevicePlan": ("ttplan.devices.trainrequest", "OnDevicePlan"),
    "predict": ("ttplan.devices.planning", "predict_training"),
    "plan_for_device": ("ttplan.devices.planning", "plan_for_device"),
    "device_context": ("ttplan.devices.planning", "device_context"),
    "device_for": ("ttplan.devices.planning", "device_for"),
    "GridRuns": ("ttplan.devices.grid", "GridRuns"),
    "sweep_options": ("ttplan.reports.sweep", "sweep_options"),
    "WhatifAxes": ("ttplan.reports.report", "WhatifAxes"),
    "resolve_device": ("ttplan.devices.profiles", "resolve_device"),
    "builtin_devices": ("ttplan.devices.profiles", "builtin_profiles"),
    "detect_host": ("ttplan.devices.profiles", "detect_host"),
    "BUILTIN_CALIBRATIONS": ("ttplan.devices.calibrate", "BUILTIN"),
    "calibrate": ("ttplan.devices.calibrate", "calibrate"),
    "calibrate_layers": ("ttplan.devices.calibrate", "calibrate_layers"),
    "measure_grid": ("ttplan.devices.grid", "measure"),
    "measure_layer_table": ("ttplan.devices.layermeasure", "measure_table"),
    "validate_runs": ("ttplan.devices.validate", "validate"),
    # reports
    "sweep_last_k": ("ttplan.reports.sweep", "sweep_last_k"),
    "compare_methods": ("ttplan.reports.compare", "compare_methods"),
    "COMPARE_METHODS": ("ttplan.reports.compare", "METHODS"),
    "table2": ("ttplan.reports.table2", "table2"),
    "run_whatif": ("ttplan.reports.whatif", "run_whatif"),
    "whatif_data": ("ttplan.reports.whatif", "whatif_data"),
    "layer_rows": ("ttplan.reports.layers", "layer_rows"),
    "device_predictor": ("ttplan.reports.predict", "device_predictor"),
    "build_report": ("ttplan.reports.report", "build_report"),
    # each command's whole job, one call (ttplan/_planning.py, _costs.py, _devices.py,
    # _reports.py)
    "probe_fisher": ("ttplan._planning", "probe_fisher"),
    "ProbeSettings": ("ttplan._planning", "ProbeSettings"),
    "plan_policy": ("ttplan._planning", "plan_policy"),
    "export_policy": ("ttplan._planning", "export_policy"),
    "sweep": ("ttplan._costs", "sweep"),
    "compare": ("ttplan._costs", "compare"),
    "list_devices": ("ttplan._devices", "list_devices"),
    "fit_calibration": ("ttplan._devices", "fit_calibration"),
    "validate_log": ("ttplan._devices", "validate_log"),
    "measure": ("ttplan._devices", "measure"),
    "MeasureGrid": ("ttplan._devices", "MeasureGrid"),
    "table2_report": ("ttplan._reports", "table2_report"),
    "whatif": ("ttplan._reports", "whatif"),
    "layer_report": ("ttplan._reports", "layer_report"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
