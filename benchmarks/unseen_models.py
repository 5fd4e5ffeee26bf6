"""Models no device calibration is fitted on: the held-out set of the device-model benchmarks.

Each builder takes no argument and returns the same weights every call (a private seeded
generator), so Fisher files and policies computed on one build apply to the next. Use them on the
command line as ``unseen_models:resnet_basic`` with ``benchmarks/`` on ``PYTHONPATH``.
"""
from __future__ import annotations

import torch
from torch import nn

_SEED = 20261206


def _seeded(build) -> nn.Module:
    # The default initialisation (biases, the class token) draws from the global generator:
    # build under a fixed seed too, so every call gives the same weights (a Fisher file or a
    # policy computed on one build checks its weights' digest against the next).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = build()
    gen = torch.Generator().manual_seed(_SEED)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with an identity or 1x1-projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBasic(nn.Module):
    """A small ResNet: stem, 8 BasicBlocks in four stages (16-32-64-128 channels), linear head."""

    def __init__(self, widths=(16, 32, 64, 128), num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class SeparableBlock(nn.Module):
    """Depthwise 5x5 then pointwise 1x1, each with BatchNorm and Hardswish; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 3):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 5, stride, 2, groups=mid, bias=False),
                                       nn.BatchNorm2d(mid), nn.Hardswish())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class SeparableNet(nn.Module):
    """A MobileNetV3-like net of depthwise-separable 5x5 blocks with Hardswish."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        cfg = [(16, 24, 2), (24, 24, 1), (24, 40, 2), (40, 40, 1), (40, 80, 2), (80, 80, 1), (80, 96, 1)]
        self.blocks = nn.Sequential(*[SeparableBlock(a, b, s) for a, b, s in cfg])
        self.final = nn.Sequential(nn.Conv2d(96, 256, 1, bias=False), nn.BatchNorm2d(256), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.final(self.blocks(self.stem(x)))), 1))


class Attention(nn.Module):
    """Multi-head self-attention from one qkv Linear and scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """A small ViT: 8x8 patches, 4 blocks of width 96 with 3 heads, class token, linear head."""

    def __init__(self, image: int = 96, patch: int = 8, dim: int = 96, depth: int = 4, heads: int = 3,
                 num_classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def resnet_basic() -> nn.Module:
    return _seeded(ResNetBasic)


def separable_hswish() -> nn.Module:
    return _seeded(SeparableNet)


def small_vit() -> nn.Module:
    return _seeded(SmallViT)


UNSEEN = {"resnet_basic": resnet_basic, "separable_hswish": separable_hswish, "small_vit": small_vit}
