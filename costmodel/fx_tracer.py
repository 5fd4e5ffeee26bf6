"""The first tracing path's first half: ``torch.fx`` symbolic tracing of the model into an
``fx.Graph`` whose targets are paths in the model itself (no ``fx.GraphModule`` is built).

`LeafTracer` is fx's tracer stopping at every module the registry prices as one operator,
with fx's slowest steps done the same way for less: parameters looked up by id, `math`'s
wrappers built once, common arguments and node arguments passed through without fx's generic
checks, unpacking decided from a disassembly cached per function. The graphs are the ones a
plain ``fx.Tracer`` with the same leaves makes. `costmodel.fx_builder` runs them.
"""

from __future__ import annotations

import collections
import copy
import dis
import functools
import inspect
import logging
import math
import sys
from bisect import bisect_left
from types import FunctionType

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx import _symbolic_trace as fx_trace
from torch.fx import traceback as fx_traceback
from torch.fx._symbolic_trace import _create_wrapped_func

from .fx_calls import (ORIGINAL_CALL_IMPL, TRACED_TO_CLASS, collect_tensor_attrs,
                       parameter_reads_traced, traceable_without_class_patches)
from .errors import TraceError
from .rules import Registry


def symbolic_trace(model: nn.Module, registry: Registry, defaults: dict,
                   parameter_names: dict[int, str] | None = None,
                   named_modules: list | None = None) -> fx.Graph:
    """fx's trace, with every argument of `forward` the inputs do not give fixed to its
    default. The graph's targets are paths in `model` itself: it runs on `model`, no
    `fx.GraphModule` is built (its code generation and compile took a tenth of a profile)."""
    tracer = LeafTracer(registry, parameter_names, named_modules)
    return tracer.trace(model, concrete_args=defaults or None)


