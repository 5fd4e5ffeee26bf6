"""A training configuration: what is updated, and which gradients that makes exist.

A *layer* (what can be updated) is a MAC layer (conv, transposed conv, linear) or a norm layer
that does not directly follow one. A BatchNorm attached to a MAC layer (`costmodel.transforms`)
is folded into it under ``paper`` and trained with it under ``pytorch``: its scale with the
layer's weights (for the output channels whose weights are updated), its shift with the bias.

Update specs (see `resolve_updates`):
  ``none``, ``all``, ``bias-only`` (every layer's bias, no weights),
  ``last-layers:K`` (weights and biases of the last K MAC layers in execution order),
  ``last-blocks:K`` (every layer of the last K blocks that contain a MAC layer: for the zoo
  models the inverted-residual blocks, the feature-mix layer in the last one; for other models
  the top-level modules, or the composite children of a top-level Sequential/ModuleList).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpointing import checkpointed_calls
from .errors import SpecError
from .graph import (FREE_PARAM_KINDS, MAC_KINDS, NORM_KINDS, PARAM_ACTIVATION_KINDS, LayerGraph,
                    OpNode, carries_gradient)
from .options import CostOptions, PYTORCH
from .rules import Grad
from .transforms import attached_norms


@dataclass(frozen=True)
class LayerUpdate:
    """What is updated in one layer. `channels` are indices along `channel_axis` of the weight
    (0: output channels, as TinyTrain selects them; 1: input channels, as SparseUpdate's
    ratios do); None means all channels."""

    weight: bool = True
    bias: bool = True
    channels: tuple[int, ...] | None = None
    channel_axis: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """What is updated ({layer name: LayerUpdate}) and how it is costed."""

    updates: dict[str, LayerUpdate] = field(default_factory=dict)
    options: CostOptions = field(default_factory=CostOptions)
    # `pytorch` convention only: modules in train mode (BatchNorm computes batch statistics and
    # keeps them for backward, dropout is active) or, False, in eval mode, as a device
    # fine-tunes with the statistics as deployed (`ttplan train`). Not a cost option of a
    # policy: the same policy is priced either way.
    training_mode: bool = True

    @property
    def convention(self) -> str:
        return self.options.convention


def updatable_layers(graph: LayerGraph) -> list[OpNode]:
    """Layers a configuration can update, in execution order (fixed per graph: computed
    once, as `attached_norms`; resolving and validating an update both read it)."""
    cached = graph.derived.get("updatable_layers")
    if cached is not None:
        return list(cached)
    attached_bns = set(attached_norms(graph).values())
    layers: dict[str, OpNode] = {}
    for n in graph.ops():
        if (n.kind in MAC_KINDS or n.kind in _PARAM_HOLDING_KINDS and n.params) \
                and n.name not in attached_bns:
            layers.setdefault(n.layer_key, n)  # a shared module is one layer
    graph.derived["updatable_layers"] = list(layers.values())
    return list(layers.values())


# Updatable when they hold parameters.
_PARAM_HOLDING_KINDS = NORM_KINDS | FREE_PARAM_KINDS | PARAM_ACTIVATION_KINDS


def mac_blocks(graph: LayerGraph) -> list[str]:
    """Blocks that hold at least one MAC layer, in execution order; for a model that declares
    its blocks (the zoo: the inverted-residual blocks, not the stem), those."""
    if graph.declared_blocks:
        return list(graph.declared_blocks)
    blocks: dict[str, None] = {}
    for node in graph.mac_layers():
        blocks.setdefault(node.block or node.name, None)
    return list(blocks)


def resolve_updates(spec, graph: LayerGraph) -> dict[str, LayerUpdate]:
    """Turn an `UpdateSpec` (kinds none/all/bias-only/last-layers/last-blocks) into updates."""
    layers = updatable_layers(graph)
    if spec.kind == "none":
        return {}
    if spec.kind == "all":
        return {n.layer_key: LayerUpdate() for n in layers}
    if spec.kind == "bias-only":
        return {n.layer_key: LayerUpdate(weight=False, bias=True) for n in layers}
    if spec.kind == "last-layers":
        macs = list(dict.fromkeys(n.layer_key for n in graph.mac_layers()))
        if spec.k > len(macs):
            raise SpecError(f"--update last-layers:{spec.k}: the model has only {len(macs)} "
                            "conv/linear layers")
        return {key: LayerUpdate() for key in macs[len(macs) - spec.k:]}
    if spec.kind == "last-blocks":
        blocks = mac_blocks(graph)
        if spec.k > len(blocks):
            raise SpecError(f"--update last-blocks:{spec.k}: the model has only {len(blocks)} "
                            "blocks with conv/linear layers")
        chosen = set(blocks[len(blocks) - spec.k:])
        return {n.layer_key: LayerUpdate() for n in layers if (n.block or n.name) in chosen}
    raise SpecError(f"update spec {spec.kind!r} needs a policy file (see `ttplan plan`)")


def validate_updates(updates: dict[str, LayerUpdate], graph: LayerGraph) -> None:
    layers = {n.layer_key: n for n in updatable_layers(graph)}
    for name, update in updates.items():
        if name not in layers:
            raise SpecError(f"layer {name!r} is not an updatable layer of {graph.model_name}")
        node = layers[name]
        if update.channels is not None:
            size = channel_count(node, update.channel_axis)
            if not all(0 <= c < size for c in update.channels) or \
                    len(set(update.channels)) != len(update.channels):
                raise SpecError(f"layer {name!r}: channel indices must be distinct and in "
                                f"[0, {size}) along axis {update.channel_axis}")


def channel_count(node: OpNode, axis: int) -> int:
    """Size of the weight along `axis` (0 output, 1 input channels per group). Norm layers
    have one axis of channels."""
    if node.weight_shape is None:
        return node.out_channels
    if node.kind in NORM_KINDS or len(node.weight_shape) == 1:
        return node.weight_shape[0]
    if node.kind == "conv_transpose":  # weight is (Cin, Cout/groups, k…): swap the meaning
        axis = 1 - axis
    return node.weight_shape[axis]


def _fractions(node: OpNode, update: LayerUpdate) -> tuple[float, float]:
    """(fraction of weights updated, fraction of the input its gradient needs)."""
    if update.channels is None or not update.weight:
        return 1.0, 1.0
    size = channel_count(node, update.channel_axis)
    weight_fraction = len(update.channels) / size
    groups = int(node.attrs.get("groups", 1) or 1)
    if node.kind in NORM_KINDS:
        return weight_fraction, 1.0
    if update.channel_axis == 1:
        return weight_fraction, weight_fraction  # those input channels, in every group
    if groups == 1:
        return weight_fraction, 1.0  # an output channel reads every input channel
    per_group = channel_count(node, 0) // groups
    touched = {c // per_group for c in update.channels}
    return weight_fraction, len(touched) / groups


def node_grads(graph: LayerGraph, config: TrainConfig) -> dict[str, Grad]:
    """Which gradients exist at every operator: an input needs a gradient when it is reached
    from an operator with updated parameters (`LayerGraph.reached_from`)."""
    attached = {bn: layer for layer, bn in attached_norms(graph).items()}
    updated: dict[str, tuple[bool, bool, float, float]] = {}
    for node in graph.ops():
        owner = attached.get(node.name, node.name)
        update = config.updates.get(graph[owner].layer_key)
        if update is None or not node.params:
            continue
        weight = update.weight and node.weight_numel > 0
        bias = update.bias and node.bias_numel > 0
        weight_fraction = input_fraction = 1.0
        if owner == node.name:
            weight_fraction, input_fraction = _fractions(node, update)
        elif update.weight and update.channels is not None and update.channel_axis == 0:
            weight_fraction = len(update.channels) / node.out_channels  # attached norm scale
        updated[node.name] = (weight, bias, weight_fraction, input_fraction)
    reach = graph.reached_from(n for n, (w, b, _, _) in updated.items() if w or b)
    cut = _cut_off_reentrant(graph, updated, reach)
    while cut:  # parameters that get no gradient: what they would have reached, again
        for name in cut:
            del updated[name]
        reach = graph.reached_from(n for n, (w, b, _, _) in updated.items() if w or b)
        cut = _cut_off_reentrant(graph, updated, reach)
    # Tensors a gradient flows back through (a comparison's output carries none).
    flows = {n for n in reach if carries_gradient(graph[n])}
    training = config.convention == "pytorch" and config.training_mode
    frozen = (False, False, 1.0, 1.0)
    grads: dict[str, Grad] = {}
    # A Grad is frozen: operators with the same gradients share one (most of a graph's
    # operators have one of a few), instead of one dataclass built per operator.
    made: dict[tuple, Grad] = {}
    for node in graph.ops():
        key = (tuple([i in flows for i in node.inputs]), *updated.get(node.name, frozen))
        grad = made.get(key)
        if grad is None:
            grad = made[key] = Grad(*key, training)
        grads[node.name] = grad
    return grads


def _cut_off_reentrant(graph: LayerGraph, updated: dict, reach: set) -> list[str]:
    """The updated operators inside a reentrant checkpointed call none of whose tensor
    arguments needs a gradient: PyTorch's CheckpointFunction then gives its output none, and
    its parameters get no gradient (it warns so at run time; costmodel.checkpointing)."""
    cut = []
    for nodes in checkpointed_calls(graph).values():
        if not nodes[0].attrs.get("checkpoint_reentrant"):
            continue
        inside = {n.name for n in nodes}
        arguments = {t for n in nodes for t in n.inputs if t not in inside}
        if not any(t in reach and carries_gradient(graph[t]) for t in arguments):
            cut += [n.name for n in nodes if n.name in updated]
    return cut


def weight_parameters(node: OpNode) -> int:
    """The parameters that train as the node's weight: the weight, or for a weight computed at
    every call (weight_norm) the originals it is computed from (g beside v)."""
    if "weight" in node.attrs.get("parametrized", ()):
        return node.weight_numel + node.other_param_numel
    return node.weight_numel


def trainable_param_count(node: OpNode, grad: Grad) -> int:
    """Parameters of `node` the configuration updates (selected channels only)."""
    if node.attrs.get("repeat_call"):
        return 0  # a shared module's parameters are counted at its first call
    count = 0
    if grad.weight:
        count += round(weight_parameters(node) * grad.weight_fraction)
    if grad.bias:
        count += node.bias_numel
    return count


def parameter_requires_grad(graph: LayerGraph, config: TrainConfig) -> dict[str, bool]:
    """{parameter name (``module.weight``): requires_grad} for training `config` in PyTorch:
    the flags a training loop sets before the forward (channel masks are applied separately,
    see `planner.policy.apply`)."""
    grads = node_grads(graph, TrainConfig(config.updates, PYTORCH))
    flags: dict[str, bool] = {}
    for node in graph.ops():
        if node.module is None or not node.params or node.attrs.get("repeat_call"):
            continue
        grad = grads[node.name]
        names = node.attrs.get("param_names")
        if names:  # functional ops, free parameters, recurrent layers: the real names
            flags.update({n: grad.weight for n in names.get("weight", [])})
            flags.update({n: grad.bias for n in names.get("bias", [])})
            continue
        if node.weight_shape is not None:
            flags[f"{node.module}.weight"] = grad.weight
        if node.bias_numel:
            flags[f"{node.module}.bias"] = grad.bias
    return flags


def updated_tensor_count(graph: LayerGraph, grads: dict[str, Grad]) -> int:
    """Parameter tensors one training step updates, counted on the model as deployed: a layer's
    weight is one tensor and its bias another. An attached BatchNorm's scale belongs to its
    layer's weight and its shift to the bias (they are folded into them on a device), so both
    conventions give the same count. A device's optimiser pays a fixed cost per such tensor."""
    owner = {norm: layer for layer, norm in attached_norms(graph).items()}
    weights, biases = set(), set()
    for node in graph.ops():
        if node.attrs.get("repeat_call") or node.name not in grads:
            continue
        key = owner.get(node.name, node.name)
        if grads[node.name].weight:
            weights.add(key)
        if grads[node.name].bias:
            biases.add(key)
    return len(weights) + len(biases)
