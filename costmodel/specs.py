"""Parsers for command-line values: input shape, update spec, byte and MAC budgets, bit-width.

Each parser raises SpecError with a one-line message naming the bad value and the expected form.

Every number on the command line goes through this module: ASCII digits only (Python's int()
and float() also accept "١٢" or "1_000"; we do not), a bounded number of digits (never Python's
4,300-digit conversion limit), and values that fit the 64-bit integers our files hold.

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
# ASCII digits only (every pattern here is compiled with re.ASCII), at most 30 of them.
_NUMBER = r"(\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})"

# Counts, bytes, MACs and seeds are stored in JSON files as 64-bit integers.
MAX_INT = 2**63 - 1
# The largest input tensor (elements, batch included) ttplan traces: 8 GiB of float32. Beyond
# that a real forward pass (the Fisher probe, a model that needs real values to trace) cannot
# run on the machines this is for, and some kernels index with 32-bit integers.
MAX_INPUT_ELEMENTS = 2**31 - 1


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:30] + "...")


def parse_int(text: str, what: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """The one integer parser: ASCII digits (no sign, no '_'), minimum <= value <= maximum."""
    stripped = text.strip() if isinstance(text, str) else str(text)
    if not (stripped.isascii() and stripped.isdigit()):
        raise SpecError(f"invalid {what} {_shown(text)}: expected a whole number "
                        f"(ASCII digits) from {minimum:,} to {maximum:,}")
    digits = stripped.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or not minimum <= int(digits) <= maximum:
        raise SpecError(f"invalid {what} {_shown(text)}: expected a whole number from "
                        f"{minimum:,} to {maximum:,}")
    return int(digits)


def parse_fraction(text: str, what: str) -> float:
    """A decimal in (0, 1] such as '0.44' (ASCII, no exponent, no nan/inf)."""
    stripped = text.strip() if isinstance(text, str) else str(text)
    match = re.fullmatch(_NUMBER, stripped, re.ASCII)
    if not match or not 0 < Fraction(match.group(1)) <= 1:
        raise SpecError(f"invalid {what} {_shown(text)}: expected a decimal in (0, 1], e.g. 0.44")
    return float(Fraction(match.group(1)))


def check_input_size(shape, where: str = "input shape") -> tuple[int, ...]:
    """Positive integer dims whose product is at most MAX_INPUT_ELEMENTS (checked before
    anything is allocated)."""
    dims = tuple(shape)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise SpecError(f"invalid {where} {list(dims)}: expected positive integers")
    if math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise SpecError(f"{where} {'x'.join(map(str, dims))} has {math.prod(dims):,} elements; "
                        f"ttplan traces inputs of at most {MAX_INPUT_ELEMENTS:,}")
    return dims


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,3,96,96' or '1x3x96x96' -> (1, 3, 96, 96): positive integers, at least 2 dims."""
    expected = "expected positive integers separated by ',' or 'x' with at least 2 dims, " \
               "e.g. 1,3,128,128"
    stripped = text.strip()
    # One separator kind per value, so that a typo like "1,3x96" is not silently accepted.
    sep = "," if "," in stripped else "x"
    parts = [p.strip() for p in stripped.lower().split(sep)]
    if len(parts) < 2 or len(parts) > 8 or not all(p.isascii() and p.isdigit() for p in parts):
        raise SpecError(f"invalid input shape {_shown(text)}: {expected}")
    digits = [p.lstrip("0") for p in parts]  # int() of 5,000 zeros would hit Python's limit
    if any(not d or len(d) > 10 for d in digits):
        raise SpecError(f"invalid input shape {_shown(text)}: {expected}")
    return check_input_size(tuple(int(d) for d in digits))


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


def is_policy_file_spec(text: str) -> bool:
    """Whether an update spec names a policy file (a path ending in .json)."""
    lowered = text.strip().lower()
    return lowered.endswith(".json") and len(lowered) > len(".json")


