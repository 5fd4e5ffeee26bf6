"""The three models of the TinyTrain paper, built in plain torch, and the model loader.

`build_zoo_model(name)` turns an entry of `data/architectures.json` into an `nn.Module`:

    stem         Sequential(Conv2d 3x3 stride 2, BatchNorm2d, ReLU6)
    blocks.{i}   inverted-residual block with submodules
                   expand     Sequential(1x1 conv, BN, ReLU6)   -- absent when expand_ratio == 1
                   depthwise  Sequential(kxk depthwise conv, BN, ReLU6)
                   project    Sequential(1x1 conv, BN)          -- linear bottleneck, no activation
                 and the identity shortcut `x + block(x)` where `residual` is true
    feature_mix  Sequential(1x1 conv, BN, ReLU6)                -- only where the JSON gives one
    pool         AdaptiveAvgPool2d(1), then flatten: the pooled features
    classifier   Linear                                         -- only with classifier=True

Other code finds layers by these module paths (the first conv of block 3 is
`blocks.3.expand.0`), so the names are part of the interface.

Block membership. The paper counts a "layer" as a convolution and assigns the feature-mix
convolution to the last block. Every built model carries `ttplan_blocks: list[list[str]]`: for
each inverted-residual block in order, the module paths of its convolutions, with
`feature_mix.0` appended to the last block's list. The stem is NOT a block (it appears in no
list), nor is the classifier. `block_of(model, module_path)` maps any submodule path (conv, BN
or activation) to its block index.

Weights are initialised from a private, fixed-seed generator (not the global torch RNG), so two
builds are bit-identical whatever `torch.manual_seed` was called with, and building does not
advance the global RNG. Models are returned in
train mode, as `nn.Module` constructs them; callers that need eval mode call `.eval()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import importlib
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping
from importlib import resources

import torch
from torch import nn

from ttplan.costmodel.errors import ModelLoadError
from ttplan.costmodel.fileio import note_input

ZOO_MODELS: tuple[str, ...] = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")

# Any fixed value works; it only has to stay the same so that builds are reproducible.
_INIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _architectures() -> dict:
    # Read from the installed package, so the code works outside the source tree too.
    text = resources.files("ttplan.costmodel").joinpath("data/architectures.json").read_text("utf-8")
    return json.loads(text)


def zoo_architecture(name: str) -> dict:
    """The JSON description of a zoo model (a copy: callers may modify it)."""
    if name not in ZOO_MODELS:
        raise ModelLoadError(_unknown_name_message(name))
    return copy.deepcopy(_architectures()[name])


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    # bias=False: the BatchNorm right after the conv has its own shift.
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: (expand) -> depthwise -> project, optional identity shortcut."""

    def __init__(self, spec: Mapping):
        super().__init__()
        cin, mid, cout = spec["in_channels"], spec["mid_channels"], spec["out_channels"]
        kernel, stride = spec["kernel_size"], spec["stride"]
        self.has_expand = spec["expand_ratio"] != 1
        if self.has_expand:
            self.expand = _conv_bn(cin, mid, 1)
        elif mid != cin:
            raise ValueError(f"block without expansion needs mid_channels == in_channels: {spec}")
        self.depthwise = _conv_bn(mid, mid, kernel, stride=stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        # A plain bool fixed at build time, so fx tracing sees no data-dependent branch.
        self.residual = bool(spec["residual"])
        if self.residual and (stride != 1 or cin != cout):
            raise ValueError(f"identity shortcut needs stride 1 and in == out channels: {spec}")

    def conv_names(self) -> list[str]:
        """Relative paths of this block's convolutions, in execution order."""
        names = ["expand.0"] if self.has_expand else []
        return names + ["depthwise.0", "project.0"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.expand(out)
        out = self.project(self.depthwise(out))
        if self.residual:
            out = x + out
        return out


class ZooNet(nn.Module):
    """Stem, inverted-residual blocks, optional feature mix, pooled features, optional head."""

    def __init__(self, name: str, arch: Mapping, classifier: bool = False):
        super().__init__()
        stem = arch["stem"]
        self.stem = _conv_bn(stem["in_channels"], stem["out_channels"], stem["kernel_size"],
                             stride=stem["stride"])
        self.blocks = nn.ModuleList(InvertedResidual(b) for b in arch["blocks"])
        mix = arch.get("feature_mix")
        self.has_feature_mix = mix is not None
        if self.has_feature_mix:
            self.feature_mix = _conv_bn(mix["in_channels"], mix["out_channels"],
                                        mix["kernel_size"], stride=mix["stride"])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.has_classifier = classifier
        head = arch["classifier"]
        if classifier:
            self.classifier = nn.Linear(head["in_features"], head["out_features"])
        # Width of the pooled features; the classifier's input.
        self.feature_dim: int = head["in_features"]
        self.ttplan_name = name
        self.ttplan_blocks: list[list[str]] = [
            [f"blocks.{i}.{conv}" for conv in block.conv_names()]
            for i, block in enumerate(self.blocks)
        ]
        # The tracer files the feature-mix layer under the last block, as the paper counts it.
        self.ttplan_block_aliases: dict[str, str] = {}
        if self.has_feature_mix:
            self.ttplan_blocks[-1].append("feature_mix.0")
            self.ttplan_block_aliases["feature_mix"] = f"blocks.{len(self.blocks) - 1}"
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        if self.has_feature_mix:
            x = self.feature_mix(x)
        x = torch.flatten(self.pool(x), 1)
        if self.has_classifier:
            x = self.classifier(x)
        return x


@torch.no_grad()
def _init_weights(model: nn.Module) -> None:
    # A local generator keeps the build independent of (and harmless to) the global RNG.
    gen = torch.Generator().manual_seed(_INIT_SEED)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # Kaiming normal, fan_out mode, ReLU gain. Written out rather than calling
            # nn.init.kaiming_normal_ because its `generator` argument is missing in older torch.
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            std = math.sqrt(2.0 / fan_out)
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1
        elif isinstance(module, nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.01)
            module.bias.zero_()


def build_zoo_model(name: str, classifier: bool = False) -> nn.Module:
    """Build zoo model `name` (one of ZOO_MODELS), ending at the pooled features unless
    `classifier` is true. Raises ModelLoadError for an unknown name."""
    arch = zoo_architecture(name)
    # torch's layer constructors draw their default init from the global RNG; fork it so that
    # building a model does not shift a caller's seeded random stream.
    with torch.random.fork_rng(devices=[]):
        return ZooNet(name, arch, classifier=classifier)


def block_of(model: nn.Module, module_path: str) -> int | None:
    """Index of the block that submodule `module_path` of a zoo model belongs to, or None
    (stem, pool, classifier). The feature mix belongs to the last block, as in the paper."""
    parts = module_path.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1])
    if parts[0] == "feature_mix":
        return len(model.ttplan_blocks) - 1
    return None


