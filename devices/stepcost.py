"""The cost columns of a log row: what ONE training step of a configuration costs.

A step is one forward and backward pass of `batch_size` samples. Its columns, from the cost
model (one place, so the shipped logs, the runner's rows, `predict` and device-aware planning
agree):

  forward_macs, backward_input_macs, backward_weight_macs   totals of the configuration
  updated_tensors     weight and bias tensors the optimiser updates (BatchNorm folded)
  peak_bytes_paper    peak under the paper convention with the policy's cost options
  peak_bytes_pytorch  peak under the pytorch convention (what eager PyTorch keeps, weights in
                      RAM, the policy's optimiser): what a Linux board running PyTorch holds,
                      and what the time model's memory-pressure term compares with its RAM
  depthwise_forward_macs, depthwise_backward_input_macs, depthwise_backward_weight_macs
                      the part of the three MAC totals spent in depthwise convolutions
                      (one input channel per group, groups = channels): they run on other
                      kernels than dense convolutions, at another speed per MAC
  forward_operators, forward_elements, backward_operators, backward_elements
                      the work MACs do not measure (costmodel.costs.OperatorWork): operator
                      calls, each with a fixed dispatch cost, and the output elements of the
                      operators without MACs (normalisation, activations, additions), which
                      run memory-bound
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from ttplan.costmodel.costs import operator_work
from ttplan.costmodel.memory import is_depthwise
from ttplan.costmodel.options import CostOptions, PAPER
from ttplan.costmodel.profile import ModelSource, profile, resolve_model
from ttplan.costmodel.trace import trace
from ttplan.planner.jsonio import dumps
from ttplan.planner.policy.file import Policy, check_against_graph, check_at_any_batch
from ttplan.planner.selection.tinytl import LITE_ATTR, add_lite_residuals

COST_COLUMNS = ("forward_macs", "backward_input_macs", "backward_weight_macs",
                "updated_tensors", "peak_bytes_paper", "peak_bytes_pytorch",
                "depthwise_forward_macs", "depthwise_backward_input_macs",
                "depthwise_backward_weight_macs", "forward_operators", "forward_elements",
                "backward_operators", "backward_elements")


@dataclass(frozen=True)
class StepCost:
    batch_size: int
    forward_macs: int
    backward_input_macs: int
    backward_weight_macs: int
    updated_tensors: int
    peak_bytes_paper: int
    peak_bytes_pytorch: int
    depthwise_forward_macs: int
    depthwise_backward_input_macs: int
    depthwise_backward_weight_macs: int
    forward_operators: int
    forward_elements: int
    backward_operators: int
    backward_elements: int

    def columns(self) -> dict[str, int]:
        d = asdict(self)
        return {k: d[k] for k in COST_COLUMNS}


def step_cost(model, update, input_shape, *, options: CostOptions | None = None, graph=None,
              model_name=None) -> StepCost:
    """Cost columns of training `update` (a spec or {layer: LayerUpdate}) on `model` at
    `input_shape` (its first dimension is the batch size). `options`: the configuration's cost
    options; the paper peak uses its optimiser, bit-widths and weight placement, the pytorch
    peak its optimiser."""
    o = options if options is not None else PAPER
    source = ModelSource(model, name=model_name) if model_name else model
    paper = profile(source, input_shape, update=update, options=o.under("paper"), graph=graph)
    torch_side = profile(None, input_shape, update=update, options=o.under("pytorch"),
                         graph=paper.graph)
    t = paper.totals
    rows = paper.table
    depthwise = rows[[is_depthwise(paper.graph[name]) for name in rows.name]]
    work = operator_work(paper.evaluation)
    return StepCost(int(paper.graph.input_shape[0]), t["forward_macs"], t["backward_input_macs"],
                    t["backward_weight_macs"], paper.evaluation.updated_tensors,
                    paper.memory.peak_bytes, torch_side.memory.peak_bytes,
                    int(depthwise.forward_macs.sum()), int(depthwise.backward_input_macs.sum()),
                    int(depthwise.backward_weight_macs.sum()), work.forward_operators,
                    work.forward_elements, work.backward_operators, work.backward_elements)


def policy_step_cost(policy: Policy, batch_size: int | None = None, model=None) -> StepCost:
    """Cost columns of a policy at `batch_size` (default: the batch it was planned for).
    `model`: the nn.Module or name to trace (default: the policy's model name, a zoo name or
    import path); a TinyTL policy's lite-residual modules are added as `plan` added them."""
    shape = policy.model_inputs().with_batch(None if batch_size is None else int(batch_size))
    graph = policy.graph if policy.graph is not None and \
        tuple(policy.graph.input_shape) == shape.shape else None
    if graph is None:
        module, name = resolve_model(model if model is not None else _base_name(policy))
        if policy.method == "tinytl" and \
                not any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
            module = add_lite_residuals(module, shape)
            name = f"{name}+lite-residual"
        graph = trace(module, shape, name)
        check_at_any_batch(policy, graph, lambda n: trace(module, shape.with_batch(n), name))
    else:
        check_against_graph(policy, graph)
    return step_cost(None, policy.updates(), shape, options=policy.options, graph=graph)


def policy_fingerprint(policy: Policy) -> str:
    """A short name of a policy for a log's `policy` column: the first 16 hex digits of the
    SHA-256 of its canonical JSON."""
    return hashlib.sha256(dumps(policy.to_dict()).encode("utf-8")).hexdigest()[:16]


def _base_name(policy: Policy) -> str:
    suffix = "+lite-residual"
    name = policy.model_name
    return name[: -len(suffix)] if name.endswith(suffix) else name
