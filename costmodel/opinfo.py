"""What the tracer records about one call beyond its shapes: the call's named arguments, the
parameters a functional op uses, how a matmul folds its operands, and what ops whose saved
set depends on a kernel's internals (einsum's folding, oneDNN's recurrent workspace) keep.

Both tracing paths (fx and hooks) call these on the real tensors of the traced forward.
"""

from __future__ import annotations

import copy
import inspect
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

# Functional ops that take parameters: the names of their weight and bias arguments.
PARAM_SLOTS: dict[object, tuple[str, str | None]] = {
    F.linear: ("weight", "bias"), F.conv1d: ("weight", "bias"), F.conv2d: ("weight", "bias"),
    F.conv3d: ("weight", "bias"), F.batch_norm: ("weight", "bias"),
    F.layer_norm: ("weight", "bias"), F.group_norm: ("weight", "bias"),
    F.embedding: ("weight", None),
    torch.addmm: ("mat2", "input"),  # GPT-2's Conv1D: addmm(bias, x, W) with W in × out
}

# Scalar arguments kept as node attributes (the cost rules read them).
_ATTR_ARGS = ("groups", "stride", "padding", "dilation", "num_groups", "normalized_shape", "p",
              "eps", "equation", "dropout_p", "is_causal", "inplace", "approximate", "dim",
              "mode")
_ATTR_ORDER = {key: i for i, key in enumerate(_ATTR_ARGS)}

_SIGNATURES: dict[object, inspect.Signature | None] = {}

# Builtins that inspect cannot read: their documented parameters, in order.
_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_BUILTIN_PARAMS: dict[object, tuple[str, ...]] = {
    F.conv1d: _CONV_PARAMS, F.conv2d: _CONV_PARAMS, F.conv3d: _CONV_PARAMS,
    F.linear: ("input", "weight", "bias"), torch.addmm: ("input", "mat1", "mat2"),
}


def _builtin_signature(target) -> inspect.Signature | None:
    names = _BUILTIN_PARAMS.get(target)
    if names is None:
        return None
    return inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=None if i else inspect.Parameter.empty)
                              for i, n in enumerate(names)])


def bind_call(target, args, kwargs) -> dict | None:
    """The call's arguments by parameter name, or None when the target has no signature."""
    if target not in _SIGNATURES:
        try:
            _SIGNATURES[target] = inspect.signature(target)
        except (TypeError, ValueError):
            _SIGNATURES[target] = _builtin_signature(target)
        _POSITIONAL[target] = _positional_names(_SIGNATURES[target])
        _NO_ATTR_PARAMS[target] = target is not torch.einsum and (
            _SIGNATURES[target] is None
            or not any(name in _ATTR_ORDER for name in _SIGNATURES[target].parameters))
    signature = _SIGNATURES[target]
    if signature is None:
        return None
    positional = _POSITIONAL[target]
    if positional is not None and not kwargs:  # what Signature.bind gives, without its cost
        names, required = positional
        return dict(zip(names, args)) if required <= len(args) <= len(names) else None
    try:
        bound = signature.bind(*args, **(kwargs or {}))
    except TypeError:
        return None
    return dict(bound.arguments)


# target -> True when none of its parameters is an attribute argument (`_ATTR_ARGS`): called
# without keywords, it has no attributes (einsum's equation is read from its arguments).
_NO_ATTR_PARAMS: dict[object, bool] = {}

# target -> (its parameters' names, how many have no default) when it takes plain
# positional parameters only (no *args, no keyword-only ones); else None.
_POSITIONAL: dict[object, tuple[tuple[str, ...], int] | None] = {}


def _positional_names(signature: inspect.Signature | None):
    if signature is None:
        return None
    params = list(signature.parameters.values())
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return None
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if params[:len(required)] != required:  # a parameter without default after one with
        return None
    return tuple(p.name for p in params), len(required)


def call_attrs(target, args, kwargs) -> dict:
    """Scalar arguments of a call (p, groups, equation …) as plain JSON-able values."""
    if not kwargs and (type(target) is str or _NO_ATTR_PARAMS.get(target)):
        return {}  # no keyword arguments, and no parameter that is an attribute argument
    bound = bind_call(target, args, kwargs) if not isinstance(target, str) else None
    named = dict(kwargs or {}) if bound is None else bound
    if target is torch.einsum and args and isinstance(args[0], str):
        named["equation"] = args[0]
    attrs = {}
    # The few bound names that are attribute arguments, in `_ATTR_ARGS` order (asking each
    # of the 14 names of every call was a fifth of recording a function call).
    keys = [key for key in named if key in _ATTR_ORDER]
    if len(keys) > 1:
        keys.sort(key=_ATTR_ORDER.__getitem__)
    for key in keys:
        value = named[key]
        if isinstance(value, (bool, int, float, str)):
            attrs[key] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
            attrs[key] = list(value)
    return attrs


