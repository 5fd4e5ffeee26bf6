"""Per-layer and total costs of one training configuration: the cost table's rows.

Pure Python over the layer graph (no pandas) so that a planner can cost thousands of
configurations quickly; `costmodel.profile` wraps the result for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import itemgetter

from .checkpointing import checkpointed_calls
from .config import (TrainConfig, mac_blocks, node_grads, trainable_param_count,
                     updated_tensor_count)
from .graph import MAC_KINDS, LayerGraph
from .memory import MemoryBreakdown, checkpoint_regions, memory_breakdown
from .rules import registry_of
from .transforms import fold_batchnorm


@dataclass
class Evaluation:
    """Costs of `config` on `graph` under `convention` (graph already folded for `paper`)."""

    graph: LayerGraph
    convention: str
    rows: list[dict]
    totals: dict
    memory: MemoryBreakdown
    warnings: list[str] = field(default_factory=list)
    updated_tensors: int = 0  # weight and bias tensors a step updates (config.updated_tensor_count)
    grads: dict = field(default_factory=dict, repr=False)  # {operator: Grad} (config.node_grads)


@dataclass(frozen=True)
class OperatorWork:
    """The work of one step that MACs do not measure: how many operators PyTorch calls (each
    pays a fixed dispatch cost whatever its size) and how many output elements the operators
    without MACs write (normalisation, activations, additions, pooling: memory-bound, their time
    follows the elements they move). Counted as eager PyTorch runs the model: a BatchNorm the
    `paper` convention folds into its layer is still its own call over its layer's output.
    Backward: the operators a gradient passes through or whose parameters are updated (the
    autograd nodes the step runs); none when nothing is updated."""

    forward_operators: int
    forward_elements: int
    backward_operators: int
    backward_elements: int


def operator_work(ev: Evaluation) -> OperatorWork:
    counts = [0, 0, 0, 0]
    for node in ev.graph.ops():
        calls = 2 if node.attrs.get("folded_bn") else 1
        elements = node.out_numel * (calls - 1 if node.kind in MAC_KINDS else calls)
        counts[0] += calls
        counts[1] += elements
        if ev.grads[node.name].any:
            counts[2] += calls
            counts[3] += elements
    return OperatorWork(*counts)


def unknown_op_warnings(graph: LayerGraph) -> list[str]:
    """One warning per kind of operator without a rule, with how often it is called."""
    calls: dict[tuple[str, str], list[str]] = {}
    for node in graph.ops():
        if node.kind == "unknown" or node.kind == "derived" and derived_costs_something(node):
            calls.setdefault((node.kind, node.op), []).append(node.name)
    warnings = []
    for (kind, op), names in calls.items():
        where = names[0] if len(names) == 1 else f"{len(names)} calls, first {names[0]}"
        if kind == "derived":
            warnings.append(f"no cost rule for {op} ({where}): derived from the traced call "
                            "(MACs counted on the operator, saved tensors read from autograd)")
        else:
            warnings.append(f"no cost rule for {op} ({where}): its MACs and memory are NOT "
                            "counted")
    return warnings


def derived_costs_something(node) -> bool:
    """A derived operator that multiplies or keeps a tensor (one that does neither, a view or
    a copy, is priced exactly and not warned about)."""
    table = node.attrs.get("measured_saved") or {}
    return bool(node.attrs.get("derived_macs")) or any(table.values())


def costing_graph(graph: LayerGraph, convention: str) -> LayerGraph:
    """The graph a convention costs: `paper` folds BatchNorm into its layer, as deployed."""
    return fold_batchnorm(graph) if convention == "paper" else graph


def _static_rows(graph: LayerGraph, convention: str, activation_bits: int) -> list[tuple]:
    """(node, rule, the row's fields that do not depend on what is updated), once per graph."""
    key = ("static_rows", convention, activation_bits)
    if key not in graph.derived:
        static = []
        registry = registry_of(graph)
        for node in graph.ops():
            rule = registry.rule_for(node.kind)
            act_bytes = activation_bits / 8 if convention == "paper" else node.dtype_bytes
            row = {
                "name": node.name, "kind": node.kind, "op": node.op, "block": node.block,
                "output_shape": "x".join(map(str, node.out_shape)),
                "params": node.owned_params, "trainable": False, "trainable_params": 0,
                "forward_macs": rule.forward_macs(node) if rule else 0,
                "backward_input_macs": 0, "backward_weight_macs": 0, "backward_recompute_macs": 0,
                "forward_other_ops": rule.forward_other_ops(node) if rule else 0, "backward_other_ops": 0,
                "input_bytes": math.ceil(node.distinct_in_numel * act_bytes),
                "output_bytes": math.ceil(node.out_numel * act_bytes),
            }
            static.append((node, rule, row))
        graph.derived[key] = static
    return graph.derived[key]


# The totals that are sums of a column, in the order the totals list them.
_SUMMED = ("params", "trainable_params", "forward_macs", "backward_macs", "backward_input_macs",
           "backward_weight_macs", "forward_other_ops", "backward_other_ops")


def evaluate(graph: LayerGraph, config: TrainConfig) -> Evaluation:
    """Cost `config` on a traced graph (folded or not) under its options' convention."""
    convention = config.convention
    costed = costing_graph(graph, convention)
    grads = node_grads(costed, config)
    # a checkpointed call's operators run their forward again in the backward
    recomputed = {n for r in checkpoint_regions(costed, grads).values() for n in r.members}
    rows = []
    for node, rule, static_row in _static_rows(costed, convention, config.options.activation_bits):
        grad = grads[node.name]
        row = dict(static_row)
        row["trainable"] = bool(grad.weight or grad.bias)
        row["trainable_params"] = trainable_param_count(node, grad)
        if rule is not None and grad.any:
            row["backward_input_macs"] = rule.backward_input_macs(node, grad)
            row["backward_weight_macs"] = rule.backward_weight_macs(node, grad)
            row["backward_other_ops"] = rule.backward_other_ops(node, grad)
        if node.name in recomputed:
            row["backward_recompute_macs"] = row["forward_macs"]
        row["backward_macs"] = row["backward_input_macs"] + row["backward_weight_macs"] \
            + row["backward_recompute_macs"]
        rows.append(row)
    memory = memory_breakdown(costed, grads, config)
    unknown = list(costed.unknown_ops)
    totals = {key: sum(map(itemgetter(key), rows)) for key in _SUMMED}
    totals.update({
        "mac_layers": len(costed.mac_layers()),
        "blocks": len(mac_blocks(graph)),
        "unknown_ops": unknown,
    })
    if recomputed:  # a total only where a checkpointed call runs its forward again
        totals["backward_recompute_macs"] = sum(r["backward_recompute_macs"] for r in rows)
    totals["forward_flops"] = 2 * totals["forward_macs"]
    totals["backward_flops"] = 2 * totals["backward_macs"]
    warnings = list(costed.warnings) + unknown_op_warnings(costed) \
        + _ungraded_warnings(costed, config, grads)
    return Evaluation(costed, convention, rows, totals, memory, warnings,
                      updated_tensor_count(costed, grads), grads)


def _ungraded_warnings(graph: LayerGraph, config: TrainConfig, grads: dict) -> list[str]:
    """Layers asked to train that get no gradient: inside a reentrant checkpointed call none
    of whose arguments needs one (`config.node_grads`)."""
    cut = sorted({n.layer_key for nodes in checkpointed_calls(graph).values() for n in nodes
                  if n.attrs.get("checkpoint_reentrant") and n.params
                  and n.layer_key in config.updates
                  and not (grads[n.name].weight or grads[n.name].bias)})
    if not cut:
        return []
    return [f"{len(cut)} layer(s) asked to train get no gradient ({', '.join(cut[:3])}"
            f"{', ...' if len(cut) > 3 else ''}): inside a reentrant checkpoint "
            "(use_reentrant=True) none of whose arguments needs a gradient; PyTorch then "
            "gives its output none"]
