"""What a cost rule is: `Rule` (one operator's formulas, one per cost-table column), `Grad`
(which gradients exist at the operator), `Saved` (a tensor it keeps for backward) and
`Operator` (a rule together with the module classes, functions and tensor methods it prices).

Backward is stated, never silently zero. A rule with forward MACs must say what its backward
costs: ``mac_layer=True`` (input and weight gradients are the transposed operation, as many
MACs as the forward), a formula for each of ``backward_input_macs`` and
``backward_weight_macs``, or `NO_BACKWARD_MACS` where a gradient costs none. The registry
refuses a rule that leaves one of them unstated (`Rule.unstated_backward`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from ..errors import SpecError
from ..graph import OpNode


@dataclass(frozen=True)
class Grad:
    """Which gradients exist at one operator in a training configuration."""

    inputs: tuple[bool, ...]  # does input i need a gradient (depends on a trainable parameter)?
    weight: bool = False  # is the weight (or norm scale) updated?
    bias: bool = False  # is the bias (or norm shift) updated?
    weight_fraction: float = 1.0  # fraction of the weight's channels updated
    input_fraction: float = 1.0  # fraction of the input a partial weight update must keep
    training_mode: bool = True  # BatchNorm batch statistics / dropout active (pytorch only)

    @property
    def any(self) -> bool:
        return self.weight or self.bias or any(self.inputs)

    def input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i]


@dataclass(frozen=True)
class Saved:
    """A tensor kept for backward. `source` is ("in", i), ("out",) or ("extra", name);
    `nbytes` is the size of an "extra" tensor; an "in"/"out" tensor is kept whole (at the
    activation width) unless `fraction` says only part of its channels is needed.
    `category` is "input" (B4: inputs of layers whose weights are updated) or "mask" (B3:
    what non-linearities, pooling and products need for their derivative)."""

    source: tuple
    nbytes: int | None = None
    category: str = "mask"
    fraction: float = 1.0  # part of an "in"/"out" tensor kept (selected input channels)


# ---- the defaults a Rule starts from -------------------------------------------------------

def no_macs(node: OpNode) -> int:
    """Forward MACs of an operator that multiplies nothing by a weight or another tensor."""
    return 0


def no_backward_macs(node: OpNode, g: Grad) -> int:
    """The explicit "this gradient costs no MACs" (`NO_BACKWARD_MACS`)."""
    return 0


NO_BACKWARD_MACS = no_backward_macs


def per_output(node: OpNode) -> int:
    """One elementary op per output element (an element-wise op, a bias add)."""
    return node.out_numel


def saves_nothing(node: OpNode, g: Grad) -> list:
    return []


def transposed_input_grad(forward: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """The input gradient of a MAC layer: the transposed op, as many MACs as the forward."""
    def backward_input_macs(node: OpNode, g: Grad) -> int:
        return forward(node) if g.input(0) else 0
    return backward_input_macs


def channel_weight_grad(forward: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """The weight gradient of a MAC layer: the forward MACs of the updated channels."""
    def backward_weight_macs(node: OpNode, g: Grad) -> int:
        return round(forward(node) * g.weight_fraction) if g.weight else 0
    return backward_weight_macs


def bias_grad_ops(node: OpNode, g: Grad) -> int:
    """A MAC layer's backward other ops: its bias gradient sums the output gradient."""
    return node.out_numel if g.bias else 0


def on_gradient_path(forward_ops: Callable[[OpNode], int]) -> Callable[[OpNode, Grad], int]:
    """Backward other ops of a non-MAC op: its forward ops again where a gradient passes
    through it, plus one op per output element for a scale and for a shift gradient."""
    def backward_other_ops(node: OpNode, g: Grad) -> int:
        ops = forward_ops(node) if any(g.inputs) else 0
        return ops + node.out_numel * (int(g.weight) + int(g.bias))
    return backward_other_ops


# ---- the rule ------------------------------------------------------------------------------

_BACKWARD_MACS = ("backward_input_macs", "backward_weight_macs")


@dataclass(frozen=True)
class Rule:
    """How one operator kind costs; the fields are the cost table's columns.

    Backward MACs follow from the forward only where that is sure: ``mac_layer=True`` makes
    them the transposed op and the updated channels' share of the forward, and an operator
    without forward MACs has none backward. Any other rule with forward MACs must give both
    backward MAC fields (`NO_BACKWARD_MACS` where a gradient costs none); the registry refuses
    it otherwise. Backward other ops default to the forward ones on the gradient path (a MAC
    layer: its bias gradient)."""

    NO_BACKWARD_MACS: ClassVar[Callable[[OpNode, Grad], int]] = staticmethod(no_backward_macs)

    forward_macs: Callable[[OpNode], int] = no_macs
    forward_other_ops: Callable[[OpNode], int] = per_output
    saved_pytorch: Callable[[OpNode, Grad], list] = saves_nothing
    saved_paper: Callable[[OpNode, Grad], list] = saves_nothing
    mac_layer: bool = False  # input/weight gradients are the transposed op (cost MACs)
    elementwise: bool = False  # `paper` engine computes it in place when its input dies
    backward_input_macs: Callable[[OpNode, Grad], int] | None = None
    backward_weight_macs: Callable[[OpNode, Grad], int] | None = None
    backward_other_ops: Callable[[OpNode, Grad], int] | None = None

    def __post_init__(self) -> None:
        if self.mac_layer:
            derived = {"backward_input_macs": transposed_input_grad(self.forward_macs),
                       "backward_weight_macs": channel_weight_grad(self.forward_macs),
                       "backward_other_ops": bias_grad_ops}
        else:
            derived = {"backward_other_ops": on_gradient_path(self.forward_other_ops)}
            if self.forward_macs is no_macs:  # nothing forward: nothing to transpose
                derived.update(dict.fromkeys(_BACKWARD_MACS, no_backward_macs))
        for name, formula in derived.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, formula)

    def unstated_backward(self) -> list[str]:
        """The backward MAC fields a rule with forward MACs left unset (the registry refuses)."""
        return [name for name in _BACKWARD_MACS if getattr(self, name) is None]


def check_rule(rule: object, label: str) -> Rule:
    """A registry's gate: a ttplan Rule whose backward MACs are all stated."""
    if not isinstance(rule, Rule):
        raise SpecError(f"a cost rule must be a ttplan Rule, not {type(rule).__name__}")
    missing = rule.unstated_backward()
    if missing:
        raise SpecError(f"the cost rule for {label} has forward MACs but does not state its "
                        f"backward: give {' and '.join(f'{m}=' for m in missing)} (a formula, or "
                        "Rule.NO_BACKWARD_MACS), or mac_layer=True if it is a layer whose "
                        "gradients are the transposed op")
    return rule


# ---- an operator: its rule and the keys the tracer meets it under --------------------------

@dataclass(frozen=True)
class Operator:
    """One operator kind as the registry takes it in one step: its `Rule` and every key it is
    met under — module classes (looked up through the MRO), module class names (libraries
    that each write their own DropPath), functions, and tensor method names."""

    kind: str
    rule: Rule
    modules: tuple[type, ...] = ()
    module_names: tuple[str, ...] = ()
    functions: tuple[object, ...] = ()
    methods: tuple[str, ...] = ()
