"""The layer graph: one node per tensor operator, edges are the tensors between them.

A `LayerGraph` is what the tracer produces and what every cost formula reads: `OpNode`s
(plain data: shapes, parameter sizes, convolution geometry, the block it belongs to) joined
by edges that run producer -> consumer. `dag` gives them as a `networkx.DiGraph`; the cost
model's own walks (consumers, gradient reach, the order check) use plain dicts, so that a
profile does not import networkx (about 0.16 s of CPU, more than costing a small model).
`order` is the execution order of the forward pass, which liveness and "how deep must the
gradient travel" both depend on. The graph input is the node named by `input_name` (kind
``"input"``); it is not a layer and has no cost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

# Kinds whose weights a training configuration can update ("layers" in the paper's sense are
# the MAC layers; norm layers carry affine parameters too).
MAC_KINDS = frozenset({"conv", "conv_transpose", "linear", "rnn", "rnn_cell", "mha"})
# MAC layers holding several weight tensors, none of them the layer's output channels alone
# (nn.MultiheadAttention, recurrent layers and cells): updated all or nothing, never per channel.
WHOLE_LAYER_KINDS = frozenset({"rnn", "rnn_cell", "mha"})
NORM_KINDS = frozenset({"batchnorm", "layernorm", "groupnorm"})
# Parameters used on their own (cls_token, pos_embed, layer-scale gamma) and lookup tables.
FREE_PARAM_KINDS = frozenset({"parameter", "embedding"})
# Activations with a learned parameter (nn.PReLU's slopes): updatable, no MACs.
PARAM_ACTIVATION_KINDS = frozenset({"prelu"})
# Results through which no gradient flows back.
NO_GRADIENT_KINDS = frozenset({"compare", "constant"})
PARAM_KINDS = MAC_KINDS | NORM_KINDS | FREE_PARAM_KINDS | PARAM_ACTIVATION_KINDS


class _computed_once:
    """`functools.cached_property` without its lock (Python 3.11 takes an RLock at every
    first read; nodes are made fresh by every trace, so nearly every read of a profile is a
    first one). The value is stored in the instance's dict, as cached_property stores it."""

    def __init__(self, fn):
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


@dataclass
class OpNode:
    """One operator of the forward pass, with everything the cost formulas need."""

    name: str  # unique; the module path for module calls, the fx name for functions
    kind: str  # normalised operator kind, a key of costmodel.rules.REGISTRY ("unknown" otherwise)
    op: str  # what it really is: module class name or function name (shown for unknown ops)
    module: str | None  # module path when the op is a module call (owner of the parameters)
    block: str  # the block (module path) the op belongs to, "" for top-level ops
    inputs: list[str]  # producer node names of the tensor inputs, in argument order
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    dtype_bytes: int = 4  # element size of the output tensor
    weight_shape: tuple[int, ...] | None = None
    bias_numel: int = 0
    other_param_numel: int = 0  # parameters that are neither weight nor bias
    attrs: dict = field(default_factory=dict)  # groups, stride, kernel, inplace, folded_bn, ...

    # Sizes are read thousands of times while a planner costs configurations; an OpNode is never
    # mutated after tracing (derived graphs copy it with dataclasses.replace), so cache them.
    @_computed_once
    def weight_numel(self) -> int:
        n = 1
        for d in self.weight_shape or ():
            n *= d
        return n if self.weight_shape else 0

    @_computed_once
    def params(self) -> int:
        return self.weight_numel + self.bias_numel + self.other_param_numel

    @property
    def owned_params(self) -> int:
        """Parameters this op contributes to the model's count: a module called more than once
        (shared weights) owns them at its first call only."""
        return 0 if self.attrs.get("repeat_call") else self.params

    @property
    def layer_key(self) -> str:
        """The name updates are keyed by: the module path (every call of a shared module is the
        same layer), or the op's own name for functional ops."""
        return self.module or self.name

    @_computed_once
    def out_numel(self) -> int:
        return _numel(self.out_shape)

    def in_numel(self, i: int = 0) -> int:
        return _numel(self.in_shapes[i]) if i < len(self.in_shapes) else 0

    @_computed_once
    def distinct_in_numel(self) -> int:
        """Elements of the distinct tensors it reads: one passed twice (y * y, attention's
        query, key and value from one x) counted once."""
        seen = {}
        for name, shape in zip(self.inputs, self.in_shapes):
            seen.setdefault(name, shape)
        return sum(_numel(s) for s in seen.values()) + sum(
            _numel(s) for s in self.in_shapes[len(self.inputs):])

    @property
    def out_channels(self) -> int:
        """Channels of the output (dimension 1 for N×C×…, the last dim for linear)."""
        if self.kind in ("linear", "mha"):
            return self.out_shape[-1]
        return self.out_shape[1] if len(self.out_shape) > 1 else 1


def carries_gradient(node: OpNode) -> bool:
    """Does a gradient flow back through `node`'s result: not a comparison's (boolean), nor
    one its call measured to need none (`opinfo.derive_unknown`: new_empty, rand_like,
    detach, an integer result), nor a tensor made from nothing (zeros_like)."""
    return node.kind not in NO_GRADIENT_KINDS and not node.attrs.get("blocks_grad")


