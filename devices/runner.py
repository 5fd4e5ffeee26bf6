"""`train(...)`: TinyTrain's online stage on the device, measured beside the cost model.

A run, as the paper times it end to end (§3.2, appendix A.4, E.3):

  load   the model (zoo name, import path or nn.Module; `weights` with weights_only=True) and
         the support samples;
  fisher only for `method="tinytrain"`: the Fisher probe on the training samples;
  plan   only with `method`: the planner, on the device (for tinytrain with the probe's result);
  train  `iterations` passes over the training samples in steps of `batch_size`.

Each pass recomputes the class prototypes from the un-augmented samples (one forward of every
sample, no gradient) and draws fresh pseudo-queries (`augment`, seeded by seed + pass): the
Fisher probe's ProtoNet cosine loss (`planner.fisher.protonet_criterion`), averaged over the
step's queries. Samples are visited in a seeded random order each pass.

What the run does to realise the cost model's savings (not only to mask gradients):
  * modules in eval mode: BatchNorm normalises with its statistics as deployed, as
    `apply_policy` documents; the prediction prices the same (`training_mode=False`), on the
    model traced with its modules in eval mode (`eval_mode_graph`);
  * every parameter the policy does not select has requires_grad False, so frozen layers keep
    only what the gradient's path needs;
  * the forward runs under torch.no_grad() until the first updated layer (a forward pre-hook
    turns gradients on there): the layers before it record nothing for backward;
  * a conv2d/linear layer updated on some channels computes only their weight gradient
    (`devices.sparse`); other partial layers keep the dense, masked gradient and are listed.

Measured beside the `pytorch` convention's prediction for the same configuration (modules in
eval mode, the run's batch size and optimiser): wall time per phase, time per pass, the bytes
autograd keeps for one step's forward (saved_tensors_hooks, storages once, parameters and
buffers excluded: `costmodel.measure`, measured once after training), the process's peak
resident memory and, where the machine has a counter, the energy of the four phases
(`devices.host`). Not timed: tracing the model, the prediction, the accuracy evaluation and
the saved-bytes measurement.

Held-out accuracy: when every class has at least two samples and `holdout` > 0, the last
max(1, round(holdout × n_c)) samples of each class (in the source's order) are held out as
queries, classified by the nearest prototype (cosine) of the training samples, before and
after training; otherwise accuracy is None.

The run's parts, each in its module: `devices.trainrequest` (what a run is asked: `Support`,
`RunSettings`, `OnDevicePlan`), `devices.trainplan` (what it updates: planned on the device, a
policy or an update spec), `devices.trainloop` (the timed phases, the training and what it
measures) and `devices.trainresult` (`TrainResult`, assembled with the predictions).
"""

from __future__ import annotations

from ttplan.costmodel.errors import SpecError, TraceError
from ttplan.costmodel.inputs import ModelInputs, from_json, resolve_inputs
from ttplan.costmodel.options import PAPER, cost_options
from ttplan.costmodel.profile import EVAL_MODE, ModelSource, profile, resolve_model
from ttplan.costmodel.specs import (DEFAULT_INPUT_SHAPE, Budgets, is_policy_file_spec,
                                    parse_input_shape)
from ttplan.costmodel.trace import trace
from ttplan.planner.policy.file import Policy, policy_from_file_or_object
from ttplan.planner.support.sources import load_support
from ttplan.planner.support.sequences import infer_vocab

from .host import reset_peak_rss
from .planning import DeviceContext, device_for, no_calibration
from .probecost import run_probe_macs
from .stepcost import step_cost
from .trainloop import Phases, Samples, holdout_split, measured_run
from .trainplan import chosen_updates, plan_on_device, with_lite_residuals
from .trainrequest import (DEFAULT_HOLDOUT, OPTIMIZERS, OnDevicePlan, RunSettings,
                           Support, check_one_way)
from .trainresult import RunRecord, TrainResult, predicted_on_device, train_result
from .workload import DEFAULT_ITERATIONS  # noqa: F401 (the paper's runs, §3.2; re-exported)



