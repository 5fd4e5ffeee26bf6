"""Exact forward / backward MAC counts of small models, derived by hand.

Every expected number below is written out as a product of the model's own integers with a
comment saying where each factor comes from; none is copied from ttplan's output.

Formulas (costmodel/rules/conv.py and linear.py, restated so the derivations can be read alone):
  conv      forward = N · Cout · Hout · Wout · (Cin/groups) · kh · kw
  conv^T    forward = N · Cin · Hin · Win · (Cout/groups) · kh · kw  (each input element
            meets every weight of its group once)
  linear    forward = (rows of the input) · out_features · in_features
  backward  input gradient  = forward, only where the layer's input needs a gradient, i.e.
            depends on some trainable parameter upstream;
            weight gradient = forward × (fraction of weight channels updated).

Expected values are dicts {MAC layer name: (forward, backward_input, backward_weight)}.
`check` runs both memory conventions: they differ in memory, never in MACs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttplan.costmodel.config import LayerUpdate
from ttplan.costmodel.graph import MAC_KINDS
from ttplan import profile

CONVENTIONS = ("paper", "pytorch")


pytestmark = pytest.mark.usefixtures("one_thread")


def mac_costs(model: nn.Module, shape, update, convention, batch_size=None) -> dict:
    """{MAC layer: (forward, backward input, backward weight)} as ttplan reports them;
    also checks that non-MAC rows cost no MACs and the totals add the rows up."""
    p = profile(model, shape, update=update, options={"convention": convention},
                batch_size=batch_size)
    costs = {}
    for row in p.evaluation.rows:
        triple = (row["forward_macs"], row["backward_input_macs"], row["backward_weight_macs"])
        if row["kind"] in MAC_KINDS:
            costs[row["name"]] = triple
        else:
            assert triple == (0, 0, 0), row["name"]
    totals = p.totals
    assert totals["forward_macs"] == sum(c[0] for c in costs.values())
    assert totals["backward_input_macs"] == sum(c[1] for c in costs.values())
    assert totals["backward_weight_macs"] == sum(c[2] for c in costs.values())
    assert totals["backward_macs"] == totals["backward_input_macs"] + totals["backward_weight_macs"]
    assert totals["forward_flops"] == 2 * totals["forward_macs"]
    return costs


def check(factory, shape, update, expected, batch_size=None):
    for convention in CONVENTIONS:
        assert mac_costs(factory(), shape, update, convention, batch_size) == expected, convention


def frozen(forward: dict) -> dict:
    """Expected costs when nothing is trained: forward only."""
    return {name: (f, 0, 0) for name, f in forward.items()}


# --------------------------------------------------------------------------------------------
# Plain conv stack, no BatchNorm. Input 1x3x16x16.
#   "0" Conv2d(3, 8, 3, pad 1)            -> 8x16x16
#   "2" Conv2d(8, 16, 3, stride 2, pad 1) -> 16x8x8
#   "4" Conv2d(16, 16, 1)                 -> 16x8x8

PLAIN_SHAPE = (1, 3, 16, 16)
P0 = 1 * 8 * 16 * 16 * 3 * 3 * 3  # N·Cout·H·W · Cin·k·k = 55296
P2 = 1 * 16 * 8 * 8 * 8 * 3 * 3  # 73728
P4 = 1 * 16 * 8 * 8 * 16 * 1 * 1  # 16384
PLAIN = {"0": P0, "2": P2, "4": P4}


def plain_stack(bias=(True, False, True)) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=bias[0]), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=bias[1]), nn.ReLU(),
        nn.Conv2d(16, 16, 1, bias=bias[2]))


def test_plain_all():
    # The first layer reads the model input, which needs no gradient: no input-grad MACs.
    check(plain_stack, PLAIN_SHAPE, "all",
          {"0": (P0, 0, P0), "2": (P2, P2, P2), "4": (P4, P4, P4)})


def test_plain_none():
    check(plain_stack, PLAIN_SHAPE, "none", frozen(PLAIN))


def test_plain_last_layers():
    # K=1: only "4" is trained; its input comes from frozen layers, so no input gradient.
    check(plain_stack, PLAIN_SHAPE, "last-layers:1",
          {"0": (P0, 0, 0), "2": (P2, 0, 0), "4": (P4, 0, P4)})
    # K=2: "2" is the first trainable layer (no input grad); "4" must pass the gradient on.
    check(plain_stack, PLAIN_SHAPE, "last-layers:2",
          {"0": (P0, 0, 0), "2": (P2, 0, P2), "4": (P4, P4, P4)})


def test_plain_middle_layer_only():
    # Nothing before the trained layer gets any backward MACs; everything after it passes the
    # gradient back (input grad), without weight grad.
    check(plain_stack, PLAIN_SHAPE, {"2": LayerUpdate()},
          {"0": (P0, 0, 0), "2": (P2, 0, P2), "4": (P4, P4, 0)})


def test_plain_bias_only():
    # Biases (True, False, True): "0" has a bias, so every MAC layer after it needs an input
    # gradient to reach it; no weight gradient anywhere.
    check(plain_stack, PLAIN_SHAPE, "bias-only",
          {"0": (P0, 0, 0), "2": (P2, P2, 0), "4": (P4, P4, 0)})
    # Biases (False, True, True): the first bias is in "2", whose own input needs no gradient.
    check(lambda: plain_stack((False, True, True)), PLAIN_SHAPE, "bias-only",
          {"0": (P0, 0, 0), "2": (P2, 0, 0), "4": (P4, P4, 0)})
    # No bias and no BatchNorm: bias-only has nothing to train.
    check(lambda: plain_stack((False, False, False)), PLAIN_SHAPE, "bias-only", frozen(PLAIN))


def test_plain_channel_subset():
    # Output channels {0, 2} of "2": 2 of its 16 filters, each still over all 8 input channels:
    # N · 2 · Hout·Wout · Cin·k·k.
    check(plain_stack, PLAIN_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (P0, 0, 0), "2": (P2, 0, 1 * 2 * 8 * 8 * 8 * 3 * 3), "4": (P4, P4, 0)})
    # Input channels {0, 2} of "2": all 16 filters, but only 2 of 8 input channels each:
    # N · Cout · Hout·Wout · 2·k·k.
    check(plain_stack, PLAIN_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=1)},
          {"0": (P0, 0, 0), "2": (P2, 0, 1 * 16 * 8 * 8 * 2 * 3 * 3), "4": (P4, P4, 0)})


# --------------------------------------------------------------------------------------------
# The same stack with bias-free convs each followed by BatchNorm. `paper` folds each BN into
# its conv (the conv gains a bias); `pytorch` keeps BN and trains its shift as the layer's
# bias. Either way bias-only makes every conv after the first pass an input gradient.

def conv_bn_stack() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))


def test_conv_bn_bias_only():
    # Same conv geometry as the plain stack: names "0", "3", "6".
    check(conv_bn_stack, PLAIN_SHAPE, "bias-only",
          {"0": (P0, 0, 0), "3": (P2, P2, 0), "6": (P4, P4, 0)})


def test_conv_bn_all_and_last():
    check(conv_bn_stack, PLAIN_SHAPE, "all",
          {"0": (P0, 0, P0), "3": (P2, P2, P2), "6": (P4, P4, P4)})
    check(conv_bn_stack, PLAIN_SHAPE, "last-layers:2",
          {"0": (P0, 0, 0), "3": (P2, 0, P2), "6": (P4, P4, P4)})


# --------------------------------------------------------------------------------------------
# Depthwise conv. Input 1x4x8x8.
#   "0" Conv2d(4, 8, 1)                    -> 8x8x8
#   "2" Conv2d(8, 8, 3, pad 1, groups 8)   -> 8x8x8   (one 3x3 filter per channel)
#   "4" Conv2d(8, 4, 1)                    -> 4x8x8

DW_SHAPE = (1, 4, 8, 8)
D0 = 1 * 8 * 8 * 8 * 4  # 2048
D2 = 1 * 8 * 8 * 8 * (8 // 8) * 3 * 3  # Cin/groups = 1: 4608
D4 = 1 * 4 * 8 * 8 * 8  # 2048


def depthwise_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1))


def test_depthwise():
    # Each weight of a depthwise filter meets Hout·Wout input values: weight grad = forward.
    check(depthwise_net, DW_SHAPE, "all",
          {"0": (D0, 0, D0), "2": (D2, D2, D2), "4": (D4, D4, D4)})
    check(depthwise_net, DW_SHAPE, "last-layers:2",
          {"0": (D0, 0, 0), "2": (D2, 0, D2), "4": (D4, D4, D4)})
    check(depthwise_net, DW_SHAPE, "last-layers:1",
          {"0": (D0, 0, 0), "2": (D2, 0, 0), "4": (D4, 0, D4)})
    check(depthwise_net, DW_SHAPE, "bias-only",  # all three convs have a bias
          {"0": (D0, 0, 0), "2": (D2, D2, 0), "4": (D4, D4, 0)})
    check(depthwise_net, DW_SHAPE, "none", frozen({"0": D0, "2": D2, "4": D4}))


def test_depthwise_channel_subset():
    # Channels {0, 2} of 8 depthwise filters: N · 2 · Hout·Wout · 1·k·k.
    check(depthwise_net, DW_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (D0, 0, 0), "2": (D2, 0, 1 * 2 * 8 * 8 * 1 * 3 * 3), "4": (D4, D4, 0)})
    # Axis 1 of a depthwise weight (8, 1, 3, 3) has one channel: selecting it is everything.
    check(depthwise_net, DW_SHAPE, {"2": LayerUpdate(channels=(0,), channel_axis=1)},
          {"0": (D0, 0, 0), "2": (D2, 0, D2), "4": (D4, D4, 0)})


# --------------------------------------------------------------------------------------------
# Grouped conv. Input 1x4x8x8.
#   "0" Conv2d(4, 8, 1)                        -> 8x8x8
#   "2" Conv2d(8, 16, 3, pad 1, groups g)      -> 16x8x8, weight (16, 8/g, 3, 3)
#   "4" Conv2d(16, 4, 1)                       -> 4x8x8

G0 = 1 * 8 * 8 * 8 * 4  # 2048
G4 = 1 * 4 * 8 * 8 * 16  # 4096
GROUPED = {
    # groups: (forward of "2", out-channel subset {0,2}, in-channel subset, its channels)
    2: (1 * 16 * 8 * 8 * (8 // 2) * 3 * 3,  # 36864
        1 * 2 * 8 * 8 * (8 // 2) * 3 * 3,  # 2 filters of 16: 4608
        1 * 16 * 8 * 8 * 2 * 3 * 3, (0, 2)),  # 2 of 4 input channels per group: 18432
    4: (1 * 16 * 8 * 8 * (8 // 4) * 3 * 3,  # 18432
        1 * 2 * 8 * 8 * (8 // 4) * 3 * 3,  # 2304
        1 * 16 * 8 * 8 * 1 * 3 * 3, (1,)),  # 1 of 2 input channels per group: 9216
}


def grouped_net(groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1, groups=groups), nn.ReLU(),
                         nn.Conv2d(16, 4, 1))


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped(groups):
    g2, out_subset, in_subset, in_channels = GROUPED[groups]
    net = lambda: grouped_net(groups)  # noqa: E731
    check(net, DW_SHAPE, "all", {"0": (G0, 0, G0), "2": (g2, g2, g2), "4": (G4, G4, G4)})
    check(net, DW_SHAPE, "last-layers:2", {"0": (G0, 0, 0), "2": (g2, 0, g2), "4": (G4, G4, G4)})
    check(net, DW_SHAPE, "last-layers:1", {"0": (G0, 0, 0), "2": (g2, 0, 0), "4": (G4, 0, G4)})
    check(net, DW_SHAPE, "bias-only", {"0": (G0, 0, 0), "2": (g2, g2, 0), "4": (G4, G4, 0)})
    check(net, DW_SHAPE, "none", frozen({"0": G0, "2": g2, "4": G4}))
    check(net, DW_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (G0, 0, 0), "2": (g2, 0, out_subset), "4": (G4, G4, 0)})
    check(net, DW_SHAPE, {"2": LayerUpdate(channels=in_channels, channel_axis=1)},
          {"0": (G0, 0, 0), "2": (g2, 0, in_subset), "4": (G4, G4, 0)})


# --------------------------------------------------------------------------------------------
# Residual block. Input 1x3x8x8, all convs bias-free, no BatchNorm.
#   stem  Conv2d(3, 8, 3, pad 1)  -> 8x8x8, then relu = s
#   conv1 Conv2d(8, 8, 3, pad 1)  -> relu -> conv2 Conv2d(8, 8, 3, pad 1) = y
#   head  Conv2d(8, 4, 1) on relu(s + y)

class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.head = nn.Conv2d(8, 4, 1, bias=False)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        y = self.conv2(torch.relu(self.conv1(s)))
        return self.head(torch.relu(s + y))


RES_SHAPE = (1, 3, 8, 8)
RS = 1 * 8 * 8 * 8 * 3 * 3 * 3  # 13824
R1 = 1 * 8 * 8 * 8 * 8 * 3 * 3  # 36864
R2 = R1  # same geometry as conv1
RH = 1 * 4 * 8 * 8 * 8 * 1 * 1  # 2048
RESIDUAL = {"stem": RS, "conv1": R1, "conv2": R2, "head": RH}


def test_residual():
    check(Residual, RES_SHAPE, "all", {"stem": (RS, 0, RS), "conv1": (R1, R1, R1),
                                      "conv2": (R2, R2, R2), "head": (RH, RH, RH)})
    check(Residual, RES_SHAPE, "last-layers:1", {**frozen(RESIDUAL), "head": (RH, 0, RH)})
    # conv2 reads relu(conv1(s)): frozen upstream, so no input grad. The head's input s + y
    # depends on conv2 through the add, so the head passes the gradient back.
    check(Residual, RES_SHAPE, "last-layers:2",
          {"stem": (RS, 0, 0), "conv1": (R1, 0, 0), "conv2": (R2, 0, R2), "head": (RH, RH, RH)})
    # Training only the stem: both paths after it carry a gradient (conv1/conv2 on the branch,
    # the head through the add), but none of them updates weights.
    check(Residual, RES_SHAPE, {"stem": LayerUpdate()},
          {"stem": (RS, 0, RS), "conv1": (R1, R1, 0), "conv2": (R2, R2, 0), "head": (RH, RH, 0)})
    check(Residual, RES_SHAPE, {"conv1": LayerUpdate()},
          {"stem": (RS, 0, 0), "conv1": (R1, 0, R1), "conv2": (R2, R2, 0), "head": (RH, RH, 0)})
    # No biases, no BatchNorm: bias-only trains nothing.
    check(Residual, RES_SHAPE, "bias-only", frozen(RESIDUAL))
    check(Residual, RES_SHAPE, "none", frozen(RESIDUAL))


# --------------------------------------------------------------------------------------------
# Linear head. Input 1x3x4x4: "0" Conv2d(3, 4, 3, pad 1) -> 4x4x4, flatten to 64, "3" Linear(64, 10).

HEAD_SHAPE = (1, 3, 4, 4)
H0 = 1 * 4 * 4 * 4 * 3 * 3 * 3  # 1728
H3 = 1 * 10 * 64  # rows · out_features · in_features = 640


def linear_head() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


def test_linear_head():
    check(linear_head, HEAD_SHAPE, "all", {"0": (H0, 0, H0), "3": (H3, H3, H3)})
    check(linear_head, HEAD_SHAPE, "last-layers:1", {"0": (H0, 0, 0), "3": (H3, 0, H3)})
    check(linear_head, HEAD_SHAPE, "last-layers:2", {"0": (H0, 0, H0), "3": (H3, H3, H3)})
    check(linear_head, HEAD_SHAPE, "bias-only", {"0": (H0, 0, 0), "3": (H3, H3, 0)})
    check(linear_head, HEAD_SHAPE, "none", frozen({"0": H0, "3": H3}))
    # 2 of 10 output features, each over all 64 inputs; or all 10 over 2 of 64 inputs.
    check(linear_head, HEAD_SHAPE, {"3": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (H0, 0, 0), "3": (H3, 0, 1 * 2 * 64)})
    check(linear_head, HEAD_SHAPE, {"3": LayerUpdate(channels=(0, 2), channel_axis=1)},
          {"0": (H0, 0, 0), "3": (H3, 0, 1 * 10 * 2)})


# Linear on a 3-D input 2x7x6: every one of the 2·7 rows is a matrix-vector product.
#   "0" Linear(6, 12) -> 2x7x12, relu, "2" Linear(12, 5) -> 2x7x5

SEQ_SHAPE = (2, 7, 6)
L0 = 2 * 7 * 12 * 6  # 1008
L2 = 2 * 7 * 5 * 12  # 840


def linear_3d() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 5))


def test_linear_3d_input():
    check(linear_3d, SEQ_SHAPE, "all", {"0": (L0, 0, L0), "2": (L2, L2, L2)})
    check(linear_3d, SEQ_SHAPE, "last-layers:1", {"0": (L0, 0, 0), "2": (L2, 0, L2)})
    check(linear_3d, SEQ_SHAPE, "bias-only", {"0": (L0, 0, 0), "2": (L2, L2, 0)})
    check(linear_3d, SEQ_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (L0, 0, 0), "2": (L2, 0, 2 * 7 * 2 * 12)})
    check(linear_3d, SEQ_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=1)},
          {"0": (L0, 0, 0), "2": (L2, 0, 2 * 7 * 5 * 2)})


# --------------------------------------------------------------------------------------------
# Transposed conv. Input 1x3x8x8.
#   "0" Conv2d(3, 8, 3, stride 2, pad 1)              -> 8x4x4
#   "2" ConvTranspose2d(8, 4, 4, stride 2, pad 1)     -> 4x8x8, weight (Cin 8, Cout 4, 4, 4)
#   "4" Conv2d(4, 2, 1)                               -> 2x8x8

TR_SHAPE = (1, 3, 8, 8)
T0 = 1 * 8 * 4 * 4 * 3 * 3 * 3  # 3456
T2 = 1 * 8 * 4 * 4 * 4 * 4 * 4  # N·Cin·Hin·Win · Cout·kh·kw = 8192
T4 = 1 * 2 * 8 * 8 * 4  # 512


def transposed_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 2, 1))


def test_conv_transpose():
    check(transposed_net, TR_SHAPE, "all",
          {"0": (T0, 0, T0), "2": (T2, T2, T2), "4": (T4, T4, T4)})
    check(transposed_net, TR_SHAPE, "last-layers:2",
          {"0": (T0, 0, 0), "2": (T2, 0, T2), "4": (T4, T4, T4)})
    check(transposed_net, TR_SHAPE, "bias-only",
          {"0": (T0, 0, 0), "2": (T2, T2, 0), "4": (T4, T4, 0)})
    # Axis 0 is always *output* channels, though a transposed weight stores them in dim 1:
    # 2 of 4 output channels, every input element: N·Cin·Hin·Win · 2·kh·kw.
    check(transposed_net, TR_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=0)},
          {"0": (T0, 0, 0), "2": (T2, 0, 1 * 8 * 4 * 4 * 2 * 4 * 4), "4": (T4, T4, 0)})
    # 2 of 8 input channels: N·2·Hin·Win · Cout·kh·kw.
    check(transposed_net, TR_SHAPE, {"2": LayerUpdate(channels=(0, 2), channel_axis=1)},
          {"0": (T0, 0, 0), "2": (T2, 0, 1 * 2 * 4 * 4 * 4 * 4 * 4), "4": (T4, T4, 0)})


# --------------------------------------------------------------------------------------------
# Batch size: every count above is for the whole batch, so a batch of 3 triples each of them.

BATCH_CASES = {
    "plain": (plain_stack, PLAIN_SHAPE,
              {"0": (P0, 0, P0), "2": (P2, P2, P2), "4": (P4, P4, P4)}),
    "depthwise": (depthwise_net, DW_SHAPE,
                  {"0": (D0, 0, D0), "2": (D2, D2, D2), "4": (D4, D4, D4)}),
    "residual": (Residual, RES_SHAPE, {"stem": (RS, 0, RS), "conv1": (R1, R1, R1),
                                       "conv2": (R2, R2, R2), "head": (RH, RH, RH)}),
    "linear_head": (linear_head, HEAD_SHAPE, {"0": (H0, 0, H0), "3": (H3, H3, H3)}),
    "linear_3d": (linear_3d, SEQ_SHAPE, {"0": (L0, 0, L0), "2": (L2, L2, L2)}),
    "transposed": (transposed_net, TR_SHAPE,
                   {"0": (T0, 0, T0), "2": (T2, T2, T2), "4": (T4, T4, T4)}),
}


@pytest.mark.parametrize("case", BATCH_CASES)
def test_batch_scales_linearly(case):
    # The shapes above have batch 1, except linear_3d's batch 2 (whose counts carry a factor 2).
    factory, shape, expected = BATCH_CASES[case]
    scale = 3 / shape[0]
    tripled = {k: tuple(round(v * scale) for v in t) for k, t in expected.items()}
    check(factory, shape, "all", tripled, batch_size=3)


# --------------------------------------------------------------------------------------------
# A module called twice shares one weight. Input 1x3x8x8:
#   "a"  Conv2d(3, 4, 1)  -> 4x8x8
#   "c"  Conv2d(4, 4, 1)  -> 4x8x8, relu, then the same module again as "c#2" -> 4x8x8

class SharedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1, bias=False)
        self.c = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x):
        return self.c(torch.relu(self.c(self.a(x))))


SA = 1 * 4 * 8 * 8 * 3  # 768
SC = 1 * 4 * 8 * 8 * 4  # 1024, for either call of c


def test_shared_module_all():
    check(SharedConv, RES_SHAPE, "all", {"a": (SA, 0, SA), "c": (SC, SC, SC), "c#2": (SC, SC, SC)})


def test_shared_module_update():
    # Training module c updates c.weight, which both calls use: d(loss)/d(c.weight) is the sum
    # of each call's weight gradient (SC each), and reaching the first call needs the input
    # gradient of the second (SC). Total backward 3·SC = 3072 MACs; torch's FlopCounterMode on
    # this backward (only c.weight requiring grad) counts 6144 FLOPs = 2·3072.
    check(SharedConv, RES_SHAPE, {"c": LayerUpdate()},
          {"a": (SA, 0, 0), "c": (SC, 0, SC), "c#2": (SC, SC, SC)})


def test_shared_module_parameters_counted_once():
    prof = profile(SharedConv(), RES_SHAPE, update="last-layers:1",
                   options={"convention": "pytorch"})
    model_params = sum(p.numel() for p in SharedConv().parameters())
    assert prof.totals["params"] == model_params
    c = SharedConv().c
    assert prof.totals["trainable_params"] == sum(p.numel() for p in c.parameters())
