"""`profile` for people: the cost model's profile, plus what only the planner knows — a policy.

`--update policy.json` (or a `Policy`) is read here, above the cost model: its layers become
{name: LayerUpdate}, a TinyTL policy's lite-residual modules are added to the model, and the
policy's own settings (convention, optimiser, bit-widths, input shape) are the defaults, so
profiling a policy reproduces its `predicted` with no other option. An option that contradicts
the policy is an error, not a silent override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ttplan.costmodel.errors import SpecError, moved_keywords
from ttplan.costmodel.inputs import ModelInputs, resolve_inputs
from ttplan.costmodel.measure import verify_saved_bytes
from ttplan.costmodel.options import OPTION_NAMES, CostOptions, cost_options
from ttplan.costmodel.profile import (MOVED_KEYWORDS, ModelSource, Profile, Tracing,
                                      resolve_model, tracing_or_default, with_batch_size)
from ttplan.costmodel.profile import profile as cost_profile
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, parse_update
from ttplan.costmodel.trace import trace

from .file import Policy, check_against_graph, policy_from_file_or_object
from ..selection.tinytl import LITE_ATTR, add_lite_residuals


_OPTIONS_MOVED = {k: f"pass options={{'{k}': ...}} (the fields you set) or "
                     f"options=ttplan.cost_options({k}=...)" for k in OPTION_NAMES}


@moved_keywords({**MOVED_KEYWORDS, **_OPTIONS_MOVED})
def profile(model, input_shape=None, *, update="all", options=None, batch_size=None,
            inputs=None, tracing: Tracing | None = None, verify=False) -> Profile:
    """Trace `model` (an nn.Module, a zoo name, ``module:callable``, or a `ModelSource` with
    its name, weights and classifier) and cost training it.

    update: "none", "all", "bias-only", "last-layers:K", "last-blocks:K", a policy file
    (``*.json``) or `Policy`, or {layer name: LayerUpdate}.
    input_shape: N,C,H,W (default: the policy's, else 1×3×128×128); `batch_size` replaces N.
    inputs: instead of input_shape, what the model is called with: a tensor, a tuple of
    tensors (positional), a dict (keyword), spec strings like "ids:int64[1,128]" or an .npz
    (`costmodel.inputs`); `batch_size` replaces dimension 0 of every input.
    options: how it is costed, a `CostOptions` (``ttplan.cost_options(...)``) or a dict of
    the fields you set ({"convention": "pytorch", "optimizer": "adam"}): a field left out is
    the policy's when `update` is a policy, else CostOptions' default. With a policy, a set
    field that differs from the policy's is an error (a CostOptions sets every field).
    tracing: `Tracing(tracer, rules, blocks, training_mode)`: the tracer (auto | fx | hooks),
    {module class | function | kind: Rule} priced for this call only, the regular expression
    naming the blocks last-blocks:K counts, and (pytorch convention) training_mode=False to
    price the modules in eval mode, as `ttplan train` runs them.
    verify: also run the configuration once in PyTorch and record in `verification` what
    autograd kept against the `pytorch` convention's prediction (`verify_saved_bytes`).
    """
    given = _given_options(options)
    tracing = tracing_or_default(tracing)
    policy = _policy_of(update)
    module, name = resolve_model(model)
    if policy is None:
        options = options if isinstance(options, CostOptions) else cost_options(**given)
        shape = resolve_inputs(inputs, input_shape, batch_size)
        prof = cost_profile(ModelSource(module, name), shape, update=update, options=options,
                            tracing=tracing)
    else:
        options = _policy_options(policy, given)
        shape = _policy_inputs(policy, input_shape, batch_size, inputs)
        if policy.method == "tinytl" and \
                not any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
            module, name = add_lite_residuals(module, shape), f"{name}+lite-residual"
        graph = trace(module, shape, name, tracing.tracer, rules=tracing.rules,
                      blocks=tracing.blocks)
        source = str(update) if isinstance(update, (str, Path)) else "policy"
        check_against_graph(policy, graph, source)
        prof = replace(cost_profile(ModelSource(module, name), shape, update=policy.updates(),
                                    options=options, graph=graph, tracing=tracing),
                       update=source)
    if verify:
        prof = replace(prof, verification=verify_saved_bytes(
            module, prof.graph, prof.config.updates, training_mode=prof.config.training_mode))
    return prof


def _given_options(options) -> dict:
    """The cost-option fields the caller set: all of a CostOptions, the non-None entries of a
    dict (their values are checked where they become a CostOptions: `cost_options`, or the
    policy's options `.replace(...)`, with the same messages)."""
    if options is None:
        return {}
    if isinstance(options, CostOptions):
        return {k: getattr(options, k) for k in OPTION_NAMES}
    if isinstance(options, Mapping):
        unknown = [k for k in options if k not in OPTION_NAMES]
        if unknown:
            raise SpecError(f"unknown cost option {unknown[0]!r}: use "
                            f"{', '.join(OPTION_NAMES)}")
        return {k: v for k, v in options.items() if v is not None}
    raise SpecError(f"options must be a CostOptions (ttplan.cost_options(...)) or a dict of "
                    f"its fields, not {type(options).__name__}")


def _policy_of(update) -> Policy | None:
    if isinstance(update, Policy):
        return update
    if isinstance(update, Path) or isinstance(update, str) and parse_update(update).kind == "policy":
        return policy_from_file_or_object(update)
    return None


def _policy_options(policy: Policy, given: dict) -> CostOptions:
    recorded = policy.options
    asked = recorded.replace(**given)
    for key in given:
        if getattr(asked, key) != getattr(recorded, key):
            raise SpecError(f"{key.replace('_', '-')} {given[key]} contradicts the policy's "
                            f"{getattr(recorded, key)}: leave it out to use the policy's")
    return recorded


def _policy_inputs(policy: Policy, input_shape, batch_size, inputs) -> ModelInputs:
    planned = policy.model_inputs()
    if inputs is not None:  # real tensors may stand in for the planned zeros, same specs
        given = resolve_inputs(inputs, input_shape, batch_size)
        if given.to_json() != planned.to_json():
            raise SpecError(f"inputs {given.text()} contradict the policy's {planned.text()}: "
                            "leave them out to use the policy's")
        return given
    shape = tuple(policy.input_shape)
    asked = with_batch_size(input_shape if input_shape is not None else shape, batch_size)
    if asked != shape:
        raise SpecError(f"input shape {'x'.join(map(str, asked))} contradicts the policy's "
                        f"{'x'.join(map(str, shape))}: leave it out to use the policy's")
    return planned
