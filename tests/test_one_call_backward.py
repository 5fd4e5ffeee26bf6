"""A norm layer's gradients are one backward call: its parameters' gradients beside its input's
are one pass, `joint_grad`, timed as what they add to that call (notes/device_time_model.md
§30). No timing is asserted, only which passes run, are timed and are fitted."""

from __future__ import annotations

import torch
from torch import nn

from ttplan.costmodel.options import PYTORCH, CostOptions
from ttplan.costmodel.profile import EVAL_MODE, profile
from ttplan.costmodel.trace import trace
from ttplan.devices import layermodel as lm
from ttplan.devices.layertable import measure_layers


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)).eval()


def norm_passes(update: str, convention: str = "pytorch", model=None) -> dict[str, list[str]]:
    ev = profile(model or net(), (1, 3, 4, 4), update=update, tracing=EVAL_MODE,
                 options=CostOptions(convention)).evaluation
    out: dict[str, list[str]] = {}
    for layer, kind, pass_name, *_ in lm.layer_passes(ev):
        if kind == "norm" and pass_name != "forward":
            out.setdefault(layer, []).append(pass_name)
    return out


def test_a_norm_prices_its_parameters_gradients_in_its_input_gradients_call():
    # all: BatchNorm 1 and 4 pass a gradient to their input and update scale and shift
    assert norm_passes("all") == {"1": ["input_grad", "joint_grad"],
                                  "4": ["input_grad", "joint_grad"]}
    # biases alone: BatchNorm 1's shift is the first tensor updated (the convs have no
    # bias): its input needs no gradient; BatchNorm 4's shift in its input gradient's call
    assert norm_passes("bias-only") == {"1": ["bias_grad"], "4": ["input_grad", "joint_grad"]}
    # a norm on the model's input: no input gradient; its scale's pass, the shift's with it
    first = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 8, 1)).eval()
    assert norm_passes("all", model=first) == {"0": ["weight_grad"]}
    # folded into its conv (the paper convention): the same, as the runner runs it
    folded = norm_passes("all", "paper")
    assert folded == {"0#folded-norm": ["input_grad", "joint_grad"],
                      "3#folded-norm": ["input_grad", "joint_grad"]}


def test_the_joint_pass_is_timed_for_norms_only_and_fitted_for_them():
    model = net()
    graph = trace(model, (1, 3, 4, 4), "m")
    full = {r["name"]: r for r in profile(None, (1, 3, 4, 4), update="all", graph=graph,
                                            tracing=EVAL_MODE, options=PYTORCH
                                            ).evaluation.rows}
    rows = measure_layers(model, graph, full, repeats=1, min_repeat_s=0.0)
    joint = [r for r in rows if r["pass"] == "joint_grad"]
    assert sorted(r["layer"] for r in joint) == ["1", "4"]
    assert all(r["kind"] == "norm" and r["macs"] == 0 and r["cpu_s"] >= 0 for r in joint)
    # a fit from rows of the pass: norm/joint_grad; no other kind has the pass
    fake = [dict(r, layer=f"{r['layer']}-{k}", elements=r["elements"] * k,
                 cpu_s=1e-6 + 1e-10 * r["elements"] * k) for r in joint for k in (1, 2, 3)]
    kinds = lm.fit_kinds(fake)
    assert kinds["norm/joint_grad"]["identified"]
    assert not any(k.endswith("/joint_grad") for k in kinds if not k.startswith("norm/"))
    # the shared-gradient glue counts no joint pass (never a call of its own): conv 3's
    # input and weight gradients alone, 1
    ev = profile(model, (1, 3, 4, 4), update="all", tracing=EVAL_MODE,
                 options=PYTORCH).evaluation
    assert lm.shared_gradients(lm.layer_passes(ev)) == 1


def test_a_calibration_whose_tables_did_not_time_the_joint_pass_says_it_prices_it_at_0():
    ev = profile(net(), (1, 3, 4, 4), update="all", tracing=EVAL_MODE,
                 options=PYTORCH).evaluation
    run = {"layer_passes": lm.layer_passes(ev)}
    before = lm.fit_kinds([])  # a table written before joint_grad: no such rows
    assert lm.priced_by(before, "norm", "joint_grad") is None
    notes = lm.borrowed_kinds(run, before)
    assert any("gradients of 2 norm layer(s) priced at 0 s" in n for n in notes)
    timed = {"norm/joint_grad": {"mac_s": 0.0, "element_s": 0.0, "weight_s": 0.0,
                                 "call_s": 7e-6, "rows": 3, "identified": True, "why": ""}}
    assert not any("joint" in n for n in lm.borrowed_kinds(run, timed))
