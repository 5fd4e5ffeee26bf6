"""The runner's own cost per training step, measured on a model whose layers cost next to
nothing, for a layer table (`layermeasure.measure_table`, `step_reference`).

A step of `ttplan train` pays, beside its layers: the ProtoNet loss and its backward, the
autograd engine's start, the loop's indexing, and the optimiser's update and zeroing of every
updated tensor. On the zoo's models (50-100 layers, each step 10-40 ms) a fit of the whole
runs cannot tell these from the layers' own per-call costs and gave them 0 s; on a model of a
few small layers they are most of a step (a one-Linear model: 0.30 ms per step measured,
0.07 ms predicted; notes/device_time_model.md §21). So they are measured:

* the reference model (one Linear(16, 8)) trained at two lengths, batch 1, `update="all"`:
  the difference per step leaves out what a run pays once (first calls, tracing); at two
  sample counts, which tell what each iteration pays (the ProtoNet prototypes' means, the
  shuffle) from what each step pays; and with nothing updated (`update="none"`), what a step
  pays that runs no backward (the loss, the loop's indexing and bookkeeping);
* its layers' step timed alone (forward twice: the step's and the prototypes'; weight and
  bias gradients), which the step's remainder is taken beyond;
* the optimiser's update and zeroing of one small tensor (16 tensors timed together), and
  what each element of a large tensor adds to it, per optimiser (`update_element_seconds`);
* what one `autograd.grad` call costs as `measure_layers` times a backward pass alone, apart
  from what each node of a backward costs inside it (`grad_call_seconds`): a view's backward,
  which moves no data, is the node alone (`layerrun.measured_view_backward`).

`layerrun.measured_step_terms` turns the record into step_s and tensor_update_s.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch
from torch import nn

from ttplan.costmodel.options import PYTORCH
from ttplan.costmodel.profile import EVAL_MODE, profile
from ttplan.costmodel.trace import trace

from .layermodel import OPTIMIZER_TERMS
from .layertable import measure_layers, time_call
from .runner import train_flat
from .trainloop import _make_optimizer
from .trainrequest import OPTIMIZERS

FEATURES = 16
ITERATIONS = (2, 6)  # two run lengths: their difference per step
FEW_SAMPLES = 5  # the second sample count: per iteration apart from per step
UPDATE_TENSORS = 16
GRAD_CHAIN_NODES = (1, 4, 16, 64)  # chains of cheap nodes, one autograd.grad call each


def _reference_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 8))


def measure_step_reference(samples: int, seed: int, repeats: int) -> dict:
    """{samples, iterations, train_cpu_s, few_samples, few_iterations, few_train_cpu_s,
    none_train_cpu_s, layers_forward_cpu_s, layers_step_cpu_s, forward_operators, tensors,
    update_cpu_s, grad_call_cpu_s, grad_node_cpu_s}: the module docstring's measurements
    (medians of `repeats`)."""
    shape = (1, FEATURES)

    def lengths(update: str, count: int, scale: int = 1) -> list[float]:
        out = []
        for iterations in (scale * i for i in ITERATIONS):
            seen = [train_flat({"model": _reference_model(), "model_name": "step-reference",
                                "update": update, "synthetic": True, "samples": count,
                                "seed": seed, "input_shape": list(shape), "holdout": 0.0,
                                "iterations": iterations, "batch_size": 1}
                               ).measured["cpu_phases"]["train_s"] for _ in range(repeats)]
            out.append(statistics.median(seen))
        return out

    train_cpu = lengths("all", samples)
    few = min(FEW_SAMPLES, max(1, samples // 2))
    scale = max(1, samples // few)
    model = _reference_model()
    graph = trace(model, shape, "step-reference")
    full = {r["name"]: r for r in profile(None, shape, update="all", graph=graph,
                                            tracing=EVAL_MODE, options=PYTORCH).evaluation.rows}
    rows = measure_layers(model, graph, full, repeats=repeats, model_name="step-reference")
    layers = sum(r["cpu_s"] * (2 if r["pass"] == "forward" else 1) for r in rows
                 if r["pass"] in ("forward", "weight_grad", "bias_grad"))
    forward = sum(r["cpu_s"] for r in rows if r["pass"] == "forward")
    return {"samples": int(samples), "iterations": list(ITERATIONS), "train_cpu_s": train_cpu,
            # as many steps apart as at `samples`: the split's difference is not all noise
            "few_samples": few, "few_iterations": [scale * i for i in ITERATIONS],
            "few_train_cpu_s": lengths("all", few, scale),
            "none_train_cpu_s": lengths("none", samples), "layers_forward_cpu_s": forward,
            "layers_step_cpu_s": layers, "forward_operators": len(list(graph.ops())),
            "tensors": sum(1 for _ in model.parameters()),
            "update_cpu_s": _update_seconds(repeats),
            **dict(zip(OPTIMIZER_TERMS.values(), update_element_seconds(repeats))),
            **dict(zip(("grad_call_cpu_s", "grad_node_cpu_s"), grad_call_seconds(repeats)))}


def grad_call_seconds(repeats: int) -> tuple[float, float]:
    """(call_s, node_s): `autograd.grad` of chains of GRAD_CHAIN_NODES transposes of a small
    tensor, timed as `measure_layers` times a pass (retain_graph, a fixed output gradient): the
    fitted line's intercept is what the call costs however little it computes, its slope what
    one node of a backward costs inside it. On this 2-core VM: 9.5-20 us per call, 2.0-4.1 us
    per node (notes/device_time_model.md §26)."""
    seconds = []
    for nodes in GRAD_CHAIN_NODES:
        x = torch.zeros(4, 8, requires_grad=True)
        y = x
        for _ in range(nodes):
            y = y.transpose(0, 1)
        grad = torch.ones_like(y)
        seconds.append(time_call(lambda: torch.autograd.grad(y, [x], grad, retain_graph=True),
                                 repeats=repeats)["cpu_s"])
    node_s, call_s = np.polyfit(GRAD_CHAIN_NODES, seconds, 1)
    return max(0.0, float(call_s)), max(0.0, float(node_s))


def _update_seconds(repeats: int) -> float:
    """The runner's optimiser step and zero_grad(set_to_none=True), per small tensor."""
    params = [torch.zeros(64, requires_grad=True) for _ in range(UPDATE_TENSORS)]
    grads = [torch.ones(64) for _ in params]
    optimizer = _make_optimizer(params, "sgd", 0.01)

    def step():
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return time_call(step, repeats=repeats, min_repeat_s=0.01)["cpu_s"] / UPDATE_TENSORS