class LeafTracer(fx.Tracer):
    """fx stops at every module the registry prices as one operator (a subclass of a known
    layer included), not only at torch.nn's own classes."""

    def __init__(self, registry: Registry, parameter_names: dict[int, str] | None = None,
                 named_modules: list | None = None):
        # fx wraps every function of `math` (so that math.sqrt(proxy) is recorded) by
        # building 55 wrappers per trace, about a sixth of tracing a small model; the same
        # functions are wrapped here with wrappers built once (`_math_wrappers`).
        super().__init__(autowrap_modules=(),
                         autowrap_functions=tuple(o for o, _ in _math_wrappers().values()))
        self.registry = registry
        self.given_parameter_names = parameter_names  # {id: name} of `root`'s, if known
        self.given_named_modules = named_modules  # list(root.named_modules()), if known
        self._target_names: dict = {}  # node target -> fx's name for it (this trace)
        self._leaf_classes: dict = {}  # class -> "rule", True (torch.nn, no rule) or False
        self._stack_copy = None  # the copy of `module_stack` the latest nodes share
        self.module_stack = _ModuleStack()
        self.scope = _Scope("", None)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # The class decides (its MRO, forward, name, __module__): asked once per class per
        # trace. fx takes every torch.nn module for one operator; one without a rule stays
        # one (derived from its call: nn.ELU, nn.Mish) only when it holds no parameters and
        # no modules; any other is traced into, to what it calls (nn.TransformerEncoderLayer's
        # layers, nn.RMSNorm's weight and F.rms_norm), as the hooks tracer does.
        cls = type(m)
        leaf = self._leaf_classes.get(cls)
        if leaf is None:
            leaf = self._leaf_classes[cls] = "rule" if self.registry.is_leaf(m) else \
                bool(super().is_leaf_module(m, module_qualified_name))
        if leaf is True:  # a torch.nn module without a rule: this one's contents decide
            return not m._modules and not any(p is not None for p in m._parameters.values())
        return bool(leaf)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        """fx's, without its per-call helper objects: the scope is set to the module and
        given back on the way out (fx builds a `Scope`, a `ScopeContextManager` and a copy of
        the scope for that at every module call); module stack, call counts, leaf test and
        node are fx's."""
        path = self.path_of_module(m)
        cls = type(m)
        cls = TRACED_TO_CLASS.get(cls, cls)  # the module's own class (see `_trace_module`)
        scope = self.scope
        outer_path, outer_type = scope.module_path, scope.module_type
        scope.module_path, scope.module_type = path, cls
        try:
            calls = self.num_calls.get(path, 0)
            key = f"{path}@{calls}" if calls > 0 else path
            self.module_stack[key] = (path, cls)
            self._stack_copy = None  # the stack changed: the next node copies it anew
            self.num_calls[path] = calls + 1
            if not self.is_leaf_module(m, path):
                result = forward(*args, **kwargs)
            else:
                result = self.create_proxy("call_module", path, args, kwargs)
            popped, _ = self.module_stack.popitem(last=True)
            self._stack_copy = None
            if popped != key:
                raise AssertionError(f"Unexpected key {popped}, expected {key}")
        finally:
            scope.module_path, scope.module_type = outer_path, outer_type
        return result

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        """fx's, with the arguments given to the node once fx has made it: fx's
        `Graph.create_node` first walks every argument looking for symbolic ints, which a
        trace of eager modules never holds (a tenth of tracing). The name fx derives from
        the target (`Graph._target_to_str`: a regular expression per node) is derived once
        per target per trace and handed to fx as the candidate it would have made."""
        if torch.is_autocast_enabled("cpu"):  # fx records no autocast region: it is lost
            raise TraceError("an autocast region (torch.autocast) is followed by the hooks "
                             "tracer only")
        if name is None:
            try:
                name = self._target_names.get(target)
                if name is None:
                    name = self._target_names[target] = self.graph._target_to_str(target)
            except TypeError:  # an unhashable target: fx names it itself
                name = None
        if self.check_mutable_operations or self.record_stack_traces or \
                fx_traceback.has_preserved_node_meta() or _FX_LOG.isEnabledFor(logging.DEBUG):
            return super().create_node(kind, target, args, kwargs, name, type_expr)
        # What fx's `TracerBase.create_node` does in this case (no preserved meta, no stack
        # traces, no debug log), with the module stack copied by its own `__copy__`
        # (`copy.copy` dispatches through the copy module first).
        if args or kwargs:
            node = self.graph.create_node(kind, target, (), {}, name, type_expr)
            node._update_args_kwargs(args, kwargs)  # what fx.Node's constructor does with them
        else:
            node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        scope = self.scope
        self.node_name_to_scope[node.name] = (scope.module_path, scope.module_type)
        stack = self.module_stack
        if stack:
            # Nodes made while the same modules are being called get one copy between them
            # (nothing writes to a node's stack), not a copy each.
            shared = self._stack_copy
            if shared is None:
                shared = self._stack_copy = stack.__copy__() if type(stack) is _ModuleStack \
                    else copy.copy(stack)
            node.meta["nn_module_stack"] = shared
        return node

    def create_arg(self, a):
        """fx's, with a shortcut for what most arguments are (a proxy, a number, a dtype, a
        tuple, list, slice or keyword dict of them): fx first tests each one for being a
        parameter, buffer, module, constant or opaque object, none of which these can be;
        the result is the same."""
        kind = type(a)
        if kind in _PLAIN_ARGS:
            return a
        if kind is _Proxy or kind is _Attribute:
            return a.node
        if kind is tuple:
            return tuple([self.create_arg(item) for item in a])
        if kind is list:
            return [self.create_arg(item) for item in a]
        if kind is dict and all(type(k) is str for k in a):
            return {k: self.create_arg(v) for k, v in a.items()}
        if kind is slice:
            return slice(self.create_arg(a.start), self.create_arg(a.stop),
                         self.create_arg(a.step))
        return super().create_arg(a)

    def trace(self, root, concrete_args=None):
        self._target_names = {}
        self._leaf_classes = {}
        self._stack_copy = None
        if not isinstance(root, nn.Module):
            self.parameter_names = {}
        elif self.given_parameter_names is not None:
            self.parameter_names = self.given_parameter_names
        else:
            self.parameter_names = {id(p): n for n, p in root.named_parameters()}
        functions = vars(math)
        wrappers = {name: wrapper for name, (original, wrapper) in _math_wrappers().items()
                    if functions.get(name) is original}
        saved = {name: functions[name] for name in wrappers}
        functions.update(wrappers)
        try:
            named_modules = None
            if isinstance(root, nn.Module):
                named_modules = self.given_named_modules
                if named_modules is None:
                    named_modules = list(root.named_modules())
            if named_modules is not None and traceable_without_class_patches(named_modules):
                return self._trace_module(root, concrete_args, named_modules)
            return super().trace(root, concrete_args)
        finally:
            functions.update(saved)

    def _trace_module(self, root: nn.Module, concrete_args, named_modules: list):
        """fx's `Tracer.trace` of a module, step for step, except how module calls and
        parameter reads are caught (`costmodel.fx_calls`: no special method of nn.Module is
        set). The same calls reach `call_module` and `getattr` with the same arguments, so
        the graph is fx's."""
        old_flag = fx_trace._is_fx_tracing_flag
        fx_trace._is_fx_tracing_flag = True
        try:
            from torch.fx._lazy_graph_module import _LazyGraphModule
            _LazyGraphModule.force_recompile(root)
            self.root = root
            if not hasattr(type(root), self.traced_func_name):
                raise AssertionError(f"traced_func_name={self.traced_func_name} doesn't exist "
                                     f"in {type(root).__name__}")
            fn = getattr(type(root), self.traced_func_name)
            self.root_module_name = root._get_name()
            self.submodule_paths = {mod: name for name, mod in named_modules}
            self.graph = fx.Graph(tracer_cls=type(self))
            if hasattr(fn, "__code__"):
                code = fn.__code__
                self.graph._co_fields = {"co_name": code.co_name,
                                         "co_filename": code.co_filename,
                                         "co_firstlineno": code.co_firstlineno}
            self.tensor_attrs = {}
            collect_tensor_attrs(root, [], self.tensor_attrs)
            if not isinstance(fn, FunctionType):
                raise AssertionError(f"Expected FunctionType, got {type(fn)}")
            fn_globals = fn.__globals__
            fn, args = self.create_args_for_root(fn, True, concrete_args)
            parameter_proxy_cache: dict = {}
            tracer = self

            def call_impl_wrapper(mod, *args, **kwargs):  # fx's module_call_wrapper
                def forward(*args, **kwargs):
                    return ORIGINAL_CALL_IMPL(mod, *args, **kwargs)

                fx_trace._autowrap_check(
                    patcher, getattr(getattr(mod, "forward", mod), "__globals__", {}),
                    tracer._autowrap_function_ids)
                return tracer.call_module(mod, forward, args, kwargs)

            with fx_trace._new_patcher() as patcher:
                patcher.patch_method(nn.Module, "_call_impl", call_impl_wrapper,
                                     deduplicate=False)
                fx_trace._patch_wrapped_functions(patcher)
                fx_trace._autowrap_check(patcher, fn_globals, self._autowrap_function_ids)
                for module in self._autowrap_search:
                    fx_trace._autowrap_check(patcher, module.__dict__,
                                             self._autowrap_function_ids)
                with parameter_reads_traced(named_modules, self, parameter_proxy_cache):
                    ann = inspect.get_annotations(inspect.unwrap(fn))
                    self.create_node("output", "output", (self.create_arg(fn(*args)),), {},
                                     type_expr=ann.get("return", None))
            self.submodule_paths = None
        except RuntimeError as e:
            if e.args and isinstance(e.args[0], str) and "data-dependent" in e.args[0]:
                e.partial_fx_graph = self.graph.python_code(root_module="self",
                                                            verbose=True).src
            raise
        finally:
            fx_trace._is_fx_tracing_flag = old_flag
        return self.graph

    def getattr(self, attr: str, attr_val, parameter_proxy_cache: dict):
        """As fx's, which looks a parameter up by scanning all of the model's parameters
        at every attribute read (the scan is now one dict built per trace)."""
        name = self.parameter_names.get(id(attr_val))  # only the model's parameters are keys
        if name is None:  # not a parameter of the model as it was when tracing began
            if not isinstance(attr_val, torch.Tensor):
                return attr_val  # fx too: only a tensor can become a proxy here
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy(
                "get_attr", name, (), {},
                proxy_factory_fn=None if not self.param_shapes_constant else
                lambda node: fx.proxy.ParameterProxy(self, node, name, attr_val))
        return parameter_proxy_cache[name]


