"""A view's backward inside a model: one node of a backward, measured on chains of views
(devices.stepreference.grad_call_seconds), not an elementwise pass timed alone with its own
autograd.grad call (notes/device_time_model.md §26). Timings here are synthetic."""

from __future__ import annotations

import pytest
from torch import nn

from ttplan.devices import layermodel as lm
from ttplan.devices import stepreference
from ttplan.devices.layerrun import fit_layer_model, measured_view_backward, run_description
from test_layer_model import synthetic_table


def test_the_call_and_the_node_are_the_line_through_chains_of_views(monkeypatch):
    # a call of 15 us and 3 us per node: 18, 27, 63, 207 us for 1, 4, 16, 64 nodes
    def fake_time_call(fn, **_):
        fn()  # the chain's backward runs
        nodes = fake_time_call.lengths.pop(0)
        return {"cpu_s": 15e-6 + 3e-6 * nodes}

    fake_time_call.lengths = list(stepreference.GRAD_CHAIN_NODES)
    monkeypatch.setattr(stepreference, "time_call", fake_time_call)
    call_s, node_s = stepreference.grad_call_seconds(repeats=1)
    assert call_s == pytest.approx(15e-6) and node_s == pytest.approx(3e-6)


def test_the_step_reference_records_the_call_and_its_median_is_kept():
    merged = stepreference.merged_step_reference([
        {"train_cpu_s": [1.0, 2.0], "grad_call_cpu_s": c, "grad_node_cpu_s": n}
        for c, n in ((12e-6, 2e-6), (40e-6, 9e-6), (14e-6, 3e-6))])  # one slow moment
    assert merged["grad_call_cpu_s"] == 14e-6 and merged["grad_node_cpu_s"] == 3e-6


def with_node(table: dict, node_s: float | None) -> dict:
    if node_s is not None:
        table["step_reference"] = {
            "samples": 8, "iterations": [2, 6], "train_cpu_s": [0.01, 0.02],
            "layers_step_cpu_s": 40e-6, "forward_operators": 1, "tensors": 2,
            "update_cpu_s": 3e-6, "grad_call_cpu_s": 5 * node_s, "grad_node_cpu_s": node_s}
    return table


def test_a_views_backward_is_priced_as_the_measured_node():
    tables = [with_node(synthetic_table("a", 1.0), 2e-6),
              with_node(synthetic_table("b", 1.0), 4e-6), synthetic_table("c", 1.0)]
    assert measured_view_backward(tables)["call_s"] == pytest.approx(3e-6)  # the median
    assert measured_view_backward([synthetic_table("a", 1.0)]) is None  # tables before
    kinds = fit_layer_model(tables)["kinds"]
    assert lm.priced_by(kinds, "view", "input_grad") == "view/input_grad"
    # whatever its size: a view moves no data
    for elements in (10, 10_000):
        assert lm.kind_seconds(kinds, "view", "input_grad", 0, elements, 0, 4) == \
            pytest.approx(3e-6)
    # tables written before: the elementwise kind's call, as it was
    before = fit_layer_model([synthetic_table("a", 1.0), synthetic_table("b", 1.0)])["kinds"]
    assert lm.priced_by(before, "view", "input_grad") == "elementwise/input_grad"
    assert lm.kind_seconds(before, "view", "input_grad", 0, 10_000, 0, 1) == \
        pytest.approx(before["elementwise/input_grad"]["call_s"])


def test_a_run_of_views_is_priced_per_view_node():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):  # Linear -> views -> Linear: the views' backward runs
            return self.out(self.fc(x).view(2, 4).transpose(0, 1).reshape(1, 8))

    run = run_description(Views(), "all", (1, 8), iterations=1, samples=1)
    views = run["step_work"]["view/input_grad"][3]
    assert views >= 2
    kinds = fit_layer_model([with_node(synthetic_table("a", 1.0), 2e-6),
                             with_node(synthetic_table("b", 1.0), 2e-6)])["kinds"]
    assert lm.work_seconds({"view/input_grad": run["step_work"]["view/input_grad"]}, kinds,
                           1) == pytest.approx(views * 2e-6)


def test_a_glue_with_every_term_measured_fits_nothing_and_survives():
    # scipy's nnls of a matrix without columns aborts the interpreter: never called so
    tables = [synthetic_table("a", 1.0), synthetic_table("b", 1.0)]
    kinds = fit_layer_model(tables)["kinds"]
    measured = dict.fromkeys(lm.GLUE_TERMS, 1e-6)
    glue = lm.fit_glue(tables[0]["runs"] + tables[1]["runs"], kinds, measured=measured)
    assert glue["identified"] and glue["undetermined"] == []
    assert all(glue[t] == 1e-6 for t in lm.GLUE_TERMS)


def test_an_index_backward_writes_elements_and_a_views_moves_none():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(8, 8), nn.Linear(4, 2)

        def forward(self, x):  # (1, 8): a view, a slice, an unbind, an expand
            y = self.fc(x).view(1, 2, 4)
            a, b = y[:, 0], y[:, 1]  # two slices of (1, 2, 4): the backward zero-fills 8 each
            first, _ = y.unbind(1)
            return self.out(a + b + first + self.fc.bias[:4].expand(1, 4))

    from ttplan.costmodel.trace import trace
    from ttplan.devices.layertable import cost_kind

    graph = trace(Mixed(), (1, 8), "mixed")
    kinds_of = {str(n.op): cost_kind(n) for n in graph.ops()}
    assert kinds_of["view"] == "view"
    assert kinds_of["getitem"] == "index" and kinds_of["unbind"] == "index"
    assert kinds_of["expand"] == "index"
    kinds = fit_layer_model([with_node(synthetic_table("a", 1.0), 2e-6),
                             with_node(synthetic_table("b", 1.0), 2e-6)])["kinds"]
    elementwise = kinds["elementwise/input_grad"]
    # an index's backward: the elementwise kind's function of its elements; its forward a call
    assert lm.kind_seconds(kinds, "index", "input_grad", 0, 1000, 0, 1) == pytest.approx(
        elementwise["element_s"] * 1000 + elementwise["call_s"])
    assert lm.kind_seconds(kinds, "index", "forward", 0, 1000, 0, 1) == pytest.approx(
        kinds["elementwise/forward"]["call_s"])
    assert lm.kind_seconds(kinds, "view", "input_grad", 0, 1000, 0, 1) == pytest.approx(2e-6)