UPDATE_SMALL, UPDATE_LARGE = 64, 1 << 18  # elements of a small and of a large tensor


def update_element_seconds(repeats: int) -> tuple[dict, dict, dict]:
    """Per optimiser, what the runner's step and zeroing cost ({optimiser: s} each): per
    element of an updated tensor; per tensor beyond SGD's; per step call beyond SGD's. Timed
    on UPDATE_TENSORS small tensors in one step, one small one and one large one: the slope
    per tensor, per element, and the rest per call (PyTorch's optimisers run their tensors in
    one call, `foreach`). SGD's per tensor and per call are already `tensor_update_s` and
    the step reference's `step_s`. Momentum reads and writes a buffer beside the weight, Adam
    two, with more calls: on this 2-core VM a small ResNet's 62 trained tensors (0.7 M
    elements) took 0.2 ms a step with SGD, 0.6 with momentum and 2.4 with Adam
    (notes/device_time_model.md §30)."""
    element, tensor, call = {}, {}, {}
    for name in OPTIMIZERS:
        def timed(count: int, elements: int) -> float:
            params = [torch.zeros(elements, requires_grad=True) for _ in range(count)]
            grads = [torch.ones(elements) for _ in params]
            optimizer = _make_optimizer(params, name, 0.01)

            def step():
                for p, g in zip(params, grads):
                    p.grad = g
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            return time_call(step, repeats=repeats, min_repeat_s=0.005)["cpu_s"]

        one, many, large = (timed(1, UPDATE_SMALL), timed(UPDATE_TENSORS, UPDATE_SMALL),
                            timed(1, UPDATE_LARGE))
        element[name] = max(0.0, (large - one) / (UPDATE_LARGE - UPDATE_SMALL))
        tensor[name] = max(0.0, (many - one) / (UPDATE_TENSORS - 1))
        call[name] = max(0.0, one - tensor[name] - element[name] * UPDATE_SMALL)
    return (element, {n: max(0.0, tensor[n] - tensor["sgd"]) for n in OPTIMIZERS},
            {n: max(0.0, call[n] - call["sgd"]) for n in OPTIMIZERS})


def merged_step_reference(records: list[dict]) -> dict:
    """One record of several measured at different times of a table (`measure_table` takes
    one in each layer pass and one after): each run length's, the layers' and the update's
    median (and of the sample counts' and `none` runs' lengths). A run of 50-150 steps lasts
    10-70 ms, which a shared machine's slow moment can double: one record per table had two of
    three tables at 440-470 us per step against 200-270 (notes/device_time_model.md §22).
    Records without timings (tests) pass through."""
    timed = [r for r in records if r.get("train_cpu_s")]
    if not timed:
        return records[-1] if records else {}
    merged = dict(timed[0], records=len(timed))
    for key in ("train_cpu_s", "few_train_cpu_s", "none_train_cpu_s"):  # per run length
        if all(r.get(key) for r in timed):
            merged[key] = [statistics.median(seen) for seen in zip(*(r[key] for r in timed))]
    for key in ("layers_step_cpu_s", "layers_forward_cpu_s", "update_cpu_s", "grad_call_cpu_s",
                "grad_node_cpu_s"):
        if all(key in r for r in timed):
            merged[key] = statistics.median(r[key] for r in timed)
    for key in OPTIMIZER_TERMS.values():  # per optimiser
        if all(key in r for r in timed):
            merged[key] = {name: statistics.median(r[key][name] for r in timed)
                           for name in timed[0][key]}
    return merged
