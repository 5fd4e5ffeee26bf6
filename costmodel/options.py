"""How a training configuration is costed: one frozen, validated value used everywhere.

Loose values (command-line flags, API keywords, a policy file's fields) become a `CostOptions`
in one place, `cost_options(...)`, at the boundary; everything below receives the value and
passes it on, deriving a variant (`under(convention)`, `replace(...)`) instead of re-building
it from fields. It checks its fields when built, so every entry point refuses the same values
with the same one-line error. tests/test_api_requests.py counts the construction sites.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from dataclasses import replace as _replace

from .errors import SpecError

CONVENTIONS = ("paper", "pytorch")
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}  # state tensors per updated parameter
BIT_WIDTHS = (1, 2, 4, 8, 16, 32)
FP32_BYTES = 4


@dataclass(frozen=True)
class CostOptions:
    """convention: ``paper`` (appendix A.4's engine, BatchNorm folded) or ``pytorch`` (what eager
    PyTorch keeps). optimizer: sgd | momentum | adam. Bit-widths (paper only): 1, 2, 4, 8, 16
    or 32, as int or text. weights_in_flash: where frozen weights live; None means the
    convention's default (flash under paper, as A.4 counts; RAM under pytorch)."""

    convention: str = "paper"
    optimizer: str = "sgd"
    weight_bits: int = 32
    activation_bits: int = 32
    gradient_bits: int = 32
    weights_in_flash: bool | None = None

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise SpecError(f"unknown convention {self.convention!r}: use paper or pytorch")
        if self.optimizer not in OPTIMIZER_STATES:
            raise SpecError(f"unknown optimizer {self.optimizer!r}: use sgd, momentum or adam")
        for name in ("weight_bits", "activation_bits", "gradient_bits"):
            object.__setattr__(self, name, _bit_width(name, getattr(self, name)))
        if self.convention == "pytorch" and \
                (self.weight_bits, self.activation_bits, self.gradient_bits) != (32, 32, 32):
            raise SpecError("bit-width options apply to --convention paper only; the pytorch "
                            "convention uses the tensors' own dtypes")
        flash = self.weights_in_flash
        if flash is None:
            flash = self.convention == "paper"
        elif not isinstance(flash, bool):
            raise SpecError(f"weights_in_flash must be true, false or unset, not {flash!r}")
        elif flash and self.convention == "pytorch":
            raise SpecError("--weights-in-flash applies to --convention paper only")
        object.__setattr__(self, "weights_in_flash", flash)

    @property
    def paper(self) -> bool:
        return self.convention == "paper"

    @property
    def optimizer_states(self) -> int:
        return OPTIMIZER_STATES[self.optimizer]

    def to_dict(self) -> dict:
        """The options a policy records beside its convention."""
        d = asdict(self)
        del d["convention"]
        return d

    def replace(self, **changes) -> CostOptions:
        """These options with some fields changed (None leaves a field as it is), validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return _replace(self, **changes) if changes else self

    def under(self, convention: str) -> CostOptions:
        """The same configuration costed under `convention`: the optimiser carries over; under
        pytorch the tensors' own dtypes and RAM-resident weights (its only choices), under
        paper these bit-widths and weight placement."""
        if convention == "pytorch":
            return PYTORCH.replace(optimizer=self.optimizer)
        return _replace(self, convention=convention)


def options_or_default(options, default: CostOptions | None = None) -> CostOptions:
    """`options` as given (a CostOptions), or `default` (PAPER) for None; anything else is
    refused with a pointer to the factory."""
    if options is None:
        return default if default is not None else PAPER
    if not isinstance(options, CostOptions):
        raise SpecError(f"options must be a CostOptions (ttplan.cost_options(...)), not "
                        f"{type(options).__name__}")
    return options


def cost_options(convention: str | None = None, optimizer: str | None = None,
                 weight_bits=None, activation_bits=None, gradient_bits=None,
                 weights_in_flash: bool | None = None) -> CostOptions:
    """The one factory from loose values: None means the default (`CostOptions`' field
    default; for weights_in_flash, the convention's). Bit-widths may be text ("8")."""
    given = dict(convention=convention, optimizer=optimizer, weight_bits=weight_bits,
                 activation_bits=activation_bits, gradient_bits=gradient_bits,
                 weights_in_flash=weights_in_flash)
    return CostOptions(**{k: v for k, v in given.items() if v is not None})


def _bit_width(name: str, value) -> int:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 2:
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or text not in BIT_WIDTHS:
        label = name.replace("_bits", "")
        shown = str(value) if len(str(value)) <= 40 else str(value)[:30] + "..."
        raise SpecError(f"invalid {label} bit-width {shown}: expected one of "
                        f"{', '.join(map(str, BIT_WIDTHS))}")
    return text


OPTION_NAMES = tuple(f.name for f in fields(CostOptions))
PAPER = cost_options()               # the paper's A.4 engine, weights in flash
PYTORCH = cost_options("pytorch")    # what eager PyTorch keeps
