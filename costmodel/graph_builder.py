"""What both tracers share: turning one recorded call (a module's or a function's, with its
real argument and output tensors) into an `OpNode`, and the finished nodes into a `LayerGraph`.

`GraphBuilder` names nodes, finds the parameters a call uses and the block it belongs to,
notes views and copies (storage aliasing, contiguity), queues the calls whose saved tensors
are measured after the forward (`costmodel.opinfo`), and prices operators without a rule from
their own call. `costmodel.fx_builder` and `costmodel.hook_tracer` feed it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import BlockFinder
from .checkpointing import CheckpointRegions
from .errors import TraceError
from .graph import MAC_KINDS, LayerGraph, OpNode
from .inputs import ModelInputs
from .kinds import function_name
from .module_calls import ModelWalk
from .opinfo import (EinsumCall, call_attrs, derive_unknown, einsum_index_sizes,
                     functional_params, matmul_operand_copies, measure_saved_remembered,
                     mha_attrs, substituted)
from .rules import Registry


def one_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line error."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def run_forward(fn, model_name, inputs: ModelInputs):
    """`fn()` (the traced forward) without autograd; the model's own failure as a TraceError
    naming the inputs, ttplan's own (a node's recording) as it was raised."""
    try:
        with torch.no_grad():
            return fn()
    except (TraceError, RecordingFailed):
        raise
    except Exception as exc:
        raise TraceError(f"{model_name} fails on {inputs.described()}: "
                         f"{type(exc).__name__}: {one_line(exc)}") from None


class RecordingFailed(Exception):
    """Recording a node (ttplan's code, not the model's) raised `original`."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


# Module calls whose saved set is measured on the call as made, with all its tensor
# arguments (nn.MultiheadAttention's q, k, v and masks; a recurrent cell's state).
WHOLE_CALL_PROBED_KINDS = frozenset({"mha", "rnn_cell"})


def _under_autocast(call, dtype):
    """`call` run under CPU autocast to `dtype`, as the traced forward ran it."""
    def run(*args, **kwargs):
        with torch.autocast("cpu", dtype=dtype):
            return call(*args, **kwargs)
    return run


# Pools that return their argmax indices as a second output (return_indices=True).
POOL_WITH_INDICES_KINDS = frozenset({"maxpool", "adaptive_maxpool"})


def pool_indices(kind: str, output_index) -> bool:
    """Is output `output_index` of an operator of `kind` a pool's indices: a tensor the
    pool's backward keeps, and MaxUnpool's too (one storage, counted once: its getitem node
    keeps it, `rules/views.pt_getitem`, `rules/pooling.pt_maxpool`)."""
    return kind in POOL_WITH_INDICES_KINDS and output_index == 1


