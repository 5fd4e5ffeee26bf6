"""A 1 x 1 conv on a map short of layertable.MIN_POSITIONS positions: its forward and input
gradient pay per MAC as if the map had that many (notes/device_time_model.md §30). Synthetic
numbers only: the counts are hand-derived, the fit recovers given constants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.profile import EVAL_MODE, profile
from ttplan.devices import layermodel as lm
from ttplan.devices.layertable import MIN_POSITIONS, short_macs
from ttplan.devices.owntable import passes_seconds


def net() -> nn.Module:
    torch.manual_seed(0)
    # 16 -> 32 1 x 1 on a 3 x 3 map (9 positions), a depthwise 3 x 3, 32 -> 8 1 x 1 on 8 x 8
    return nn.Sequential(nn.Conv2d(16, 32, 1), nn.Conv2d(32, 32, 3, padding=1, groups=32),
                         nn.Upsample(scale_factor=8 / 3), nn.Conv2d(32, 8, 1)).eval()


def passes(update: str = "all") -> list[list]:
    return lm.layer_passes(profile(net(), (1, 16, 3, 3), update=update, tracing=EVAL_MODE,
                                   options=CostOptions("pytorch")).evaluation)


def test_the_floor_adds_the_macs_of_the_positions_a_map_is_short_of():
    assert MIN_POSITIONS == 48
    by = {(p[0], p[2]): p for p in passes()}
    forward = by[("0", "forward")]
    assert len(forward) == 9 and forward[3] == 9 * 16 * 32  # 4,608 MACs on 9 positions
    assert forward[8] == pytest.approx(4608 * (48 / 9 - 1))  # 19,968: as if 48 positions
    # on 8 x 8 = 64 positions, at or above the floor: nothing more
    assert by[("3", "forward")][8] == 0.0 and by[("3", "input_grad")][8] == 0.0
    # neither a depthwise conv nor a weight gradient has the floor
    assert by[("1", "forward")][8] == 0.0 and by[("0", "weight_grad")][8] == 0.0
    assert short_macs("pointwise", "recompute", 900.0, 9) == pytest.approx(900 * 39 / 9)
    assert short_macs("pointwise", "forward", 900.0, 0) == 0.0  # positions unknown


def test_work_sums_them_per_sample_and_the_batch_scales_them():
    work = lm.work_of(passes())
    assert work["pointwise/forward"][5] == pytest.approx(4608 * 39 / 9)
    four = lm.per_sample({"pointwise/forward": [4 * 4608.0, 400.0, 0.0, 1, 0, 4 * 19968.0]}, 4)
    assert four["pointwise/forward"] == [4608.0, 100.0, 0.0, 1, 0, 19968.0]
    c = {"pointwise/forward": {"mac_s": 1e-11, "element_s": 0.0, "weight_s": 0.0,
                               "short_mac_s": 2e-11, "call_s": 1e-6, "rows": 4,
                               "identified": True, "why": ""}}
    seconds = lm.work_seconds(four, c, 4)
    assert seconds == pytest.approx(4 * (4608 * 1e-11 + 19968 * 2e-11) + 1e-6)
    # work and entries written before the term: priced as they were
    assert lm.work_seconds({"pointwise/forward": [4608.0, 100.0, 0.0, 1, 0]}, c, 4) == \
        pytest.approx(4 * 4608 * 1e-11 + 1e-6)
    old = [["0", "pointwise", "forward", 4608.0, 100.0, 0.0, 1.0]]
    price = lambda *a: lm.kind_seconds(c, *a)  # noqa: E731
    assert passes_seconds(old, {"layers": {}}, price, 1, {}) == pytest.approx(4608e-11 + 1e-6)


def row(macs, elements, at, seconds, batch=1):
    return {"model": "m", "layer": f"pw{macs}-{at}", "kind": "pointwise", "pass": "forward",
            "batch_size": batch, "macs": macs, "elements": elements, "weights": 0,
            "cpu_s": seconds, "wall_s": seconds, "spread": 0.0,
            **({"positions": at} if at is not None else {})}


def test_the_fit_recovers_the_term_and_tables_before_positions_leave_it_out():
    def seconds(m, e, at):  # 20 ps per MAC, 40 per short-map MAC, 0.1 ns per element, 5 us
        return 2e-11 * m + 4e-11 * short_macs("pointwise", "forward", m, at) + 1e-10 * e + 5e-6

    shapes = ((9, 96, 384), (9, 240, 96), (36, 48, 192), (144, 24, 120), (576, 16, 48),
              (2304, 8, 32), (1, 72, 18))
    rows = [row(b * at * ci * co, b * at * (ci + co), at,
                seconds(b * at * ci * co, b * at * (ci + co), at), b)
            for at, ci, co in shapes for b in (1, 4)]
    fit = lm.fit_kinds(rows)["pointwise/forward"]
    assert fit["identified"]
    assert fit["mac_s"] == pytest.approx(2e-11, rel=1e-6)
    assert fit["short_mac_s"] == pytest.approx(4e-11, rel=1e-6)
    assert fit["call_s"] == pytest.approx(5e-6, rel=1e-4)
    old = lm.fit_kinds([{k: v for k, v in r.items() if k != "positions"} for r in rows])
    assert old["pointwise/forward"]["identified"]
    assert old["pointwise/forward"]["short_mac_s"] == 0.0
