"""`profile` for people: the cost model's profile, plus what only the planner knows — a policy.

`--update policy.json` (or a `Policy`) is read here, above the cost model: its layers become
{name: LayerUpdate}, a TinyTL policy's lite-residual modules are added to the model, and the
policy's own settings (convention, optimiser, bit-widths, input shape) are the defaults, so
profiling a policy reproduces its `predicted` with no other option. An option that contradicts
the policy is an error, not a silent override.
"""

from __future__ import annotations

from pathlib import Path

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import ModelInputs, resolve_inputs
from ttplan.costmodel.measure import verify_saved_bytes
from ttplan.costmodel.options import OPTION_NAMES, CostOptions, cost_options
from ttplan.costmodel.profile import Profile, resolve_model, with_batch_size
from ttplan.costmodel.profile import profile as cost_profile
from ttplan.costmodel.specs import DEFAULT_INPUT_SHAPE, parse_update
from ttplan.costmodel.trace import trace

from .policy import Policy, check_against_graph, policy_from_file_or_object
from .tinytl import LITE_ATTR, add_lite_residuals


def profile(model, input_shape=None, *, update="all", batch_size=None, convention=None,
            optimizer=None, weight_bits=None, activation_bits=None, gradient_bits=None,
            weights_in_flash=None, model_name=None, weights=None, classifier=False,
            tracer="auto", rules=None, verify=False, blocks=None,
            training_mode=True, inputs=None) -> Profile:
    """Trace `model` (an nn.Module, a zoo name or ``module:callable``) and cost training it.

    update: "none", "all", "bias-only", "last-layers:K", "last-blocks:K", a policy file
    (``*.json``) or `Policy`, or {layer name: LayerUpdate}.
    input_shape: N,C,H,W (default: the policy's, else 1×3×128×128); `batch_size` replaces N.
    inputs: instead of input_shape, what the model is called with: a tensor, a tuple of
    tensors (positional), a dict (keyword), spec strings like "ids:int64[1,128]" or an .npz
    (`costmodel.inputs`); `batch_size` replaces dimension 0 of every input.
    convention, optimizer, weight_bits, activation_bits, gradient_bits, weights_in_flash: the
    `CostOptions` fields; None means the policy's value, else CostOptions' default.
    rules: {module class | function | kind: Rule} priced for this call only.
    blocks: a regular expression naming the blocks last-blocks:K counts (`costmodel.blocks`).
    training_mode (pytorch convention): False prices the modules in eval mode, as `ttplan
    train` runs them (BatchNorm keeps no batch statistics for backward).
    verify: also run the configuration once in PyTorch and record in `verification` what
    autograd kept against the `pytorch` convention's prediction (`verify_saved_bytes`).
    """
    given = {k: v for k, v in zip(OPTION_NAMES, (convention, optimizer, weight_bits,
                                                  activation_bits, gradient_bits,
                                                  weights_in_flash)) if v is not None}
    policy = _policy_of(update)
    module, name = resolve_model(model, model_name, weights, classifier)
    if policy is None:
        options = cost_options(**given)
        shape = resolve_inputs(inputs, input_shape, batch_size)
        prof = cost_profile(module, shape, update=update, options=options, model_name=name,
                            tracer=tracer, rules=rules, blocks=blocks,
                            training_mode=training_mode)
    else:
        options = _policy_options(policy, given)
        shape = _policy_inputs(policy, input_shape, batch_size, inputs)
        if policy.method == "tinytl" and \
                not any(LITE_ATTR in path.split(".") for path, _ in module.named_modules()):
            module, name = add_lite_residuals(module, shape), f"{name}+lite-residual"
        graph = trace(module, shape, name, tracer, rules=rules, blocks=blocks)
        source = str(update) if isinstance(update, (str, Path)) else "policy"
        check_against_graph(policy, graph, source)
        prof = cost_profile(module, shape, update=policy.updates(), options=options,
                            graph=graph, model_name=name, update_text=source,
                            training_mode=training_mode)
    if verify:
        prof.verification = verify_saved_bytes(module, prof.graph, prof.config.updates,
                                               training_mode=prof.config.training_mode)
    return prof


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
