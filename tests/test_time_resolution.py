"""A budget in seconds is met to the 10 % a run is held to by a configuration the calibration
measured on the model, and planned below by the calibration's timing resolution for any other (devices.planning.time_resolution, owntable.measured_update,
planner Budget.tolerates): hand-made tables, no timing asserted."""

from __future__ import annotations

import math

import pytest

from ttplan.costmodel.errors import SpecError

from ttplan.devices import layermodel as lm
from ttplan.devices.calibrate import calibrate_layers
from ttplan.devices.layerrun import fit_layer_model, run_description, timing_resolution
from ttplan.devices.owntable import measured_update
from ttplan.devices.planning import (TIME_HEADROOM_CAP, TIME_RESOLUTION_CAP, device_context,
                                     plan_for_device, predict_training, time_headroom,
                                     time_resolution)
from ttplan.devices.profiles import DeviceProfile
from ttplan.planner.fisher.file import FisherResult

from test_layer_model import synthetic_table, tiny_net
from test_own_table import SHAPE, own_model_table


def test_the_resolution_is_half_the_median_spread_of_the_repeated_whole_runs():
    def run(*repeats):
        spread = (max(repeats) - min(repeats)) / sorted(repeats)[len(repeats) // 2]
        return {"measured": {"train_cpu_s_repeats": list(repeats), "train_cpu_spread": spread}}

    runs = [run(1.0, 1.1, 0.9), run(2.0, 2.0, 2.1), run(1.0, 1.4, 1.2), run(3.0)]
    # spreads 0.2, 0.05, 0.4/1.2; the single run has no spread to give
    assert timing_resolution(runs) == pytest.approx(0.2 / 2)
    assert timing_resolution([run(3.0), {"measured": {}}]) is None


def test_a_run_repeats_an_own_run_at_its_batch_family_and_backward_share():
    points = [["none", 1, 0.0, 0.8, False], ["last-blocks:2", 1, 0.280656, 0.9, True],
              ["bias-only", 1, 0.562024, 0.7, False], ["all", 4, 0.6, 1.1, True]]
    assert measured_update(points, 1, 0.2806561234, True) == "last-blocks:2"  # 6 digits stored
    assert measured_update(points, 1, 0.0, True) == "none"  # nothing trained: either family
    assert measured_update(points, 1, 0.2807, True) is None  # another configuration
    assert measured_update(points, 4, 0.280656, True) is None  # measured at batch 1 only
    assert measured_update(points, 1, 0.562024, True) is None  # bias-only trains no weight
    assert measured_update([], 1, 0.0) is None


def test_predict_phases_names_the_own_run_a_configuration_repeats():
    net = tiny_net()
    model = fit_layer_model([own_model_table(net), synthetic_table("b", 1.0)])
    for spec, measured in (("last-layers:1", "last-layers:1"), ("all", "all"),
                           ("none", "none"), ("last-layers:2", None)):
        run = run_description(net, spec, SHAPE, iterations=3, samples=5)  # any length
        assert lm.predict_phases(run, model)["measured_as"] == measured, spec
    other = run_description(net, "all", (1, 3, 8, 8), iterations=2, samples=4)
    assert lm.predict_phases(other, model)["measured_as"] is None  # another input


def _calibration(tmp_path, resolution):
    cal = calibrate_layers([own_model_table(tiny_net()), synthetic_table("b", 1.0)],
                           DeviceProfile("host", None))
    cal.data["layers"]["timing_resolution"] = resolution
    path = tmp_path / f"cal-{resolution}.json"
    cal.save(path)
    return str(path)


def _plan(path, time):
    # the last conv ("5") holds most of the potential: last-layers:1 is what a plan wants
    potential = {"0": 0.05, "3": 0.1, "5": 1.0}
    deltas = {name: [p / n] * n for (name, p), n in zip(potential.items(), (8, 8, 4))}
    fisher = FisherResult(deltas, {k: math.fsum(v) for k, v in deltas.items()}, 4, "ce", 0,
                          0.0, 0)
    return plan_for_device(tiny_net(), inputs=SHAPE, fisher=fisher,
                           device=device_context("host", time=time, iterations=2, samples=4,
                                                 calibration=path))


def test_a_measured_baseline_just_over_a_seconds_budget_is_kept_within_ten_percent(tmp_path):
    """T = 3 % under last-layers:1's predicted run, which the calibration measured (its own
    table's runs; its weight alone, which captures as much, is 2 % faster and over too): with
    repeated runs, however finely they agree (4 %, 2 %), the plan is last-layers:1, said to be
    3 % over and within the 10 % a run is held to; with no repeated runs the budget is strict
    (more than 10 % over: `_within_time` below)."""
    for spread in (0.04, 0.02):
        path = _calibration(tmp_path, spread)
        ctx = device_context("host", calibration=path, iterations=2, samples=4)
        ll1_s = predict_training(tiny_net(), "last-layers:1", ctx, inputs=SHAPE)["total_s"]
        budget_s = ll1_s / 1.03
        kept = _plan(path, budget_s)
        # last-blocks:1 is last-layers:1 on this net (one conv per block): the first one tried
        assert kept.selection["detail"].startswith("last-blocks:1, a baseline")
        assert [(l["name"], l["update_weight"], l["update_bias"], l["channels"])
                for l in kept.layers] == [("5", True, True, None)]
        assert kept.predicted["within_budget"] is True
        assert kept.predicted["device"]["within_time"] is True
        assert any(n.startswith("last-blocks:1 fits the same budgets to their resolution and "
                                "captures more Fisher (1) than the selection found (0.75)")
                   for n in kept.notes)
        assert any("is predicted 3.0 % over the budget (time " in n and "within its resolution "
                   "(±10.0 %: the calibration measured this configuration on this model"
                   in n for n in kept.notes)

    strict = _plan(_calibration(tmp_path, None), budget_s)
    assert strict.predicted["fisher_captured"] == pytest.approx(0.75)
    assert any(n.startswith("last-blocks:1 would capture more Fisher") for n in strict.notes)


def test_the_resolution_is_capped_and_not_given_to_a_relative_budget(tmp_path):
    wide = device_context("host", calibration=_calibration(tmp_path, 0.3), time=1.0)
    assert time_resolution(wide) == TIME_RESOLUTION_CAP == 0.10
    assert time_headroom(wide) == TIME_HEADROOM_CAP == 0.05
    fine = device_context("host", calibration=_calibration(tmp_path, 0.03), time=1.0)
    assert time_resolution(fine) == 0.10 and time_headroom(fine) == pytest.approx(0.03)
    relative = device_context("host", calibration=_calibration(tmp_path, 0.03),
                              time="last-layers:1")
    assert time_resolution(relative) == 0.0
    assert time_resolution(device_context("host", calibration=_calibration(tmp_path, None),
                                          time=1.0)) == 0.0


def test_calibrate_says_the_timing_resolution(tmp_path):
    import json
    from pathlib import Path

    from ttplan.cli.devices_model import _summary_text

    text = _summary_text(json.loads(Path(_calibration(tmp_path, 0.0845768)).read_text()))
    assert "timing resolution ±8.5% (half the median spread of the whole runs' repeats)" in text
    assert "timing resolution" not in _summary_text(
        json.loads(Path(_calibration(tmp_path, None)).read_text()))


def test_a_plan_in_seconds_says_when_the_calibration_timed_coarsely(tmp_path):
    """Repeats spread by ±18 %: a plan in seconds says what its seconds are worth; at ±4 %,
    or with a budget relative to a configuration, it says nothing of it."""
    coarse = _plan(_calibration(tmp_path, 0.18), 1.0)
    assert any(n.startswith("time budget in seconds: the calibration's repeated runs of one "
                            "configuration spread by ±18.0 %") for n in coarse.notes)
    fine = _plan(_calibration(tmp_path, 0.04), 1.0)
    assert not any(n.startswith("time budget in seconds") for n in fine.notes)
    relative = plan_for_device(tiny_net(), inputs=SHAPE, fisher=None, method="fulltrain",
                               device=device_context("host", time="last-layers:1",
                                                     iterations=2, samples=4,
                                                     calibration=_calibration(tmp_path, 0.18)))
    assert not any(n.startswith("time budget in seconds") for n in relative.notes)


def test_a_plan_the_calibration_never_ran_keeps_the_resolution_below_a_seconds_budget(tmp_path):
    """T in seconds with runs that spread by 4 %: what the calibration did not run on the
    model is planned to T / 1.04 (a run lands that far either side of its prediction), what it
    ran to T x 1.10, and the plan says so; without a resolution, to T."""
    from ttplan.devices.planning import time_limits

    path = _calibration(tmp_path, 0.04)
    ctx = device_context("host", calibration=path, iterations=2, samples=4, time=0.117)
    (limit,) = time_limits(ctx, "tinytrain", SHAPE, tiny_net())
    assert limit.limit == pytest.approx(0.117 / 1.04) and limit.stated == 0.117
    assert limit.limit * (1 + limit.resolution) == pytest.approx(0.117 * 1.10)
    (given,) = time_limits(ctx, "tinytrain", SHAPE, tiny_net(), headroom=False)
    assert given.limit == 0.117 and given.resolution == pytest.approx(0.10)
    planned = _plan(path, 0.117)  # its plan: last-blocks:1, which the calibration ran
    assert any(n.startswith("time budget 0.117 s: a configuration the calibration never ran "
                            "on this model is planned to 0.1125 s (the calibration's repeated runs "
                            "spread by ±4.0 %: a prediction lands about that far either side "
                            "of its run), one it ran to 0.1287 s (its prediction is a "
                            "measurement; a run is held to 10 % beyond its budget)")
               for n in planned.notes)
    strict = _plan(_calibration(tmp_path, None), 0.117)
    assert not any("never ran on this model" in n for n in strict.notes)


def test_a_measured_configuration_may_be_over_a_seconds_budget_by_up_to_ten_percent(tmp_path):
    """Runs that spread by ±30 %: what the calibration never ran on the model is planned to
    T / 1.05, what it ran (its own table's runs) may be predicted up to T x 1.10, the 10 % a
    run is held to beyond its budget; the note says both shares."""
    from ttplan.devices.planning import _within_time, layer_run, time_headroom_note, time_limits

    path = _calibration(tmp_path, 0.3)
    ctx = device_context("host", calibration=path, iterations=2, samples=4, time=0.1)
    (limit,) = time_limits(ctx, "tinytrain", SHAPE, tiny_net())
    assert limit.limit == pytest.approx(0.1 / 1.05)
    assert limit.limit * (1 + limit.resolution) == pytest.approx(0.1 * 1.10)
    assert "planned to 0.09524 s (the calibration's repeated runs spread by ±30.0 %, 5.0 % " \
           "counted: a prediction lands about that far either side of its run), one it ran " \
           "to 0.11 s" in time_headroom_note(ctx)
    measured = layer_run(tiny_net(), "last-layers:1", SHAPE, ctx, probes=False)
    other = layer_run(tiny_net(), "last-layers:2", SHAPE, ctx, probes=False)
    assert _within_time(ctx, 0.107, measured) and not _within_time(ctx, 0.112, measured)
    assert not _within_time(ctx, 0.101, other) and _within_time(ctx, 0.1, other)


def test_a_larger_measured_baseline_is_tried_past_a_smaller_one_the_calibration_never_ran(
        tmp_path):
    """T = 0.125 s, runs spread by ±30 %: last-blocks:2 (0.1296 s predicted, never run by
    the calibration) is over T / 1.05, but last-blocks:3 (`all`, 0.130 s, which it ran) is
    within T x 1.10 and captures more: the scan goes on past the first baseline over the
    budget while a larger one could still be met to its resolution."""
    plan = _plan(_calibration(tmp_path, 0.3), 0.125)
    assert sorted(l["name"] for l in plan.layers) == ["0", "3", "5"]
    assert plan.selection["detail"].startswith("last-blocks:3, a baseline")
    assert plan.predicted["device"]["within_time"] is True
    assert any("within its resolution (±10.0 %: the calibration measured" in n
               for n in plan.notes)


def test_a_measured_baseline_far_over_a_seconds_budget_is_named_with_why():
    """A baseline the calibration measured, 16 % over a budget in seconds (a T timed while the
    machine ran faster than at calibration): named with why and what to do; 40 % over, or one
    the calibration never ran, 16 % over: not named. Within 5 % of what a prediction is
    planned to but under the budget as stated: said so."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from ttplan.devices.planning import LayerTimeLimit
    from ttplan.planner.api import _near_miss
    from ttplan.planner.selection.select import Budget

    @dataclass(frozen=True)
    class Limit:
        limit: float
        stated: float
        measured: bool
        label: str = "time T"
        coefficients: tuple = ()
        resolution: float = 0.1
        measured_over_why: str = LayerTimeLimit.measured_over_why

        def value(self, ev):
            return ev.seconds

        def resolution_of(self, ev):
            return self.resolution if self.measured else 0.0

    def ev(seconds):
        return SimpleNamespace(seconds=seconds, totals={"backward_macs": 0},
                               memory=SimpleNamespace(peak_bytes=10))

    measured = Budget(100, None, (Limit(1.0 / 1.05, 1.0, True),))
    note = _near_miss("last-blocks:2", 2.0, 1.0, measured, ev(1.16))
    assert note.startswith("last-blocks:2 would capture more Fisher (2, the plan 1) but is "
                           "predicted 16.0 % over the budget (time T): not kept; the "
                           "calibration measured last-blocks:2 on this model")
    assert "(--time last-blocks:2) does not depend on the machine's speed" in note
    assert _near_miss("last-blocks:2", 2.0, 1.0, measured, ev(1.40)) is None
    never_ran = Budget(100, None, (Limit(1.0 / 1.05, 1.0, False),))
    assert _near_miss("last-blocks:2", 2.0, 1.0, never_ran, ev(1.16)) is None
    assert "predicted 2.9 % over the 0.9524 s a prediction is planned to below the budget" in \
        _near_miss("last-layers:1", 2.0, 1.0, never_ran, ev(0.98))
