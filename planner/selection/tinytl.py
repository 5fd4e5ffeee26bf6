"""TinyTL's lite residual modules (Cai et al., 2020), so the cost model prices the real thing.

TinyTL freezes the backbone's weights and trains its biases plus a small "lite residual"
branch beside every block. Its memory saving comes from running that branch at a reduced
resolution, so the activations its weight gradients need are small. Ours, kept simple:

    block(x) + upsample( conv2_1x1( relu( conv1_1x1( avgpool(x) ) ) ) )

* avgpool: adaptive average pooling to HALF the block's OUTPUT resolution (TinyTL downsamples
  by 2; adaptive pooling also absorbs the block's own stride);
* conv1: 1×1, Cin → max(1, Cin // 2), no bias (a ReLU follows); conv2: 1×1, → Cout, with bias;
* upsample: nearest, back to the block's output size (fixed at construction, so the model
  stays torch.fx-traceable with static shapes);
* conv2 starts at zero (weight and bias): the augmented model computes exactly what the
  original does until the branch is trained. conv1 is Kaiming-initialised from a fixed seed.

TinyTL's module uses a grouped 3×3 conv and BatchNorms; the pointwise pair keeps the
same structure (reduced resolution, bottleneck, two trainable convs) with fewer moving parts.

Blocks are the model's declared blocks (the zoo's inverted-residual blocks, not the stem),
else the tracer's blocks minus the one holding the first MAC layer (the stem); only blocks
that map one 4-D tensor to one 4-D tensor get a branch. The module paths of the original
layers do not change: each block's class is swapped for a subclass whose forward adds the
branch, which lives at `<block>.lite_residual`. A block whose forward runs its own children in
order (`nn.Sequential`'s) would run the new child as one more layer; its subclass's main path
runs every child but `lite_residual`, in order. After wrapping, one forward pass checks that
every branch runs exactly once per block call, so a container that iterates its children in
some other way is refused (one line) instead of priced wrong.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ttplan.costmodel.config import mac_blocks
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import as_inputs
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE
from ttplan.costmodel.trace import trace

LITE_ATTR = "lite_residual"
_INIT_SEED = 0


class LiteResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, out_hw: tuple[int, int]):
        super().__init__()
        mid = max(1, in_channels // 2)
        self.pool = nn.AdaptiveAvgPool2d((max(1, out_hw[0] // 2), max(1, out_hw[1] // 2)))
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, out_channels, 1, bias=True)
        self.upsample = nn.Upsample(size=tuple(out_hw), mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.conv2(self.act(self.conv1(self.pool(x)))))


_CLASSES: dict[type, type] = {}


class _LiteBlock:
    """Marker base of every block class with a lite residual (for the run-once check)."""


def _children_but_lite(self, x):
    """nn.Sequential's forward without the branch: the block's own layers, in order."""
    for name, child in self._modules.items():
        if name != LITE_ATTR:
            x = child(x)
    return x


def _with_lite_residual(base: type) -> type:
    """A subclass of `base` whose forward adds the lite residual branch (one per base class)."""
    if base not in _CLASSES:
        def forward(self, x):
            return self._ttplan_main_forward(x) + self.lite_residual(x)

        main = _children_but_lite if base.forward is nn.Sequential.forward else base.forward
        _CLASSES[base] = type(f"LiteResidual{base.__name__}", (base, _LiteBlock),
                              {"forward": forward, "_ttplan_main_forward": main,
                               "__module__": __name__})
    return _CLASSES[base]


def add_lite_residuals(model: nn.Module, input_shape=DEFAULT_INPUT_SHAPE) -> nn.Module:
    """A deep copy of `model` with a lite residual beside every block (module docstring).
    The copy cannot be pickled whole (its block classes are made here); save its state_dict."""
    model = copy.deepcopy(model)
    name = getattr(model, "ttplan_name", type(model).__name__)
    # Where a residual goes depends on the blocks and on one sample's shapes, not on the batch:
    # found on a batch of one (at batch 100 these three forward passes were most of a plan).
    input_shape = as_inputs(input_shape).with_batch(1)
    graph = trace(model, input_shape, name)
    blocks = list(mac_blocks(graph))
    if not getattr(graph, "declared_blocks", None):
        macs = graph.mac_layers()
        first = macs[0].block if macs else None
        blocks = [b for b in blocks if b and b != first]
    modules = dict(model.named_modules())
    shapes = _block_shapes(model, [modules[b] for b in blocks if b in modules], input_shape)
    gen = torch.Generator().manual_seed(_INIT_SEED)
    added = 0
    for block in blocks:
        module = modules.get(block)
        shape = shapes.get(id(module))
        if module is None or shape is None:
            continue
        (cin, _, _), (cout, h, w) = shape
        lite = LiteResidual(cin, cout, (h, w))
        with torch.no_grad():
            lite.conv1.weight.copy_(torch.randn(lite.conv1.weight.shape, generator=gen)
                                    * math.sqrt(2.0 / lite.conv1.out_channels))
            lite.conv2.weight.zero_()
            lite.conv2.bias.zero_()
        module.add_module(LITE_ATTR, lite)
        module.__class__ = _with_lite_residual(type(module))
        added += 1
    if not added:
        raise SpecError(f"{name} has no block that maps a 4-D tensor to a 4-D tensor: "
                        "no place for a lite residual")
    _check_each_branch_runs_once(model, name, input_shape)
    model.ttplan_lite_residual = True
    return model


def _check_each_branch_runs_once(model: nn.Module, name: str, input_shape) -> None:
    """One forward pass: every block calls its own branch exactly once, once per block call."""
    blocks = {path: m for path, m in model.named_modules() if isinstance(m, _LiteBlock)}
    calls = dict.fromkeys(blocks, 0)
    hooks = []
    for path, block in blocks.items():
        hooks.append(block.register_forward_hook(lambda *_, p=path: calls.__setitem__(
            p, calls[p] - 1)))
        hooks.append(block.lite_residual.register_forward_hook(lambda *_, p=path: calls.__setitem__(
            p, calls[p] + 1)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _call(model, input_shape)
    except Exception as exc:  # the wrapped model must still run: say which way it failed
        raise SpecError(f"{name}: a lite residual cannot be added beside its blocks: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        ) from None
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    wrong = [p for p, n in calls.items() if n != 0]
    if wrong:
        raise SpecError(f"{name}: block {wrong[0]} runs its lite residual other than once per "
                        "call (its forward iterates its children): no place for a lite residual")


def _call(model: nn.Module, input_shape) -> None:
    """model(...) on zeros of `input_shape`, or on the inputs it stands for (costmodel.inputs)."""
    args, kwargs = as_inputs(input_shape).build()
    model(*args, **kwargs)


def _block_shapes(model: nn.Module, blocks: list[nn.Module], input_shape) -> dict:
    """{id(block): ((Cin, H, W), (Cout, Ho, Wo))} for blocks called once on one 4-D tensor."""
    seen: dict[int, list] = {}

    def hook(module, args, out):
        ok = (len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].dim() == 4
              and isinstance(out, torch.Tensor) and out.dim() == 4)
        seen.setdefault(id(module), []).append(
            (tuple(args[0].shape[1:]), tuple(out.shape[1:])) if ok else None)

    handles = [b.register_forward_hook(hook) for b in blocks]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _call(model, input_shape)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    return {k: v[0] for k, v in seen.items() if len(v) == 1 and v[0] is not None}


def lite_layer_names(model: nn.Module) -> list[str]:
    """Module paths of the lite residual convs, in definition (= execution) order."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and f".{LITE_ATTR}." in f".{name}"]
