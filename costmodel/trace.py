"""Trace a PyTorch model into a `LayerGraph`.

First path: ``torch.fx.symbolic_trace`` plus one forward pass through an fx Interpreter that
records every node's real output (shape, dtype, and whether it shares storage with an input —
views and in-place ops — which the `pytorch` memory convention needs). When fx cannot trace
the model (data-dependent control flow, unsupported Python), the second path runs the model
once with forward hooks on every module and a ``TorchFunctionMode`` that sees the functions
called between modules (``+``, ``torch.cat``, ``flatten`` …). The graph says which path made it.

The forward pass runs in eval mode under ``torch.no_grad`` (shapes do not depend on the mode,
and eval mode keeps BatchNorm valid for 1×1 maps); each module's mode is restored afterwards.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .errors import TraceError
from .graph import LayerGraph, OpNode
from .kinds import INPLACE_FUNCTIONS, INPLACE_METHODS, function_name
from .rules import REGISTRY, Registry

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def trace(model: nn.Module, input_shape, model_name: str = "model", tracer: str = "auto",
          rules: Registry | dict | None = None) -> LayerGraph:
    """Trace `model` on a zero input of `input_shape` (batch first). `tracer`: auto|fx|hooks.
    `rules`: a Registry, or {module class | function | kind: Rule} overriding the default one
    for this graph."""
    if tracer not in ("auto", "fx", "hooks"):
        raise TraceError(f"unknown tracer {tracer!r}: use auto, fx or hooks")
    registry = rules if isinstance(rules, Registry) else REGISTRY.with_rules(rules)
    input_shape = tuple(int(d) for d in input_shape)
    x = torch.zeros(input_shape)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        if tracer in ("auto", "fx"):
            try:
                gm = _symbolic_trace(model, registry)
            except Exception as exc:  # fx raises many types for untraceable Python
                if tracer == "fx":
                    raise TraceError(f"torch.fx cannot trace {model_name}: {_one_line(exc)}") from None
            else:
                return _FxGraphBuilder(model, gm, model_name, input_shape, registry).build(x)
        return _HookGraphBuilder(model, model_name, input_shape, registry).build(x)
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


def _symbolic_trace(model: nn.Module, registry: Registry) -> fx.GraphModule:
    tracer = _LeafTracer(registry)
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _run(fn, model_name, input_shape):
    try:
        with torch.no_grad():
            return fn()
    except TraceError:
        raise
    except Exception as exc:
        raise TraceError(f"{model_name} fails on an input of shape {list(input_shape)}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


class _Builder:
    """What both tracing paths share: turning a recorded call into an `OpNode`."""

    def __init__(self, model: nn.Module, model_name: str, input_shape, registry: Registry):
        self.model = model
        self.registry = registry
        self.model_name = model_name
        self.input_shape = input_shape
        self.nodes: dict[str, OpNode] = {}
        self.order: list[str] = []
        self.aliases = dict(getattr(model, "ttplan_block_aliases", {}) or {})
        self._blocks: dict[str, str] = {}  # module path -> block, computed once per path
        self._composite: dict[int, bool] = {}

    def block_of(self, path: str) -> str:
        """The block a module path belongs to: the top-level module, or, inside a plain
        container (Sequential/ModuleList) of composite modules, the composite child
        (``blocks.3``, ``layer1.0``, ``features.4``). A model may name blocks itself through an
        attribute ``ttplan_block_aliases`` {module-path prefix: block name}."""
        if not path:
            return ""
        if path not in self._blocks:
            self._blocks[path] = self._find_block(path)
        return self._blocks[path]

    def _find_block(self, path: str) -> str:
        for prefix, block in self.aliases.items():
            if path == prefix or path.startswith(prefix + "."):
                return block
        parts = path.split(".")
        module = self.model
        for depth, part in enumerate(parts):
            module = module._modules.get(part) if module is not None else None
            if not self._has_composite_child(module) or depth == len(parts) - 1:
                return ".".join(parts[: depth + 1])
        return path

    def _has_composite_child(self, module) -> bool:
        """Is `module` a plain container holding composite modules? Cached per container: a
        container of thousands of leaves would otherwise be scanned once per op."""
        if not isinstance(module, _CONTAINERS):
            return False
        key = id(module)
        if key not in self._composite:
            self._composite[key] = any(len(c._modules) > 0 for c in module.children())
        return self._composite[key]

    def add(self, name, kind, op, module_path, scope, inputs, in_tensors, out, params, attrs):
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
        unknown = [f"{n.name} ({n.op})" for n in self.nodes.values() if n.kind == "unknown"]
        declared = None
        if getattr(self.model, "ttplan_blocks", None):  # zoo models list their blocks' convs
            declared = [self.block_of(convs[0]) for convs in self.model.ttplan_blocks]
        return LayerGraph(self.model_name, self.input_shape, tracer_name, self.nodes,
                          self.order, "x", list(output_names), unknown, declared, self.registry)


def module_params(module: nn.Module):
    """(weight, bias, other parameters) owned directly by `module`."""
    own = dict(module.named_parameters(recurse=False))
    weight, bias = own.pop("weight", None), own.pop("bias", None)
    return weight, bias, list(own.values())


def module_attrs(module: nn.Module) -> dict:
    attrs = {}
    for key in ("groups", "stride", "kernel_size", "padding", "dilation", "in_channels",
                "out_channels", "in_features", "out_features", "num_features", "affine",
                "inplace", "p", "output_size", "num_groups", "track_running_stats",
                "normalized_shape"):
        if hasattr(module, key):
            value = getattr(module, key)
            attrs[key] = list(value) if isinstance(value, tuple) else value
    return attrs


class _FxGraphBuilder(_Builder):
    def __init__(self, model, gm: fx.GraphModule, model_name, input_shape, registry):
        super().__init__(model, model_name, input_shape, registry)
        self.gm = gm

    def build(self, x) -> LayerGraph:
        values: dict[fx.Node, object] = {}
        names: dict[fx.Node, str] = {}  # fx node -> graph node name (tensor-producing nodes only)
        module_calls: dict[str, int] = {}
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise TraceError(f"{self.model_name} takes {len(placeholders)} inputs; ttplan costs "
                             "models with one input tensor")
        interp = _RecordingInterpreter(self.gm, values)
        _run(lambda: interp.run(x), self.model_name, self.input_shape)
        outputs = []
        for node in self.gm.graph.nodes:
            out = values.get(node)
            if node.op == "placeholder":
                self.nodes["x"] = OpNode("x", "input", "input", None, "", [], [], tuple(x.shape),
                                         x.element_size())
                self.order.append("x")
                names[node] = "x"
                continue
            if node.op == "output":
                outputs = [names[a] for a in node.all_input_nodes if a in names]
                continue
            if node.op == "get_attr":
                continue
            tensor_args = [a for a in node.all_input_nodes
                           if a in names and isinstance(values.get(a), torch.Tensor)]
            if not isinstance(out, torch.Tensor) and not tensor_args:
                continue  # shape arithmetic (x.size(0) …), not a tensor operator
            if not isinstance(out, torch.Tensor) and node.op == "call_function" \
                    and node.target is operator.getitem:
                continue
            param_args = [values[a] for a in node.all_input_nodes
                          if a.op == "get_attr" and isinstance(values.get(a), torch.Tensor)]
            attrs: dict = {}
            if node.op == "call_module":
                module = self.gm.get_submodule(node.target)
                kind, op = self.registry.module_kind(module), type(module).__name__
                path = scope = str(node.target)
                count = module_calls.get(path, 0)
                module_calls[path] = count + 1
                name = path if count == 0 else f"{path}#{count + 1}"
                params = module_params(module)
                attrs = module_attrs(module)
                if count:
                    attrs["repeat_call"] = True  # shared weights: parameters counted once
                if kind == "unknown" and any(True for _ in module.parameters()):
                    attrs["has_params"] = True
            else:
                kind, op = self.registry.function_kind(node.target), function_name(node.target)
                stack = node.meta.get("nn_module_stack") or {}
                scope = list(stack.values())[-1][0] if stack else ""
                scope = scope if isinstance(scope, str) else ""
                name = node.name
                params = (param_args[0] if param_args else None,
                          param_args[1] if len(param_args) > 1 else None, param_args[2:])
                attrs = {k: v for k, v in node.kwargs.items() if isinstance(v, (int, float, bool))}
                if node.op == "call_method" and node.target in INPLACE_METHODS \
                        or node.op == "call_function" and node.target in INPLACE_FUNCTIONS:
                    attrs["inplace"] = True
                if kind == "hardtanh" and op.startswith("clamp"):
                    attrs["clamp_args"] = [a for a in node.args[1:] if isinstance(a, (int, float))]
            self.add(name, kind, op, path if node.op == "call_module" else None, scope,
                     [names[a] for a in tensor_args], [values[a] for a in tensor_args], out,
                     params, attrs)
            names[node] = name
        return self.finish("fx", outputs)


class _RecordingInterpreter(fx.Interpreter):
    """Runs the traced graph and keeps every node's value, for shapes and storage aliasing."""

    def __init__(self, gm, values):
        super().__init__(gm)
        self.values = values

    def run_node(self, n):
        result = super().run_node(n)
        self.values[n] = result
        return result


