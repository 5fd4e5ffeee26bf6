"""What a module call brings to its node: the parameters the module owns (a recurrent layer's
and nn.MultiheadAttention's several tensors counted as one weight and one bias), their names,
and the module's attributes the cost rules read (groups, stride, features …)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ModelWalk:
    """The model's modules, parameters and buffers from one walk over its modules, read by
    every stage that needs them (each `named_modules`/`named_parameters`/`buffers` walk is a
    chain of nested generators; eight of them were about a tenth of profiling a small ViT).
    The same modules, names and order as those methods give (shared ones once, at their first
    path); made when a stage begins, as the walks it replaces were."""

    def __init__(self, model: nn.Module):
        self.named_modules = list(model.named_modules())
        self.modules = dict(self.named_modules)  # path -> module
        self._model = model
        self._parameter_names: dict[int, str] | None = None

    def parameter_names(self) -> dict[int, str]:
        """{id(parameter): name}, as `{id(p): n for n, p in model.named_parameters()}`; made
        once per walk (the tracer and the recording pass read the same map, neither writes)."""
        if self._parameter_names is not None:
            return self._parameter_names
        if type(self._model).named_parameters is not nn.Module.named_parameters:
            names = {id(p): n for n, p in self._model.named_parameters()}
        else:
            names = {}
            for path, module in self.named_modules:
                for name, p in module._parameters.items():
                    if p is not None and id(p) not in names:
                        names[id(p)] = f"{path}.{name}" if path else name
        self._parameter_names = names
        return names

    def buffers(self) -> list:
        """`list(model.buffers())`."""
        if type(self._model).buffers is not nn.Module.buffers or \
                type(self._model).named_buffers is not nn.Module.named_buffers:
            return list(self._model.buffers())
        seen: set[int] = set()
        found = []
        for _, module in self.named_modules:
            for b in module._buffers.values():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    found.append(b)
        return found


def module_params(module: nn.Module):
    """(weight, bias, other parameters) owned directly by `module`. A recurrent layer's
    weight_ih/hh_l* count as its weight and its bias_* as its bias (flattened), a cell's too."""
    if isinstance(module, nn.MultiheadAttention):  # its out_proj is never called on its own
        slots = _mha_slots(module)
        return (_flat_meta(slots["weight"]), _flat_meta(slots["bias"]), slots["other"])
    own = dict(own_parameters(module))
    weight, bias = own.pop("weight", None), own.pop("bias", None)
    for name in _parametrized(module):  # weight_norm, spectral_norm: computed each call
        computed = torch.empty(getattr(module, name).shape, device="meta")
        if name == "weight":
            weight = computed
        elif name == "bias":
            bias = computed
        # the originals it is computed from (weight_norm's g and v) are the parameters
        originals = _originals(module, name)
        for original in originals:
            own.pop(original, None)
        beyond = sum(p.numel() for p in (module.parametrizations[name].parameters()
                                         if not originals else
                                         (module._parameters[n] for n in originals))) \
            - computed.numel()
        if beyond > 0:
            own[f"{name}_originals"] = torch.empty(beyond, device="meta")
    if weight is None and isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        weights = [p for n, p in own.items() if n.startswith("weight")]
        biases = [p for n, p in own.items() if n.startswith("bias")]
        weight = torch.empty(sum(p.numel() for p in weights), device="meta") if weights else None
        bias = torch.empty(sum(p.numel() for p in biases), device="meta") if biases else None
        own = {n: p for n, p in own.items() if not n.startswith(("weight", "bias"))}
    return weight, bias, list(own.values())


def module_call_params(module: nn.Module, path: str) -> tuple:
    """(`module_params(module)`, `param_names_of(module, path)`) from one pass over the
    module's own parameters (both walked them, once per module call)."""
    if isinstance(module, (nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)) or \
            _parametrized(module):
        return module_params(module), param_names_of(module, path)
    weight = bias = None
    others, weights, biases = [], [], []
    seen = set()
    prefix = f"{path}." if path else ""
    for name, p in module._parameters.items():
        if p is None or id(p) in seen:
            continue
        seen.add(id(p))
        if name == "weight":
            weight = p
        elif name == "bias":
            bias = p
        else:
            others.append(p)
        if name.startswith("weight"):
            weights.append(prefix + name)
        elif name.startswith("bias"):
            biases.append(prefix + name)
    return (weight, bias, others), {"weight": weights, "bias": biases}


def own_parameters(module: nn.Module) -> list:
    """`module.named_parameters(recurse=False)` as a list, without its generator and its
    set of tensors (hashed by a Python method): one of these per module call."""
    seen, own = set(), []
    for name, p in module._parameters.items():
        if p is not None and id(p) not in seen:
            seen.add(id(p))
            own.append((name, p))
    return own


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
    for n, _ in own_parameters(module):
        slot = "weight" if n.startswith("weight") else "bias" if n.startswith("bias") else None
        if slot:
            names[slot].append(f"{path}.{n}" if path else n)
    for slot in _parametrized(module):  # trained through the parametrization's originals
        if slot in names and not _originals(module, slot):  # the hooks' are named above
            prefix = f"{path}.parametrizations.{slot}" if path else f"parametrizations.{slot}"
            names[slot] += [f"{prefix}.{n}" for n, _ in
                            module.parametrizations[slot].named_parameters()]
    return names


