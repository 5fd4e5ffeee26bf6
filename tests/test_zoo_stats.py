"""Zoo statistics that `ttplan profile` prints, derived independently from the block lists.

Forward MACs by hand from costmodel/data/architectures.json at 128×128: the stem halves the
resolution; each block's depthwise conv applies its stride; expand and project are 1×1 convs.
The docs' zoo table (docs/guides/profile.md) states the same numbers; this test keeps the two in step.
"""

import json
from importlib import resources
from pathlib import Path

import pytest

from ttplan import profile
from ttplan.costmodel.zoo import ZOO_MODELS


def hand_stats(arch, resolution=128):
    stem = arch["stem"]
    size = resolution // stem["stride"]
    macs = stem["out_channels"] * size * size * stem["in_channels"] * stem["kernel_size"] ** 2
    convs = 1
    for b in arch["blocks"]:
        if b["expand_ratio"] != 1:
            macs += b["mid_channels"] * size * size * b["in_channels"]  # expand 1×1
            convs += 1
        size //= b["stride"]
        macs += b["mid_channels"] * size * size * b["kernel_size"] ** 2  # depthwise
        macs += b["out_channels"] * size * size * b["mid_channels"]  # project 1×1
        convs += 2
    mix = arch["feature_mix"]
    if mix:
        macs += mix["out_channels"] * size * size * mix["in_channels"]
        convs += 1
    return macs, convs, len(arch["blocks"])


ARCH = json.loads(resources.files("costmodel").joinpath("data/architectures.json").read_text())


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_stats_from_the_architecture_file(name):
    macs, convs, blocks = hand_stats(ARCH[name])
    totals = profile(name).totals
    assert totals["forward_macs"] == macs
    assert totals["mac_layers"] == convs
    assert totals["blocks"] == blocks
    readme = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "profile.md").read_text()
    row = f"| {name} | {{}} | {macs:,} | {convs} | {blocks} |"
    assert any(line.startswith(f"| {name} |") and line.endswith(f"| {macs:,} | {convs} | {blocks} |")
               for line in readme.splitlines()), row


def test_paper_text_rounding():
    # A.2: "23M, 17M, 19M MACs": MobileNetV2 and ProxylessNAS round to those. MCUNet's 22.45M
    # does not (see docs/guides/profile.md), but its Table 2 FullTrain compute, 44.9M, is 2 × 22.45M.
    assert round(2 * profile("mcunet-5fps").totals["forward_macs"] / 1e5) == 449
    assert round(profile("mbv2-w0.35").totals["forward_macs"] / 1e6) == 17
    assert round(profile("proxyless-w0.3").totals["forward_macs"] / 1e6) == 19
