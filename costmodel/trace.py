"""Trace a PyTorch model into a `LayerGraph`.

First path: ``torch.fx.symbolic_trace`` plus one forward pass through an fx Interpreter that
records every node's real output (shape, dtype, and whether it shares storage with an input —
views and in-place ops — which the `pytorch` memory convention needs). When fx cannot trace
the model (data-dependent control flow, unsupported Python), the second path runs the model
once with forward hooks on every module and a ``TorchFunctionMode`` that sees the functions
called between modules (``+``, ``torch.cat``, ``flatten`` …). The graph says which path made it.

The forward pass runs under ``torch.no_grad`` in train mode, as a training step runs it (dropout
active, ``if self.training`` branches taken), except BatchNorm-like layers, which stay in eval
mode (same shapes, valid for 1×1 maps); modes, buffers and the RNG state are restored afterwards.

Memory. The fx path records each node as soon as it has run and drops its value after the
node's last reader, and the hooks path knows tensors by weak reference only, so tracing holds
about what the model's own forward holds (batch 100 costs little more than batch 1). Shapes are not taken from ``meta`` tensors: their kernels
do not always give the strides the CPU kernels give (scaled_dot_product_attention's output,
layer norm after a permute), and strides decide views, copies and so the pytorch convention.
"""

from __future__ import annotations

import collections
import dis
import functools
import inspect
import math
import sys
import weakref
from bisect import bisect_left

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx._symbolic_trace import _create_wrapped_func
from torch.overrides import TorchFunctionMode

from .errors import TraceError
from .graph import MAC_KINDS, LayerGraph, OpNode
from .blocks import BlockFinder, compile_block_pattern
from .kinds import INPLACE_FUNCTIONS, INPLACE_METHODS, TENSOR_ATTRIBUTE_KINDS, function_name
from .opinfo import (call_attrs, derive_unknown, einsum_index_sizes, functional_params,
                     is_param_slot, matmul_operand_copies, measure_saved,
                     measure_saved_remembered, mha_attrs,
                     substituted)
from .rules import REGISTRY, Registry
from .inputs import ModelInputs, as_inputs

