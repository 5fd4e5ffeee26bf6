"""Trace a PyTorch model into a `LayerGraph`.

First path: ``torch.fx.symbolic_trace`` plus one forward pass through an fx Interpreter that
records every node's real output (shape, dtype, and whether it shares storage with an input —
views and in-place ops — which the `pytorch` memory convention needs). When fx cannot trace
the model (data-dependent control flow, unsupported Python), the second path runs the model
once with forward hooks on every module and a ``TorchFunctionMode`` that sees the functions
called between modules (``+``, ``torch.cat``, ``flatten`` …). The graph says which path made it.

The forward pass runs in eval mode under ``torch.no_grad`` (shapes do not depend on the mode,
and eval mode keeps BatchNorm valid for 1×1 maps); each module's mode is restored afterwards.

Memory. The fx path records each node as soon as it has run and drops its value after the
node's last reader, and the hooks path knows tensors by weak reference only, so tracing holds
about what the model's own forward holds (batch 100 costs little more than batch 1). Shapes are not taken from ``meta`` tensors: their kernels
do not always give the strides the CPU kernels give (scaled_dot_product_attention's output,
layer norm after a permute), and strides decide views, copies and so the pytorch convention.
"""

from __future__ import annotations

import dis
import functools
import inspect
import sys
import weakref
from bisect import bisect_left

import torch
import torch.fx as fx
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .errors import TraceError
from .graph import MAC_KINDS, LayerGraph, OpNode
from .blocks import BlockFinder, compile_block_pattern
from .kinds import INPLACE_FUNCTIONS, INPLACE_METHODS, TENSOR_ATTRIBUTE_KINDS, function_name
from .opinfo import (call_attrs, einsum_index_sizes, functional_params, is_param_slot,
                     matmul_operand_copies, measure_saved)
from .rules import REGISTRY, Registry
from .specs import check_input_size

def trace(model: nn.Module, input_shape, model_name: str = "model", tracer: str = "auto",
          rules: Registry | dict | None = None, blocks: str | None = None) -> LayerGraph:
    """Trace `model` on a zero input of `input_shape` (batch first). `tracer`: auto|fx|hooks
    (auto: fx, and the hooks tracer, with a warning, whenever fx fails). `rules`: a Registry,
    or {module class | function | kind: Rule} overriding the default one for this graph.
    `blocks`: a regular expression naming the blocks' module paths (`costmodel.blocks`)."""
    if tracer not in ("auto", "fx", "hooks"):
        raise TraceError(f"unknown tracer {tracer!r}: use auto, fx or hooks")
    if isinstance(model, torch.jit.ScriptModule):
        raise TraceError(f"{model_name} is a TorchScript module; ttplan traces eager PyTorch: "
                         "give the nn.Module before torch.jit.script/trace")
    if not isinstance(model, nn.Module):
        raise TraceError(f"{model_name} is a {type(model).__name__}, not a torch.nn.Module")
    block_pattern = compile_block_pattern(blocks)
    registry = rules if isinstance(rules, Registry) else REGISTRY.with_rules(rules)
    input_shape = check_input_size(tuple(int(d) for d in input_shape))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    fallback = None
    try:
        if tracer in ("auto", "fx"):
            try:
                graph = _symbolic_trace(model, registry)
                return _FxGraphBuilder(model, graph, model_name, input_shape, registry,
                                       block_pattern).build(_zero_input(input_shape, model_name))
            except Exception as exc:  # fx raises many types for untraceable Python
                if tracer == "fx":
                    if isinstance(exc, TraceError):
                        raise
                    raise TraceError(f"torch.fx cannot trace {model_name}: {_one_line(exc)}") from None
                fallback = (f"torch.fx could not trace {model_name} ({_one_line(exc)}); "
                            "traced with the hooks tracer instead")
        graph = _HookGraphBuilder(model, model_name, input_shape, registry,
                                  block_pattern).build(_zero_input(input_shape, model_name))
        if fallback:
            graph.warnings.append(fallback)
        return graph
    finally:
        for m, training in modes.items():
            m.train(training)


class _LeafTracer(fx.Tracer):
    """fx stops at every module the registry prices as one operator (a subclass of a known
    layer included), not only at torch.nn's own classes."""

    def __init__(self, registry: Registry):
        super().__init__()
        self.registry = registry

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return self.registry.is_leaf(m) or super().is_leaf_module(m, module_qualified_name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)