def functional_params(target, args, kwargs, param_names: dict[int, str]):
    """(weight, bias, owner module path, {"weight": [name], "bias": [name]}) of a functional op
    called with parameters of the model, or None."""
    slots = PARAM_SLOTS.get(target)
    if slots is None:
        return None
    bound = bind_call(target, args, kwargs) or {}
    weight = bound.get(slots[0])
    bias = bound.get(slots[1]) if slots[1] else None
    weight = weight if isinstance(weight, nn.Parameter) and id(weight) in param_names else None
    bias = bias if isinstance(bias, nn.Parameter) and id(bias) in param_names else None
    if weight is None and bias is None:
        return None
    names = {"weight": [], "bias": []}
    if weight is not None:
        names["weight"].append(param_names[id(weight)])
    if bias is not None:
        names["bias"].append(param_names[id(bias)])
    first = (names["weight"] or names["bias"])[0]
    owner = first.rpartition(".")[0] or first
    return weight, bias, owner, names


def is_param_slot(target, position: int | None, keyword: str | None) -> bool:
    """Does argument (`position` or `keyword`) of `target` receive a weight or bias?"""
    slots = PARAM_SLOTS.get(target)
    if slots is None:
        return False
    if keyword is not None:
        return keyword in slots
    try:
        names = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        names = list(_BUILTIN_PARAMS.get(target, ()))
    return position is not None and position < len(names) and names[position] in slots


def matmul_operand_copies(a: torch.Tensor, b: torch.Tensor) -> list[int]:
    """Bytes of the contiguous copy `torch.matmul` makes of each operand (0: a view).

    With a ≥3-D first operand and a 1/2-D second, matmul folds the first to 2-D; otherwise it
    expands both to the broadcast batch shape and folds that to one batch dimension for bmm.
    Either reshape is a view when the strides allow it, else a copy, which bmm/mm then keeps.
    """
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() < 1:
        return [0, 0]
    if a.dim() <= 2 and b.dim() <= 2:
        return [0, 0]
    if b.dim() <= 2:
        folded = [a.reshape(-1, a.shape[-1]), b]
    else:
        batch = _broadcast_shape(a.shape[:-2] if a.dim() > 2 else (), b.shape[:-2])
        folded = [t.expand(batch + t.shape[-2:]).reshape(-1, *t.shape[-2:])
                  if t.dim() >= 2 else t for t in (a, b)]
    return [0 if f.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
            else f.numel() * f.element_size() for f, t in zip(folded, (a, b))]


def _broadcast_shape(x, y) -> torch.Size:
    """The broadcast of two shapes that broadcast (matmul just ran on them). Not
    `torch.broadcast_shapes`: its first call imports sympy, about 0.3 s of CPU."""
    n = max(len(x), len(y))
    x, y = (1,) * (n - len(x)) + tuple(x), (1,) * (n - len(y)) + tuple(y)
    return torch.Size(b if a == 1 else a for a, b in zip(x, y))