# --------------------------------------------------------------------------------------------
# Loading a model from the command line: a zoo name or an import path, plus optional weights.
#
# Only the user may name code to run. An import path comes from the command line (or a Python
# caller); a name read from a file (a policy's model.name) is only ever looked up in the zoo
# (`zoo_model_named_in_file`). `module:callable` is imported from sys.path as Python would;
# inside `command_line_models()` — what the CLI opens for each command — the working
# directory is searched too, after everything else and only while that module is imported and
# its callable called, so `ttplan profile mymodels:build` finds ./mymodels.py. Nothing is left
# on sys.path afterwards.

_SEARCH_CWD: contextvars.ContextVar[bool] = contextvars.ContextVar("ttplan_search_cwd",
                                                                   default=False)


@contextlib.contextmanager
def command_line_models() -> Iterator[None]:
    """Import paths given in this scope come from the command line: search the working
    directory for them too."""
    token = _SEARCH_CWD.set(True)
    try:
        yield
    finally:
        _SEARCH_CWD.reset(token)


@contextlib.contextmanager
def _working_directory_on_path() -> Iterator[None]:
    if not _SEARCH_CWD.get():
        yield
        return
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)  # last: it never shadows an installed package
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def zoo_model_named_in_file(name: str, source: str, classifier: bool = False) -> tuple[nn.Module, str]:
    """The model a data file names: a zoo model, or a one-line refusal. Never imports."""
    if not isinstance(name, str) or name not in ZOO_MODELS:
        raise ModelLoadError(f"{source} names model {str(name)[:80]!r}, which is not a zoo model "
                             f"({', '.join(ZOO_MODELS)}); a file never names code to run: give "
                             "the model on the command line with --model module:callable")
    return build_zoo_model(name, classifier=classifier), name


