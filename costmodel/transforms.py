"""Graph transforms: a BatchNorm attached to its layer, and the graph as deployed (folded).

A BatchNorm that directly follows a MAC layer (and is its only consumer) is *attached* to it.
Under ``paper`` it is folded into the layer, as deployed on a device: the layer gains a bias
of Cout values if it had none, and the norm disappears from the graph.
"""

from __future__ import annotations

import dataclasses

from .graph import MAC_KINDS, LayerGraph, OpNode


def attached_norms(graph: LayerGraph) -> dict[str, str]:
    """{MAC layer name: name of the BatchNorm attached to it}."""
    cached = graph.derived.get("attached_norms")
    if cached is not None:
        return dict(cached)
    attached = {}
    for node in graph.ops():
        if node.kind == "batchnorm" and len(node.inputs) == 1:
            src = graph[node.inputs[0]]
            if src.kind in MAC_KINDS and graph.consumers(src.name) == [node.name]:
                attached[src.name] = node.name
    graph.derived["attached_norms"] = dict(attached)
    return attached


def fold_batchnorm(graph: LayerGraph) -> LayerGraph:
    """The graph as deployed: every attached BatchNorm folded into its layer."""
    cached = graph.derived.get("folded")
    if cached is not None:
        return cached
    attached = attached_norms(graph)
    if not attached:
        graph.derived["folded"] = graph
        return graph
    folded_into = {bn: layer for layer, bn in attached.items()}
    nodes: dict[str, OpNode] = {}
    for name in graph.order:
        if name in folded_into:
            continue
        node = graph[name]
        inputs = [folded_into.get(i, i) for i in node.inputs]
        attrs = dict(node.attrs)
        bias = node.bias_numel
        if name in attached:
            attrs["folded_bn"] = attached[name]
            bias = bias or node.out_channels
        nodes[name] = dataclasses.replace(node, inputs=inputs, bias_numel=bias, attrs=attrs)
    order = [n for n in graph.order if n not in folded_into]
    outputs = [folded_into.get(o, o) for o in graph.output_names]
    folded = LayerGraph(graph.model_name, graph.input_shape, graph.tracer, nodes, order,
                        graph.input_name, outputs, list(graph.unknown_ops), graph.declared_blocks,
                        graph.rules, list(graph.warnings))
    folded.input_specs = graph.input_specs
    folded.derived["folded"] = folded  # folding a folded graph changes nothing
    graph.derived["folded"] = folded
    return folded
