"""The planning commands' whole jobs, one function each: `ttplan fisher` (`probe_fisher`),
`ttplan plan` (`plan_policy`), `ttplan export` (`export_policy`).

Each takes request values (built and checked once, where they are made), does the work of
its command and returns a result value; nothing given is changed. The `ttplan` command turns
its options into these values, makes the one call and renders what comes back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, Budgets
from ttplan.planner.probe_defaults import DEFAULT_TAIL_FRACTION


@dataclass(frozen=True)
class ProbeSettings:
    """How `probe_fisher` probes: the last `layers` share of conv/linear layers (appendix
    F.1), the `loss` (protonet: a feature backbone; ce: a classifier), `batch_size` queries
    per forward/backward, the `seed` of synthetic samples and augmentation, and `progress`
    bars on stderr."""

    layers: float = DEFAULT_TAIL_FRACTION
    loss: str = "protonet"
    batch_size: int = 1
    seed: int = 0
    progress: bool = False


@dataclass(frozen=True)
class FisherReport:
    """What `probe_fisher` found: the `result` (a FisherResult) of the probed `layers` of
    `model_name`, whose graph has `fingerprint`; `support` describes the samples."""

    result: object
    model_name: str
    fingerprint: str
    layers: tuple[str, ...]
    support: str

    def to_dict(self) -> dict:
        """The Fisher file's JSON (what `ttplan.io.load_fisher` and `plan` read)."""
        return self.result.to_json_dict(self.model_name, self.fingerprint)


def probe_fisher(model, *, support=None, probe: ProbeSettings | None = None,
                 inputs=None) -> FisherReport:
    """Fisher information per output channel (Eq. 2) of the last layers of `model`, on its
    support samples: what `ttplan fisher` computes.

    model     a `ModelSource` (or what it takes: an nn.Module, a zoo name, module:callable);
              with probe.loss "ce" a zoo model keeps its classifier
    support   a `ttplan.Support` (data folder or .npz, or synthetic; samples, vocab; its
              holdout is not used); default: synthetic samples
    probe     a `ProbeSettings` (layers, loss, batch size, seed, progress)
    inputs    what the model is called with (`ttplan.specs.ModelInputs` or a shape; default
              1,3,128,128)

    Returns a `FisherReport` (`to_dict()` is the Fisher file). Raises `TtplanError` (one
    line) for a model, support set or setting it cannot use.
    """
    from ttplan.costmodel.inputs import as_inputs
    from ttplan.costmodel.profile import resolve_model
    from ttplan.costmodel.trace import trace
    from ttplan.devices.trainrequest import Support  # not runner: it imports the planner and pandas
    from ttplan.planner.support.sources import open_support
    from ttplan.planner.fisher.probe import default_candidate_layers, fisher_information
    from ttplan.planner.support.sequences import feeding, infer_vocab

    support = support if support is not None else Support(synthetic=True)
    probe = probe if probe is not None else ProbeSettings()
    inputs = as_inputs(inputs if inputs is not None else DEFAULT_INPUT_SHAPE)
    module, name = resolve_model(model, classifier=probe.loss == "ce")
    graph = trace(module, inputs, name)
    opened = open_support(support.data, inputs, support.samples, probe.seed, support.synthetic,
                          support.vocab if support.vocab is not None else infer_vocab(module))
    names = default_candidate_layers(module, probe.layers)
    with feeding(module, inputs):  # support samples of several inputs come packed
        result = fisher_information(module, names, opened, loss=probe.loss, seed=probe.seed,
                                    batch_size=probe.batch_size, progress=probe.progress)
    return FisherReport(result, name, graph.fingerprint(), tuple(names), opened.description)


@dataclass(frozen=True)
class PlannedPolicy:
    """What `plan_policy` returns: the `policy`, and what a person's view of it shows: the
    Fisher potential of every probed layer (`fisher_total`, None without a Fisher file), each
    layer's weight shape (`weight_shapes`: the channels a channel-sparse update chooses
    from) and the layers without a bias to train (`without_bias`)."""

    policy: object
    fisher_total: float | None
    weight_shapes: dict
    without_bias: frozenset


