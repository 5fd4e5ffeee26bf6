"""Trace a PyTorch model into a `LayerGraph`.

First path: ``torch.fx`` symbolic tracing (`costmodel.fx_tracer`) plus one forward pass
through the traced graph (`costmodel.fx_builder`) that records every node's real output
(shape, dtype, and whether it shares storage with an input — views and in-place ops — which
the `pytorch` memory convention needs). When fx cannot trace the model (data-dependent
control flow, unsupported Python), the second path runs the model once with forward hooks on
every module and a ``TorchFunctionMode`` that sees the functions called between modules
(``+``, ``torch.cat``, ``flatten`` …) (`costmodel.hook_tracer`). Both turn calls into nodes
with `costmodel.graph_builder`. The graph says which path made it.

The forward pass runs under ``torch.no_grad`` in train mode, as a training step runs it
(dropout active, ``if self.training`` branches taken), except BatchNorm-like layers, which
stay in eval mode (same shapes, valid for 1×1 maps); modes, buffers and the RNG state are
restored afterwards.

Memory. The fx path records each node as soon as it has run and drops its value after the
node's last reader, and the hooks path knows tensors by weak reference only, so tracing holds
about what the model's own forward holds (batch 100 costs little more than batch 1). Shapes
are not taken from ``meta`` tensors: their kernels do not always give the strides the CPU
kernels give (scaled_dot_product_attention's output, layer norm after a permute), and strides
decide views, copies and so the pytorch convention.
"""

from __future__ import annotations

import inspect
import types
import weakref

import torch
import torch.nn as nn

from .blocks import compile_block_pattern
from .checkpointing import CheckpointRegions, marked_regions
from .errors import TraceError
from .fx_builder import FxGraphBuilder
from .fx_tracer import symbolic_trace
from .graph import LayerGraph
from .graph_builder import GraphBuilder, one_line
from .hook_tracer import HookGraphBuilder
from .inputs import ModelInputs, as_inputs
from .module_calls import ModelWalk, module_attrs, module_params, param_names_of
from .rules import REGISTRY, Registry

_Builder = GraphBuilder  # the name it had when everything lived here

__all__ = ["trace", "module_attrs", "module_params", "param_names_of"]


def trace(model: nn.Module, input_shape=None, model_name: str = "model", tracer: str = "auto",
          rules: Registry | dict | None = None, blocks: str | None = None,
          inputs=None, *, training: bool = True) -> LayerGraph:
    """Trace `model` on a zero input of `input_shape` (batch first), or called with `inputs`
    (any form `costmodel.inputs.as_inputs` takes: tensors, a dict, specs; `input_shape` may
    be one too). `tracer`: auto|fx|hooks
    (auto: fx, and the hooks tracer, with a warning, whenever fx fails). `rules`: a Registry,
    or {module class | function | kind: Rule} overriding the default one for this graph.
    `blocks`: a regular expression naming the blocks' module paths (`costmodel.blocks`).
    `training` False: every module in eval mode, as `ttplan train` runs them (no dropout, no
    `if self.training` branch, the attention path PyTorch takes then)."""
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
    walk = ModelWalk(model)  # one walk over the modules for the stages before tracing
    modes = {m: m.training for _, m in walk.named_modules}
    state = _TrainModeState(model, walk, training)
    fallback = None
    try:
        arguments, defaults, given = _bind_inputs(model, inputs, model_name)
        if tracer in ("auto", "fx"):
            try:
                with marked_regions(CheckpointRegions()) as regions:
                    graph = symbolic_trace(model, registry, defaults, walk.parameter_names(),
                                           walk.named_modules)
                if regions.count:  # fx traces through the call: the regions are lost
                    raise TraceError(f"{model_name} checkpoints activations "
                                     "(torch.utils.checkpoint), which only the hooks tracer "
                                     "follows")
                # The walk made before fx's trace serves the recording pass too (fx's
                # trace gives every module its class back; it adds or removes none).
                return FxGraphBuilder(model, graph, model_name, inputs, registry,
                                       block_pattern, walk).build(arguments, given)
            except Exception as exc:  # fx raises many types for untraceable Python
                if tracer == "fx":
                    if isinstance(exc, TraceError):
                        raise
                    raise TraceError(f"torch.fx cannot trace {model_name}: {one_line(exc)}") from None
                fallback = (f"torch.fx could not trace {model_name} ({one_line(exc)}); "
                            "traced with the hooks tracer instead")
        builder = HookGraphBuilder(model, model_name, inputs, registry, block_pattern)
        with marked_regions(builder.checkpoint):
            graph = builder.build(*given)
        autocast = [n for n in graph.ops() if n.attrs.get("autocast_bytes")]
        if autocast:
            graph.warnings.append(
                f"{model_name} runs {len(autocast)} operator(s) under torch.autocast: conv "
                "and linear layers keep casts of their operands and attention what it keeps "
                "measured under it (counted); other operators are priced at the dtype they "
                "return, and device time does not price the autocast dtype's kernels")
        if builder.checkpoint.count:
            graph.warnings.append(
                f"{model_name} checkpoints activations in {builder.checkpoint.count} call(s) "
                "(torch.utils.checkpoint): their arguments are kept instead of what their "
                "operators save, and the backward runs their forward again (in its MACs, "
                "memory peak and device time)")
        if fallback:
            graph.warnings.append(fallback)
        return graph
    finally:
        for m, training in modes.items():
            cls = type(m)
            if cls.train is not nn.Module.train:
                m.train(training)
            elif cls.__setattr__ is nn.Module.__setattr__:
                # What nn.Module.train does to a module (it then recurses into children,
                # whose own flags follow in `modes`), without __setattr__'s checks for
                # parameters, modules and buffers, none of which a bool is.
                object.__setattr__(m, "training", training)
            else:
                m.training = training
        state.restore()


