"""Memory of a training configuration, named after the paper's appendix A.4.

  F1 weights_bytes          model weights resident in RAM (with weights in flash, only the
                            weights being updated, which need a writable copy)
  F2 io_buffer_bytes        peak of the inference buffers: the tensors alive at once in the
                            forward pass (a residual input stays alive until its add)
  B1 gradient_bytes         gradient buffers of the updated parameters
     updated_weight_bytes   the updated weights themselves (part of F1, shown on its own)
  B2 optimizer_bytes        optimiser state: momentum 1×, Adam 2× the updated parameters
  B3 mask_bytes             what non-linearities, pooling and products keep for their derivative
  B4 saved_input_bytes      inputs of the layers whose weights are updated
     saved_activation_bytes everything kept for backward (B3 + B4, each storage counted once)

Conventions:
  ``paper``: A.4's ideal engine on the deployed graph (BatchNorm folded): ReLU-family masks of
  1 bit per element, only the inputs of weight-updated layers (only their selected input
  channels), element-wise ops in place, bit-widths as configured. Peak, as A.4 overlaps F2 with
  B3 and B4:  peak = F1 + B1 + B2 + max(F2, B3 + B4). F2 assumes the engine runs depthwise
  convolutions in place, as TinyEngine does (this gives the I/O peaks the paper's F.1 quotes:
  640 KB MCUNet, 896 KB MobileNetV2, 512 KB ProxylessNAS, fp32, batch 1).
  ``pytorch``: what eager PyTorch 2.13 keeps, in the tensors' own dtypes: the rules of
  `costmodel.rules`, storages shared by views and in-place ops counted once. Parameter
  gradients and optimiser state cover whole parameter tensors (PyTorch cannot allocate part
  of one). Peak: weights + gradients + optimiser state + the largest set of tensors alive at
  once, simulated through the forward pass (saved tensors stay) and the backward pass (saved
  tensors are released as their node runs; gradient buffers live from their first to their
  last use). Allocator caching and kernel workspaces are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import accumulate

from .checkpointing import checkpointed_calls
from .config import TrainConfig, trainable_param_count, weight_parameters
from .graph import LayerGraph
from .options import FP32_BYTES, CostOptions
from .rules import VIEW_KINDS, Grad, drop_probability, registry_of


@dataclass
class MemoryBreakdown:
    weights_bytes: int
    io_buffer_bytes: int
    updated_weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    mask_bytes: int
    saved_input_bytes: int
    saved_activation_bytes: int
    peak_bytes: int

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


class _Storages:
    """Which buffer every tensor lives in, and how long each buffer lives in the forward pass."""

    def __init__(self, graph: LayerGraph, convention: str, elem_bytes, training: bool = True):
        # The graph's nodes and length, not the graph: a graph keeps its storages (in
        # `derived`), and a reference back would make every traced graph a reference cycle,
        # freed only by the garbage collector's passes instead of when it is dropped.
        self.nodes = graph.nodes
        self.end = len(graph.order)
        self.rules = registry_of(graph)
        self.training = training
        index = {name: i for i, name in enumerate(graph.order)}
        self.index = index
        end = len(graph.order)
        last_reader = graph.last_consumer_positions()
        last_use = {name: index[name] if last_reader[name] is None else last_reader[name]
                    for name in graph.order}
        for out in graph.output_names:
            last_use[out] = end
        self.of: dict[str, str] = {}  # tensor (producer name) -> storage (creator name)
        # Tensor -> the value it is a view of. Under `paper`, what is kept for backward is a
        # copy of a value, which a later in-place op on the I/O buffer does not destroy; under
        # `pytorch` autograd keeps the storage itself (it refuses in-place writes to it).
        self.value_of: dict[str, str] = {}
        self.nbytes: dict[str, float] = {}
        self.start: dict[str, int] = {}
        self.stop: dict[str, int] = {}
        for name in graph.order:
            node = graph[name]
            storage = self._alias(node, convention, last_use, index[name])
            if storage is None:
                storage = name
                # A parameter is resident with the weights (F1), not an activation buffer.
                self.nbytes[name] = 0 if node.kind == "parameter" else \
                    node.out_numel * elem_bytes(node)
                self.start[name] = index[name]
                self.stop[name] = last_use[name]
            else:
                self.stop[storage] = max(self.stop[storage], last_use[name])
            self.of[name] = storage
            if convention == "pytorch":
                self.value_of[name] = storage
            elif node.kind in VIEW_KINDS and node.inputs:
                self.value_of[name] = self.value_of[node.inputs[0]]
            else:
                self.value_of[name] = name

    def _alias(self, node, convention, last_use, i):
        if not node.inputs:
            return None
        if convention == "pytorch":
            src = node.attrs.get("aliases_input")
            if node.kind in ("dropout", "drop_path") and drop_probability(node):
                # Dropout writes a new tensor in train mode; in eval mode (`ttplan train`'s
                # modules) it returns its input, whatever the trace (in train mode) saw.
                return None if self.training else self.of[node.inputs[0]]
            if src is None:
                return None
            return self.of[node.inputs[src]]
        if node.kind in VIEW_KINDS or node.kind == "contiguous" and \
                node.attrs.get("aliases_input") is not None:
            return self.of[node.inputs[0]]
        rule = self.rules.rule_for(node.kind)
        if rule is not None and rule.elementwise:
            for src in node.inputs:  # reuse an input buffer of the same size that dies here
                storage = self.of[src]
                if self.stop[storage] == i and self.nodes[src].out_numel == node.out_numel:
                    return storage
        if is_depthwise(node):
            # MCU engines (TinyEngine) run depthwise convolutions in place: each channel's
            # output overwrites its input once it is no longer read.
            storage = self.of[node.inputs[0]]
            if self.stop[storage] == i and node.out_numel <= self.nodes[node.inputs[0]].out_numel:
                return storage
        return None

    def live_peak(self, extended: set[str] = frozenset(), extra_bytes: dict = None) -> float:
        """Peak bytes alive at once in the forward pass; `extended` buffers stay alive to the
        end (saved for backward), `extra_bytes` {index: bytes} are allocated from that step."""
        end = self.end
        intervals = [(self.start[s], end if s in extended else self.stop[s], nbytes)
                     for s, nbytes in self.nbytes.items()]
        intervals += [(i, end, nbytes) for i, nbytes in (extra_bytes or {}).items()]
        return peak_of_intervals(intervals, end)


def peak_of_intervals(intervals, end: int) -> float:
    """The largest total of (start, stop, bytes) intervals alive at one step of 0..end, an
    interval being alive from its start step to its stop step, both included."""
    delta = [0.0] * (end + 2)
    for start, stop, nbytes in intervals:
        delta[start] += nbytes
        delta[stop + 1] -= nbytes
    # The running total at every step (accumulate adds in the same order as a loop would).
    return max(0.0, max(accumulate(delta)))


def updated_param_bytes(options: CostOptions) -> float:
    """Bytes each updated parameter adds to the peak beyond the frozen weights: its gradient,
    the optimiser's state, and, with weights in flash, a writable copy of the weight itself."""
    if options.paper:
        copy = options.weight_bits / 8 if options.weights_in_flash else 0
        return options.gradient_bits / 8 * (1 + options.optimizer_states) + copy
    return FP32_BYTES * (1 + options.optimizer_states)


