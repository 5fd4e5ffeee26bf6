"""A calibration's own table of the predicted model prices that model directly
(devices.owntable): hand-made tables, no timing asserted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttplan.costmodel.trace import trace
from ttplan.devices import layermodel as lm
from ttplan.devices.calibrate import calibrate_layers
from ttplan.devices.layerrun import fit_layer_model, run_description
from ttplan.devices.layertable import cost_kind, pass_elements
from ttplan.devices.owntable import match, own_table
from ttplan.devices.planning import device_context, predict_training
from ttplan.devices.profiles import DeviceProfile

from test_layer_model import synthetic_table, tiny_net

SHAPE = (1, 3, 4, 4)
# seconds per call the hand-made table "measured", per (layer, pass), at batch 1
SECONDS = {("0", "forward"): 1e-3, ("1", "forward"): 2e-3, ("2", "forward"): 3e-3,
           ("3", "forward"): 4e-3, ("4", "forward"): 5e-3, ("5", "forward"): 6e-3,
           ("5", "weight_grad"): 7e-3, ("5", "bias_grad"): 8e-3,
           ("5", "input_grad"): 9e-3, ("4", "input_grad"): 1e-2, ("3", "weight_grad"): 2e-2}


def own_model_table(net: nn.Module, model: str = "tiny") -> dict:
    """The table of `net` (every operator, the passes of SECONDS), with the runs of
    test_layer_model's synthetic table (for the glue)."""
    graph = trace(net, SHAPE, model)
    nodes = {n.name: n for n in graph.ops()}
    rows = [{"model": model, "layer": layer, "kind": cost_kind(nodes[layer]), "pass": p,
             "batch_size": 1, "macs": 0, "elements": pass_elements(nodes[layer]), "weights": 0,
             "cpu_s": s, "wall_s": s, "spread": 0.0} for (layer, p), s in SECONDS.items()]
    runs = [dict(r, model=model) for r in synthetic_table(model, 1.0)["runs"]]
    return {"format": "ttplan-layer-table", "version": 1, "model": model,
            "input_shape": list(SHAPE), "batch_sizes": [1], "layers": rows, "runs": runs,
            "warnings": []}


def fitted(tables) -> dict:
    model = fit_layer_model(tables)
    model["glue"] = {"call_s": 0.0, "step_s": 0.0, "tensor_update_s": 0.0,
                     "first_call_s": 0.0, "identified": True}  # the layers' sum alone
    for table in model["own_tables"]:  # anchoring on the own runs: tested on its own below
        table["anchors"] = []
    return model


def test_the_own_table_path_is_the_hand_computed_sum_of_its_measured_passes():
    net = tiny_net()
    model = fitted([own_model_table(net), synthetic_table("b", 1.0)])
    run = run_description(net, "last-layers:1", SHAPE, iterations=2, samples=3)
    got = lm.predict_phases(run, model)
    assert got["time_model"] == "per-layer, own table"
    forward = sum(s for (_, p), s in SECONDS.items() if p == "forward")  # 21e-3
    # one step at batch 1: the prototypes' forward, the step's forward, then the last conv's
    # weight and bias gradients (no input gradient: nothing before it is trained)
    step = forward + forward + 7e-3 + 8e-3
    assert got["train_s"] == pytest.approx(2 * 3 * step, rel=1e-12)
    assert "own table: 8 layer passes" in got["time_model_notes"]  # one step's
    # the depthwise conv trained too: its weight gradient and the input gradients after it
    run = run_description(net, "last-layers:2", SHAPE, iterations=1, samples=1)
    got = lm.predict_phases(run, model)
    assert got["train_s"] == pytest.approx(2 * forward + 2e-2 + 1e-2 + 9e-3 + 7e-3 + 8e-3
                                           + lm.kind_seconds(model["kinds"], "depthwise",
                                                             "bias_grad", 0, 128, 0, 1),
                                           rel=1e-12)
    assert any(n.startswith("per-kind function: a pass the table did not time: 1")
               for n in got["time_model_notes"])  # the depthwise bias: not timed


def test_a_batch_size_the_table_did_not_time_is_its_seconds_scaled_by_the_kind_function():
    net = tiny_net()
    model = fitted([own_model_table(net), synthetic_table("b", 1.0)])
    run = run_description(net, "none", (2,) + SHAPE[1:], iterations=1, samples=2)
    got = lm.predict_phases(run, model)
    expected = 0.0
    for layer, kind, p, macs, elements, weights, *_ in run["layer_passes"]:
        ratio = (lm.kind_seconds(model["kinds"], kind, p, macs, elements, weights, 2)
                 / lm.kind_seconds(model["kinds"], kind, p, macs, elements, weights, 1))
        expected += 2 * SECONDS[(layer, p)] * ratio  # prototypes' forward and the step's
    assert got["train_s"] == pytest.approx(expected, rel=1e-12)
    assert any("a batch size not timed" in n for n in got["time_model_notes"])


