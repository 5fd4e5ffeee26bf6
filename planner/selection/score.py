"""Eq. 3 of TinyTrain and the candidate layers the selection works on.

    s_i = P_i / ( (|W_i| / max_l |W_l|) · (M_i / max_l M_l) )

The counts, and why these ones:

* P_i   the Fisher potential of layer i (sum of Δ_o over its output channels), from the probe.
* |W_i| the layer's parameters in the DEPLOYED graph (the `paper` convention: an attached
        BatchNorm folded into the conv, so a conv gains a bias of Cout values). That is what a
        device stores and updates, and it does not depend on the memory convention the user
        plans with, so the ranking is the same under `paper` and `pytorch`.
* M_i   the layer's forward MACs for ONE sample. The paper normalises by the maximum, so the
        batch size would cancel anyway; batch 1 keeps the number readable.
* The maxima run over the candidate layers (those the probe measured), as Eq. 3's L is the
  set of layers being ranked; ranking is invariant to this choice, the scores' scale is not.

A layer with no MACs (a stand-alone norm layer) has no meaningful M_i and cannot be a
candidate; neither can a layer the graph does not know (the Fisher file names another model).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn

from ttplan.costmodel.config import channel_count, updatable_layers
from ttplan.costmodel.costs import costing_graph
from ttplan.costmodel.errors import PolicyError, SpecError
from ttplan.costmodel.graph import MAC_KINDS, WHOLE_LAYER_KINDS, LayerGraph
from ttplan.costmodel.rules import registry_of

CHANNEL_CRITERIA = ("fisher", "l2norm", "random")


@dataclass(frozen=True)
class LayerScore:
    name: str
    potential: float  # P_i
    params: int  # |W_i|, folded (deployed) graph
    forward_macs: int  # M_i, one sample
    score: float  # s_i (Eq. 3)


def score_layers(graph: LayerGraph, potential: dict[str, float]) -> dict[str, LayerScore]:
    """Eq. 3 for every layer named in `potential` (a MAC layer of `graph`)."""
    folded = costing_graph(graph, "paper")
    batch = graph.input_shape[0]
    counts = {}
    for name in potential:
        node = folded.nodes.get(name)
        if node is None or node.kind not in MAC_KINDS:
            raise PolicyError(f"Fisher layer {name!r} is not a conv/linear layer of {graph.model_name}")
        counts[name] = (node.params, registry_of(folded).rule_for(node.kind).forward_macs(node) // batch)
    max_params = max(p for p, _ in counts.values()) or 1
    max_macs = max(m for _, m in counts.values()) or 1
    scores = {}
    for name, (params, macs) in counts.items():
        cost = (params / max_params) * (macs / max_macs)
        value = potential[name] / cost if cost > 0 else 0.0
        scores[name] = LayerScore(name, float(potential[name]), params, macs, value)
    return scores


@dataclass(frozen=True)
class Candidate:
    """A layer the planner may update: its Fisher per output channel and the order in which its
    channels are taken (best first under the channel criterion)."""

    name: str
    position: int  # execution index in the graph: deeper backprop for smaller values
    channels: int  # output channels (axis 0 of the weight)
    fisher: tuple[float, ...]  # Δ_o per output channel
    order: tuple[int, ...]  # channel indices, best first
    has_bias: bool  # a (folded) bias exists: conv bias or attached BatchNorm shift
    score: LayerScore
    _prefix: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def captured(self, k: int) -> float:
        """Fisher captured by updating the first k channels of `order`."""
        return self._prefix[k]

    def channel_set(self, k: int) -> tuple[int, ...] | None:
        """The sorted channel indices of the first k in `order`; None means all of them."""
        return None if k >= self.channels else tuple(sorted(self.order[:k]))


def build_candidates(graph: LayerGraph, layers: dict[str, list[float]], *, channels: str = "fisher",
                     model: nn.Module | None = None, seed: int = 0) -> list[Candidate]:
    """Candidates in execution order, from a probe's {layer: Δ_o per output channel}.

    channels: "fisher" (top Δ_o first, the paper), "l2norm" (largest L2 norm of the layer's
    weight per output channel first, from `model`'s raw, unfolded weights), or "random"
    (a permutation from `random.Random(seed)`, drawn per layer in execution order).
    Ties keep the lower channel index first, so the order is deterministic.
    """
    if channels not in CHANNEL_CRITERIA:
        raise SpecError(f"unknown channel criterion {channels!r}: use {', '.join(CHANNEL_CRITERIA)}")
    if channels == "l2norm" and model is None:
        raise SpecError("channel criterion l2norm needs the model's weights")
    scores = score_layers(graph, {n: math.fsum(v) for n, v in layers.items()})
    folded = costing_graph(graph, "paper")
    position = {name: i for i, name in enumerate(graph.order)}
    updatable = {n.name for n in updatable_layers(graph)}
    modules = dict(model.named_modules()) if model is not None else {}
    rng = random.Random(seed)
    result = []
    for name in sorted(layers, key=position.__getitem__):
        node = folded[name]
        if name not in updatable:
            raise PolicyError(f"Fisher layer {name!r} is not an updatable layer of {graph.model_name}")
        whole = node.kind in WHOLE_LAYER_KINDS
        size = node.out_channels if whole else channel_count(node, 0)
        deltas = tuple(float(v) for v in layers[name])
        if len(deltas) != size:
            raise PolicyError(f"Fisher layer {name!r} has {len(deltas)} channels; "
                              f"the model's layer has {size}")
        if whole:
            deltas, size = (math.fsum(deltas),), 1
        if channels == "fisher":
            order = sorted(range(size), key=lambda c: (-deltas[c], c))
        elif channels == "l2norm":
            norms = _output_channel_norms(modules.get(name), name, node.kind, size)
            order = sorted(range(size), key=lambda c: (-norms[c], c))
        else:
            order = list(range(size))
            rng.shuffle(order)
        prefix = [0.0]
        for c in order:
            prefix.append(prefix[-1] + deltas[c])
        result.append(Candidate(name, position[name], size, deltas, tuple(order),
                                node.bias_numel > 0, scores[name], tuple(prefix)))
    return result


def _output_channel_norms(module, name: str, kind: str, size: int) -> list[float]:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise SpecError(f"layer {name!r} has no weight tensor for the l2norm criterion")
    w = weight.detach().double()
    if kind == "conv_transpose":  # (Cin, Cout/groups, k...): output channels on dim 1
        w = w.transpose(0, 1)
    norms = w.reshape(w.shape[0], -1).norm(dim=1).tolist()
    if len(norms) != size:
        raise SpecError(f"layer {name!r}: weight has {len(norms)} output channels, expected {size}")
    return norms


def ranked(candidates: list[Candidate]) -> list[Candidate]:
    """Highest s_i first; on a tie the later layer first (it back-propagates less far)."""
    return sorted(candidates, key=lambda c: (-c.score.score, -c.position))
