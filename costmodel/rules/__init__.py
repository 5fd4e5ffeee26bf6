"""The cost rules: one `Rule` per operator kind, every column of the cost table side by side.

A `Rule`'s fields are the cost table's columns: ``forward_macs``, ``backward_input_macs``,
``backward_weight_macs``, ``forward_other_ops``, ``backward_other_ops``, and what the op keeps
for backward under each memory convention (``saved_pytorch``, ``saved_paper``; see `Saved`).
MACs are whole-batch multiply-accumulates; FLOPs, where shown, are 2 × MACs (the convention of
``torch.utils.flop_counter``) and do not include other ops.

Layout: `rule` (Rule, Grad, Saved, Operator and the backward-is-stated check), `common`
(pieces several families share), one module per operator family — `conv`, `linear`,
`products` (matmul, addmm, einsum), `attention` (sdpa, MultiheadAttention), `recurrent`,
`norm`, `activations`, `elementwise`, `reductions`, `pooling`, `dropout`, `views`,
`embedding`, `sources`, `derived` — and `registry`, which takes every family's operators into
the one `REGISTRY`. `register_rule` adds a user's own module or function (duplicates
refused); `Registry.with_rules` gives a copy with per-call overrides
(``ttplan.profile(..., rules={MyBlock: Rule(...)})``).
"""

from .common import per_input, per_output_x2
from .dropout import drop_probability
from .registry import REGISTRY, Registry, register_rule, registry_of, rule_for
from .rule import NO_BACKWARD_MACS, Grad, Operator, Rule, Saved, per_output
from .views import VIEW_KINDS

__all__ = ["Grad", "Saved", "Rule", "Operator", "NO_BACKWARD_MACS", "Registry", "REGISTRY",
           "register_rule", "rule_for", "registry_of", "per_output", "per_output_x2",
           "per_input", "drop_probability", "VIEW_KINDS"]