def test_another_model_or_input_is_priced_by_the_per_kind_fit_and_unchanged():
    net = tiny_net()
    with_own = fitted([own_model_table(net), synthetic_table("b", 1.0)])
    without = {k: v for k, v in with_own.items() if k != "own_tables"}
    torch.manual_seed(0)
    wider = nn.Sequential(nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
                          nn.Conv2d(16, 4, 1)).eval()  # same layer names, other shapes
    for module, shape in ((wider, SHAPE), (net, (1, 3, 8, 8))):
        run = run_description(module, "all", shape, iterations=1, samples=2)
        assert match(run, with_own["own_tables"]) is None
        a, b = lm.predict_phases(run, with_own), lm.predict_phases(run, without)
        assert a == b and a["time_model"] == "per-layer, per-kind fit"


def test_predict_says_which_path_and_is_deterministic(tmp_path):
    net = tiny_net()
    cal = calibrate_layers([own_model_table(net), synthetic_table("b", 1.0)],
                           DeviceProfile("host", None))
    path = tmp_path / "cal.json"
    cal.save(path)
    assert [t["model"] for t in cal.layers["own_tables"]] == ["tiny"]  # "b" has no input shape
    ctx = device_context("host", calibration=str(path), iterations=2, samples=4)
    first = predict_training(net, "all", ctx, inputs=SHAPE)
    assert first["time_model"] == "per-layer, own table"
    assert first["time_model_notes"][0].startswith("per-layer, own table: tiny at 1x3x4x4")
    assert predict_training(net, "all", ctx, inputs=SHAPE) == first
    assert own_table(own_model_table(net))["fingerprint"] == \
        cal.layers["own_tables"][0]["fingerprint"]


def test_predict_cli_names_the_own_table_in_text_and_csv(tmp_path):
    from typer.testing import CliRunner

    from ttplan.cli import app

    net = tiny_net()
    path = tmp_path / "cal.json"
    calibrate_layers([own_model_table(net), synthetic_table("b", 1.0)],
                     DeviceProfile("host", None)).save(path)
    args = ["predict", "test_layer_model:tiny_net", "--update", "all", "--device", str(path),
            "--input-shape", "1,3,4,4", "--iterations", "2", "--samples", "4"]
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "time model: per-layer, own table: tiny at 1x3x4x4" in text.output
    csv = CliRunner().invoke(app, args + ["--format", "csv"])
    header, row = csv.output.strip().splitlines()
    assert "time_model_notes" in header.split(",") and "'" not in row  # one cell, no list repr


def test_a_depthwise_conv_with_a_kernel_larger_than_3x3_is_a_kind_of_its_own():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Conv2d(8, 8, 5, padding=2, groups=8),
                        nn.Conv2d(8, 8, (1, 9), padding=(0, 4), groups=8)).eval()
    nodes = {n.name: n for n in trace(net, (1, 8, 6, 6), "dw").ops()}
    assert [cost_kind(nodes[k]) for k in ("0", "1", "2")] == \
        ["depthwise", "depthwise_large", "depthwise"]  # by kernel area: 9, 25, 9
    # tables without a large-kernel row: priced by the depthwise constants (and said so)
    rows = [{"model": "m", "layer": f"d{m}", "kind": "depthwise", "pass": "forward",
             "batch_size": 1, "macs": m, "elements": e, "weights": 0,
             "cpu_s": 1e-9 * m + 1e-9 * e + 1e-6, "wall_s": 0.0, "spread": 0.0}
            for m, e in ((100, 50), (900, 70), (4000, 300), (9000, 100))]
    kinds = lm.fit_kinds(rows)
    assert kinds["depthwise_large/forward"]["why"] == "no layer of this kind in the tables"
    assert lm.constants_for(kinds, "depthwise_large", "forward") is kinds["depthwise/forward"]
    # an own table measured before the split (the 5x5 layer called `depthwise`) still matches
    table = {"model": "dw", "input_shape": [1, 8, 6, 6], "batch_sizes": [1],
             "layers": [{"model": "dw", "layer": k, "kind": "depthwise", "pass": "forward",
                         "batch_size": 1, "macs": 0, "elements": pass_elements(nodes[k]),
                         "weights": 0, "cpu_s": 1e-4, "wall_s": 1e-4, "spread": 0.0}
                        for k in ("0", "1", "2")]}
    run = run_description(net, "none", (1, 8, 6, 6), iterations=1, samples=1)
    assert match(run, [own_table(table)]) is not None


def test_an_own_run_is_predicted_at_what_it_measured_and_others_between_their_factors():
    net = tiny_net()
    model = fit_layer_model([own_model_table(net), synthetic_table("b", 1.0)])
    table = next(t for t in model["own_tables"] if t["model"] == "tiny")
    # the table's runs (test_layer_model.synthetic_table): none 0.01 and 0.011 s, all 0.03 s,
    # last-layers:1 0.015 s, each 2 iterations of 4 samples at batch 1
    assert sorted(a[0] for a in table["anchors"]) == ["all", "last-layers:1", "none", "none"]
    for spec, measured in (("all", 0.03), ("last-layers:1", 0.015),
                           ("none", (0.01 * 0.011) ** 0.5)):  # two runs: their log mean
        run = run_description(net, spec, SHAPE, iterations=2, samples=4)
        got = lm.predict_phases(run, model)
        assert got["train_s"] == pytest.approx(measured, rel=1e-9)
        assert any(n.startswith("anchored on the whole runs in the table") for n in
                   got["time_model_notes"])
    # another model's prediction is not anchored (its table's runs are its own)
    other = run_description(tiny_net(), "all", (1, 3, 8, 8), iterations=2, samples=4)
    assert lm.predict_phases(other, model)["time_model"] == "per-layer, per-kind fit"