def train(model, *, policy=None, method: str | OnDevicePlan | None = None,
          update: str | None = None, support: Support | None = None, inputs=None,
          run: RunSettings | None = None, device=None) -> TrainResult:
    """Fine-tune `model` on the support samples following a policy, and measure the run.

    `model`: an nn.Module (trained in place; the result holds it as `.model`), a zoo name,
    module:callable, or a `ModelSource` (name, weights).
    What to update, exactly one of:
      policy   a Policy, policy dict or policy file from `ttplan plan`;
      method   plan on the device: a method name (tinytrain, fulltrain, lastlayer, none,
               sparseupdate, tinytl) or an `OnDevicePlan` (with budgets and convention);
      update   an update spec: none, all, bias-only, last-layers:K, last-blocks:K.
    `support`: the samples (`Support`: a data folder or .npz, or synthetic samples; without
    either the run is refused). `inputs`: an input shape (default the policy's, else 1x3x128x128) or, for a
    model not called with one float image, its one input's spec ("x:float32[1,40,100]",
    "int64[1,16]", a tensor: `costmodel.inputs`); dimension 0 is replaced by the batch size.
    `run`: `RunSettings` (iterations, batch size, lr, optimizer, seed, ...).
    `device`: predict the run's phases, total time and energy with the device's calibrated
    model (devices.planning), for the same configuration, iterations and training samples: a
    `DeviceContext` (`device_for(device, calibration=...)`), or a built-in name, `host`, a
    device or calibration JSON; without one `predicted`'s phases, total_s and energy_j are
    None.
    """
    run = run if run is not None else RunSettings()
    support = support if support is not None else Support()
    for name, value, kind in (("run", run, RunSettings), ("support", support, Support)):
        if not isinstance(value, kind):  # below the boundary a value arrives typed
            raise SpecError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
    plan_request = OnDevicePlan(method) if isinstance(method, str) else method
    if policy is None and isinstance(update, str) and is_policy_file_spec(update):
        policy, update = update.strip(), None  # a policy file, as predict and profile take it
    check_one_way(policy, plan_request, update)
    ctx = _device_model(device)
    device_name = run.device_name or ("host" if ctx is None else ctx.device.name)
    peak_since = "run start" if run.own_peak_rss and reset_peak_rss() else "process start"
    phases = Phases()
    with phases.timed("load_s"):
        loaded = policy_from_file_or_object(policy) if policy is not None else None
        shape = _run_inputs(inputs, loaded, run.batch_size)
        module, name = resolve_model(model)
        if loaded is not None and loaded.method == "tinytl":
            module, name = with_lite_residuals(module, name, shape)
        x, y, described = load_support(support.data, shape, support.samples, run.seed,
                                       support.synthetic, support.vocab if support.vocab
                                       is not None else infer_vocab(module))
    samples = Samples(x, *holdout_split(x, y, support.holdout))
    if run.batch_size > len(samples.x_train):
        raise SpecError(f"batch size {run.batch_size} exceeds the {len(samples.x_train)} "
                        "training samples")
    optimizer = run.optimizer or (loaded.options.optimizer if loaded else "sgd")
    if plan_request is not None:
        plan_options = cost_options(plan_request.convention or
                                    (ctx.device.runtime if ctx else "paper"), optimizer)
        loaded, module, name = plan_on_device(plan_request, module, name, shape, samples,
                                              run, plan_options, phases)
    # What the probe ran, counted (devices.probecost): the log's probe_macs, 0 without a probe.
    probe_macs = run_probe_macs(module, shape, len(samples.x_train),
                                fisher_layers=plan_request.fisher_layers) \
        if plan_request is not None and plan_request.method == "tinytrain" else 0
    graph = trace(module, shape, name)
    chosen = chosen_updates(policy, loaded, plan_request, update, graph, module, shape, name)
    # The policy's options with the run's optimiser (the paper defaults without a policy).
    run_options = (loaded.options if loaded is not None else PAPER).replace(optimizer=optimizer)
    predicted_pt = profile(ModelSource(module, name), shape, update=chosen.updates,
                           graph=eval_mode_graph(module, shape, name, graph),
                           options=run_options.under("pytorch"), tracing=EVAL_MODE)
    # The log's cost columns come from the one place the shipped logs and `predict` use.
    step = step_cost(None, chosen.updates, shape, graph=graph, options=run_options)
    record = RunRecord(module, name, shape, chosen, loaded, plan_request, samples, run,
                       optimizer, ctx, step, probe_macs, described, device_name, peak_since)
    measured = measured_run(module, graph, chosen.updates, shape, samples, run, optimizer,
                            phases)
    return train_result(record, measured, phases, predicted_pt, predicted_on_device(record))


