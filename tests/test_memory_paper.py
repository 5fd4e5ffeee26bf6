"""The `paper` convention (appendix A.4) on a model small enough to cost by hand.

Model: conv1 3→4 3×3 pad 1 (+BN, ReLU) → conv2 4→8 1×1 (+BN, ReLU6) → global avg pool →
flatten → linear 8→2, input 1×3×8×8, fp32. Under `paper` the BNs are folded: conv1 gains 4
bias values, conv2 8. Parameters: 108 + 4 + 32 + 8 + 16 + 2 = 170.
Activation bytes: x 3·64·4 = 768, conv1 out 4·64·4 = 1,024, conv2 out 8·64·4 = 2,048,
pooled 8·4 = 32, logits 2·4 = 8. ReLU/ReLU6 run in place.
F2 (peak of buffers alive at once) is at conv2: its input 1,024 + its output 2,048 = 3,072.
"""

import pytest
import torch
from torch import nn

from ttplan.costmodel.config import LayerUpdate
from ttplan import profile


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def prof(update, **options):
    # weights in RAM unless asked: F1 holds all of them
    options = {"convention": "paper", "weights_in_flash": False, **options}
    return profile(tiny(), (1, 3, 8, 8), update=update, options=options)


def test_paper_default_keeps_frozen_weights_in_flash():
    # A.4: "we only include the model weights to be updated"
    m = profile(tiny(), (1, 3, 8, 8), update="last-layers:1",
                options={"convention": "paper"}).memory
    assert m.weights_bytes == m.updated_weight_bytes == 18 * 4
    assert m.peak_bytes == 72 + 72 + 3072


def test_all():
    p = prof("all")
    m = p.memory
    assert p.totals["params"] == 170
    assert m.weights_bytes == 170 * 4 and m.gradient_bytes == 170 * 4 and m.optimizer_bytes == 0
    assert m.io_buffer_bytes == 1024 + 2048
    # B4: inputs of the three updated layers: x, the ReLU output, the pooled features
    assert m.saved_input_bytes == 768 + 1024 + 32
    # B3: one bit per element for ReLU (4·64) and ReLU6 (8·64)
    assert m.mask_bytes == 256 // 8 + 512 // 8
    assert m.saved_activation_bytes == 1824 + 96
    assert m.peak_bytes == 680 + 680 + max(3072, 1920)
    # forward: conv1 4·8·8·3·9, conv2 8·8·8·4, linear 2·8
    assert p.totals["forward_macs"] == 6912 + 2048 + 16
    # backward: every weight gradient + the input gradients of conv2 and linear (not conv1's)
    assert p.totals["backward_weight_macs"] == 6912 + 2048 + 16
    assert p.totals["backward_input_macs"] == 2048 + 16


def test_last_layer_keeps_only_its_input():
    m = prof("last-layers:1").memory
    assert m.saved_input_bytes == 32 and m.mask_bytes == 0  # no gradient reaches ReLU6
    assert m.gradient_bytes == 18 * 4
    assert m.peak_bytes == 680 + 72 + 3072


def test_bias_only_keeps_masks_but_no_inputs():
    p = prof("bias-only")
    assert p.memory.saved_input_bytes == 0
    assert p.memory.mask_bytes == 32 + 64
    assert p.memory.gradient_bytes == (4 + 8 + 2) * 4
    assert p.totals["backward_weight_macs"] == 0
    assert p.totals["backward_input_macs"] == 2048 + 16


def test_momentum_adam_and_bit_widths():
    assert prof("all", optimizer="momentum").memory.optimizer_bytes == 680
    assert prof("all", optimizer="adam").memory.optimizer_bytes == 2 * 680
    m = prof("last-layers:1", weight_bits=8, activation_bits=8, weights_in_flash=True).memory
    assert m.weights_bytes == 18  # only the updated weights live in RAM, one byte each
    assert m.updated_weight_bytes == 18 and m.gradient_bytes == 72
    assert m.io_buffer_bytes == 3072 // 4 and m.saved_input_bytes == 32 // 4


@pytest.mark.parametrize("axis,params,saved_input,weight_macs", [
    (0, 8, 1024, 2048 // 4),   # 2 of 8 output channels: the whole input is still needed
    (1, 16, 512, 2048 // 2),   # 2 of 4 input channels: only those input channels are kept
])
def test_channel_subsets(axis, params, saved_input, weight_macs):
    p = prof({"3": LayerUpdate(weight=True, bias=False, channels=(0, 1), channel_axis=axis)})
    assert p.totals["trainable_params"] == params
    assert p.memory.saved_input_bytes == saved_input
    assert p.totals["backward_weight_macs"] == weight_macs
    assert p.totals["backward_input_macs"] == 16  # the linear layer's input gradient


def test_depthwise_runs_in_place_and_residual_input_stays_alive():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
            self.pw = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return x + self.pw(self.dw(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.block = Block()

        def forward(self, x):
            return self.block(self.stem(x))

    m = profile(Net(), (1, 3, 8, 8), options={"convention": "paper"}).memory
    # stem: x 768 + out 1,024; dw: the stem output is still needed by the add, so the depthwise
    # conv cannot overwrite it: 1,024 + 1,024; pw: residual 1,024 + dw out 1,024 + out 1,024.
    assert m.io_buffer_bytes == 3 * 1024
