"""Parsers for command-line values: input shape, update spec, byte and MAC budgets, bit-width.

Each parser raises SpecError with a one-line message naming the bad value and the expected form.

Byte units: decimal kB/KB, MB, GB are powers of 1000 ("KB" and "kB" both mean 1000 bytes);
binary KiB, MiB, GiB are powers of 1024. Units are case-insensitive and may follow a space.
Fractional amounts are allowed and rounded down to whole bytes (or MACs).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from ttplan.costmodel.errors import SpecError

DEFAULT_INPUT_SHAPE = (1, 3, 128, 128)  # the paper's input resolution, batch 1

# A non-negative decimal without exponent, sign, nan or inf: "12", "1.5", ".5", "3.".
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,3,96,96' or '1x3x96x96' -> (1, 3, 96, 96): positive integers, at least 2 dims."""
    expected = "expected positive integers separated by ',' or 'x' with at least 2 dims, " \
               "e.g. 1,3,128,128"
    stripped = text.strip()
    # One separator kind per value, so that a typo like "1,3x96" is not silently accepted.
    sep = "," if "," in stripped else "x"
    parts = [p.strip() for p in stripped.lower().split(sep)]
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise SpecError(f"invalid input shape {text!r}: {expected}")
    dims = tuple(int(p) for p in parts)
    if min(dims) <= 0:
        raise SpecError(f"invalid input shape {text!r}: {expected}")
    return dims


@dataclass(frozen=True)
class UpdateSpec:
    """Which parameters training updates.

    kind is one of: 'none', 'all', 'bias-only', 'last-layers' (k = number of layers),
    'last-blocks' (k = number of blocks), 'policy' (path = a JSON policy file, read elsewhere).
    """

    kind: str
    k: int | None = None
    path: str | None = None


_UPDATE_FORMS = "none, all, bias-only, last-layers:K, last-blocks:K (K a positive integer), " \
                "or a policy file ending in .json"


def parse_update(text: str) -> UpdateSpec:
    """Parse an update spec such as 'all', 'last-blocks:2' or 'policy.json'."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("none", "all", "bias-only"):
        return UpdateSpec(lowered)
    if lowered.endswith(".json") and len(lowered) > len(".json"):
        # The path keeps its original case: file systems may be case-sensitive.
        return UpdateSpec("policy", path=stripped)
    match = re.fullmatch(r"(last-layers|last-blocks)\s*:\s*(\d+)", lowered)
    if match and int(match.group(2)) > 0:
        return UpdateSpec(match.group(1), k=int(match.group(2)))
    raise SpecError(f"invalid update spec {text!r}: expected {_UPDATE_FORMS}")


# Multipliers by lower-cased unit; "" and "b" are plain bytes.
_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def parse_bytes(text: str) -> int:
    """'1MB' -> 1000000, '1.5 KiB' -> 1536, '4096' -> 4096. Must come to at least one byte."""
    expected = "expected a positive amount with an optional unit B, kB/KB, MB, GB (x1000) " \
               "or KiB, MiB, GiB (x1024), e.g. 256kB"
    match = re.fullmatch(_NUMBER + r"\s*([a-z]*)", text.strip().lower())
    if not match or match.group(2) not in _BYTE_UNITS:
        raise SpecError(f"invalid byte size {text!r}: {expected}")
    # Fraction keeps "1.1MB" exact, where float arithmetic could round 1099999.99... down.
    amount = math.floor(Fraction(match.group(1)) * _BYTE_UNITS[match.group(2)])
    if amount <= 0:
        raise SpecError(f"invalid byte size {text!r}: it is less than one byte; {expected}")
    return amount


@dataclass(frozen=True)
class ComputeBudget:
    """A backward-pass compute budget: absolute MACs or a fraction of the full backward pass.

    Exactly one of the fields is set.
    """

    macs: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.macs is None) == (self.fraction is None):
            raise ValueError("ComputeBudget needs exactly one of macs and fraction")

    def resolve(self, full_backward_macs: int) -> int:
        """The budget in MACs, given the MACs of a full backward pass (rounded down)."""
        if self.macs is not None:
            return self.macs
        # repr() gives back the decimal the user typed (0.29, not 0.28999...), so the
        # product is exact and floor() does not lose a MAC to binary rounding.
        return math.floor(Fraction(repr(self.fraction)) * full_backward_macs)


_MAC_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def parse_compute(text: str) -> ComputeBudget:
    """'15%' -> fraction 0.15; '6.5M', '500k', '1.2G MACs', '6500000' -> absolute MACs."""
    expected = "expected a percentage in (0, 100] such as 15%, or a positive MAC count " \
               "with optional k/M/G and optional 'MACs', such as 6.5M"
    lowered = text.strip().lower()
    pct = re.fullmatch(_NUMBER + r"\s*%", lowered)
    if pct:
        percent = Fraction(pct.group(1))
        if not 0 < percent <= 100:
            raise SpecError(f"invalid compute budget {text!r}: {expected}")
        return ComputeBudget(fraction=float(percent / 100))
    absolute = re.fullmatch(_NUMBER + r"\s*([kmg]?)\s*(?:macs?)?", lowered)
    if not absolute:
        raise SpecError(f"invalid compute budget {text!r}: {expected}")
    macs = math.floor(Fraction(absolute.group(1)) * _MAC_UNITS[absolute.group(2)])
    if macs <= 0:
        raise SpecError(f"invalid compute budget {text!r}: {expected}")
    return ComputeBudget(macs=macs)


_DURATION_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'100s', '100', '20min', '1.5h' -> seconds (a bare number is seconds). Must be positive."""
    expected = "expected a positive duration such as 100s, 20min or 1h"
    match = re.fullmatch(_NUMBER + r"\s*([a-z]*)", str(text).strip().lower())
    if not match or match.group(2) not in _DURATION_UNITS:
        raise SpecError(f"invalid duration {text!r}: {expected}")
    seconds = float(Fraction(match.group(1)) * _DURATION_UNITS[match.group(2)])
    if seconds <= 0:
        raise SpecError(f"invalid duration {text!r}: {expected}")
    return seconds