_FX_LOG = logging.getLogger("torch.fx.proxy")  # fx logs every node it makes at DEBUG

_PLAIN_ARGS = frozenset({int, float, bool, complex, str, type(None), type(...), torch.dtype,
                         torch.device, torch.memory_format, torch.layout})


class _Scope(fx.proxy.Scope):
    """fx's current module scope, which fx copies at every module call (`copy.copy` of a
    plain object goes through `__reduce_ex__`)."""

    def __copy__(self):
        return _Scope(self.module_path, self.module_type)


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

    @classmethod
    def __torch_function__(cls, orig_method, types, args=None, kwargs=None):
        """fx's, finding the tracer among plain arguments (proxies, numbers, tensors, flat
        tuples and lists of them) by a loop where fx walks args and kwargs with pytree;
        anything else, and script methods and higher-order operators, go to fx's own."""
        args = args if args else ()
        kwargs = kwargs if kwargs else {}
        tracer = _only_tracer(cls, args, kwargs)
        if tracer is None or isinstance(orig_method, _FX_SPECIAL_CALLABLES):
            return fx.Proxy.__torch_function__.__func__(cls, orig_method, types, args, kwargs)
        if torch.overrides.is_tensor_method_or_property(orig_method):
            return tracer.create_proxy("call_method", orig_method.__name__, args, kwargs)
        op = orig_method.__name__
        names = getattr(tracer, "_target_names", None)  # fx's name for a string target
        name = names.get(op) if names is not None else None
        if name is None:
            name = tracer.graph._target_to_str(op)
            if names is not None:
                names[op] = name
        return tracer.create_proxy("call_function", orig_method, args, kwargs, name=name)