def _one_line(exc: BaseException, limit: int = 200) -> str:
    # The CLI prints errors on one line; many library messages span several.
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    kind = type(exc)
    # Some library exceptions have bare names ("error" from struct); qualify non-builtins.
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return f"{name}: {text}"


def _unknown_name_message(spec: str) -> str:
    return (f"unknown model {spec!r}: expected one of {', '.join(ZOO_MODELS)}, "
            f"or an import path 'module.sub:callable' (with a colon)")


def _model_from_import_path(spec: str) -> nn.Module:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ModelLoadError(f"bad import path {spec!r}: expected 'module.sub:callable'")
    with _working_directory_on_path():
        return _import_and_call(spec, module_name, attr_path)


def _import_and_call(spec: str, module_name: str, attr_path: str) -> nn.Module:
    try:
        target = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # any import-time failure is the user's module
        raise ModelLoadError(f"cannot import module {module_name!r} for model {spec!r}: "
                             f"{_one_line(exc)}") from exc
    if getattr(target, "__file__", None):
        note_input(target.__file__)  # --out must not overwrite the model's own code
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise ModelLoadError(f"model {spec!r}: module {module_name!r} has no attribute "
                                 f"{attr_path!r} ({attr!r} not found)")
        target = getattr(target, attr)
    if not callable(target):
        raise ModelLoadError(f"model {spec!r}: {attr_path!r} is not callable")
    try:
        model = target()
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(f"model {spec!r}: calling {attr_path}() failed: "
                             f"{_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"model {spec!r}: {attr_path}() returned "
                             f"{type(model).__name__}, not a torch.nn.Module")
    return model


def _first_few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _load_weights(model: nn.Module, path: str) -> None:
    if not os.path.isfile(path):  # a FIFO or device is refused before torch.load waits on it
        raise ModelLoadError(f"weights {path!r}: not found or not a regular file")
    note_input(path)
    try:
        # weights_only: a weights file must never be able to run code.
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except (Exception, MemoryError) as exc:
        raise ModelLoadError(f"cannot read weights {path!r} as a torch checkpoint: "
                             f"{_one_line(exc)}") from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not (isinstance(loaded, Mapping)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                    for k, v in loaded.items())):
        raise ModelLoadError(f"weights {path!r} are not a state dict (a mapping of names to "
                             f"tensors, possibly under key 'state_dict')")
    # Check keys and shapes ourselves: torch's own message spans many lines.
    expected = model.state_dict()
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_first_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_first_few(unexpected)}")
        raise ModelLoadError(f"weights {path!r} do not match the model: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(loaded[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if loaded[k].shape != v.shape]
    if wrong:
        raise ModelLoadError(f"weights {path!r} have wrong shapes (file vs model): "
                             f"{_first_few(wrong)}")
    try:
        model.load_state_dict(loaded, strict=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load weights {path!r}: {_one_line(exc)}") from exc


def load_model(spec: str, weights: str | None = None,
               classifier: bool = False) -> tuple[nn.Module, str]:
    """Resolve a command-line model spec to (model, display name).

    `spec` is a zoo name (built with or without the classifier) or an import path
    'module.sub:callable', called with no arguments (`classifier` does not apply to it; the
    callable decides). `weights`, if given, is a state dict file loaded strictly. The model is
    returned in train mode, as built. Every failure raises ModelLoadError with a one-line message.
    """
    if ":" in spec:
        model = _model_from_import_path(spec)
    elif spec in ZOO_MODELS:
        model = build_zoo_model(spec, classifier=classifier)
    else:
        raise ModelLoadError(_unknown_name_message(spec))
    if weights is not None:
        _load_weights(model, weights)
    return model, spec