def plan_policy(model, *, method: str = "tinytrain", fisher=None, budgets: Budgets | None = None,
                options=None, inputs=None, search=None, device=None) -> PlannedPolicy:
    """The layers and channels to train within `budgets`: what `ttplan plan` chooses.

    model     a `ModelSource` (or what it takes)
    method    tinytrain | none | fulltrain | lastlayer | tinytl | sparseupdate
    fisher    a Fisher file path, a FisherResult or what `probe_fisher` returns (tinytrain
              needs one)
    budgets   a `Budgets` (memory and compute; none by default)
    options   a `CostOptions` (`ttplan.cost_options`; default paper, with a device its
              runtime's convention)
    inputs    `ttplan.specs.ModelInputs` or a shape (default 1,3,128,128)
    search    a `PlanSearch` (solver, channels, seed, scheme, blocks)
    device    a device context (`ttplan.device_for`): plan for it (`ttplan.plan_for_device`:
              its RAM as the memory budget unless one is given, its time budget, its
              predicted time and energy); None plans without a device (`ttplan.plan`)

    Returns a `PlannedPolicy`. Raises `TtplanError` (one line) for what it cannot plan.
    """
    from ttplan.costmodel.transforms import fold_batchnorm
    from ttplan.devices.planning import plan_for_device
    from ttplan.planner.api import plan

    budgets = budgets if budgets is not None else Budgets()
    if device is None:
        policy = plan(model, method=method, fisher=fisher, memory_bytes=budgets.memory_bytes,
                      compute=budgets.compute, options=options, inputs=inputs, search=search)
    else:
        policy = plan_for_device(model, device=device, method=method, fisher=fisher,
                                 budgets=budgets, options=options, inputs=inputs, search=search)
    graph = policy.graph
    shapes = {} if graph is None else {name: node.weight_shape for name, node in
                                       graph.nodes.items() if node.weight_shape}
    # A layer's attached BatchNorm trains its shift with the bias under either convention
    # (`ttplan.apply_policy`), so the folded graph says which layers have a bias to train.
    without_bias = frozenset() if graph is None else frozenset(
        name for name, node in fold_batchnorm(graph).nodes.items() if not node.bias_numel)
    return PlannedPolicy(policy, fisher_potential(fisher), shapes, without_bias)


def fisher_potential(fisher) -> float | None:
    """The Fisher potential of every probed layer of what `plan_policy` takes as `fisher`
    (what the shares a person sees are of); None without one."""
    from ttplan.planner.fisher.file import fisher_for

    result = fisher_for(fisher, None)
    return None if result is None else math.fsum(result.potential.values())


@dataclass(frozen=True)
class ExportedPolicy:
    """SparseUpdate's `backward_config` of a policy (`config`, JSON-ready) and the `notes`
    on what it could not express exactly."""

    config: dict
    notes: tuple[str, ...]


def export_policy(policy, *, model=None, classifier: bool = False) -> ExportedPolicy:
    """A policy as SparseUpdate's backward_config (n_bias_update, manual_weight_idx,
    weight_update_ratio): what `ttplan export` writes.

    policy      a policy JSON file from `ttplan plan`
    model       the model when the policy's name is not a zoo name (an nn.Module or an
                import path module:callable); a name read from the policy file is built
                from the zoo, never imported
    classifier  zoo models: keep the ImageNet classifier

    Returns an `ExportedPolicy`. Raises `TtplanError` (one line) for a policy SparseUpdate
    cannot express (tinytl) or that does not match the model.
    """
    from ttplan.costmodel.profile import resolve_model
    from ttplan.costmodel.trace import trace
    from ttplan.costmodel.zoo import zoo_model_named_in_file
    from ttplan.planner.policy.file import load_policy
    from ttplan.planner.selection.sparseupdate import backward_config

    loaded = load_policy(policy)
    if loaded.method == "tinytl":
        raise SpecError("a tinytl policy trains lite-residual modules SparseUpdate's "
                        "backward_config cannot express")
    if model is not None:
        module, name = resolve_model(model, classifier=classifier)
    else:  # a name from a data file: built from the zoo, never imported
        module, name = zoo_model_named_in_file(loaded.model_name, policy, classifier=classifier)
    graph = trace(module, loaded.input_shape, name)
    config, notes = backward_config(loaded, graph)
    return ExportedPolicy(config, notes)