class _Attribute(fx.proxy.Attribute):
    __iter__ = _Proxy.__iter__
    __getattr__ = _Proxy.__getattr__
    __torch_function__ = _Proxy.__dict__["__torch_function__"]


_FX_SPECIAL_CALLABLES = (torch._C.ScriptMethod, torch._ops.HigherOrderOperator)


def _only_tracer(cls, args: tuple, kwargs: dict):
    """The one tracer of the `cls` proxies among `args` and `kwargs`' values, when these are
    proxies, plain values (`_PLAIN_ARGS`, tensors) or flat tuples/lists of them; None
    otherwise (fx's own search then decides, and raises as fx does)."""
    found = None
    for group in (args, kwargs.values()):
        for a in group:
            kind = type(a)
            for item in (a if kind is tuple or kind is list else (a,)):
                if type(item) in _PLAIN_ARGS:
                    continue
                if isinstance(item, cls):
                    if found is None:
                        found = item.tracer
                    elif item.tracer is not found:
                        return None
                elif isinstance(item, fx.Proxy) or not isinstance(item, torch.Tensor):
                    return None  # another proxy class, a container, an object: fx's search
    return found


@functools.lru_cache(maxsize=512)
def _instructions(code) -> tuple[list, list[int]]:
    instructions = list(dis.get_instructions(code))
    return instructions, [i.offset for i in instructions]


def _instruction_at(code, lasti: int):
    instructions, offsets = _instructions(code)
    if sys.version_info >= (3, 11):
        return instructions[bisect_left(offsets, lasti)]
    return instructions[lasti // 2]
