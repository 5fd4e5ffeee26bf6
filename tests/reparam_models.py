"""A re-parameterisable network, written here in the manner of MobileOne (Vasu et al. 2023) and
RepVGG: every block sums several conv-BN branches (k×k convs, a 1×1 "scale" conv, a
BatchNorm-only identity) before its activation, which at inference would be folded into one
conv. Many small operators per block, so it is the hard case for a profiler's per-operator cost
(benchmarks/profile_speed.py; tests/test_reparam_models.py checks its counts).
"""

from __future__ import annotations

from torch import nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout))


class RepBlock(nn.Module):
    """identity BN (when shapes allow) + 1×1 scale branch (k > 1) + `branches` k×k conv-BNs,
    summed, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int,
                 branches: int):
        super().__init__()
        self.skip = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.scale = conv_bn(cin, cout, 1, stride, groups) if kernel > 1 else None
        self.convs = nn.ModuleList(conv_bn(cin, cout, kernel, stride, groups)
                                   for _ in range(branches))
        self.act = nn.ReLU()

    def forward(self, x):
        out = self.skip(x) if self.skip is not None else 0
        if self.scale is not None:
            out = out + self.scale(x)
        for conv in self.convs:
            out = out + conv(x)
        return self.act(out)


class RepNet(nn.Module):
    """MobileOne-S0's layout: a 3×3 stem, then per stage a depthwise 3×3 RepBlock and a
    pointwise 1×1 RepBlock per unit, widths `widths`, units `depths`, the first unit of each
    stage striding 2; global pooling and a classifier."""

    def __init__(self, widths=(48, 128, 256, 1024), depths=(2, 8, 10, 1), branches: int = 4,
                 classes: int = 1000):
        super().__init__()
        self.stem = RepBlock(3, widths[0], 3, 2, 1, 1)
        units, cin = [], widths[0]
        for width, depth in zip(widths, depths):
            for i in range(depth):
                stride = 2 if i == 0 else 1
                units.append(nn.Sequential(RepBlock(cin, cin, 3, stride, cin, branches),
                                           RepBlock(cin, width, 1, 1, 1, branches)))
                cin = width
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))