def test_a_table_whose_runs_saw_another_speed_than_its_layers_is_not_anchored_on_them():
    # its speed reference took +20 % in the runs (over PHASE_MISMATCH): the runs' factor
    # would carry the machine's speed; the model is priced from its layers and the glue, and
    # a configuration it ran is still known as measured
    net = tiny_net()
    moved = dict(own_model_table(net), machine={"layer_reference_s": 1e-3,
                                                "run_reference_s": 1.2e-3})
    model = fit_layer_model([moved, synthetic_table("b", 1.0)])
    table = next(t for t in model["own_tables"] if t["model"] == "tiny")
    assert table["anchored"] is False and table["anchors"]
    run = run_description(net, "all", SHAPE, iterations=2, samples=4)
    got = lm.predict_phases(run, model)
    assert got["train_s"] == pytest.approx(lm.own_train_seconds(run, table, model)[0])
    assert got["measured_as"] == "all"
    assert "not anchored on the table's whole runs: they ran at another speed of the machine " \
        "than its layers were timed at" in got["time_model_notes"]


def test_the_anchor_factor_is_interpolated_in_the_backward_share_at_the_nearest_batch():
    from ttplan.devices.owntable import anchor_ratio
    import math

    points = [["none", 1, 0.0, 0.8], ["last-blocks:2", 1, 0.25, 0.9], ["all", 1, 0.7, 1.1],
              ["none", 4, 0.0, 2.0]]
    assert anchor_ratio([], 1, 0.3) is None
    assert anchor_ratio(points, 1, 0.0) == (pytest.approx(0.8), "none")
    assert anchor_ratio(points, 1, 0.9) == (pytest.approx(1.1), "all")  # clamped
    ratio, between = anchor_ratio(points, 1, 0.125)  # half-way in share: the log mean
    assert ratio == pytest.approx(math.sqrt(0.8 * 0.9)) and between == "none and last-blocks:2"
    assert anchor_ratio(points, 2, 0.0) == (pytest.approx(0.8), "none")  # 1 is as near as 4
    assert anchor_ratio(points, 3, 0.5) == (pytest.approx(2.0), "none")  # nearest: 4


def test_a_run_training_weights_is_anchored_on_the_runs_that_do():
    from ttplan.devices.owntable import anchor_ratio
    import math

    points = [["none", 1, 0.0, 0.8, False], ["last-blocks:2", 1, 0.25, 0.9, True],
              ["bias-only", 1, 0.5, 0.7, False], ["all", 1, 0.7, 1.1, True]]
    ratio, between = anchor_ratio(points, 1, 0.5, weights=True)  # between last-blocks:2 and all
    assert between == "last-blocks:2 and all"
    assert ratio == pytest.approx(math.exp(math.log(0.9) + (0.25 / 0.45) * math.log(1.1 / 0.9)))
    ratio, between = anchor_ratio(points, 1, 0.25, weights=False)  # half-way to bias-only
    assert between == "none and bias-only" and ratio == pytest.approx(math.sqrt(0.8 * 0.7))


class FunctionalNet(nn.Module):
    """Half its operators functional calls no module holds (F.silu twice, a mean)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.head = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Linear(8, 4)

    def forward(self, x):
        silu = nn.functional.silu
        return self.head(silu(self.conv2(silu(self.conv1(x)))).mean((2, 3)))


def test_functional_calls_a_table_cannot_time_alone_do_not_keep_it_from_its_model():
    net = FunctionalNet()
    nodes = {n.name: n for n in trace(net, SHAPE, "fn").ops()}
    rows = [{"model": "fn", "layer": name, "kind": cost_kind(node), "pass": "forward",
             "batch_size": 1, "macs": 0, "elements": pass_elements(node), "weights": 0,
             "cpu_s": 1e-3, "wall_s": 1e-3, "spread": 0.0}
            for name, node in nodes.items() if node.module is not None]
    run = run_description(net, "all", SHAPE, iterations=1, samples=2)
    table = own_table({"model": "fn", "input_shape": list(SHAPE), "batch_sizes": [1],
                       "layers": rows, "runs": [{"layer_passes": run["layer_passes"]}]})
    functional = sorted(name for name, node in nodes.items() if node.module is None)
    assert len(functional) == 3 and table["untimed"] == functional
    assert match(run, [table]) is table
    # without its runs' operators, 3 of 6 timed is short of MIN_COVERAGE: the per-kind fit
    assert match(run, [dict(table, untimed=[])]) is None
    other = run_description(tiny_net(), "all", SHAPE, iterations=1, samples=2)
    assert match(other, [table]) is None
