"""The MobileOne/RepVGG-style net of the profile benchmark (tests/reparam_models.py) is costed
like any other: every operator priced, forward MACs equal to torch.utils.flop_counter's count
and to the branches' sum by hand, and what autograd keeps equal to the pytorch convention."""

import torch

import ttplan
from ttplan.costmodel.measure import measure_saved_bytes
from tests.reparam_models import RepBlock, RepNet

SHAPE = (2, 3, 16, 16)


def small_net() -> RepNet:
    torch.manual_seed(0)
    return RepNet(widths=(4, 8), depths=(1, 2), branches=2, classes=5)


def test_every_operator_priced_and_flops_match_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    model = small_net().eval()
    prof = ttplan.profile(model, SHAPE, update="all", options={"convention": "pytorch"})
    assert not prof.totals["unknown_ops"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(SHAPE))
    assert counter.get_total_flops() == prof.totals["forward_flops"]


def test_a_block_is_the_sum_of_its_branches_by_hand():
    # 4 -> 4 depthwise 3x3, stride 1, on 2x4x8x8: identity BN + a 1x1 scale conv + 2 3x3 convs.
    block = RepBlock(4, 4, 3, 1, 4, branches=2)
    prof = ttplan.profile(block, (2, 4, 8, 8), update="all", options={"convention": "pytorch"})
    positions = 2 * 4 * 8 * 8  # N·C_out·H·W, one input channel per group
    assert prof.totals["forward_macs"] == positions * (1 + 2 * 9)


def test_saved_bytes_match_autograd():
    model = small_net()
    prof = ttplan.profile(model, SHAPE, update="all", options={"convention": "pytorch"})
    model.train()
    measured = measure_saved_bytes(model, torch.randn(SHAPE)).saved_bytes
    assert abs(prof.memory.saved_activation_bytes - measured) <= 0.01 * measured
