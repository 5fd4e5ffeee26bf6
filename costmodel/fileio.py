"""Atomic text output: a file is written whole or not at all.

A write goes to a temporary file in the target's directory and is then `os.replace`d over the
target, so an interrupted or failed run never leaves a half-written file behind (the rename is
atomic on POSIX when both paths are on one filesystem, which the same directory guarantees).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SpecError


def _default_file_mode() -> int:
    # mkstemp creates files 0600; a user's output file should get the usual 0666 & ~umask.
    # Reading the umask means setting it; put it straight back.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temp file + os.replace), UTF-8 with \\n newlines."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file + os.replace)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise SpecError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp_name, _default_file_mode())
        os.replace(tmp_name, target)
    except OSError as exc:
        _unlink_quietly(tmp_name)
        raise SpecError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp_name)
        raise


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