def paper_peak(static_bytes, io_buffer_bytes, saved_bytes):
    """A.4's overlap: the I/O buffers of inference and what backward keeps are never needed
    at once, so the activation part of the peak is the larger of the two."""
    return static_bytes + max(io_buffer_bytes, saved_bytes)


def is_depthwise(node) -> bool:
    """A convolution with one input channel per group and one group per output channel."""
    groups = int(node.attrs.get("groups", 1) or 1)
    return node.kind == "conv" and groups > 1 and node.weight_shape[1] == 1 \
        and node.weight_shape[0] == groups


def memory_breakdown(graph: LayerGraph, grads: dict[str, Grad],
                     config: TrainConfig) -> MemoryBreakdown:
    """The memory of training `graph` in `config` (for `paper`, pass the folded graph)."""
    options, convention = config.options, config.convention
    paper = options.paper
    act_bits = options.activation_bits if paper else None
    rules = registry_of(graph)

    def elem_bytes(node):
        return act_bits / 8 if paper else node.dtype_bytes

    # Buffer lifetimes do not depend on the update; dropout's do on train/eval mode.
    training = config.training_mode
    key = ("storages", convention, act_bits, training)
    storages = graph.derived.get(key)
    if storages is None:
        storages = graph.derived[key] = _Storages(graph, convention, elem_bytes, training)

    # ---- weights, gradients, optimiser state --------------------------------------------
    weight_bytes_per = options.weight_bits / 8 if paper else FP32_BYTES
    grad_bytes_per = options.gradient_bits / 8 if paper else FP32_BYTES
    all_params = sum(n.owned_params for n in graph.ops())
    if paper:
        updated = sum(trainable_param_count(n, grads[n.name]) for n in graph.ops())
    else:  # PyTorch keeps .grad and optimiser state for whole parameter tensors
        updated = sum(_whole_tensors_updated(n, grads[n.name]) for n in graph.ops())
    updated_weight_bytes = math.ceil(updated * weight_bytes_per)
    weights_bytes = updated_weight_bytes if (paper and options.weights_in_flash) else \
        math.ceil(all_params * weight_bytes_per)
    gradient_bytes = math.ceil(updated * grad_bytes_per)
    optimizer_bytes = options.optimizer_states * gradient_bytes

    # ---- saved for backward ---------------------------------------------------------------
    kept: dict[str, tuple[float, str]] = {}  # storage -> (bytes kept, category)
    extras: dict[int, float] = {}
    saved_by_node: dict[str, list] = {}  # node -> what it saves (the backward scan reads it)
    regions = checkpoint_regions(graph, grads)
    for node in graph.ops():
        grad = grads[node.name]
        rule = rules.rule_for(node.kind)
        if rule is None or not grad.any:
            continue
        saved = saved_by_node[node.name] = list(
            (rule.saved_paper if paper else rule.saved_pytorch)(node, grad))
        if node.attrs.get("checkpoint") in regions:
            continue  # recomputed in the backward: its region's inputs are kept instead
        for item in saved:
            kind = item.source[0]
            if kind == "extra":
                key = f"{node.name}:{item.source[1]}"
                nbytes, start = float(item.nbytes), storages.index[node.name]
                extras[start] = extras.get(start, 0.0) + nbytes
            else:
                tensor = node.name if kind == "out" else node.inputs[item.source[1]]
                key = storages.value_of[tensor]
                if graph[key].kind == "parameter":
                    continue  # parameters (and views of them) are not activations
                nbytes = graph[key].out_numel * elem_bytes(graph[key]) * item.fraction
            old_bytes, old_cat = kept.get(key, (0.0, "mask"))
            category = "input" if "input" in (old_cat, item.category) else "mask"
            kept[key] = (max(old_bytes, nbytes), category)
    for tensor in sorted({t for r in regions.values() for t in r.inputs}):
        key = storages.value_of[tensor]
        if graph[key].kind != "parameter":  # a checkpointed call's arguments, kept whole
            kept[key] = (graph[key].out_numel * elem_bytes(graph[key]), "input")
    mask_bytes = math.ceil(sum(b for b, c in kept.values() if c == "mask"))
    saved_input_bytes = math.ceil(sum(b for b, c in kept.values() if c == "input"))
    saved_bytes = mask_bytes + saved_input_bytes

    io_buffer_bytes = math.ceil(storages.live_peak())
    static = weights_bytes + gradient_bytes + optimizer_bytes
    if paper:
        peak = paper_peak(static, io_buffer_bytes, saved_bytes)
    else:
        peak = static + math.ceil(_pytorch_activation_peak(graph, grads, storages, kept, extras,
                                                           saved_by_node, regions))
    return MemoryBreakdown(weights_bytes, io_buffer_bytes, updated_weight_bytes, gradient_bytes,
                           optimizer_bytes, mask_bytes, saved_input_bytes, saved_bytes, peak)


