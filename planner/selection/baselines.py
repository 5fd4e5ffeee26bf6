"""The paper's baselines (§3.1, A.5) as update policies.

none        nothing is trained.
fulltrain   every updatable layer, weights and biases.
lastlayer   the last MAC layer (the classifier when there is one), weight and bias.
tinytl      (selection.tinytl adds the lite-residual modules) the lite-residual convs' weights
            and every layer's bias, the backbone's weights frozen.
sparseupdate  see `planner.selection.sparseupdate`: its released schemes and its search.

last-blocks:K / last-layers:K (`costmodel.config.resolve_updates`) are the simple baselines a
selecting plan must not capture less Fisher than when they fit the same budgets
(`last_k_baselines`, used by `planner.api.plan`).
"""

from __future__ import annotations

from ttplan.costmodel.config import LayerUpdate, mac_blocks, resolve_updates, updatable_layers
from ttplan.costmodel.costs import costing_graph
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.graph import LayerGraph
from ttplan.costmodel.specs import UpdateSpec


def distinct_layers(nodes) -> list:
    """One node per layer, in execution order: a module called more than once is one layer
    (its first call, whose name is the module path); later calls are not layers to update."""
    seen: dict[str, object] = {}
    for node in nodes:
        if not node.attrs.get("repeat_call"):
            seen.setdefault(node.layer_key, node)
    return list(seen.values())


def none_updates(graph: LayerGraph) -> dict[str, LayerUpdate]:
    return {}


def fulltrain_updates(graph: LayerGraph) -> dict[str, LayerUpdate]:
    return {n.name: LayerUpdate() for n in updatable_layers(graph)}


def lastlayer_updates(graph: LayerGraph) -> dict[str, LayerUpdate]:
    macs = graph.mac_layers()
    if not macs:
        raise SpecError(f"{graph.model_name} has no conv/linear layer to train")
    return {macs[-1].layer_key: LayerUpdate()}  # a repeated last call trains its module


def tinytl_updates(graph: LayerGraph, lite_layers: list[str]) -> dict[str, LayerUpdate]:
    # "Every bias" means every bias the deployed graph has: a conv's own, or the shift of its
    # attached BatchNorm (folded into the conv under `paper`, trained with it under `pytorch`).
    folded = costing_graph(graph, "paper")
    updates = {n.name: LayerUpdate(weight=False, bias=True) for n in updatable_layers(graph)
               if folded[n.name].bias_numel > 0}
    for name in lite_layers:
        updates[name] = LayerUpdate(weight=True, bias=folded[name].bias_numel > 0)
    return updates


LAST_K_KINDS = ("last-blocks", "last-layers")


def last_k_baselines(graph: LayerGraph, kind: str):
    """(k, updates) of `kind` (last-blocks or last-layers) for K = 1, 2, ... Each K + 1 trains
    a superset of K (one more block or layer, backprop one further), so its memory, MACs and
    time are no smaller: a caller may stop at the first K over budget."""
    count = len(mac_blocks(graph)) if kind == "last-blocks" else \
        len(dict.fromkeys(n.layer_key for n in graph.mac_layers()))
    for k in range(1, count + 1):
        yield k, resolve_updates(UpdateSpec(kind, k), graph)
