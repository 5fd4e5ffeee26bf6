"""Small, varied, deterministic test models for the cost model and the saved-tensor meter.

Each entry of `VARIED_MODELS` is a `ModelCase`: call it to get a fresh module whose weights
depend only on the case's seed (the global RNG is forked, so callers' RNG state is untouched),
and read `.input_shape` for a suitable input. Every model here is torch.fx traceable and runs a
1x3x32x32 forward in well under 50 ms on a CPU. `untraceable` is exported separately: its
forward branches on a tensor value, which torch.fx cannot trace.

Each model stresses one memory rule, named in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 3, 32, 32)


@dataclass(frozen=True)
class ModelCase:
    """A factory of fresh deterministic modules plus the input shape they expect."""

    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...] = INPUT_SHAPE
    seed: int = 0

    def __call__(self) -> nn.Module:
        # Fork so building a model neither depends on nor disturbs the caller's RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.factory()

    def example_input(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        return torch.randn(self.input_shape, generator=g)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


# (a) Conv-ReLU stack with a Linear head: ReLU saves its output, which is also the next
# conv's saved input (one storage, counted once).
def conv_relu_linear() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


# (b) Conv-BN-ReLU6, out of place: BN saves its input + 2 per-channel stats; ReLU6 (hardtanh)
# saves its input, and the next conv saves ReLU6's output (two storages).
def conv_bn_relu6() -> nn.Module:
    return nn.Sequential(
        *conv_bn(3, 8, stride=2), nn.ReLU6(),
        *conv_bn(8, 16, stride=2), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


# (c) As (b) with in-place activations: hardtanh_ saves a clone of its input (no saving);
# relu_ saves its result, which is the storage BN wrote into.
def conv_bn_relu6_inplace() -> nn.Module:
    return nn.Sequential(
        *conv_bn(3, 8, stride=2), nn.ReLU6(inplace=True),
        *conv_bn(8, 16, stride=2), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class _ResidualNet(nn.Module):
    """(d) Residual block: the add saves nothing; the skip tensor stays alive only if an op
    on either path saves it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, stride=2), nn.ReLU())
        self.body = nn.Sequential(*conv_bn(8, 8), nn.ReLU(), *conv_bn(8, 8))
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = F.relu(self.body(h) + h)
        return self.head(h.mean((2, 3)))


class _ConcatNet(nn.Module):
    """(e) Two branches joined by torch.cat: cat saves nothing; the conv after it saves the
    concatenated tensor (a new storage, not the branch outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 3, 1, 1), nn.ReLU())
        self.fuse = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.fuse(torch.cat([self.b1(h), self.b2(h)], dim=1))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


# (f) Adaptive average pooling heads: to 1x1 it is a mean (saves nothing), to 2x2 it saves
# its input.
class _PoolHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, 2, 1), nn.Hardswish())
        self.pool1 = nn.AdaptiveAvgPool2d(1)
        self.pool2 = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(8 + 8 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([torch.flatten(self.pool1(h), 1), torch.flatten(self.pool2(h), 1)], 1)
        return self.head(pooled)


# (g) Max pooling: saves its input plus int64 indices of the output's shape.
def maxpool_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


# (h) MobileNet-like depthwise + grouped convolutions.
def depthwise_grouped() -> nn.Module:
    return nn.Sequential(
        *conv_bn(3, 16, stride=2), nn.ReLU6(),
        *conv_bn(16, 16, groups=16), nn.ReLU6(),         # depthwise 3x3
        *conv_bn(16, 24, k=1, groups=4),                 # grouped pointwise, linear bottleneck
        *conv_bn(24, 24, stride=2, groups=24), nn.ReLU(),
        nn.Conv2d(24, 32, 1, groups=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


# (i) Activations that save their input (Hardswish, SiLU, GELU, LeakyReLU) or their output
# (Sigmoid, Tanh).
def activations() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.Hardswish(),
        nn.Conv2d(8, 8, 3, 1, 1), nn.Sigmoid(),
        nn.Conv2d(8, 8, 3, 2, 1), nn.SiLU(),
        nn.Conv2d(8, 8, 3, 1, 1), nn.GELU(),
        nn.Conv2d(8, 8, 1), nn.Tanh(),
        nn.Conv2d(8, 8, 1), nn.LeakyReLU(0.1),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


class _SqueezeExcite(nn.Module):
    """(j) SE gate: x * sigmoid(fc(mean(x))); the mul saves both the big x and the small gate."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


def squeeze_excite() -> nn.Module:
    return nn.Sequential(
        *conv_bn(3, 16, stride=2), nn.Hardswish(),
        _SqueezeExcite(16),
        *conv_bn(16, 16, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


# (k) Dropout: in train mode on CPU it saves a float mask of the input's shape (Dropout) or of
# N x C x 1 x 1 (Dropout2d); in eval mode it is the identity.
def dropout_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Dropout2d(0.1),
        nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 8 * 8, 32), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(32, 10))


# (l) LayerNorm over C,H,W and GroupNorm: save input, mean and rstd (per sample / group).
def norms() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.GroupNorm(2, 8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, 2, 1), nn.LayerNorm([8, 8, 8]), nn.GELU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


class _UpsampleNet(nn.Module):
    """(m) Decoder-ish: transposed conv and nearest upsampling (which saves nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.out = nn.Conv2d(4 + 8, 2, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        u = F.relu(self.up(h))
        skip = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.out(torch.cat([u, skip], dim=1))


class _TokenMixer(nn.Module):
    """(n) Transformer-ish MLP on 3-D tokens: Linear on N x L x C saves a 2-D view of its
    input's storage; softmax saves its output."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, 4)
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.score = nn.Linear(16, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # N x 64 x 16
        t = t + self.fc2(F.gelu(self.fc1(self.norm(t))))
        w = torch.softmax(self.score(t), dim=1)         # attention-pool weights, N x 64 x 1
        return self.head((w * t).sum(1))


VARIED_MODELS: dict[str, ModelCase] = {
    "conv_relu_linear": ModelCase(conv_relu_linear),
    "conv_bn_relu6": ModelCase(conv_bn_relu6),
    "conv_bn_relu6_inplace": ModelCase(conv_bn_relu6_inplace),
    "residual": ModelCase(_ResidualNet),
    "concat": ModelCase(_ConcatNet),
    "pool_heads": ModelCase(_PoolHeads),
    "maxpool": ModelCase(maxpool_net),
    "depthwise_grouped": ModelCase(depthwise_grouped),
    "activations": ModelCase(activations),
    "squeeze_excite": ModelCase(squeeze_excite),
    "dropout": ModelCase(dropout_net),
    "norms": ModelCase(norms),
    "upsample": ModelCase(_UpsampleNet),
    "token_mixer": ModelCase(_TokenMixer),
}


class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx raises TraceError on `if x.sum() > 0`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.pos = nn.Conv2d(8, 8, 3, 1, 1)
        self.neg = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        if h.sum() > 0:
            h = F.relu(self.pos(h))
        else:
            h = F.relu(self.neg(h))
        return self.head(h.mean((2, 3)))


# Not in VARIED_MODELS on purpose: callers that trace every entry must not meet it.
untraceable = ModelCase(_Untraceable)

__all__ = ["ModelCase", "VARIED_MODELS", "untraceable", "INPUT_SHAPE"]