def _whole_tensors_updated(node, grad: Grad) -> int:
    if node.attrs.get("repeat_call"):
        return 0
    return (weight_parameters(node) if grad.weight else 0) + \
        (node.bias_numel if grad.bias else 0)


def _pytorch_activation_peak(graph, grads, storages: _Storages, kept, extras,
                             saved_by_node: dict[str, list], regions: dict) -> float:
    saved_storages = {k for k in kept if k in storages.nbytes}  # pytorch: values are storages
    forward_peak = storages.live_peak(saved_storages, extras)
    # Backward, in reverse execution order: a saved storage is freed once the earliest node
    # that saved it has run; the gradient of a tensor lives from its last consumer's backward
    # to its producer's backward. A checkpointed region's saved tensors, made again when its
    # backward begins, live from its last node's backward to their saver's.
    index = storages.index
    savers: dict[str, int] = {}
    recomputed: list[tuple[int, int, float]] = []
    for name, saved in saved_by_node.items():  # in execution order, as graph.ops()
        node = graph[name]
        region = regions.get(node.attrs.get("checkpoint"))
        if region is not None:
            recomputed += _recomputed_intervals(graph, storages, node, saved,
                                                index[region.last] + 1)
            continue
        for item in saved:
            if item.source[0] == "extra":
                continue
            tensor = node.name if item.source[0] == "out" else node.inputs[item.source[1]]
            key = storages.of[tensor]
            if graph[key].kind == "parameter":
                continue
            savers[key] = min(savers.get(key, index[node.name]), index[node.name])
    end = len(graph.order)
    intervals = [(first_saver, end, storages.nbytes[key]) for key, first_saver in savers.items()]
    intervals += [(i, end, nbytes) for i, nbytes in extras.items()] + recomputed
    gradient_life = _gradient_lifetimes(graph, index)
    for node in graph.ops():
        if grads[node.name].any and node.kind != "parameter":  # its gradient: gradient_bytes
            intervals.append(gradient_life[node.name])
    # Walking backward from the end, the live set at step i is everything whose interval
    # contains i: the same scan as the forward pass's.
    backward_peak = peak_of_intervals(intervals, end)
    return max(forward_peak, backward_peak)