class _Proxy(fx.Proxy):
    """fx's Proxy; unpacking (`q, k, v = x.unbind(0)`) reads the calling instruction from a
    disassembly cached per function, where fx disassembles the whole function at every
    unpacking (a sixth of tracing a ViT). Otherwise as fx: the tracer's `iter`."""

    def __iter__(self):
        caller = inspect.currentframe().f_back
        instruction = _instruction_at(caller.f_code, caller.f_lasti)
        if instruction.opname == "UNPACK_SEQUENCE":
            return (self[i] for i in range(instruction.argval))
        return self.tracer.iter(self)

    def __getattr__(self, k: str) -> fx.Proxy:
        return _Attribute(self, k)  # `B, N, C = x.shape` unpacks an attribute


class _Attribute(fx.proxy.Attribute):
    __iter__ = _Proxy.__iter__
    __getattr__ = _Proxy.__getattr__


@functools.lru_cache(maxsize=512)
def _instructions(code) -> tuple[list, list[int]]:
    instructions = list(dis.get_instructions(code))
    return instructions, [i.offset for i in instructions]


def _instruction_at(code, lasti: int):
    instructions, offsets = _instructions(code)
    if sys.version_info >= (3, 11):
        return instructions[bisect_left(offsets, lasti)]
    return instructions[lasti // 2]


def _symbolic_trace(model: nn.Module, registry: Registry) -> fx.Graph:
    """fx's trace, with every optional argument of `forward` fixed to its default (as a call
    with one input tensor passes them). The graph's targets are paths in `model` itself: it runs
    on `model`, no `fx.GraphModule` is built (its code generation and compile took a tenth of a
    profile)."""
    tracer = _LeafTracer(registry)
    params = list(inspect.signature(model.forward).parameters.values())
    defaults = {p.name: p.default for p in params[1:]
                if p.default is not inspect.Parameter.empty}
    required = [p for p in params if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1:
        raise TraceError(f"{type(model).__name__}.forward takes {len(required)} required inputs; "
                         "ttplan costs models with one input tensor")
    return tracer.trace(model, concrete_args=defaults or None)


def _zero_input(input_shape, model_name: str) -> torch.Tensor:
    try:
        return torch.zeros(input_shape)
    except (RuntimeError, MemoryError) as exc:
        raise TraceError(f"not enough memory to trace {model_name} on a real input of shape "
                         f"{list(input_shape)} ({type(exc).__name__})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _run(fn, model_name, input_shape):
    try:
        with torch.no_grad():
            return fn()
    except (TraceError, _RecordingFailed):
        raise
    except Exception as exc:
        raise TraceError(f"{model_name} fails on an input of shape {list(input_shape)}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


class _Builder:
    """What both tracing paths share: turning a recorded call into an `OpNode`."""

    def __init__(self, model: nn.Module, model_name: str, input_shape, registry: Registry,
                 block_pattern=None):
        self.model = model
        self.registry = registry
        self.model_name = model_name
        self.input_shape = input_shape
        self.nodes: dict[str, OpNode] = {}
        self.order: list[str] = []
        self.blocks = BlockFinder(model, registry, block_pattern)
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.param_calls: dict[str, int] = {}  # owner path -> calls priced so far
        self.probes: list = []  # (node name, fn, tensors, module): measured after the forward

    def block_of(self, path: str) -> str:
        return self.blocks.block_of(path)

    def node_name(self, path: str) -> tuple[str, bool]:
        """A unique name for a call of the parameters owned by `path` (module or parameter),
        and whether an earlier call already owns them (shared weights, counted once)."""
        count = self.param_calls.get(path, 0)
        self.param_calls[path] = count + 1
        name = path if count == 0 and path not in self.nodes else f"{path}#{count + 1}"
        while name in self.nodes:
            count += 1
            name = f"{path}#{count + 1}"
        return name, count > 0

    def add_parameter(self, param: nn.Parameter, out) -> str:
        """A parameter used directly in forward (cls_token, pos_embed, a layer-scale gamma):
        a node of kind "parameter" that owns it, updatable like a layer's weight."""
        path = self.param_names[id(param)]
        name, repeat = self.node_name(path)
        attrs = {"param_names": {"weight": [path], "bias": []}}
        if repeat:
            attrs["repeat_call"] = True
        self.add(name, "parameter", "Parameter", path, path.rpartition(".")[0], [], [], out,
                 (param, None, []), attrs)
        return name

    def call_details(self, kind, target, args, kwargs, tensors, out, attrs, name) -> tuple:
        """(params, module path) of a function call, and the attributes its rule reads."""
        attrs.update(call_attrs(target, args, kwargs))
        found = functional_params(target, args, kwargs, self.param_names)
        if kind in ("matmul",) and len(tensors) >= 2:
            copies = matmul_operand_copies(tensors[0], tensors[1])
            if any(copies):
                attrs["operand_copied"] = copies
        if kind == "matmul" and len(tensors) == 1:  # x @ W with W a buffer or constant
            other = [a for a in args if isinstance(a, torch.Tensor) and a is not tensors[0]]
            if other:
                attrs["other_shape"] = list(other[0].shape)
        if kind == "einsum" and attrs.get("equation"):
            operands = [a for a in _flat(args[1:]) if isinstance(a, torch.Tensor)]
            attrs["index_sizes"] = einsum_index_sizes(attrs["equation"], operands)
            if len(operands) == len(tensors):
                equation = attrs["equation"]
                self.probes.append((name, lambda *ts: torch.einsum(equation, *ts), tensors, None))
        if found is None:
            return (None, None, []), None
        weight, bias, owner, names = found
        attrs["param_names"] = names
        return (weight, bias, []), owner

    def add(self, name, kind, op, module_path, scope, inputs, in_tensors, out, params, attrs):
        outputs = [t for t in _flat(out) if isinstance(t, torch.Tensor)]
        if isinstance(out, (tuple, list)) and outputs:
            # chunk/split/unbind, LSTM: the node stands for its first output; getitem nodes
            # pick each output, tracked on its own.
            attrs["output_shapes"] = [list(t.shape) for t in outputs]
            out = outputs[0]
        in_tensors = [_first_tensor(t) for t in in_tensors]
        if not isinstance(out, torch.Tensor):
            kind, op = "unknown", f"{op} (returns {type(out).__name__})"
            out_shape, dtype_bytes = (), 4
        else:
            out_shape, dtype_bytes = tuple(out.shape), out.element_size()
            ptr = out.untyped_storage().data_ptr()
            for i, t in enumerate(in_tensors):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == ptr:
                    attrs["aliases_input"] = i  # a view, or written in place
                    break
        if any(isinstance(t, torch.Tensor) and not t.is_contiguous() for t in in_tensors):
            # Some kernels (linear on ≥3-D input, layer norm) copy such inputs and save the copy.
            attrs["inputs_contiguous"] = [bool(t.is_contiguous()) for t in in_tensors]
            if kind == "linear" and in_tensors and in_tensors[0].dim() > 2:
                try:  # F.linear flattens leading dims: a view if the strides allow, else a copy
                    in_tensors[0].view(-1, in_tensors[0].shape[-1])
                    attrs["input_flattens_as_view"] = True
                except RuntimeError:
                    attrs["input_flattens_as_view"] = False
        weight, bias, others = params
        node = OpNode(
            name=name, kind=kind, op=op, module=module_path, block=self.block_of(scope),
            inputs=list(inputs), in_shapes=[tuple(t.shape) for t in in_tensors],
            out_shape=out_shape, dtype_bytes=dtype_bytes,
            weight_shape=tuple(weight.shape) if weight is not None else None,
            bias_numel=bias.numel() if bias is not None else 0,
            other_param_numel=sum(p.numel() for p in others), attrs=attrs)
        self.nodes[name] = node
        self.order.append(name)

    def finish(self, tracer_name: str, output_names) -> LayerGraph:
        for name, fn, tensors, module in self.probes:
            self.nodes[name].attrs["measured_saved"] = measure_saved(fn, tensors, module)
        unknown = [f"{n.name} ({n.op})" for n in self.nodes.values() if n.kind == "unknown"]
        declared = None
        if getattr(self.model, "ttplan_blocks", None):  # zoo models list their blocks' convs
            declared = [self.block_of(convs[0]) for convs in self.model.ttplan_blocks]
        else:
            with_macs = dict.fromkeys(n.block for n in self.nodes.values()
                                      if n.block and n.kind in MAC_KINDS)
            declared = self.blocks.counted_blocks(list(with_macs))
        return LayerGraph(self.model_name, self.input_shape, tracer_name, self.nodes,
                          self.order, "x", list(output_names), unknown, declared, self.registry)


def module_params(module: nn.Module):
    """(weight, bias, other parameters) owned directly by `module`. A recurrent layer's
    weight_ih/hh_l* count as its weight and its bias_* as its bias (flattened)."""
    own = dict(module.named_parameters(recurse=False))
    weight, bias = own.pop("weight", None), own.pop("bias", None)
    if weight is None and isinstance(module, nn.RNNBase):
        weights = [p for n, p in own.items() if n.startswith("weight")]
        biases = [p for n, p in own.items() if n.startswith("bias")]
        weight = torch.empty(sum(p.numel() for p in weights), device="meta") if weights else None
        bias = torch.empty(sum(p.numel() for p in biases), device="meta") if biases else None
        own = {n: p for n, p in own.items() if not n.startswith(("weight", "bias"))}
    return weight, bias, list(own.values())


def param_names_of(module: nn.Module, path: str) -> dict:
    """{"weight": [names], "bias": [names]} of the parameters a module call trains."""
    names = {"weight": [], "bias": []}
    for n, _ in module.named_parameters(recurse=False):
        slot = "weight" if n.startswith("weight") else "bias" if n.startswith("bias") else None
        if slot:
            names[slot].append(f"{path}.{n}" if path else n)
    return names


def module_attrs(module: nn.Module) -> dict:
    attrs = {}
    for key in ("groups", "stride", "kernel_size", "padding", "dilation", "in_channels",
                "out_channels", "in_features", "out_features", "num_features", "affine",
                "inplace", "p", "output_size", "num_groups", "track_running_stats",
                "normalized_shape", "drop_prob", "hidden_size", "num_layers",
                "bidirectional", "batch_first", "approximate"):
        if hasattr(module, key):
            value = getattr(module, key)
            attrs[key] = list(value) if isinstance(value, tuple) else value
    return attrs


class _FxGraphBuilder(_Builder):
    def __init__(self, model, graph: fx.Graph, model_name, input_shape, registry,
                 block_pattern=None):
        super().__init__(model, model_name, input_shape, registry, block_pattern)
        self.graph = graph

    def build(self, x) -> LayerGraph:
        self.x = x
        self.values: dict[fx.Node, object] = {}  # values still to be read by a later node
        self.names: dict[fx.Node, str] = {}  # fx node -> graph node name (tensor-producing nodes)
        self.module_calls: dict[str, int] = {}
        self.outputs: list[str] = []
        # The input, then one placeholder per optional argument fixed to its default.
        self.placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        interp = _RecordingInterpreter(self.model, self.graph, self.values, self.record)
        try:
            _run(lambda: interp.run(x, *[_default_of(p) for p in self.placeholders[1:]]),
                 self.model_name, self.input_shape)
        except _RecordingFailed as failed:  # ttplan's own error, not the model's
            raise failed.original from None
        return self.finish("fx", self.outputs)

    def record(self, node: fx.Node, out) -> None:
        """Turn one fx node, just run with output `out`, into an OpNode (or nothing)."""
        x, values, names = self.x, self.values, self.names
        module_calls, placeholders = self.module_calls, self.placeholders
        if node.op == "placeholder":
            if node is placeholders[0]:
                self.nodes["x"] = OpNode("x", "input", "input", None, "", [], [],
                                         tuple(x.shape), x.element_size())
                self.order.append("x")
                names[node] = "x"
            return
        if node.op == "output":
            self.outputs = [names[a] for a in _flat_nodes(node.args) if a in names]
            return
        if node.op == "get_attr":
            if isinstance(out, nn.Parameter) and not _only_param_slots(node):
                names[node] = self.add_parameter(out, out)
            return
        tensor_args = [a for a in node.all_input_nodes
                       if a in names and _holds_tensor(values.get(a))]
        if not _holds_tensor(out):
            return  # shapes, sizes, getattr of non-tensors: not tensor operators
        attrs: dict = {}
        tensors = [values[a] for a in tensor_args]
        if node.op == "call_module":
            module = self.model.get_submodule(node.target)
            kind, op = self.registry.module_kind(module), type(module).__name__
            path = scope = owner = str(node.target)
            count = module_calls.get(path, 0)
            module_calls[path] = count + 1
            name = path if count == 0 else f"{path}#{count + 1}"
            params = module_params(module)
            attrs = module_attrs(module)
            attrs["param_names"] = param_names_of(module, path)
            if count:
                attrs["repeat_call"] = True  # shared weights: parameters counted once
            if kind == "unknown" and any(True for _ in module.parameters()):
                attrs["has_params"] = True
            if kind == "rnn":
                self.probes.append((name, _call_module, [_first_tensor(t) for t in tensors[:1]],
                                    module))
        else:
            kind, op = self.registry.function_kind(node.target), function_name(node.target)
            if node.target is getattr:
                kind = TENSOR_ATTRIBUTE_KINDS.get(node.args[1], "unknown")
                op = f"getattr {node.args[1]}"
            stack = node.meta.get("nn_module_stack") or {}
            scope = list(stack.values())[-1][0] if stack else ""
            scope = scope if isinstance(scope, str) else ""
            name = node.name
            args = fx.node.map_arg(node.args, lambda a: values.get(a))
            kwargs = fx.node.map_arg(node.kwargs, lambda a: values.get(a))
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
        self.add(name, kind, op, owner if node.op == "call_module" or
                 attrs.get("param_names") else None, scope,
                 [names[a] for a in tensor_args], tensors, out, params, attrs)
        names[node] = name


def _default_of(placeholder: fx.Node):
    return placeholder.args[0] if placeholder.args else None


def _holds_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) or isinstance(value, (tuple, list)) and any(
        isinstance(t, torch.Tensor) for t in _flat(value))


def _flat_nodes(args):
    found = []
    fx.node.map_arg(args, found.append)
    return found


def _only_param_slots(node: fx.Node) -> bool:
    """Is a get_attr parameter only ever passed as the weight/bias of a functional op (which
    then owns it), never used on its own?"""
    for user in node.users:
        if user.op != "call_function":
            return False
        positions = [i for i, a in enumerate(user.args) if a is node]
        keywords = [k for k, a in user.kwargs.items() if a is node]
        if not all(is_param_slot(user.target, i, None) for i in positions) or \
                not all(is_param_slot(user.target, None, k) for k in keywords):
            return False
    return True


def _call_module(module, *tensors):
    return module(*tensors)


class _RecordingInterpreter(fx.Interpreter):
    """Runs the traced graph, hands every node's value to `record` as soon as it is computed,
    and keeps it (for the nodes reading it: shapes, storage aliasing, parameters) only until its
    last reader has run, so intermediates are freed as the model's own forward would free them."""

    def __init__(self, model, graph, values, record):
        super().__init__(model, graph=graph)
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

    def run_node(self, n):
        result = super().run_node(n)
        self.values[n] = result
        try:
            self.record(n, result)
        except Exception as exc:
            raise _RecordingFailed(exc) from exc
        for dead in self.dies_after.get(n, ()):
            self.values.pop(dead, None)
        return result


class _RecordingFailed(Exception):
    """Recording a node (ttplan's code, not the model's) raised `original`."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class _HookGraphBuilder(_Builder):
    """Fallback: module hooks for modules, a TorchFunctionMode for functions between them."""

    def build(self, x) -> LayerGraph:
        producer = _Producers()
        producer[x] = "x"
        self.nodes["x"] = OpNode("x", "input", "input", None, "", [], [], tuple(x.shape),
                                 x.element_size())
        self.order.append("x")
        stack: list[tuple[str, bool]] = []  # (module path, recorded as one operator?)
        leaf_depth = [0]  # > 0 inside an operator: what runs there is part of it
        calls: dict[str, int] = {}
        paths = {m: p for p, m in self.model.named_modules()}
        builder = self

        def produced(t) -> bool:
            if t in producer:
                return True
            if isinstance(t, nn.Parameter) and id(t) in builder.param_names:
                producer[t] = builder.add_parameter(t, t)  # a free parameter, first use
                return True
            return False

        def record(name, kind, op, module_path, scope, args, out, params, attrs, skip=()):
            tensors = [a for a in _flat(args) if isinstance(a, torch.Tensor)
                       and all(a is not s for s in skip) and produced(a)]
            builder.add(name, kind, op, module_path, scope, [producer[t] for t in tensors],
                        tensors, out, params, attrs)
            outs = [t for t in _flat(out) if isinstance(t, torch.Tensor)]
            if isinstance(out, (tuple, list)) and outs:
                for i, t in enumerate(outs):  # each output of a tuple on its own
                    builder.add(f"{name}.{i}", "getitem", "getitem", None, scope, [name], [outs[0]],
                                t, (None, None, []), {})
                    producer[t] = f"{name}.{i}"
                return tensors
            for t in outs:
                producer[t] = name
            return tensors

        def pre_hook(module, args):
            # A module the registry prices is one operator; any other is traced into.
            leaf = leaf_depth[0] == 0 and builder.registry.is_leaf(module)
            stack.append((paths.get(module, "?"), leaf))
            if leaf or leaf_depth[0]:
                leaf_depth[0] += 1

        def post_hook(module, args, out):
            path, leaf = stack.pop()
            if leaf_depth[0]:
                leaf_depth[0] -= 1
            if not leaf:
                return
            count = calls.get(path, 0)
            calls[path] = count + 1
            name = path if count == 0 else f"{path}#{count + 1}"
            attrs = module_attrs(module)
            attrs["param_names"] = param_names_of(module, path)
            if count:
                attrs["repeat_call"] = True  # shared weights: parameters counted once
            kind = builder.registry.module_kind(module)
            tensors = record(name, kind, type(module).__name__, path, path, args, out,
                             module_params(module), attrs)
            if kind == "rnn":
                builder.probes.append((name, _call_module, tensors[:1], module))

        class FunctionRecorder(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if leaf_depth[0] or not _holds_tensor(out):
                    return out  # inside an operator, or a shape/size: not an operator
                found = functional_params(func, args, kwargs, builder.param_names)
                slots = [p for p in (found[:2] if found else ()) if p is not None]
                tensors = [a for a in _flat((args, kwargs)) if isinstance(a, torch.Tensor)
                           and all(a is not p for p in slots)]
                if not any([produced(a) for a in tensors]):  # registers free parameters
                    return out
                tensors = [a for a in tensors if a in producer]
                name_ = getattr(func, "__name__", str(func))
                kind = builder.registry.function_kind(func)
                if name_ == "__get__":  # a tensor property: x.T, x.mT (x.shape is not one)
                    name_ = getattr(getattr(func, "__self__", None), "__name__", name_)
                    kind = TENSOR_ATTRIBUTE_KINDS.get(name_, "unknown")
                elif kind == "unknown":
                    kind = builder.registry.function_kind(name_)
                count = calls.get(name_, 0)
                calls[name_] = count + 1
                name = f"{name_}_{count}" if count else name_
                attrs = {"inplace": True} if name_ in INPLACE_METHODS else {}
                if kind == "hardtanh" and name_.startswith("clamp"):
                    attrs["clamp_args"] = [a for a in args[1:] if isinstance(a, (int, float))]
                params, owner = builder.call_details(kind, func, args, kwargs, tensors, out,
                                                     attrs, name)
                if owner is not None:
                    name, repeat = builder.node_name(owner)
                    if repeat:
                        attrs["repeat_call"] = True
                record(name, kind, name_, owner, stack[-1][0] if stack else "",
                       (args, kwargs), out, params, attrs, tuple(slots))
                return out

        handles = []
        for module in self.model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        try:
            def go():
                with FunctionRecorder():
                    return self.model(x)
            out = _run(go, self.model_name, self.input_shape)
        finally:
            for h in handles:
                h.remove()
        outputs = [producer[t] for t in _flat(out)
                   if isinstance(t, torch.Tensor) and t in producer]
        return self.finish("hooks", outputs)


class _Producers:
    """Which graph node made each live tensor, without keeping the tensor alive (so the hooks
    path frees intermediates as the forward drops them). An id is reused once its tensor
    dies, so an entry counts only while its weak reference still points at the tensor."""

    def __init__(self):
        self._by_id: dict[int, tuple[str, weakref.ref]] = {}

    def __setitem__(self, tensor: torch.Tensor, name: str) -> None:
        self._by_id[id(tensor)] = (name, weakref.ref(tensor))

    def __contains__(self, tensor) -> bool:
        entry = self._by_id.get(id(tensor))
        return entry is not None and entry[1]() is tensor

    def __getitem__(self, tensor: torch.Tensor) -> str:
        return self._by_id[id(tensor)][0]


def _first_tensor(value):
    """A tuple-valued input (an LSTM's or chunk's outputs) stands for its first tensor."""
    if isinstance(value, (tuple, list)):
        return next((t for t in _flat(value) if isinstance(t, torch.Tensor)), value)
    return value


def _flat(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flat(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flat(item)
    else:
        yield obj
