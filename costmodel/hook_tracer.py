"""The second tracing path, for models fx cannot trace (data-dependent control flow,
unsupported Python): the model runs once with forward hooks on every module and a
``TorchFunctionMode`` that sees the functions called between modules (``+``, ``torch.cat``,
``flatten`` …). Tensors are known by weak reference only, so intermediates are freed as the
forward drops them.
"""

from __future__ import annotations

import inspect
import weakref

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .graph import LayerGraph
from .graph_builder import (WHOLE_CALL_PROBED_KINDS, GraphBuilder, call_module, flat,
                            holds_tensor, pool_indices, run_forward)
from .kinds import INPLACE_METHODS, TENSOR_ATTRIBUTE_KINDS
from .module_calls import module_attrs, module_params, param_names_of
from .opinfo import functional_params


class HookGraphBuilder(GraphBuilder):
    """Fallback: module hooks for modules, a TorchFunctionMode for functions between them."""

    def build(self, args: tuple, kwargs: dict) -> LayerGraph:
        recording = _HookRecording(self)
        for i, (key, t) in enumerate(_named_arguments(self.model, args, kwargs)):
            recording.producer[t] = self.add_input(i, key, t)
        out = recording.run(args, kwargs)
        outputs = [recording.producer[t] for t in flat(out)
                   if isinstance(t, torch.Tensor) and t in recording.producer]
        return self.finish("hooks", outputs)


