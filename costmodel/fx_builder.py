"""The first tracing path's second half: one forward pass through the traced ``fx.Graph``,
recording every node's real output (shape, dtype, whether it shares storage with an input —
views and in-place ops — which the `pytorch` memory convention needs) as an `OpNode`.

Each node is recorded as soon as it has run and its value dropped after its last reader, so
tracing holds about what the model's own forward holds.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from .graph import LayerGraph
from .graph_builder import (WHOLE_CALL_PROBED_KINDS, GraphBuilder, RecordingFailed,
                            call_module, first_tensor, flat, holds_tensor, pool_indices,
                            run_forward)
from .kinds import INPLACE_FUNCTIONS, INPLACE_METHODS, TENSOR_ATTRIBUTE_KINDS, function_name
from .module_calls import module_attrs, module_call_params
from .opinfo import is_param_slot


class FxGraphBuilder(GraphBuilder):
    def __init__(self, model, graph: fx.Graph, model_name, inputs, registry,
                 block_pattern=None, walk=None):
        super().__init__(model, model_name, inputs, registry, block_pattern, walk)
        self.graph = graph
        self._function_kinds: dict = {}  # target -> (kind, name), this trace
        self._last_stack = self._last_scope = None  # the latest node's module stack, scope

    def build(self, arguments: dict, given) -> LayerGraph:
        """`arguments`: {forward's argument name: value} (defaults, then inputs); `given`:
        the input tensors (positional, keyword)."""
        self.given = given
        self.values: dict[fx.Node, object] = {}  # values still to be read by a later node
        self.names: dict[fx.Node, str] = {}  # fx node -> graph node name (tensor-producing nodes)
        self.module_calls: dict[str, int] = {}
        self.outputs: list[str] = []
        # One placeholder per argument of forward: the inputs, and those fixed to defaults.
        self.placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        values = [arguments.get(str(p.target).lstrip("*"), _default_of(p))
                  for p in self.placeholders]
        # placeholder -> the input tensor it receives (defaults that are tensors are constants)
        self.input_args = {p: v for p, v in zip(self.placeholders, values)
                           if isinstance(v, torch.Tensor)
                           and any(v is t for t in flat(self.given))}
        interp = RecordingInterpreter(self.model, self.graph, self.values, self.record,
                                       self.modules)
        try:
            run_forward(lambda: interp.run(*values), self.model_name, self.inputs)
        except RecordingFailed as failed:  # ttplan's own error, not the model's
            raise failed.original from None
        return self.finish("fx", self.outputs)

    def _function_kind_and_name(self, target) -> tuple[str, str]:
        """(registry kind, name) of a function or method target, once per target per trace."""
        try:
            found = self._function_kinds.get(target)
        except TypeError:  # an unhashable target
            return self.registry.function_kind(target), function_name(target)
        if found is None:
            found = self._function_kinds[target] = (self.registry.function_kind(target),
                                                    function_name(target))
        return found

    def record(self, node: fx.Node, out, args, kwargs) -> None:
        """Turn one fx node, just run on `args`, `kwargs` with output `out`, into an OpNode
        (or nothing)."""
        values, names = self.values, self.names
        module_calls = self.module_calls
        if node.op == "placeholder":
            if node in self.input_args:
                names[node] = self.add_input(len([n for n in names if n.op == "placeholder"]),
                                             str(node.target), self.input_args[node])
            return
        if node.op == "output":
            self.outputs = [names[a] for a in _flat_nodes(node.args) if a in names]
            return
        if node.op == "get_attr":
            if isinstance(out, nn.Parameter) and not _only_param_slots(node):
                names[node] = self.add_parameter(out, out)
            elif isinstance(out, torch.Tensor) and str(node.target).startswith(_FX_CONSTANT) \
                    and out.untyped_storage().data_ptr() not in self.owned_storages():
                # a tensor forward makes from no input (an index written as a literal): fx
                # keeps it as a constant of its own, the hooks tracer as a constant node; a
                # view of a buffer fx folded into one is model state, as there
                name = names[node] = self.fresh_name("constant")
                self._add_node(name, "constant", "constant", None, "", [], [], out,
                               (None, None, []), {})
            return
        if not holds_tensor(out):
            return  # shapes, sizes, getattr of non-tensors: not tensor operators
        # every tensor argument in order, a repeated one each time (addcmul(y, y, w), y * y:
        # each position keeps what its rule says); fx's input nodes list it once
        tensor_args = [a for a in _argument_nodes(node)
                       if a in names and holds_tensor(values.get(a))]
        attrs: dict = {}
        tensors = [values[a] for a in tensor_args]
        if node.op == "call_module":
            module = self.modules.get(node.target)
            if module is None:
                module = self.model.get_submodule(node.target)
            kind, op = self.module_kind(module), type(module).__name__
            path = scope = owner = str(node.target)
            count = module_calls.get(path, 0)
            module_calls[path] = count + 1
            name = path if count == 0 else f"{path}#{count + 1}"
            params, param_names = module_call_params(module, path)
            attrs = module_attrs(module)
            attrs["param_names"] = param_names
            if count:
                attrs["repeat_call"] = True  # shared weights: parameters counted once
            if kind == "unknown":  # a torch.nn module without a rule or parameters: derived
                self.derive(name, module, args, kwargs, tensors)
            if kind == "rnn":
                self.probes.append((name, call_module, [first_tensor(t) for t in tensors[:1]],
                                    module))
            elif kind in WHOLE_CALL_PROBED_KINDS:
                self._probe_module_call(name, module, args, kwargs, tensors, attrs)
        else:
            if node.target is getattr:
                kind = TENSOR_ATTRIBUTE_KINDS.get(node.args[1], "unknown")
                op = f"getattr {node.args[1]}"
            else:
                kind, op = self._function_kind_and_name(node.target)
            stack = node.meta.get("nn_module_stack") or {}
            if stack is self._last_stack:  # nodes of one module call share one stack
                scope = self._last_scope
            else:
                scope = next(reversed(stack.values()))[0] if stack else ""
                scope = scope if isinstance(scope, str) else ""
                self._last_stack, self._last_scope = stack, scope
            name = self.fresh_name(node.name)
            params, owner = self.call_details(kind, node.target, args, kwargs, tensors, out,
                                              attrs, name)
            if owner is not None:
                name, repeat = self.node_name(owner)
                if repeat:
                    attrs["repeat_call"] = True
            if node.op == "call_method" and node.target in INPLACE_METHODS \
                    or node.op == "call_function" and node.target in INPLACE_FUNCTIONS:
                attrs["inplace"] = True
            if kind == "hardtanh" and op.startswith("clamp"):
                attrs["clamp_args"] = [a for a in node.args[1:] if isinstance(a, (int, float))]
            if kind == "getitem" and len(node.args) > 1 and tensor_args and \
                    pool_indices(self.nodes[names[tensor_args[0]]].kind, node.args[1]):
                attrs["pool_indices"] = True
        self._add_node(name, kind, op, owner if node.op == "call_module" or
                       attrs.get("param_names") else None, scope,
                       [names[a] for a in tensor_args], tensors, out, params, attrs)
        names[node] = name
        if kind == "unknown" and node.op in ("call_function", "call_method") \
                and node.target is not getattr:
            call = node.target if node.op == "call_function" else _method(node.target)
            self.derive(name, call, args, kwargs, tensors)


# The attribute names fx gives tensors made while tracing (torch.tensor([...]) in forward).
_FX_CONSTANT = "_tensor_constant"


def _default_of(placeholder: fx.Node):
    return placeholder.args[0] if placeholder.args else None


def _argument_nodes(node: fx.Node) -> list:
    """The nodes among `node`'s arguments, in order, a repeated one as often as it is
    passed (`y * y`, `torch.stack([y, y])`); fx's `_input_nodes` lists each once."""
    if len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node):
        return [node.args[0]]  # most calls: one tensor argument
    return _flat_nodes((node.args, node.kwargs))


