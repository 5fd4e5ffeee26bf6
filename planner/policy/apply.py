"""Make a torch model train exactly what a policy selects.

`apply_policy(model, policy)`:
  * every parameter is frozen (requires_grad False), then the selected ones are unfrozen;
  * a partial channel selection registers a gradient hook `g * mask` on the weight, so the
    unselected channels get a zero gradient;
  * a BatchNorm attached to a selected conv/linear (costmodel.config.attached_norms) is trained
    with it, as the cost model prices it: its scale (gamma) with the weights, masked to the
    selected OUTPUT channels for a channel_axis 0 selection (an input-channel selection
    touches every output channel, so gamma is trained whole), its shift (beta) with the bias.
    Under the `paper` convention that BatchNorm is folded into the conv, whose folded bias is
    exactly beta (plus the conv's own bias, if it has one).

With SGD (with or without momentum) or Adam and weight decay 0, a zero gradient leaves a
parameter unchanged, so an optimiser step over `applied.parameters()` changes exactly the
selected entries. Weight decay adds `wd · param` AFTER the hooks and would move masked weights:
use weight_decay=0, or multiply the decay by `applied.masks[name]` yourself. BatchNorm running
statistics are buffers, not parameters: train in eval mode (as the Fisher probe and a device
with a batch of one do) or they change too.

The model is traced with the policy's input shape and refused (PolicyError) if it is not the
model the policy was planned for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ttplan.costmodel.transforms import attached_norms
from ttplan.costmodel.config import LayerUpdate
from ttplan.costmodel.errors import PolicyError
from ttplan.costmodel.graph import LayerGraph
from ttplan.costmodel.trace import trace

from .file import check_against_graph, policy_from_file_or_object


@dataclass
class AppliedPolicy:
    """What `apply_policy` did: the trainable parameters, their masks, the hook handles."""

    trainable: dict[str, nn.Parameter] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # partial ones only
    handles: list = field(default_factory=list)
    mask_handles: dict = field(default_factory=dict)  # parameter name -> its mask hook

    def unmask(self, name: str) -> None:
        """Remove the mask hook of one parameter (for a layer whose backward computes only the
        selected channels' gradient itself, e.g. devices.sparse)."""
        handle = self.mask_handles.pop(name, None)
        if handle is not None:
            handle.remove()
            self.handles.remove(handle)

    def parameters(self) -> list[nn.Parameter]:
        """What to give the optimiser."""
        return list(self.trainable.values())

    def remove(self) -> None:
        """Remove the gradient hooks (requires_grad flags stay as set)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.mask_handles.clear()


def apply_policy(model: nn.Module, policy) -> AppliedPolicy:
    """Freeze what `policy` (Policy, dict or path) does not select; mask partial channels."""
    policy = policy_from_file_or_object(policy)
    graph = trace(model, policy.model_inputs(), policy.model_name)
    check_against_graph(policy, graph)
    return apply_updates(model, graph, policy.updates())


def apply_updates(model: nn.Module, graph: LayerGraph, updates: dict[str, LayerUpdate]) -> AppliedPolicy:
    """What `apply_policy` does, for {layer name: LayerUpdate} on `model`'s traced `graph`
    (checked against the model by the caller)."""
    norms = attached_norms(graph)
    modules = dict(model.named_modules())
    params = {id(p): name for name, p in model.named_parameters()}
    by_name = dict(model.named_parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    applied = AppliedPolicy()

    def train(module_name: str, attr: str, mask: torch.Tensor | None) -> None:
        node = graph.nodes.get(module_name)
        names = (node.attrs.get("param_names") or {}).get(attr) if node is not None else None
        if names and (names != [f"{module_name}.{attr}"] or module_name not in modules):
            # functional ops, free parameters and recurrent layers name their parameters
            for name in names:
                train_param(by_name[name], mask if len(names) == 1 else None)
            return
        param = getattr(modules[module_name], attr, None) if module_name in modules else None
        if isinstance(param, nn.Parameter):
            train_param(param, mask)

    def train_param(param: nn.Parameter, mask: torch.Tensor | None) -> None:
        name = params[id(param)]
        param.requires_grad_(True)
        applied.trainable[name] = param
        if mask is not None:
            mask = mask.to(dtype=param.dtype, device=param.device)
            applied.masks[name] = mask
            # Default argument binds this mask, not the loop's last one.
            handle = param.register_hook(lambda g, m=mask: g * m)
            applied.handles.append(handle)
            applied.mask_handles[name] = handle

    for name, update in updates.items():
        module = modules.get(name)
        if module is None and name in by_name:
            module = by_name[name]  # a parameter used on its own (cls_token, gamma)
        if module is None:
            raise PolicyError(f"policy layer {name!r} is not a module of the model")
        channels, axis = update.channels, update.channel_axis
        if update.weight:
            train(name, "weight", _weight_mask(module, graph[name], channels, axis))
        if update.bias:
            train(name, "bias", None)
        norm = norms.get(name)
        if norm is not None:
            if update.weight:
                gamma = modules[norm].weight if hasattr(modules[norm], "weight") else None
                mask = None
                if channels is not None and axis == 0 and gamma is not None:
                    mask = torch.zeros(gamma.shape)
                    mask[list(channels)] = 1
                train(norm, "weight", mask)
            if update.bias:
                train(norm, "bias", None)
    return applied


def _weight_mask(module, node, channels, axis: int) -> torch.Tensor | None:
    if channels is None:
        return None
    weight = module if isinstance(module, nn.Parameter) else getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):  # nn.MultiheadAttention, recurrent layers
        raise PolicyError(f"layer {node.name!r} ({node.op}) has no single weight tensor to "
                          "select channels of: update it whole")
    dim = axis
    # Output channels on dim 1: a transposed conv's (Cin, Cout/groups, k...) weight, and
    # GPT-2's Conv1D (addmm with W in × out).
    if node.kind == "conv_transpose" or node.attrs.get("weight_transposed"):
        dim = 1 - axis
    if weight.dim() == 1:
        dim = 0
    shape = [1] * weight.dim()
    shape[dim] = weight.shape[dim]
    mask = torch.zeros(shape)
    mask.view(-1)[list(channels)] = 1
    return mask.expand(weight.shape).clone()