class _HookRecording:
    """One hooks-path forward: which node made each tensor, the module calls under way, and
    the steps that turn a module call (`post_hook`) or a function call between modules
    (`function_call`) into graph nodes on `builder`."""

    def __init__(self, builder: HookGraphBuilder):
        self.builder = builder
        self.producer = _Producers()
        self.stack: list[tuple[str, bool]] = []  # (module path, recorded as one operator?)
        self.leaf_depth = 0  # > 0 inside an operator: what runs there is part of it
        self.calls: dict[str, int] = {}
        self.paths = {m: p for p, m in builder.model.named_modules()}
        self.buffers = {id(b) for b in builder.model.buffers()}

    def run(self, args: tuple, kwargs: dict):
        """The model's forward with the hooks and the function recorder in place."""
        model = self.builder.model
        handles = []
        for module in model.modules():
            # first: what a module's own pre-hooks run (torch.nn.utils.weight_norm's weight)
            # is part of its call
            handles.append(module.register_forward_pre_hook(self.pre_hook, prepend=True))
            handles.append(module.register_forward_hook(self.post_hook, with_kwargs=True))
        try:
            def go():
                with _FunctionRecorder(self):
                    return model(*args, **kwargs)
            return run_forward(go, self.builder.model_name, self.builder.inputs)
        finally:
            for h in handles:
                h.remove()

    def produced(self, t) -> bool:
        if t in self.producer:
            return True
        builder = self.builder
        if isinstance(t, nn.Parameter) and id(t) in builder.param_names:
            self.producer[t] = builder.add_parameter(t, t)  # a free parameter, first use
            return True
        return False

    def known(self, t, scope) -> bool:
        """Produced by the graph, or a tensor the forward made from no input (torch.ones,
        arange … as fx records them): a constant node. Buffers and views of the model's own
        tensors (a causal mask sliced from a buffer) are model state."""
        if self.produced(t):
            return True
        if id(t) in self.buffers or \
                t.untyped_storage().data_ptr() in self.builder.owned_storages():
            return False
        const = self.builder.fresh_name("constant")
        self.builder._add_node(const, "constant", "constant", None, scope, [], [], t,
                               (None, None, []), {})
        self.producer[t] = const
        return True

    def record(self, name, kind, op, module_path, scope, args, out, params, attrs, skip=()):
        """The node `name` and, for a tuple output, one getitem node per element; the
        input tensors it was recorded with."""
        builder, producer = self.builder, self.producer
        tensors = [a for a in flat(args) if isinstance(a, torch.Tensor)
                   and all(a is not s for s in skip) and self.known(a, scope)]
        builder._add_node(name, kind, op, module_path, scope,
                          [producer[t] for t in tensors], tensors, out, params, attrs)
        outs = [t for t in flat(out) if isinstance(t, torch.Tensor)]
        if isinstance(out, (tuple, list)) and outs:
            for i, t in enumerate(outs):  # each output of a tuple on its own
                builder._add_node(f"{name}.{i}", "getitem", "getitem", None, scope, [name],
                                  [outs[0]], t, (None, None, []),
                                  {"pool_indices": True} if pool_indices(kind, i) else {})
                producer[t] = f"{name}.{i}"
            return tensors
        for t in outs:
            producer[t] = name
        return tensors

    def pre_hook(self, module, args):
        # A module the registry prices is one operator; any other is traced into.
        leaf = self.leaf_depth == 0 and self.builder.registry.is_leaf(module)
        self.stack.append((self.paths.get(module, "?"), leaf))
        if leaf or self.leaf_depth:
            self.leaf_depth += 1

    def post_hook(self, module, args, kwargs, out):
        path, leaf = self.stack.pop()
        if not leaf:
            if self.leaf_depth:
                self.leaf_depth -= 1
            return
        try:  # still inside the call: reading a parametrized weight runs no operator of ours
            self._record_module_call(module, path, args, kwargs, out)
        finally:
            self.leaf_depth -= 1

    def _record_module_call(self, module, path, args, kwargs, out):
        builder = self.builder
        count = self.calls.get(path, 0)
        self.calls[path] = count + 1
        name = path if count == 0 else f"{path}#{count + 1}"
        attrs = module_attrs(module)
        attrs["param_names"] = param_names_of(module, path)
        if count:
            attrs["repeat_call"] = True  # shared weights: parameters counted once
        kind = builder.registry.module_kind(module)
        tensors = self.record(name, kind, type(module).__name__, path, path,
                              (args, kwargs) if kind in WHOLE_CALL_PROBED_KINDS else args, out,
                              module_params(module), attrs)
        if kind == "rnn":
            builder.probes.append((name, call_module, tensors[:1], module))
        elif kind in WHOLE_CALL_PROBED_KINDS:
            builder._probe_module_call(name, module, args, kwargs, tensors, attrs)

    def function_call(self, func, args: tuple, kwargs: dict, out) -> None:
        """A function called between modules, recorded when it takes a graph tensor."""
        builder = self.builder
        if self.leaf_depth or not holds_tensor(out):
            return  # inside an operator, or a shape/size: not an operator
        found = functional_params(func, args, kwargs, builder.param_names)
        slots = [p for p in (found[:2] if found else ()) if p is not None]
        tensors = [a for a in flat((args, kwargs)) if isinstance(a, torch.Tensor)
                   and all(a is not p for p in slots)]
        if not any([self.produced(a) for a in tensors]):  # registers free parameters
            return
        scope = self.stack[-1][0] if self.stack else ""
        tensors = [a for a in tensors if self.known(a, scope)]  # as `record` will
        name_, kind = self._function_kind(func)
        count = self.calls.get(name_, 0)
        self.calls[name_] = count + 1
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
        inputs = self.record(name, kind, name_, owner, self.stack[-1][0] if self.stack else "",
                             (args, kwargs), out, params, attrs, tuple(slots))
        if kind == "unknown" and name_ != "__get__":
            builder.derive(name, func, args, kwargs, inputs)

    def _function_kind(self, func) -> tuple[str, str]:
        """(the function's name, its operator kind)."""
        registry = self.builder.registry
        name_ = getattr(func, "__name__", str(func))
        kind = registry.function_kind(func)
        if name_ == "__get__":  # a tensor property: x.T, x.mT (x.shape is not one)
            name_ = getattr(getattr(func, "__self__", None), "__name__", name_)
            kind = TENSOR_ATTRIBUTE_KINDS.get(name_, "unknown")
        elif kind == "unknown":
            kind = registry.function_kind(name_)
        return name_, kind


class _FunctionRecorder(TorchFunctionMode):
    """Runs each torch function, then hands the call to the recording."""

    def __init__(self, recording: _HookRecording):
        super().__init__()
        self.recording = recording

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.recording.function_call(func, args, kwargs, out)
        return out


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