def _parametrized(module: nn.Module) -> list[str]:
    """The tensors of `module` computed at every call from parameters of other names: by
    torch.nn.utils.parametrize (weight_norm, spectral_norm, orthogonal), or by the older
    hooks of torch.nn.utils.weight_norm / spectral_norm (`_originals`): their names, in
    order; [] for a plain module."""
    found = getattr(module, "parametrizations", None)
    if isinstance(found, nn.ModuleDict):
        return list(found.keys())
    if not module._forward_pre_hooks:
        return []
    return [name for name in ("weight", "bias") if _originals(module, name)]


# The parameters torch.nn.utils.weight_norm (name_g, name_v) and spectral_norm (name_orig)
# compute `name` from, in a forward pre-hook that sets it as a plain attribute.
_HOOK_ORIGINALS = (("_g", "_v"), ("_orig",))


def _originals(module: nn.Module, name: str) -> tuple[str, ...]:
    """The names of the parameters an older weight_norm/spectral_norm hook computes `name`
    from; () when `name` is a parameter itself or not computed so."""
    if name in module._parameters or not isinstance(module.__dict__.get(name), torch.Tensor):
        return ()
    for suffixes in _HOOK_ORIGINALS:
        names = tuple(name + s for s in suffixes)
        if all(n in module._parameters for n in names):
            return names
    return ()


# Module attributes kept as node attributes (the cost rules read them).
_MODULE_ATTRS = ("groups", "stride", "kernel_size", "padding", "dilation", "in_channels",
                 "out_channels", "in_features", "out_features", "num_features", "affine",
                 "inplace", "p", "output_size", "num_groups", "track_running_stats",
                 "normalized_shape", "drop_prob", "hidden_size", "num_layers",
                 "bidirectional", "batch_first", "approximate", "padding_mode", "mode")
_ATTR_SET = frozenset(_MODULE_ATTRS)
_ATTR_ORDER = {key: i for i, key in enumerate(_MODULE_ATTRS)}


def module_attrs(module: nn.Module) -> dict:
    attrs = {}
    for key in _present_attrs(module):
        value = getattr(module, key)
        attrs[key] = list(value) if isinstance(value, tuple) else value
    if attrs.get("padding_mode") == "zeros":  # the default: graphs of such convs unchanged
        del attrs["padding_mode"]
    parametrized = _parametrized(module)
    if parametrized:
        attrs["parametrized"] = parametrized
        if "weight" in parametrized:
            attrs.update(_computed_weight_attrs(module, "weight"))
    return attrs


def _computed_weight_attrs(module: nn.Module, name: str) -> dict:
    """What computing `name` keeps for the backward when its originals train
    (rules/common.computed_weight): a parametrization's, measured on the module now
    ({"parametrization_saved_bytes"}); the older hooks' by what they are: spectral_norm's
    ({"spectral_norm": [u, v elements]}, copies in train mode only), a pruning mask's
    ({"pruned": True}: the mask is a buffer, nothing else), weight_norm's ({})."""
    if isinstance(getattr(module, "parametrizations", None), nn.ModuleDict):
        return {"parametrization_saved_bytes": _parametrization_saved_bytes(module, name)}
    buffers = module._buffers
    u, v = buffers.get(f"{name}_u"), buffers.get(f"{name}_v")
    if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
        return {"spectral_norm": [u.numel(), v.numel()]}
    if isinstance(buffers.get(f"{name}_mask"), torch.Tensor):
        return {"pruned": True}
    return {}


def _parametrization_saved_bytes(module: nn.Module, name: str) -> int:
    """Bytes autograd keeps when torch.nn.utils.parametrize computes `name` from originals
    that need a gradient: every saved tensor that is not the module's own parameter or buffer
    (weight_norm: its norms; spectral_norm: sigma and copies of u and v; orthogonal: its
    matrix function's operands)."""
    owned = {t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers())}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    state = [(p, p.requires_grad) for p in module.parametrizations[name].parameters()]
    try:
        for p, _ in state:
            p.requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            getattr(module, name)
    finally:
        for p, flag in state:
            p.requires_grad_(flag)
    return sum(kept.values())


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
    present = set(_ATTR_SET.intersection(module.__dict__))  # set operations, no Python loop
    for registered in (module._parameters, module._buffers, module._modules):
        if registered:
            present.update(_ATTR_SET.intersection(registered))
    for key in on_class - present:
        if hasattr(module, key):  # a property may still raise
            present.add(key)
    return sorted(present, key=_ATTR_ORDER.__getitem__)


_CLASS_ATTRS: dict[type, frozenset] = {}  # module class -> the keys its class defines