class _TrainModeState:
    """Puts a model in the mode a training step runs in, for the trace, and gives its state
    back afterwards. Train mode (dropout active, `if self.training` branches, the attention
    path PyTorch takes in training) except normalisation layers with running statistics,
    which stay in eval mode (same shapes, and valid on the 1×1 maps of a batch of one); the
    buffers and the RNG state a train-mode forward may change are restored. With `training`
    False, every module in eval mode instead (`trace(..., training=False)`)."""

    def __init__(self, model: nn.Module, walk: ModelWalk | None = None, training: bool = True):
        walk = walk or ModelWalk(model)
        self.rng = torch.random.get_rng_state()
        self.buffers = [(b, b.detach().clone()) for b in walk.buffers()]
        modules = [m for _, m in walk.named_modules]
        if not training:  # every module as deployed: `trace(..., training=False)`
            model.eval()
            return
        if all(type(m).train is nn.Module.train and type(m).__setattr__ is nn.Module.__setattr__
               and type(m).children is nn.Module.children for m in modules):
            # What model.train() does (the flag of every module it recurses into), without
            # its recursion through generators and __setattr__'s checks (a bool is neither a
            # parameter, a buffer nor a module).
            for m in modules:
                object.__setattr__(m, "training", True)
        else:
            model.train()
        for m in modules:
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.eval()

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, saved in self.buffers:
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
        torch.random.set_rng_state(self.rng)


def _bind_inputs(model: nn.Module, inputs: ModelInputs, model_name: str):
    """({forward's argument: value} of the inputs and the defaults, the defaults of those
    the inputs do not give, (positional, keyword) input tensors)."""
    args, kwargs = inputs.build(model_name)
    try:
        signature = _forward_signature(model)
    except (TypeError, ValueError):  # a C-implemented forward: nothing to bind
        return {}, {}, (args, kwargs)
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
    except TypeError as exc:
        takes = ", ".join(signature.parameters) or "no arguments"
        raise TraceError(f"{model_name}.forward does not take {inputs.text()}: "
                         f"{one_line(exc)} (it takes {takes})") from None
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


# forward function -> (its defaults, keyword defaults, the bound method's signature); weak,
# so that a class defined and dropped at run time is not kept alive by it
_FORWARD_SIGNATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward_signature(model: nn.Module) -> inspect.Signature:
    """`inspect.signature(model.forward)`, made once per forward function while its
    defaults stay the ones it was made with (a Signature is immutable; making one walks the
    function's code object, a few per cent of profiling a small model)."""
    forward = model.forward
    func = getattr(forward, "__func__", None)
    if getattr(forward, "__self__", None) is not model or type(func) is not types.FunctionType \
            or "__signature__" in func.__dict__ or hasattr(func, "__wrapped__"):
        return inspect.signature(forward)
    cached = _FORWARD_SIGNATURES.get(func)
    if cached is not None and cached[0] is func.__defaults__ and \
            cached[1] is func.__kwdefaults__:
        return cached[2]
    signature = inspect.signature(forward)
    _FORWARD_SIGNATURES[func] = (func.__defaults__, func.__kwdefaults__, signature)
    return signature