def parse_update(text: str) -> UpdateSpec:
    """Parse an update spec such as 'all', 'last-blocks:2' or 'policy.json'."""
    stripped = text.strip()
    lowered = stripped.lower() if stripped.isascii() else stripped
    if lowered in ("none", "all", "bias-only"):
        return UpdateSpec(lowered)
    if is_policy_file_spec(stripped):
        # The path keeps its original case: file systems may be case-sensitive.
        return UpdateSpec("policy", path=stripped)
    match = re.fullmatch(r"(last-layers|last-blocks)\s*:\s*(\d{1,10})", lowered, re.ASCII)
    if match and int(match.group(2)) > 0:
        return UpdateSpec(match.group(1), k=int(match.group(2)))
    raise SpecError(f"invalid update spec {_shown(text)}: expected {_UPDATE_FORMS}")


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
    # isascii first: str.lower() maps some non-ASCII letters (the Kelvin sign) to ASCII ones.
    match = text.isascii() and re.fullmatch(_NUMBER + r"\s*([a-z]*)", text.strip().lower(),
                                             re.ASCII)
    if not match or match.group(2) not in _BYTE_UNITS:
        raise SpecError(f"invalid byte size {_shown(text)}: {expected}")
    # Fraction keeps "1.1MB" exact, where float arithmetic could round 1099999.99... down.
    amount = math.floor(Fraction(match.group(1)) * _BYTE_UNITS[match.group(2)])
    if amount <= 0:
        raise SpecError(f"invalid byte size {_shown(text)}: it is less than one byte; {expected}")
    if amount > MAX_INT:
        raise SpecError(f"invalid byte size {_shown(text)}: more than {MAX_INT:,} bytes")
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
    if not text.isascii():
        raise SpecError(f"invalid compute budget {_shown(text)}: {expected}")
    lowered = text.strip().lower()
    pct = re.fullmatch(_NUMBER + r"\s*%", lowered, re.ASCII)
    if pct:
        percent = Fraction(pct.group(1))
        if not 0 < percent <= 100:
            raise SpecError(f"invalid compute budget {_shown(text)}: {expected}")
        return ComputeBudget(fraction=float(percent / 100))
    absolute = re.fullmatch(_NUMBER + r"\s*([kmg]?)\s*(?:macs?)?", lowered, re.ASCII)
    if not absolute:
        raise SpecError(f"invalid compute budget {_shown(text)}: {expected}")
    macs = math.floor(Fraction(absolute.group(1)) * _MAC_UNITS[absolute.group(2)])
    if not 0 < macs <= MAX_INT:
        raise SpecError(f"invalid compute budget {_shown(text)}: {expected} "
                        f"(at most {MAX_INT:,} MACs)")
    return ComputeBudget(macs=macs)


def memory_budget(value) -> int | None:
    """A memory budget in bytes from text ("1MB", `parse_bytes`) or a whole number of bytes,
    refused with `parse_bytes`' message either way; None is no budget."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_bytes(str(value))
    if isinstance(value, str):
        return parse_bytes(value)
    raise SpecError(f"invalid byte size {value!r}: expected a whole number of bytes or text "
                    "such as 256kB")


def compute_budget(value) -> ComputeBudget | None:
    """A compute budget from text ("15%", "6.5M": `parse_compute`), a whole number of MACs (the
    same grammar and message), a fraction in (0, 1] (the command line's 15% is 0.15) or a
    ComputeBudget; None is no budget."""
    if value is None or isinstance(value, ComputeBudget):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_compute(str(value))
    if isinstance(value, str):
        return parse_compute(value)
    if isinstance(value, float):
        if not (math.isfinite(value) and 0 < value <= 1):
            raise SpecError(f"invalid compute budget {value!r}: a fraction must be in (0, 1] "
                            "(15% is 0.15)")
        return ComputeBudget(fraction=value)
    raise SpecError(f"invalid compute budget {value!r}: expected MACs, a fraction in (0, 1] "
                    "or text such as 15% or 6.5M")


@dataclass(frozen=True)
class Budgets:
    """What a plan must fit, parsed once: `memory_bytes` (peak bytes, `memory_budget`) and
    `compute` (backward MACs or a fraction of full training's, `compute_budget`). Accepts the
    command line's text, so every entry point refuses the same values with the same
    message."""

    memory_bytes: int | None = None
    compute: ComputeBudget | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "memory_bytes", memory_budget(self.memory_bytes))
        object.__setattr__(self, "compute", compute_budget(self.compute))


_DURATION_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def parse_duration(text: str, what: str = "duration") -> float:
    """'100s', '100', '20min', '20m', '1.5h' -> seconds (a bare number is seconds). Must be
    positive. The one duration grammar: `plan --time`, `measure --time-limit`, the API."""
    expected = "expected a positive duration such as 100s, 20min (or 20m) or 1h"
    match = re.fullmatch(_NUMBER + r"\s*([a-z]*)", str(text).strip().lower(), re.ASCII)
    if not match or match.group(2) not in _DURATION_UNITS:
        raise SpecError(f"invalid {what} {text!r}: {expected}")
    seconds = float(Fraction(match.group(1)) * _DURATION_UNITS[match.group(2)])
    if seconds <= 0:
        raise SpecError(f"invalid {what} {text!r}: {expected}")
    return seconds
