"""The cost rules: one `Rule` per operator kind, every column of the cost table side by side,
all in the one `REGISTRY` built here from the operator families.

A `Rule`'s fields are the cost table's columns: ``forward_macs``, ``backward_input_macs``,
``backward_weight_macs``, ``forward_other_ops``, ``backward_other_ops``, and what the op keeps
for backward under each memory convention (``saved_pytorch``, ``saved_paper``; see `Saved`).
MACs are whole-batch multiply-accumulates; FLOPs, where shown, are 2 × MACs (the convention of
``torch.utils.flop_counter``) and do not include other ops.

Layout: `rule` (Rule, Grad, Saved, Operator and the backward-is-stated check), `common`
(pieces several families share), `registry` (the Registry class), and one module per operator
family, each listing its `OPERATORS` — a kind, its rule and the module classes, functions and
tensor methods it prices. `register_rule` adds a user's own module or function (duplicates
refused); `Registry.with_rules` gives a copy with per-call overrides
(``ttplan.profile(..., tracing=ttplan.Tracing(rules={MyBlock: Rule(...)}))``).
"""

from __future__ import annotations

from . import (activations, attention, conv, derived, dropout, elementwise, embedding, linear,
               norm, pooling, products, recurrent, reductions, sources, views)
from .common import per_input, per_output_x2
from .dropout import drop_probability
from .registry import Registry
from .rule import NO_BACKWARD_MACS, Grad, Operator, Rule, Saved, per_output
from .views import VIEW_KINDS

FAMILIES = (sources, conv, linear, products, attention, recurrent, norm, activations,
            elementwise, reductions, pooling, dropout, views, embedding, derived)

REGISTRY = Registry.from_operators(op for family in FAMILIES for op in family.OPERATORS)


def register_rule(key, rule: Rule, kind: str | None = None) -> str:
    """Price a module class, function or kind of your own everywhere ttplan costs a model.
    Refuses anything that already has a rule (use ``rules=`` of `profile` to override), and a
    rule with forward MACs whose backward is not stated (see `Rule`)."""
    return REGISTRY.register(key, rule, kind)


def rule_for(kind: str) -> Rule | None:
    """The default registry's rule of a kind."""
    return REGISTRY.rule_for(kind)


def registry_of(graph) -> Registry:
    """The registry a graph was traced with."""
    return graph.rules if graph.rules is not None else REGISTRY


__all__ = ["Grad", "Saved", "Rule", "Operator", "NO_BACKWARD_MACS", "Registry", "REGISTRY",
           "register_rule", "rule_for", "registry_of", "per_output", "per_output_x2",
           "per_input", "drop_probability", "VIEW_KINDS"]