def eval_mode_graph(module, shape, name: str, graph):
    """The model traced with its modules in eval mode, as the run runs them: the memory the
    run keeps follows the path PyTorch takes then (no dropout, `if self.training` branches
    not taken, SDPA's fused path and the layout of its output); `graph` (traced as a training
    step) when that trace fails or a layer it updates is missing from it."""
    try:
        in_eval = trace(module, shape, name, training=False)
    except TraceError:
        return graph
    keys = {n.layer_key for n in in_eval.ops()}
    return in_eval if all(n.layer_key in keys for n in graph.mac_layers()) else graph


def train_flat(settings: dict) -> TrainResult:
    """`train` from flat values, as a grid run passes them to a fresh process (JSON): model,
    update or method (with compute), synthetic, samples, seed, input_shape or inputs
    (`ModelInputs.to_json()`), holdout, iterations, batch_size, device_name, own_peak_rss,
    model_name."""
    s = dict(settings)
    method = s.pop("method", None)
    budgets = Budgets(compute=s.pop("compute", None))
    support = Support(synthetic=s.pop("synthetic", False), samples=s.pop("samples", None),
                      holdout=s.pop("holdout", DEFAULT_HOLDOUT))
    inputs = s.pop("input_shape", None)
    if "inputs" in s:
        inputs = from_json(s.pop("inputs"))
    return train(ModelSource(s.pop("model"), s.pop("model_name", None)),
                 update=s.pop("update", None), method=OnDevicePlan.given(method, budgets),
                 support=support, inputs=inputs, run=RunSettings(**s))


# ----------------------------------------------------------------------------- inputs


def _device_model(device) -> DeviceContext | None:
    """The calibrated device model to predict the run with, checked before any work."""
    ctx = device if isinstance(device, DeviceContext) or device is None else device_for(device)
    if ctx is not None and ctx.calibration is None:
        raise SpecError(no_calibration(ctx.device))
    return ctx


def _run_inputs(inputs, policy: Policy | None, batch_size: int) -> ModelInputs:
    """The policy's inputs, or the given ones, or 1×3×128×128, with dim 0 `batch_size`."""
    given = None
    if inputs is not None:
        given = resolve_inputs(parse_input_shape(inputs) if _is_shape_text(inputs) else inputs)
    if policy is not None:
        planned = policy.model_inputs()
        if given is not None and _per_sample(given) != _per_sample(planned):
            if given.is_image_shorthand and planned.is_image_shorthand:
                raise SpecError(f"the policy was planned for input {list(planned.shape[1:])}, "
                                f"not {list(given.shape[1:])}")
            raise SpecError(f"the policy was planned for inputs {planned.text()}, not "
                            f"{given.text()} (dimension 0, the batch, aside)")
        given = planned
    return (given or resolve_inputs(None, DEFAULT_INPUT_SHAPE)).with_batch(batch_size)


def _is_shape_text(inputs) -> bool:
    """'1,3,32,32' (an input shape as the command line writes it), not a spec or .npz."""
    return isinstance(inputs, str) and "[" not in inputs and not inputs.strip().lower().endswith(".npz")


def _per_sample(inputs: ModelInputs) -> list:
    return [(s.name, s.dtype, s.shape[1:]) for s in inputs.specs]


__all__ = ["TrainResult", "train", "holdout_split", "OPTIMIZERS",
           "DEFAULT_ITERATIONS"]