def einsum_index_sizes(equation: str, operands) -> dict[str, int]:
    """{index letter: size} of an einsum equation over its operands' shapes."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, t in zip(inputs, operands):
        if "." in letters or not isinstance(t, torch.Tensor) or len(letters) != t.dim():
            return {}
        for letter, size in zip(letters, t.shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    return sizes


def measure_saved(fn, inputs: list[torch.Tensor], module: nn.Module | None = None,
                  training: bool = True, inplace: bool = False,
                  owned: frozenset[int] = frozenset()) -> dict:
    """What `fn(*inputs)` keeps for backward in each situation, measured once while tracing.

    Returns {key: [(source, bytes)]}: key (`measured_key`) is "w"/"-" (module weights need a
    gradient), "b"/"-" (biases), then "x"/"-" per input (one flag for all inputs of a module,
    whose node has one input); source is an input's index, "out", or "new" (a
    fresh storage of `bytes`). Parameters are left out, as in the memory model. `module`
    (whose parameters `fn` uses) is copied and put in training mode for the measurement, or
    in eval mode when `training` is False (dropout off: another attention path, no masks).
    `inplace`: `fn` writes into an operand, which autograd refuses on a leaf that needs a
    gradient: such operands are given as copies (non-leaves), as in a model. `owned`: storage
    addresses of the model's parameters and buffers, left out like `module`'s parameters.
    """
    if module is not None:
        module = copy.deepcopy(module).train(training)
    params = dict(module.named_parameters()) if module is not None else {}
    has_weight = any("weight" in n for n in params)
    has_bias = any("bias" in n for n in params)
    table = {}
    # Per input when there are no parameters (each operand's gradient needs the other one),
    # one flag for all inputs otherwise.
    input_flags = itertools.product((True, False), repeat=len(inputs)) if module is None \
        else [(x,) * len(inputs) for x in (True, False)]
    for flags in input_flags:
        for w, b in itertools.product((True, False), repeat=2):
            if (w and not has_weight) or (b and not has_bias) or not (w or b or any(flags)):
                continue
            for name, p in params.items():
                p.requires_grad_(w if "weight" in name else b)
            leaves = [t.detach().clone().requires_grad_(x and t.is_floating_point())
                      for t, x in zip(inputs, flags)]
            key = measured_key(w, b, flags if module is None else (any(flags),))
            run = fn if module is None else (lambda *ts: fn(module, *ts))
            table[key] = _saved_once(run, leaves, params.values(), inplace, owned)
    return table


def measure_saved_remembered(fn, inputs: list[torch.Tensor], module: nn.Module | None,
                             training: bool = True) -> dict:
    """`measure_saved(fn, inputs, module, training)`, measured once per process for each configuration
    of the calls whose saved set only their configuration decides:
    * torch's own recurrent layers (nn.RNN/LSTM/GRU: class, sizes, flags, parameter and input
      shapes, dtypes and strides, the kernels' settings): oneDNN's workspace, up to seven
      eager forward passes to measure, three quarters of a profile of a small recurrent model;
    * einsum (`EinsumCall`: the equation, the operands' shapes, strides and dtypes, the
      contraction-order settings): how it folds its operands, three runs per call, the same
      for every layer of a transformer written with einsum.
    Other calls are measured every time."""
    key = _recurrent_key(fn, inputs, module) if module is not None else \
        _einsum_key(fn, inputs)
    if key is None:
        return measure_saved(fn, inputs, module, training)
    key = key + (training,)
    table = _REMEMBERED_SAVED.get(key)
    if table is None:
        if len(_REMEMBERED_SAVED) >= 512:
            _REMEMBERED_SAVED.clear()
        table = _REMEMBERED_SAVED[key] = measure_saved(fn, inputs, module, training)
    return {situation: list(saved) for situation, saved in table.items()}


_REMEMBERED_SAVED: dict[tuple, dict] = {}


class EinsumCall:
    """`torch.einsum(equation, *operands)` as a function of the operands."""

    def __init__(self, equation: str):
        self.equation = equation

    def __call__(self, *operands):
        return torch.einsum(self.equation, *operands)


def _tensor_specs(inputs) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.stride(), t.storage_offset(), t.device.type)
                 for t in inputs)


def _einsum_key(fn, inputs) -> tuple | None:
    if type(fn) is not EinsumCall or not all(isinstance(t, torch.Tensor) for t in inputs):
        return None
    contraction = (torch.backends.opt_einsum.enabled, torch.backends.opt_einsum.strategy)
    return "einsum", fn.equation, _tensor_specs(inputs), contraction


def _recurrent_key(fn, inputs, module) -> tuple | None:
    if type(module) not in (nn.RNN, nn.LSTM, nn.GRU) or module._forward_hooks or \
            module._forward_pre_hooks or not all(isinstance(t, torch.Tensor) for t in inputs):
        return None
    config = tuple(sorted((k, v) for k, v in vars(module).items()
                          if isinstance(v, (bool, int, float, str, type(None)))))
    params = tuple((n, tuple(p.shape), p.dtype, p.stride()) for n, p in module.named_parameters())
    kernels = (torch.backends.mkldnn.is_available(), torch.backends.mkldnn.enabled,
               torch.backends.cudnn.enabled, torch.get_num_threads())
    return fn, type(module), config, params, _tensor_specs(inputs), kernels


def measured_key(weight: bool, bias: bool, inputs) -> str:
    """The situation a `measure_saved` entry is for, e.g. "wb-" or "--x-"."""
    return ("w" if weight else "-") + ("b" if bias else "-") + \
        "".join("x" if x else "-" for x in inputs)


def _saved_once(fn, leaves, params, inplace: bool = False, owned=frozenset()) -> list:
    packed: list[torch.Tensor] = []
    if inplace:
        with torch.enable_grad():
            leaves = [t.clone() if t.requires_grad else t for t in leaves]

    def pack(t):
        packed.append(t.detach())
        return len(packed) - 1

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, packed.__getitem__):
        out = fn(*leaves)
    first = out
    while isinstance(first, (tuple, list)):
        first = first[0]
    ptrs = {t.untyped_storage().data_ptr(): i for i, t in enumerate(leaves)}
    excluded = {p.untyped_storage().data_ptr() for p in params} | owned
    out_ptr = first.untyped_storage().data_ptr() if isinstance(first, torch.Tensor) else None
    saved, seen = [], set()
    for t in packed:
        ptr = t.untyped_storage().data_ptr()
        if ptr in excluded or ptr in seen:
            continue
        seen.add(ptr)
        if ptr in ptrs:
            saved.append((ptrs[ptr], 0))
        elif ptr == out_ptr:
            saved.append(("out", 0))
        else:
            saved.append(("new", t.untyped_storage().nbytes()))
    return saved


def substituted(call, args, kwargs, tensors):
    """`call` as a function of fresh tensors standing for `tensors` (matched by identity
    wherever they appear in `args`/`kwargs`), for measuring what autograd keeps."""
    slots = {id(t): i for i, t in enumerate(tensors)}

    def swap(value, leaves):
        if isinstance(value, torch.Tensor) and id(value) in slots:
            return leaves[slots[id(value)]]
        if isinstance(value, (list, tuple)):
            return type(value)(swap(v, leaves) for v in value)
        if isinstance(value, dict):
            return {k: swap(v, leaves) for k, v in value.items()}
        return value

    def run(*leaves):
        return call(*swap(tuple(args), leaves), **swap(dict(kwargs or {}), leaves))
    return run


def mha_attrs(module: nn.Module, args, kwargs) -> dict:
    """What nn.MultiheadAttention's rule reads: q, k, v shapes (batch first or not), the
    embedding and key/value sizes, and the heads."""
    bound = dict(zip(("query", "key", "value"), args))
    bound.update({k: v for k, v in (kwargs or {}).items() if k in ("query", "key", "value")})
    shapes = {k: list(bound[k].shape) for k in ("query", "key", "value")
              if isinstance(bound.get(k), torch.Tensor)}
    return {"mha_shapes": shapes, "embed_dim": module.embed_dim, "kdim": module.kdim,
            "vdim": module.vdim, "num_heads": module.num_heads,
            "batch_first": bool(module.batch_first)}


# An operator without a rule is derived when it has at most this many tensor inputs (what it
# keeps is measured in every combination of inputs needing a gradient: 2^n small runs).
MAX_DERIVED_INPUTS = 4


def derive_unknown(fn, tensors, owned: frozenset[int] = frozenset()) -> dict | None:
    """{"measured_saved": …, "derived_macs": …} of an operator without a rule, from its traced
    call `fn(*tensors)`, or None when it cannot be measured (too many inputs, not
    differentiable). Measured on copies of its operands when it writes into one (x.div_(k),
    mask.bernoulli_(p)); "blocks_grad" when its result carries no gradient although every
    operand does (x.new_empty(…), torch.rand_like(x), x.detach(), an integer result). What it
    keeps of the model's own tensors (`owned` storages: a mask sliced from a buffer) is left
    out, as the memory model leaves out parameters and buffers."""
    from torch.utils.flop_counter import FlopCounterMode
    if len(tensors) > MAX_DERIVED_INPUTS or not tensors:
        return None
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(*[t.detach().clone() for t in tensors])
    except Exception:  # noqa: BLE001 — fails on its own operands' copies: stays unknown
        return None
    for inplace in (False, True):
        try:
            table = measure_saved(fn, list(tensors), inplace=inplace, owned=owned)
            break
        except Exception:  # noqa: BLE001 — written in place (then on copies), not differentiable
            if inplace:
                return None
    derived = {"measured_saved": table, "derived_macs": counter.get_total_flops() // 2}
    if not _passes_gradient(fn, tensors):
        derived["blocks_grad"] = True
    return derived


def _passes_gradient(fn, tensors) -> bool:
    """Does `fn`'s result need a gradient when every floating operand does (measured)."""
    if not any(t.is_floating_point() for t in tensors):
        return True  # nothing to measure with: no gradient reaches it anyway
    with torch.enable_grad():
        operands = [t.detach().clone().requires_grad_(t.is_floating_point()).clone()
                    for t in tensors]
        try:
            out = fn(*operands)
        except Exception:  # noqa: BLE001 — measured above; leave the graph as it was
            return True
    first = out
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    return not isinstance(first, torch.Tensor) or first.requires_grad