def trace(model: nn.Module, input_shape=None, model_name: str = "model", tracer: str = "auto",
          rules: Registry | dict | None = None, blocks: str | None = None,
          inputs=None) -> LayerGraph:
    """Trace `model` on a zero input of `input_shape` (batch first), or called with `inputs`
    (any form `costmodel.inputs.as_inputs` takes: tensors, a dict, specs; `input_shape` may
    be one too). `tracer`: auto|fx|hooks
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
    inputs = as_inputs(inputs if inputs is not None else input_shape)
    input_shape = inputs.shape
    modes = {m: m.training for m in model.modules()}
    state = _TrainModeState(model)
    fallback = None
    try:
        arguments, defaults, given = _bind_inputs(model, inputs, model_name)
        if tracer in ("auto", "fx"):
            try:
                graph = _symbolic_trace(model, registry, defaults)
                return _FxGraphBuilder(model, graph, model_name, inputs, registry,
                                       block_pattern).build(arguments, given)
            except Exception as exc:  # fx raises many types for untraceable Python
                if tracer == "fx":
                    if isinstance(exc, TraceError):
                        raise
                    raise TraceError(f"torch.fx cannot trace {model_name}: {_one_line(exc)}") from None
                fallback = (f"torch.fx could not trace {model_name} ({_one_line(exc)}); "
                            "traced with the hooks tracer instead")
        graph = _HookGraphBuilder(model, model_name, inputs, registry,
                                  block_pattern).build(*given)
        if fallback:
            graph.warnings.append(fallback)
        return graph
    finally:
        for m, training in modes.items():
            if type(m).train is nn.Module.train:  # it sets the flag and recurses into
                m.training = training  # children, whose own flags follow in `modes`
            else:
                m.train(training)
        state.restore()


class _TrainModeState:
    """Puts a model in the mode a training step runs in, for the trace, and gives its state
    back afterwards. Train mode (dropout active, `if self.training` branches, the attention
    path PyTorch takes in training) except normalisation layers with running statistics,
    which stay in eval mode (same shapes, and valid on the 1×1 maps of a batch of one); the
    buffers and the RNG state a train-mode forward may change are restored."""

    def __init__(self, model: nn.Module):
        self.rng = torch.random.get_rng_state()
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.eval()

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, saved in self.buffers:
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
        torch.random.set_rng_state(self.rng)


class _LeafTracer(fx.Tracer):
    """fx stops at every module the registry prices as one operator (a subclass of a known
    layer included), not only at torch.nn's own classes."""

    def __init__(self, registry: Registry):
        # fx wraps every function of `math` (so that math.sqrt(proxy) is recorded) by
        # building 55 wrappers per trace, about a sixth of tracing a small model; the same
        # functions are wrapped here with wrappers built once (`_math_wrappers`).
        super().__init__(autowrap_modules=(),
                         autowrap_functions=tuple(o for o, _ in _math_wrappers().values()))
        self.registry = registry
        self.module_stack = _ModuleStack()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return self.registry.is_leaf(m) or super().is_leaf_module(m, module_qualified_name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        """fx's, with the arguments given to the node once fx has made it: fx's
        `Graph.create_node` first walks every argument looking for symbolic ints, which a
        trace of eager modules never holds (a tenth of tracing)."""
        if not (args or kwargs) or self.check_mutable_operations:
            return super().create_node(kind, target, args, kwargs, name, type_expr)
        node = super().create_node(kind, target, (), {}, name, type_expr)
        node._update_args_kwargs(args, kwargs)  # what fx.Node's constructor does with them
        return node

    def create_arg(self, a):
        """fx's, with a shortcut for what most arguments are (a proxy, a number, a tuple or
        list of them): fx first tests each one for being a parameter, buffer, module, constant
        or opaque object, none of which these can be; the result is the same."""
        kind = type(a)
        if kind in _PLAIN_ARGS:
            return a
        if kind is _Proxy or kind is _Attribute:
            return a.node
        if kind is tuple:
            return tuple(self.create_arg(item) for item in a)
        if kind is list:
            return [self.create_arg(item) for item in a]
        return super().create_arg(a)

    def trace(self, root, concrete_args=None):
        self.parameter_names = {id(p): n for n, p in root.named_parameters()} \
            if isinstance(root, nn.Module) else {}
        functions = vars(math)
        wrappers = {name: wrapper for name, (original, wrapper) in _math_wrappers().items()
                    if functions.get(name) is original}
        saved = {name: functions[name] for name in wrappers}
        functions.update(wrappers)
        try:
            return super().trace(root, concrete_args)
        finally:
            functions.update(saved)

    def getattr(self, attr: str, attr_val, parameter_proxy_cache: dict):
        """As fx's, which looks a parameter up by scanning all of the model's parameters
        at every attribute read (the scan is now one dict built per trace)."""
        name = self.parameter_names.get(id(attr_val)) \
            if isinstance(attr_val, nn.Parameter) else None
        if name is None:  # not a parameter of the model as it was when tracing began
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy(
                "get_attr", name, (), {},
                proxy_factory_fn=None if not self.param_shapes_constant else
                lambda node: fx.proxy.ParameterProxy(self, node, name, attr_val))
        return parameter_proxy_cache[name]


_PLAIN_ARGS = frozenset({int, float, bool, str, type(None)})


class _ModuleStack(collections.OrderedDict):
    """fx's stack of the modules being called, which fx copies into every node's meta;
    `copy.copy` of a plain OrderedDict goes through `__reduce_ex__` (slow)."""

    def __copy__(self):
        return _ModuleStack(self)


@functools.lru_cache(maxsize=1)
def _math_wrappers() -> dict:
    """{name: (math function, fx's wrapper of it)}, as fx's autowrap of `math` makes them."""
    return {name: (value, _create_wrapped_func(value)) for name, value in vars(math).items()
            if not name.startswith("_") and callable(value)}


def _bind_inputs(model: nn.Module, inputs: ModelInputs, model_name: str):
    """({forward's argument: value} of the inputs and the defaults, the defaults of those
    the inputs do not give, (positional, keyword) input tensors)."""
    args, kwargs = inputs.build(model_name)
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a C-implemented forward: nothing to bind
        return {}, {}, (args, kwargs)
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
    except TypeError as exc:
        takes = ", ".join(signature.parameters) or "no arguments"
        raise TraceError(f"{model_name}.forward does not take {inputs.text()}: "
                         f"{_one_line(exc)} (it takes {takes})") from None
    params = list(signature.parameters.values())
    defaults = {p.name: p.default for p in params
                if p.name not in given and p.default is not inspect.Parameter.empty}
    required = [p.name for p in params if p.name not in given
                and p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if required:
        raise TraceError(f"{model_name}.forward needs input(s) {', '.join(required)} that "
                         f"{inputs.text()} does not give: give every input (--input "
                         "name:dtype[shape], or inputs=)")
    return {**defaults, **given}, defaults, (args, kwargs)


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


def _symbolic_trace(model: nn.Module, registry: Registry, defaults: dict) -> fx.Graph:
    """fx's trace, with every argument of `forward` the inputs do not give fixed to its
    default. The graph's targets are paths in `model` itself: it runs on `model`, no
    `fx.GraphModule` is built (its code generation and compile took a tenth of a profile)."""
    tracer = _LeafTracer(registry)
    return tracer.trace(model, concrete_args=defaults or None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _run(fn, model_name, inputs: ModelInputs):
    try:
        with torch.no_grad():
            return fn()
    except (TraceError, _RecordingFailed):
        raise
    except Exception as exc:
        raise TraceError(f"{model_name} fails on {inputs.described()}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


class _Builder:
    """What both tracing paths share: turning a recorded call into an `OpNode`."""

    def __init__(self, model: nn.Module, model_name: str, inputs: ModelInputs,
                 registry: Registry, block_pattern=None):
        self.model = model
        self.registry = registry
        self.model_name = model_name
        self.inputs = inputs
        self.input_shape = inputs.shape
        self.nodes: dict[str, OpNode] = {}
        self.order: list[str] = []
        self.blocks = BlockFinder(model, registry, block_pattern)
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.param_calls: dict[str, int] = {}  # owner path -> calls priced so far
        self.probes: list = []  # (node name, fn, tensors, module): measured after the forward
        # Module paths name module calls; a function's node never takes one (a block profiled
        # on its own may call x.norm() and own a module named `norm`).
        self.modules = dict(model.named_modules())  # path -> module (the first path of a shared one)
        self.module_paths = set(self.modules)
        self.counted_params: set[str] = set()  # parameter names some node already owns
        self.derived: dict[str, dict] = {}  # node name -> what an op without a rule costs

    def fresh_name(self, name: str) -> str:
        """`name`, or `name_k`, whichever no node and no module path holds yet."""
        base, k = name, 1
        while name in self.nodes or name in self.module_paths:
            name = f"{base}_{k}"
            k += 1
        return name

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
            elif sum(a is tensors[0] for a in args) == 2:
                attrs["operands_same"] = True  # x @ x: one graph input, both operands
        if kind == "einsum" and attrs.get("equation"):
            operands = [a for a in _flat(args[1:]) if isinstance(a, torch.Tensor)]
            attrs["index_sizes"] = einsum_index_sizes(attrs["equation"], operands)
            if len(operands) == len(tensors):
                equation = attrs["equation"]
                self.probes.append((name, lambda *ts: torch.einsum(equation, *ts), tensors, None))
        if kind == "pow" and (args and not isinstance(args[0], torch.Tensor)
                              or function_name(target) == "__rpow__"):
            attrs["scalar_base"] = True  # 2 ** x: PowBackward2 keeps x and the result
        elif kind == "pow" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            attrs["tensor_exponent"] = True  # x ** y (y may be x: one graph input)
        if kind == "getitem" and len(tensors) > 1:
            # Indexing with a tensor (x[idx], x[rows, lengths]): IndexBackward0 keeps the
            # indices it used (or made from a mask), measured on the call.
            self.probes.append((name, substituted(target, args, kwargs, tensors), tensors,
                                None))
        if kind == "sdpa":
            operands = [kwargs.get(k, args[i] if len(args) > i else None)
                        for i, k in enumerate(("query", "key", "value"))]
            if all(isinstance(t, torch.Tensor) for t in operands):
                ids = [id(t) for t in tensors]
                attrs["qkv_shapes"] = [list(t.shape) for t in operands]
                attrs["qkv_inputs"] = [ids.index(id(t)) if id(t) in ids else None
                                       for t in operands]
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            attrs["attn_mask"] = isinstance(mask, torch.Tensor)
            if attrs.get("dropout_p") or attrs["attn_mask"]:
                # The math path (dropout, a mask): what it keeps is measured on the call.
                self.probes.append((name, substituted(target, args, kwargs, tensors), tensors,
                                    None))
        if found is None:
            return (None, None, []), None
        weight, bias, owner, names = found
        attrs["param_names"] = names
        return (weight, bias, []), owner

    def _probe_module_call(self, name, module, args, kwargs, tensors, attrs) -> None:
        """nn.MultiheadAttention: its shapes, and what it keeps measured on the call as
        made (q, k, v the same tensor or not, need_weights, masks)."""
        attrs.update(mha_attrs(module, args, kwargs))
        distinct = list({id(t): t for t in tensors if isinstance(t, torch.Tensor)}.values())
        self.probes.append((name, lambda m, *leaves: substituted(m, args, kwargs, distinct)(
            *leaves), distinct, module))

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
        owned = [n for names in (attrs.get("param_names") or {}).values() for n in names]
        if owned and all(n in self.counted_params for n in owned):
            attrs["repeat_call"] = True  # tied weights (an LM head reading the embedding's)
        self.counted_params.update(owned)
        weight, bias, others = params
        weight_shape = tuple(weight.shape) if weight is not None else None
        if kind == "addmm" and weight is not None:
            # addmm(b, x, W), W in × out (GPT-2's Conv1D): a linear layer, weight transposed.
            kind, weight_shape = "linear", weight_shape[::-1]
            attrs["weight_transposed"] = True
        node = OpNode(
            name=name, kind=kind, op=op, module=module_path, block=self.block_of(scope),
            inputs=list(inputs), in_shapes=[tuple(t.shape) for t in in_tensors],
            out_shape=out_shape, dtype_bytes=dtype_bytes,
            weight_shape=weight_shape,
            bias_numel=bias.numel() if bias is not None else 0,
            other_param_numel=sum(p.numel() for p in others), attrs=attrs)
        self.nodes[name] = node
        self.order.append(name)

    def derive(self, name, call, args, kwargs, tensors) -> None:
        """An operator without a rule: priced from its own call, measured at once (so its
        inputs are not held past their last use)."""
        derived = derive_unknown(substituted(call, args, kwargs, tensors), tensors)
        if derived is not None:
            self.derived[name] = derived

    def finish(self, tracer_name: str, output_names) -> LayerGraph:
        for name, fn, tensors, module in self.probes:
            measure = measure_saved_remembered if fn is _call_module else measure_saved
            self.nodes[name].attrs["measured_saved"] = measure(fn, tensors, module)
        for name, derived in self.derived.items():
            if self.nodes[name].kind == "unknown":
                self.nodes[name].kind = "derived"
                self.nodes[name].attrs.update(derived)
        unknown = [f"{n.name} ({n.op})" for n in self.nodes.values() if n.kind == "unknown"]
        declared = None
        if getattr(self.model, "ttplan_blocks", None):  # zoo models list their blocks' convs
            declared = [self.block_of(convs[0]) for convs in self.model.ttplan_blocks]
        else:
            with_macs = dict.fromkeys(n.block for n in self.nodes.values()
                                      if n.block and n.kind in MAC_KINDS)
            declared = self.blocks.counted_blocks(list(with_macs))
        graph = LayerGraph(self.model_name, self.input_shape, tracer_name, self.nodes,
                           self.order, "x", list(output_names), unknown, declared, self.registry)
        if not self.inputs.is_image_shorthand:  # the shorthand's graphs stay as they were
            graph.input_specs = self.inputs.to_json()
        return graph

    def add_input(self, index: int, spec_name: str | None, tensor: torch.Tensor) -> str:
        """The graph node of one model input: "x" for the first, "x:<argument>" for others."""
        name = "x" if index == 0 else f"x:{spec_name or index}"
        self.nodes[name] = OpNode(name, "input", "input", None, "", [], [],
                                  tuple(tensor.shape), tensor.element_size())
        self.order.append(name)
        return name


def module_params(module: nn.Module):
    """(weight, bias, other parameters) owned directly by `module`. A recurrent layer's
    weight_ih/hh_l* count as its weight and its bias_* as its bias (flattened)."""
    if isinstance(module, nn.MultiheadAttention):  # its out_proj is never called on its own
        slots = _mha_slots(module)
        return (_flat_meta(slots["weight"]), _flat_meta(slots["bias"]), slots["other"])
    own = dict(module.named_parameters(recurse=False))
    weight, bias = own.pop("weight", None), own.pop("bias", None)
    if weight is None and isinstance(module, nn.RNNBase):
        weights = [p for n, p in own.items() if n.startswith("weight")]
        biases = [p for n, p in own.items() if n.startswith("bias")]
        weight = torch.empty(sum(p.numel() for p in weights), device="meta") if weights else None
        bias = torch.empty(sum(p.numel() for p in biases), device="meta") if biases else None
        own = {n: p for n, p in own.items() if not n.startswith(("weight", "bias"))}
    return weight, bias, list(own.values())


def _mha_slots(module: nn.Module) -> dict:
    """nn.MultiheadAttention's parameters: the projection weights (in_proj or q/k/v_proj, and
    out_proj.weight) train as its weight, in_proj_bias and out_proj.bias as its bias;
    bias_k / bias_v are other parameters."""
    slots = {"weight": [], "bias": [], "other": [], "names": {"weight": [], "bias": []}}
    for n, p in module.named_parameters():
        slot = "weight" if n.endswith("weight") else "bias" if n.endswith(
            ("in_proj_bias", "out_proj.bias")) else "other"
        slots[slot].append(p)
        if slot != "other":
            slots["names"][slot].append(n)
    return slots


def _flat_meta(params):
    """Several parameter tensors counted as one flat one (shape only)."""
    return torch.empty(sum(p.numel() for p in params), device="meta") if params else None


def param_names_of(module: nn.Module, path: str) -> dict:
    """{"weight": [names], "bias": [names]} of the parameters a module call trains."""
    if isinstance(module, nn.MultiheadAttention):
        own = _mha_slots(module)["names"]
        return {k: [f"{path}.{n}" if path else n for n in v] for k, v in own.items()}
    names = {"weight": [], "bias": []}
    for n, _ in module.named_parameters(recurse=False):
        slot = "weight" if n.startswith("weight") else "bias" if n.startswith("bias") else None
        if slot:
            names[slot].append(f"{path}.{n}" if path else n)
    return names


# Module attributes kept as node attributes (the cost rules read them).
_MODULE_ATTRS = ("groups", "stride", "kernel_size", "padding", "dilation", "in_channels",
                 "out_channels", "in_features", "out_features", "num_features", "affine",
                 "inplace", "p", "output_size", "num_groups", "track_running_stats",
                 "normalized_shape", "drop_prob", "hidden_size", "num_layers",
                 "bidirectional", "batch_first", "approximate")


def module_attrs(module: nn.Module) -> dict:
    attrs = {}
    for key in _present_attrs(module):
        value = getattr(module, key)
        attrs[key] = list(value) if isinstance(value, tuple) else value
    return attrs


def _present_attrs(module: nn.Module) -> list[str]:
    """The keys of `_MODULE_ATTRS` that `hasattr(module, key)` finds, without asking
    `nn.Module.__getattr__` about each one that is not there (it raises a Python
    AttributeError: most of a module call's recording time)."""
    cls = type(module)
    if cls.__getattr__ is not nn.Module.__getattr__ or \
            cls.__getattribute__ is not object.__getattribute__:
        return [key for key in _MODULE_ATTRS if hasattr(module, key)]
    on_class = _CLASS_ATTRS.get(cls)
    if on_class is None:
        on_class = _CLASS_ATTRS[cls] = frozenset(k for k in _MODULE_ATTRS if hasattr(cls, k))
    own = module.__dict__
    return [key for key in _MODULE_ATTRS
            if key in own or key in module._parameters or key in module._buffers
            or key in module._modules
            or key in on_class and hasattr(module, key)]  # a property may still raise


_CLASS_ATTRS: dict[type, frozenset] = {}  # module class -> the keys its class defines


class _FxGraphBuilder(_Builder):
    def __init__(self, model, graph: fx.Graph, model_name, inputs, registry,
                 block_pattern=None):
        super().__init__(model, model_name, inputs, registry, block_pattern)
        self.graph = graph

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
                           and any(v is t for t in _flat(self.given))}
        interp = _RecordingInterpreter(self.model, self.graph, self.values, self.record,
                                       self.modules)
        try:
            _run(lambda: interp.run(*values), self.model_name, self.inputs)
        except _RecordingFailed as failed:  # ttplan's own error, not the model's
            raise failed.original from None
        return self.finish("fx", self.outputs)

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
            return
        tensor_args = [a for a in node.all_input_nodes
                       if a in names and _holds_tensor(values.get(a))]
        if not _holds_tensor(out):
            return  # shapes, sizes, getattr of non-tensors: not tensor operators
        attrs: dict = {}
        tensors = [values[a] for a in tensor_args]
        if node.op == "call_module":
            module = self.modules.get(node.target)
            if module is None:
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
            elif kind == "unknown":  # a torch.nn module without a rule (Mish, ELU …): derived
                self.derive(name, module, args, kwargs, tensors)
            if kind == "rnn":
                self.probes.append((name, _call_module, [_first_tensor(t) for t in tensors[:1]],
                                    module))
            elif kind == "mha":
                self._probe_module_call(name, module, args, kwargs, tensors, attrs)
        else:
            kind, op = self.registry.function_kind(node.target), function_name(node.target)
            if node.target is getattr:
                kind = TENSOR_ATTRIBUTE_KINDS.get(node.args[1], "unknown")
                op = f"getattr {node.args[1]}"
            stack = node.meta.get("nn_module_stack") or {}
            scope = list(stack.values())[-1][0] if stack else ""
            scope = scope if isinstance(scope, str) else ""
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
        self.add(name, kind, op, owner if node.op == "call_module" or
                 attrs.get("param_names") else None, scope,
                 [names[a] for a in tensor_args], tensors, out, params, attrs)
        names[node] = name
        if kind == "unknown" and node.op in ("call_function", "call_method") \
                and node.target is not getattr:
            call = node.target if node.op == "call_function" else _method(node.target)
            self.derive(name, call, args, kwargs, tensors)


def _default_of(placeholder: fx.Node):
    return placeholder.args[0] if placeholder.args else None


def _holds_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) or isinstance(value, (tuple, list)) and any(
        isinstance(t, torch.Tensor) for t in _flat(value))


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


def _call_module(module, *tensors):
    return module(*tensors)


def _method(name: str):
    """A tensor method as a function of (self, *args)."""
    return lambda self, *args, **kwargs: getattr(self, name)(*args, **kwargs)


class _RecordingInterpreter:
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
                kwargs = fx.node.map_arg(node.kwargs, load)
                result = self._execute(node, args, kwargs, remaining)
            except Exception as exc:
                _reword_as_fx(exc, node)
                raise
            values[node] = result
            try:
                record(node, result, args, kwargs)
            except Exception as exc:
                raise _RecordingFailed(exc) from exc
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


class _RecordingFailed(Exception):
    """Recording a node (ttplan's code, not the model's) raised `original`."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class _HookGraphBuilder(_Builder):
    """Fallback: module hooks for modules, a TorchFunctionMode for functions between them."""

    def build(self, args: tuple, kwargs: dict) -> LayerGraph:
        producer = _Producers()
        for i, (key, t) in enumerate(_named_arguments(self.model, args, kwargs)):
            producer[t] = self.add_input(i, key, t)
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

        buffers = {id(b) for b in self.model.buffers()}

        def known(t, scope) -> bool:
            """Produced by the graph, or a tensor the forward made from no input (torch.ones,
            arange … as fx records them): a constant node. Buffers are model state."""
            if produced(t):
                return True
            if id(t) in buffers:
                return False
            const = builder.fresh_name("constant")
            builder.add(const, "constant", "constant", None, scope, [], [], t,
                        (None, None, []), {})
            producer[t] = const
            return True

        def record(name, kind, op, module_path, scope, args, out, params, attrs, skip=()):
            tensors = [a for a in _flat(args) if isinstance(a, torch.Tensor)
                       and all(a is not s for s in skip) and known(a, scope)]
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

        def post_hook(module, args, kwargs, out):
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
            tensors = record(name, kind, type(module).__name__, path, path,
                             (args, kwargs) if kind == "mha" else args, out,
                             module_params(module), attrs)
            if kind == "rnn":
                builder.probes.append((name, _call_module, tensors[:1], module))
            elif kind == "mha":
                builder._probe_module_call(name, module, args, kwargs, tensors, attrs)

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
                scope = stack[-1][0] if stack else ""
                tensors = [a for a in tensors if known(a, scope)]  # as `record` will
                name_ = getattr(func, "__name__", str(func))
                kind = builder.registry.function_kind(func)
                if name_ == "__get__":  # a tensor property: x.T, x.mT (x.shape is not one)
                    name_ = getattr(getattr(func, "__self__", None), "__name__", name_)
                    kind = TENSOR_ATTRIBUTE_KINDS.get(name_, "unknown")
                elif kind == "unknown":
                    kind = builder.registry.function_kind(name_)
                count = calls.get(name_, 0)
                calls[name_] = count + 1
                name = builder.fresh_name(f"{name_}_{count}" if count else name_)
                attrs = {"inplace": True} if name_ in INPLACE_METHODS else {}
                if kind == "hardtanh" and name_.startswith("clamp"):
                    attrs["clamp_args"] = [a for a in args[1:] if isinstance(a, (int, float))]
                params, owner = builder.call_details(kind, func, args, kwargs, tensors, out,
                                                     attrs, name)
                if owner is not None:
                    name, repeat = builder.node_name(owner)
                    if repeat:
                        attrs["repeat_call"] = True
                inputs = record(name, kind, name_, owner, stack[-1][0] if stack else "",
                                (args, kwargs), out, params, attrs, tuple(slots))
                if kind == "unknown" and name_ != "__get__":
                    builder.derive(name, func, args, kwargs, inputs)
                return out

        handles = []
        for module in self.model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
        try:
            def go():
                with FunctionRecorder():
                    return self.model(*args, **kwargs)
            out = _run(go, self.model_name, self.inputs)
        finally:
            for h in handles:
                h.remove()
        outputs = [producer[t] for t in _flat(out)
                   if isinstance(t, torch.Tensor) and t in producer]
        return self.finish("hooks", outputs)


def _named_arguments(model: nn.Module, args: tuple, kwargs: dict) -> list:
    """[(forward's argument name, tensor)] of the inputs, as the fx path names them."""
    try:
        bound = inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments
        named = [(k, v) for k, v in bound.items() if isinstance(v, torch.Tensor)]
        if len(named) == len(args) + len(kwargs):
            return named
    except (TypeError, ValueError):
        pass
    return [(None, a) for a in args] + list(kwargs.items())


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