def _flat_nodes(args):
    found = []
    fx.node.map_arg(args, found.append)
    return found


# What reading gives no tensor: a parameter read only for these is not used.
_NON_TENSOR_READS = frozenset({"size", "dim", "numel", "device", "dtype", "shape", "ndim",
                               "is_cuda", "requires_grad", "element_size", "layout"})


def _only_param_slots(node: fx.Node) -> bool:
    """Is a get_attr parameter only ever passed as the weight/bias of a functional op (which
    then owns it), or read for its device, dtype or size, never used on its own?"""
    for user in node.users:
        if user.op == "call_function" and user.target is getattr and \
                user.args[1] in _NON_TENSOR_READS or \
                user.op == "call_method" and user.target in _NON_TENSOR_READS:
            continue
        if user.op != "call_function":
            return False
        positions = [i for i, a in enumerate(user.args) if a is node]
        keywords = [k for k, a in user.kwargs.items() if a is node]
        if not all(is_param_slot(user.target, i, None) for i in positions) or \
                not all(is_param_slot(user.target, None, k) for k in keywords):
            return False
    return True


def _method(name: str):
    """A tensor method as a function of (self, *args)."""
    return lambda self, *args, **kwargs: getattr(self, name)(*args, **kwargs)


class RecordingInterpreter:
    """Runs the traced graph on the model, node by node, as `fx.Interpreter` does, hands every
    node's value and arguments to `record` as soon as it is computed, and keeps a value (for
    the nodes reading it: shapes, storage aliasing, parameters) only until its last reader has
    run, so intermediates are freed as the model's own forward would free them.

    Not `fx.Interpreter` itself: per node it opens a progress bar update and a metadata
    context and looks every argument up twice, about a tenth of a profile of a small model.
    A failing node's exception is worded as fx words it (the error messages stay as they were).
    """

    def __init__(self, model, graph, values, record, modules: dict):
        self.model = model
        self.modules = modules  # path -> module, as fx's paths name them
        self.graph = graph
        self.values = values
        self.record = record
        self.dies_after: dict[fx.Node, list[fx.Node]] = {}
        last_reader: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            last_reader[node] = node  # a value nothing reads dies after its own recording
            for source in node.all_input_nodes:
                last_reader[source] = node
        for node, reader in last_reader.items():
            self.dies_after.setdefault(reader, []).append(node)

    def run(self, *args):
        values, record, dies_after = self.values, self.record, self.dies_after
        load = values.__getitem__
        remaining = iter(self.graph.process_inputs(*args))
        for node in self.graph.nodes:
            try:
                args = fx.node.map_arg(node.args, load)
                kwargs = fx.node.map_arg(node.kwargs, load) if node.kwargs else {}
                result = self._execute(node, args, kwargs, remaining)
            except Exception as exc:
                _reword_as_fx(exc, node)
                raise
            values[node] = result
            try:
                record(node, result, args, kwargs)
            except Exception as exc:
                raise RecordingFailed(exc) from exc
            for dead in dies_after.get(node, ()):
                values.pop(dead, None)
            if node.op == "output":
                return result

    def _execute(self, node: fx.Node, args, kwargs, remaining):
        op, target = node.op, node.target
        if op == "call_function":
            return target(*args, **kwargs)
        if op == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if op == "call_module":
            module = self.modules.get(target)
            return (self.fetch_attr(target) if module is None else module)(*args, **kwargs)
        if op == "get_attr":
            return self.fetch_attr(target)
        if op == "placeholder":
            if target.startswith("*"):
                return list(remaining)
            try:
                return next(remaining)
            except StopIteration as stop:
                if args:
                    return args[0]
                raise RuntimeError(f"Expected positional argument for parameter {target}, "
                                   "but one was not passed in!") from stop
        return args[0]  # output

    def fetch_attr(self, target: str):
        atoms = target.split(".")
        value = self.model
        for i, atom in enumerate(atoms):
            if not hasattr(value, atom):
                raise RuntimeError(f"Node referenced nonexistent target {'.'.join(atoms[:i + 1])}")
            value = getattr(value, atom)
        return value


def _reword_as_fx(exc: Exception, node: fx.Node) -> None:
    """What `fx.Interpreter.run` does to an exception raised by a node: the node appended
    to its message, a KeyError raised as a RuntimeError."""
    msg = f"While executing {node.format_node()}"
    msg = f"{exc.args[0]}\n\n{msg}" if exc.args else str(msg)
    msg += f"\nOriginal traceback:\n{node.stack_trace}"
    msg += "\nUse tlparse to see full graph. "
    msg += ("(https://github.com/pytorch/tlparse?tab=readme-ov-file#tlparse-parse-structured"
            "-pt2-logs)")
    exc.args = (msg,) + exc.args[1:]
    if isinstance(exc, KeyError):
        raise RuntimeError(*exc.args) from exc