class _HookGraphBuilder(_Builder):
    """Fallback: module hooks for modules, a TorchFunctionMode for functions between them."""

    def build(self, x) -> LayerGraph:
        producer: dict[int, str] = {id(x): "x"}
        keep_alive = [x]  # ids of tensors stay unique only while the tensors live
        self.nodes["x"] = OpNode("x", "input", "input", None, "", [], [], tuple(x.shape),
                                 x.element_size())
        self.order.append("x")
        stack: list[tuple[str, bool]] = []  # (module path, recorded as one operator?)
        leaf_depth = [0]  # > 0 inside an operator: what runs there is part of it
        calls: dict[str, int] = {}
        paths = {m: p for p, m in self.model.named_modules()}
        builder = self

        def record(name, kind, op, module_path, scope, args, out, params, attrs):
            tensors = [a for a in _flat(args) if isinstance(a, torch.Tensor) and id(a) in producer]
            builder.add(name, kind, op, module_path, scope, [producer[id(t)] for t in tensors],
                        tensors, out, params, attrs)
            for t in _flat(out):
                if isinstance(t, torch.Tensor):
                    producer[id(t)] = name
                    keep_alive.append(t)

        def pre_hook(module, args):
            leaf = leaf_depth[0] == 0 and (not module._modules or builder.registry.is_leaf(module))
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
            if count:
                attrs["repeat_call"] = True  # shared weights: parameters counted once
            record(name, builder.registry.module_kind(module), type(module).__name__, path, path,
                   args, out, module_params(module), attrs)

        class FunctionRecorder(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if leaf_depth[0] == 0 and any(isinstance(a, torch.Tensor) and id(a) in producer
                                              for a in _flat(args)):
                    name_ = getattr(func, "__name__", str(func))
                    if name_ in ("size", "dim", "__get__", "shape", "numel") \
                            or not isinstance(out, torch.Tensor):
                        return out
                    kind = builder.registry.function_kind(func)
                    if kind == "unknown":
                        kind = builder.registry.function_kind(name_)
                    count = calls.get(name_, 0)
                    calls[name_] = count + 1
                    attrs = {"inplace": True} if name_ in INPLACE_METHODS else {}
                    record(f"{name_}_{count}" if count else name_, kind, name_, None,
                           stack[-1][0] if stack else "", args, out, (None, None, []), attrs)
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
        outputs = [producer[id(t)] for t in _flat(out)
                   if isinstance(t, torch.Tensor) and id(t) in producer]
        return self.finish("hooks", outputs)


def _flat(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flat(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flat(item)
    else:
        yield obj
