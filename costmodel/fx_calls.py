"""How `LeafTracer` catches module calls and parameter reads without setting
`nn.Module.__call__` and `nn.Module.__getattr__` as ``torch.fx`` does for every trace.

Setting a special method on a class makes CPython update that slot in every subclass and
invalidate their attribute caches: for nn.Module (hundreds of subclasses once torch is
imported) 0.4–1 ms per trace, more than a small model's whole training step. Instead module
calls are caught at `nn.Module._call_impl` (a plain method, which `__call__` calls: no slots),
and each module that can hand out a parameter gets, for the trace, a subclass of its own
class (same name, module and layout; made once per class) whose `__getattr__` hands what
nn.Module's finds to the tracer, as fx's patched `__getattr__` does. When a class of the model
has its own `__call__`, `_call_impl` or `__getattr__`, or a module is compiled, fx's own trace
runs instead.
"""

from __future__ import annotations

import collections
import contextlib

import torch.nn as nn
from torch.fx import _symbolic_trace as fx_trace

ORIGINAL_CALL_IMPL = nn.Module._call_impl
_ORIGINAL_CALL = nn.Module.__call__
_ORIGINAL_GETATTR = nn.Module.__getattr__
TRACED_TO_CLASS: dict = {}  # traced subclass -> the module's own class
_CLASS_TO_TRACED: dict = {}  # the module's own class -> its traced subclass


def traceable_without_class_patches(named_modules: list) -> bool:
    """Can `LeafTracer._trace_module` catch every module call and parameter read fx would? Yes when
    nothing has replaced nn.Module's call path or attribute fallback (no fx trace is under
    way, no class of the model has its own `__call__`, `_call_impl` or `__getattr__`, no module
    is compiled); otherwise fx's own trace runs."""
    if nn.Module._call_impl is not ORIGINAL_CALL_IMPL or \
            nn.Module.__call__ is not _ORIGINAL_CALL or \
            nn.Module.__getattr__ is not _ORIGINAL_GETATTR:
        return False
    checked = set()
    for _, module in named_modules:
        cls = type(module)
        if module.__dict__.get("_compiled_call_impl") is not None:
            return False
        if cls in checked:
            continue
        if cls.__call__ is not _ORIGINAL_CALL or cls._call_impl is not ORIGINAL_CALL_IMPL or \
                cls.__getattr__ is not _ORIGINAL_GETATTR or cls in TRACED_TO_CLASS or \
                not _subclassable_quietly(cls):
            return False
        checked.add(cls)
    return True


def _subclassable_quietly(cls: type) -> bool:
    """Can `traced_class` subclass `cls` without running the model's own code? Not when its
    metaclass is not `type` or a class of its MRO defines `__init_subclass__` (a library's
    class registry would see the traced subclass): fx's own trace runs for those."""
    return type(cls) is type and not any(
        "__init_subclass__" in base.__dict__ for base in cls.__mro__ if base is not object)


def traced_class(cls: type) -> type:
    """A subclass of `cls` (same name, module and layout) whose `__getattr__` hands what
    nn.Module's finds to the tracer under way, as fx's patched `nn.Module.__getattr__` does."""
    traced = _CLASS_TO_TRACED.get(cls)
    if traced is None:
        traced = type(cls.__name__, (cls,), {"__slots__": (), "__module__": cls.__module__,
                                             "__qualname__": cls.__qualname__,
                                             "__getattr__": _traced_getattr})
        _CLASS_TO_TRACED[cls] = traced
        TRACED_TO_CLASS[traced] = cls
    return traced


_ACTIVE: list = []  # (tracer, parameter proxy cache) of the traces under way, innermost last


def _traced_getattr(module, attr: str):
    value = _ORIGINAL_GETATTR(module, attr)
    if not _ACTIVE:
        return value
    tracer, cache = _ACTIVE[-1]
    return tracer.getattr(attr, value, cache)


@contextlib.contextmanager
def parameter_reads_traced(named_modules, tracer, cache):
    """For the block: every module that can hand out a parameter from `__getattr__` (one that
    owns parameters, or holds one among its buffers) has its traced class, whose parameter
    reads go to `tracer.getattr` with fx's proxy `cache`; the modules' own classes are given
    back afterwards. Other modules' `__getattr__` gives no parameter, which fx's wrapper
    passes through unchanged."""
    swapped = []
    _ACTIVE.append((tracer, cache))
    try:
        for _, module in named_modules:
            if any(p is not None for p in module._parameters.values()) or \
                    any(isinstance(b, nn.Parameter) for b in module._buffers.values()):
                cls = type(module)
                object.__setattr__(module, "__class__", traced_class(cls))
                swapped.append((module, cls))
        yield
    finally:
        for module, cls in swapped:
            object.__setattr__(module, "__class__", cls)
        _ACTIVE.pop()


def collect_tensor_attrs(module: nn.Module, prefix: list, found: dict) -> None:
    """fx's map of the tensors (and other constants) held as plain attributes to their
    paths, which `create_arg` reads. A module's own bookkeeping (dicts, sets, flags) is
    passed over by its exact type: fx's `isinstance` against its constant types costs
    ≈0.3 µs a value, over ~25 values a module."""
    for k, v in module.__dict__.items():
        if type(v) not in _PLAIN_VALUES and isinstance(v, fx_trace._constant_attribute_types):
            found[v] = ".".join(prefix + [k])
    if type(module).named_children is nn.Module.named_children:
        children, seen = [], set()  # what named_children yields, without its generator
        for k, v in module._modules.items():
            if v is not None and id(v) not in seen:
                seen.add(id(v))
                children.append((k, v))
    else:
        children = module.named_children()
    for k, v in children:
        collect_tensor_attrs(v, prefix + [k], found)


# Exact types no constant type of fx's is (tensors, script objects, tree specs).
_PLAIN_VALUES = frozenset({dict, collections.OrderedDict, set, bool, int, float, str,
                           tuple, list, type(None)})