# Calls whose second tensor lends only its shape, dtype or device (g.expand_as(x),
# mask.type_as(x), y.to(x)): no gradient flows back to it.
SHAPE_DONOR_OPS = frozenset({"expand_as", "view_as", "reshape_as", "type_as", "to"})


def gives_only_its_shape(consumer: OpNode, tensor: str) -> bool:
    """Is `tensor` read by `consumer` for its shape, dtype or device only."""
    return consumer.op in SHAPE_DONOR_OPS and consumer.inputs[:1] != [tensor]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


@dataclass
class LayerGraph:
    """Operators in execution order, with the tensors between them."""

    model_name: str
    input_shape: tuple[int, ...]
    tracer: str  # "fx" or "hooks": which path produced the graph
    nodes: dict[str, OpNode]
    order: list[str]  # execution order, the input node first
    input_name: str = "x"
    output_names: list[str] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)  # "name (op)" for ops with no rule
    declared_blocks: list[str] | None = None  # the model's own block list (zoo), if it has one
    rules: object = None  # the costmodel.rules.Registry it was traced with (None: the default)
    warnings: list[str] = field(default_factory=list)  # from tracing (e.g. the fx fallback)
    # The inputs' specs ({name, dtype, shape}, costmodel.inputs) when the model is not called
    # with one float32 tensor of `input_shape`; None for that shorthand.
    input_specs: list[dict] | None = None

    def __post_init__(self):
        # Things computed from the graph once and reused by every configuration costed on it
        # (the folded graph, buffer lifetimes). A graph is never mutated after tracing.
        self.derived: dict = {}
        # Consumers of each tensor, in the order they run (a dict as an ordered set: x * x
        # is one edge). The execution order the tracer recorded must be a topological order:
        # every edge runs forward in it.
        position = {name: i for i, name in enumerate(self.order)}
        self._consumers: dict[str, dict[str, None]] = {name: {} for name in self.order}
        for name in self.order:
            for src in self.nodes[name].inputs:
                if position.get(src, len(position)) >= position[name]:
                    raise ValueError(f"{self.model_name}: the recorded order is not topological")
                self._consumers[src][name] = None
        if len(position) != len(self.order):
            raise ValueError(f"{self.model_name}: an operator is recorded twice")

    @cached_property
    def dag(self):
        """The graph as a `networkx.DiGraph` (nodes carry their `OpNode` as `op`), built on
        first use."""
        import networkx as nx

        dag = nx.DiGraph()
        for name in self.order:
            dag.add_node(name, op=self.nodes[name])
        dag.add_edges_from((src, dst) for src in self.order for dst in self._consumers[src])
        return dag

    def __getitem__(self, name: str) -> OpNode:
        return self.nodes[name]

    def __iter__(self):
        return (self.nodes[n] for n in self.order)

    def ops(self) -> list[OpNode]:
        """All operators except the graph input, in execution order."""
        if "ops" not in self.derived:
            self.derived["ops"] = [self.nodes[n] for n in self.order if self.nodes[n].kind != "input"]
        return list(self.derived["ops"])

    def consumers(self, name: str) -> list[str]:
        return list(self._consumers[name])

    def last_consumer_positions(self) -> dict[str, int | None]:
        """{tensor: position in `order` of its last consumer, None when nothing reads it},
        once per graph. Consumers are listed in execution order, so the last one listed is
        the latest (what `max` over their positions gave, without a walk per tensor)."""
        last = self.derived.get("last_consumer_positions")
        if last is None:
            position = {name: i for i, name in enumerate(self.order)}
            last = self.derived["last_consumer_positions"] = {
                name: position[next(reversed(readers))] if readers else None
                for name, readers in self._consumers.items()}
        return last

    def reached_from(self, sources) -> set[str]:
        """Every tensor computed from `sources` (themselves included), not through a result
        that carries no gradient (`carries_gradient`): where a gradient flows back from."""
        reached = {s for s in sources if s in self.nodes}
        frontier = list(reached)
        while frontier:
            name = frontier.pop()  # any order: the set reached is the same
            if not carries_gradient(self.nodes[name]):
                continue
            for consumer in self._consumers[name]:
                if consumer not in reached and not gives_only_its_shape(self.nodes[consumer],
                                                                        name):
                    reached.add(consumer)
                    frontier.append(consumer)
        return reached

    def mac_layers(self) -> list[OpNode]:
        return [n for n in self.ops() if n.kind in MAC_KINDS]

    def blocks(self) -> list[str]:
        """Blocks in the order their first operator runs ("" — top-level ops — excluded)."""
        seen: dict[str, None] = {}
        for node in self.ops():
            if node.block:
                seen.setdefault(node.block, None)
        return list(seen)

    def fingerprint(self) -> str:
        """A short hash of the graph's structure and shapes: a policy or a Fisher file is only
        valid for the model it was made for. Batch size is excluded (dimension 0 of shapes)."""
        items = []
        for node in self.ops():
            items.append([node.name, node.kind, node.inputs, list(node.out_shape[1:]),
                          list(node.weight_shape or ()), node.bias_numel])
        head = list(self.input_shape[1:])
        if self.input_specs is not None:  # dtypes and names matter; the shorthand's hash stays
            head = [head, [[s["name"], s["dtype"], s["shape"][1:]] for s in self.input_specs]]
        blob = json.dumps([head, items], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
