"""Deterministic, atomic JSON files (policies, Fisher probes).

Output files are compared byte-for-byte (a policy computed twice must be the same file), so every
write goes through one formatting: sorted keys, two-space indent, floats as Python's shortest
round-tripping repr, and a trailing newline. A write goes to a temporary file in the target's
directory and is then `os.replace`d over the target, so an interrupted run never leaves a
half-written file behind (the rename is atomic on POSIX when both paths are on one filesystem,
which the same directory guarantees).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ttplan.costmodel.errors import PolicyError
from ttplan.costmodel.fileio import write_text_atomic


def dumps(obj: Any) -> str:
    """The one canonical text of `obj` (NaN/inf are refused: they are not JSON)."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as canonical JSON to `path` atomically (temp file + os.replace)."""
    write_text_atomic(path, dumps(obj))  # format first: a bad object leaves no temp file


def load_json(path: str | os.PathLike, what: str = "policy") -> Any:
    """Parse a JSON file; a missing, unreadable or invalid file is a one-line PolicyError.

    `what` names the file's role in the message ("policy", "fisher", ...).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{what} file not found: {source}") from None
    except IsADirectoryError:
        raise PolicyError(f"{what} file {source} is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{what} file {source} is not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"cannot read {what} file {source}: {exc.strerror or exc}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{what} file {source} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except _NonStandardNumber as exc:
        raise PolicyError(f"{what} file {source} contains {exc}, which is not valid JSON") from None


class _NonStandardNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity by default; our files never contain them, and a
    # NaN Fisher value would silently poison every ranking built on it.
    raise _NonStandardNumber(name)


def check_header(d: Any, source: str, fmt: str, version: int, what: str) -> None:
    """Refuse, in one line, a JSON object that is not a `fmt` file of `version`."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise PolicyError(f"{source} is not a ttplan {what} (format {found!r}, expected {fmt!r})")
    if d.get("version") != version:
        raise PolicyError(f"{source} has {what} version {d.get('version')!r}; this ttplan "
                          f"reads version {version}")
