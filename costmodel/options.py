"""How a training configuration is costed: one frozen, validated value used everywhere.

`profile`, `plan`, the sweep, the policies and the CLI all build a `CostOptions`; it checks its
fields when built, so every entry point refuses the same values with the same one-line error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