class GraphBuilder:
    """What both tracing paths share: turning a recorded call into an `OpNode`."""

    def __init__(self, model: nn.Module, model_name: str, inputs: ModelInputs,
                 registry: Registry, block_pattern=None, walk: ModelWalk | None = None):
        """`walk`: the `ModelWalk` the tracer made of `model` for this trace, if any."""
        self.model = model
        self.registry = registry
        self.model_name = model_name
        self.inputs = inputs
        self.input_shape = inputs.shape
        self.nodes: dict[str, OpNode] = {}
        self.order: list[str] = []
        walk = walk or ModelWalk(model)  # one walk over the modules, for all of the below
        self.blocks = BlockFinder(model, registry, block_pattern, walk.named_modules)
        self.param_names = walk.parameter_names()
        self.param_calls: dict[str, int] = {}  # owner path -> calls priced so far
        self.probes: list = []  # (node name, fn, tensors, module): measured after the forward
        self.checkpoint = CheckpointRegions()  # costmodel.checkpointing
        self.eval_probes: dict[str, tuple] = {}  # node name -> (fn, tensors) in eval mode
        # Module paths name module calls; a function's node never takes one (a block profiled
        # on its own may call x.norm() and own a module named `norm`).
        self.modules = walk.modules  # path -> module (the first path of a shared one)
        self.module_paths = set(self.modules)
        self.counted_params: set[str] = set()  # parameter names some node already owns
        self.derived: dict[str, dict] = {}  # node name -> what an op without a rule costs
        self._module_kinds: dict[type, str] = {}  # the registry's kind of a module class
        self._block_of: dict[str, str] = {}  # scope -> block (BlockFinder's, one lookup)

    def module_kind(self, module: nn.Module) -> str:
        """The registry's kind of `module`, which depends on its class only (once per class)."""
        cls = type(module)
        kind = self._module_kinds.get(cls)
        if kind is None:
            kind = self._module_kinds[cls] = self.registry.module_kind(module)
        return kind

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
        self._add_node(name, "parameter", "Parameter", path, path.rpartition(".")[0], [], [],
                       out, (param, None, []), attrs)
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
            operands = [a for a in flat(args[1:]) if isinstance(a, torch.Tensor)]
            attrs["index_sizes"] = einsum_index_sizes(attrs["equation"], operands)
            if len(operands) == len(tensors):
                equation = attrs["equation"]
                self.probes.append((name, EinsumCall(equation), tensors, None))
        if kind == "pow" and (args and not isinstance(args[0], torch.Tensor)
                              or function_name(target) == "__rpow__"):
            attrs["scalar_base"] = True  # 2 ** x: PowBackward2 keeps x and the result
        elif kind == "pow" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            attrs["tensor_exponent"] = True  # x ** y (y may be x: one graph input)
        if kind == "div" and (args and not isinstance(args[0], torch.Tensor) or
                              function_name(target) in ("__rtruediv__", "__rdiv__")):
            attrs["scalar_dividend"] = True  # 1 / x
        if kind == "masked_fill":  # which graph input is the mask (a buffer's is none)
            mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
            attrs["mask_input"] = next((i for i, t in enumerate(tensors) if t is mask), None)
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
            if torch.is_autocast_enabled("cpu"):
                # under autocast the math path computes in float32 and keeps float32 copies:
                # measured on the call under the same autocast, in both modes
                cast = torch.get_autocast_dtype("cpu")
                call = _under_autocast(substituted(target, args, kwargs, tensors), cast)
                self.probes.append((name, call, tensors, None))
                self.eval_probes[name] = (_under_autocast(substituted(
                    target, args, {**kwargs, "dropout_p": 0.0} if attrs.get("dropout_p")
                    else kwargs, tensors), cast), tensors)
            elif attrs.get("dropout_p") or attrs["attn_mask"]:
                # The math path (dropout, a mask): what it keeps is measured on the call.
                self.probes.append((name, substituted(target, args, kwargs, tensors), tensors,
                                    None))
            if attrs.get("dropout_p"):
                # Written `dropout_p=self.p if self.training else 0.0` (Hugging Face's idiom),
                # it runs no dropout with the modules in eval mode (`ttplan train`): another
                # path, measured on the call without it.
                if "dropout_p" in kwargs or len(args) <= 4:
                    no_dropout = args, {**kwargs, "dropout_p": 0.0}
                else:
                    no_dropout = (*args[:4], 0.0, *args[5:]), kwargs
                self.eval_probes[name] = (substituted(target, *no_dropout, tensors), tensors)
        if found is None:
            return (None, None, []), None
        weight, bias, owner, names = found
        attrs["param_names"] = names
        return (weight, bias, []), owner

    def _probe_module_call(self, name, module, args, kwargs, tensors, attrs) -> None:
        """nn.MultiheadAttention: its shapes, and what it keeps measured on the call as
        made (q, k, v the same tensor or not, need_weights, masks); a recurrent cell: what
        it keeps with the state it was given."""
        masks = set()
        if isinstance(module, nn.MultiheadAttention):
            attrs.update(mha_attrs(module, args, kwargs))
            # Its masks stay as traced (no gradient): a float mask that needed one in the
            # measurement would turn SDPA's fused path into the math path (which keeps more).
            masks = {id(kwargs.get(k, args[i] if len(args) > i else None))
                     for i, k in ((3, "key_padding_mask"), (5, "attn_mask"))}
        distinct = list({id(t): t for t in tensors
                         if isinstance(t, torch.Tensor) and id(t) not in masks}.values())
        self.probes.append((name, lambda m, *leaves: substituted(m, args, kwargs, distinct)(
            *leaves), distinct, module))

    def _add_node(self, name, kind, op, module_path, scope, inputs, in_tensors, out, params,
                  attrs):
        """The builders' one step (their own methods call it): a node and its output."""
        if torch.is_autocast_enabled("cpu"):  # a MAC layer keeps casts of its operands
            cast = torch.get_autocast_dtype("cpu")
            attrs["autocast_bytes"] = cast.itemsize
            first = in_tensors[0] if in_tensors else None
            if isinstance(first, torch.Tensor) and first.is_floating_point() \
                    and first.dtype != cast:
                attrs["autocast_casts_input"] = True  # a new tensor, not its input
        region = self.checkpoint.current
        if region is not None:  # recomputed in the backward: keeps nothing of its own
            attrs["checkpoint"] = region
            if region in self.checkpoint.reentrant:
                attrs["checkpoint_reentrant"] = True
        if isinstance(out, (tuple, list)):
            outputs = [t for t in flat(out) if isinstance(t, torch.Tensor)]
            if outputs:
                # chunk/split/unbind, LSTM: the node stands for its first output; getitem
                # nodes pick each output, tracked on its own.
                attrs["output_shapes"] = [list(t.shape) for t in outputs]
                out = outputs[0]
        in_tensors = [t if type(t) is torch.Tensor or not isinstance(t, (tuple, list))
                      else first_tensor(t) for t in in_tensors]
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
        contiguous = True
        for t in in_tensors:
            if isinstance(t, torch.Tensor) and not t.is_contiguous():
                contiguous = False
                break
        if not contiguous:
            # Some kernels (linear on ≥3-D input, layer norm) copy such inputs and save the copy.
            attrs["inputs_contiguous"] = [bool(t.is_contiguous()) for t in in_tensors]
            if kind == "linear" and in_tensors and in_tensors[0].dim() > 2:
                try:  # F.linear flattens leading dims: a view if the strides allow, else a copy
                    in_tensors[0].view(-1, in_tensors[0].shape[-1])
                    attrs["input_flattens_as_view"] = True
                except RuntimeError:
                    attrs["input_flattens_as_view"] = False
        param_names = attrs.get("param_names")
        if param_names:
            owned = [n for names in param_names.values() for n in names]
            if owned and all(n in self.counted_params for n in owned):
                attrs["repeat_call"] = True  # tied weights (an LM head reading the embedding's)
            self.counted_params.update(owned)
        weight, bias, others = params
        weight_shape = tuple(weight.shape) if weight is not None else None
        if kind == "addmm" and weight is not None:
            # addmm(b, x, W), W in × out (GPT-2's Conv1D): a linear layer, weight transposed.
            kind, weight_shape = "linear", weight_shape[::-1]
            attrs["weight_transposed"] = True
        block = self._block_of.get(scope)
        if block is None:
            block = self._block_of[scope] = self.block_of(scope)
        node = OpNode(name, kind, op, module_path, block, list(inputs),
                      [tuple(t.shape) for t in in_tensors], out_shape, dtype_bytes, weight_shape,
                      bias.numel() if bias is not None else 0,
                      sum([p.numel() for p in others]) if others else 0, attrs)
        self.nodes[name] = node
        self.order.append(name)

    def derive(self, name, call, args, kwargs, tensors) -> None:
        """An operator without a rule: priced from its own call, measured at once (so its
        inputs are not held past their last use)."""
        derived = derive_unknown(substituted(call, args, kwargs, tensors), tensors,
                                 self.owned_storages())
        if derived is not None:
            self.derived[name] = derived

    def owned_storages(self) -> frozenset[int]:
        """Storage addresses of the model's parameters and buffers: a call that keeps one (a
        causal mask sliced from a buffer) keeps no activation of its own."""
        owned = getattr(self, "_owned", None)
        if owned is None:
            owned = self._owned = frozenset(
                t.untyped_storage().data_ptr()
                for t in (*self.model.parameters(), *self.model.buffers()))
        return owned

    def finish(self, tracer_name: str, output_names) -> LayerGraph:
        for name, fn, tensors, module in self.probes:
            attrs = self.nodes[name].attrs
            attrs["measured_saved"] = measure_saved_remembered(fn, tensors, module)
            if module is not None:  # `ttplan train` runs modules in eval mode: dropout off
                in_eval = measure_saved_remembered(fn, tensors, module, training=False)
                if in_eval != attrs["measured_saved"]:
                    attrs["measured_saved_eval"] = in_eval
        for name, (fn, tensors) in self.eval_probes.items():
            in_eval = measure_saved_remembered(fn, tensors, None)
            if in_eval != self.nodes[name].attrs.get("measured_saved"):
                self.nodes[name].attrs["measured_saved_eval"] = in_eval
        for node in self.nodes.values():  # a pool's indices, kept by their getitem node
            if node.attrs.get("pool_indices") and node.inputs and node.inputs[0] in self.nodes:
                self.nodes[node.inputs[0]].attrs["indices_node"] = node.name
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


def call_module(module, *tensors):
    return module(*tensors)


def holds_tensor(value) -> bool:
    if type(value) is torch.Tensor:  # most values: one type test
        return True
    return isinstance(value, torch.Tensor) or isinstance(value, (tuple, list)) and any(
        isinstance(t, torch.Tensor) for t in flat(value))


def first_tensor(value):
    """A tuple-valued input (an LSTM's or chunk's outputs) stands for its first tensor."""
    if isinstance(value, (tuple, list)):
        return next((t for t in flat(value) if isinstance(t, torch.Tensor)), value)
    return value


def flat(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from flat(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from flat(item)
    else:
        yield obj