def _gradient_lifetimes(graph: LayerGraph, index: dict) -> dict[str, tuple[int, int, int]]:
    """(start, stop, bytes) of each tensor's gradient in the backward scan: from its producer's
    step to its last consumer's (an output's, or an unused tensor's, to the end). Fixed per
    graph, so computed once."""
    key = "gradient_lifetimes"
    if key not in graph.derived:
        end = len(graph.order)
        lives = {}
        last_reader = graph.last_consumer_positions()
        for node in graph.ops():
            last = last_reader[node.name]
            if last is None:
                last = end
            if node.name in graph.output_names:
                last = end
            lives[node.name] = (index[node.name], last, node.out_numel * node.dtype_bytes)
        graph.derived[key] = lives
    return graph.derived[key]


@dataclass(frozen=True)
class CheckpointRegion:
    """A checkpointed call in the backward: the tensors it reads from outside (its arguments,
    kept for the recomputation) and its operators, in order."""

    inputs: frozenset
    members: tuple[str, ...]

    @property
    def last(self) -> str:
        return self.members[-1]


def checkpoint_regions(graph: LayerGraph, grads: dict) -> dict[int, CheckpointRegion]:
    """{region: CheckpointRegion} of the checkpointed calls (`costmodel.checkpointing`) with a
    node in the backward; {} for a graph without any."""
    found = {}
    for region, nodes in checkpointed_calls(graph).items():
        if not any(grads[n.name].any for n in nodes):
            continue
        inside = {n.name for n in nodes}
        inputs = frozenset(t for n in nodes for t in n.inputs if t not in inside)
        found[region] = CheckpointRegion(inputs, tuple(n.name for n in nodes))
    return found


def _recomputed_intervals(graph, storages: _Storages, node, saved, end: int) -> list:
    """(start, stop, bytes) of what `node`, inside a checkpointed region ending at `end`,
    saves when the region's forward runs again in the backward."""
    start, out = storages.index[node.name], []
    for item in saved:
        if item.source[0] == "extra":
            out.append((start, end, float(item.nbytes)))
            continue
        tensor = node.name if item.source[0] == "out" else node.inputs[item.source[1]]
        key = storages.of[tensor]
        if graph[key].kind != "parameter":
            out.append((start, end, storages.nbytes[key] * item.fraction))
    return out
