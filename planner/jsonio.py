"""Deterministic, atomic JSON files (policies, Fisher probes).

Output files are compared byte-for-byte (a policy computed twice must be the same file), so every
write goes through one formatting: sorted keys, two-space indent, floats as Python's shortest
round-tripping repr, and a trailing newline. Writing and reading go through
`costmodel.fileio` (atomic writes that never replace a special file or an input blindly; a size
cap on reads).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ttplan.costmodel.errors import PolicyError
from ttplan.costmodel.fileio import read_text_input, write_text_atomic


def dumps(obj: Any) -> str:
    """The one canonical text of `obj`. NaN/inf are refused (they are not JSON): a one-line
    PolicyError, raised before anything is written."""
    try:
        return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False,
                          ensure_ascii=False) + "\n"
    except ValueError as exc:
        raise PolicyError(f"refusing to write a non-finite number ({exc})") from None


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as canonical JSON to `path` atomically (temp file + os.replace)."""
    write_text_atomic(path, dumps(obj))  # format first: a bad object leaves no temp file


# The largest integer any of our files holds (byte and MAC counts, seeds) fits in 64 bits.
MAX_JSON_INT = 2**63 - 1


def load_json(path: str | os.PathLike, what: str = "policy") -> Any:
    """Parse a JSON file; a missing, unreadable, oversized or invalid file is a one-line
    PolicyError. Integers must fit in 64 bits and floats must be finite (NaN/Infinity are not
    JSON); a nesting too deep to parse is refused too.

    `what` names the file's role in the message ("policy", "fisher", ...).
    """
    source = Path(path)
    text = read_text_input(source, what, PolicyError)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{what} file {source} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except _NonStandardNumber as exc:
        raise PolicyError(f"{what} file {source} contains {exc}, which is not allowed") from None
    except RecursionError:
        raise PolicyError(f"{what} file {source} is nested too deeply to be a ttplan file") from None
    except ValueError as exc:  # e.g. Python's limit on the digits of an integer
        raise PolicyError(f"{what} file {source} holds a number ttplan refuses: "
                          f"{str(exc).splitlines()[0]}") from None


class _NonStandardNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity by default; our files never contain them, and a
    # NaN Fisher value would silently poison every ranking built on it.
    raise _NonStandardNumber(f"{name} (not a JSON number)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_JSON_INT:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
        raise _NonStandardNumber(f"the integer {shown} (larger than 64 bits)")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonStandardNumber(f"the number {text[:24]} (out of range of a double)")
    return value


def is_int(value: Any) -> bool:
    """An integer in a JSON file: bool is not one, though Python says it is."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite JSON number (bool excluded)."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_keys(d: Any, expected: set, where: str, bad) -> None:
    """Refuse, through `bad(problem) -> Exception`, a value that is not an object holding
    exactly the keys `expected`: one field check for every file ttplan reads."""
    if not isinstance(d, dict):
        raise bad(f"{where} must be an object")
    missing, extra = sorted(expected - set(d)), sorted(set(d) - expected)
    if extra:
        raise bad(f"unknown key(s) {', '.join(extra)} in {where}")
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)} in {where}")


def check_header(d: Any, source: str, fmt: str, version: int, what: str) -> None:
    """Refuse, in one line, a JSON object that is not a `fmt` file of `version`. The version
    must be the integer itself: 1.0 and true compare equal to 1 in Python but are not it."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        if not isinstance(found, (str, type(None))):
            found = type(found).__name__
        raise PolicyError(f"{source} is not a ttplan {what} (format {found!r}, expected {fmt!r})")
    found_version = d.get("version")
    if not (is_int(found_version) and found_version == version):
        shown = found_version if is_int(found_version) or found_version is None \
            else json.dumps(found_version)[:24]
        raise PolicyError(f"{source} has {what} version {shown}; this ttplan "
                          f"reads version {version} (an integer)")
