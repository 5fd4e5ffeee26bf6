"""Every file ttplan reads or writes for the user goes through here.

Writing (`write_text_atomic`, what `--out` uses): the text is formatted in memory first, and
what is at the path decides how it is written. Nothing there is ever replaced blindly:

* a regular file (or nothing): a temporary file in the same directory, then `os.replace`, so
  an interrupted or failed run leaves no half-written file (the rename is atomic on POSIX
  within one filesystem). An existing file keeps its permission bits (and, for root, its owner).
* a symlink: followed; its final target is written as above and the link stays a link. A
  dangling link is refused (where it points was not necessarily meant to be created).
* a character device (`/dev/null`, a terminal, `/dev/stdout`) or a FIFO: written through, by
  opening it for writing as a shell redirection would (a FIFO waits for its reader). There is
  no rename to make atomic: a stream is not replaced.
* refused, in one line: an empty path, a directory, a block device, a socket, a file with more
  than one hard link (replacing it would silently cut the other names off), a file we may not
  write (read-only), and any file this command read as input (compared by device and inode,
  so another name for the same file is caught too).

Reading (`read_text_input`, `read_bytes_input`, `check_input_file` for files another library
opens): only a regular file is read; a FIFO, a device (`/dev/zero`) or a socket is refused at
once, without waiting for a writer, and so is a file over `MAX_TEXT_INPUT_BYTES` (a text file)
or the reader's own cap; undecodable text is one line naming the byte.

Inputs are recorded inside `command_io()` (the CLI opens one per command) so that the output
check knows them; outside it (plain Python use) there is no command and nothing is recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SpecError, TtplanError

# JSON policies and Fisher files, CSV logs: far below this. A Fisher file of a model with a
# million channels is about 25 MB.
MAX_TEXT_INPUT_BYTES = 64 * 2**20

# (st_dev, st_ino) of the regular files the current command read; None outside a command.
_INPUTS: contextvars.ContextVar[set[tuple[int, int]] | None] = contextvars.ContextVar(
    "ttplan_command_inputs", default=None)


@contextlib.contextmanager
def command_io() -> Iterator[None]:
    """One command's scope: files read inside it may not be the command's output."""
    token = _INPUTS.set(set())
    try:
        yield
    finally:
        _INPUTS.reset(token)


def release_input(path: str | os.PathLike) -> None:
    """Let the current command write `path` again although it read it: a log it appends to
    (`measure` appends a row per run) counts as an input after each append, so that its
    `--out` may not replace it, and is released for the command's own next append."""
    inputs, key = _INPUTS.get(), _regular_file_key(path)
    if inputs is not None and key is not None:
        inputs.discard(key)


def note_input(path: str | os.PathLike) -> None:
    """Record that the current command reads `path` (no-op outside `command_io`)."""
    inputs, key = _INPUTS.get(), _regular_file_key(path)
    if inputs is not None and key is not None:
        inputs.add(key)


def _regular_file_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a regular file; None for anything else or a missing file (the
    reader itself reports a missing or unreadable one)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def read_text_input(path: str | os.PathLike, what: str, error: type[TtplanError] = SpecError,
                    limit: int = MAX_TEXT_INPUT_BYTES, record: bool = True) -> str:
    """The UTF-8 text of an input file, at most `limit` bytes; every failure is one line.
    `record=False`: a file the command reads to append to (a log), so not an input `--out`
    must avoid on that account."""
    data = read_bytes_input(path, what, error, limit, record)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {path} is not UTF-8 text (byte {exc.start}: "
                    f"0x{data[exc.start]:02x})") from None


def read_bytes_input(path: str | os.PathLike, what: str, error: type[TtplanError] = SpecError,
                     limit: int = MAX_TEXT_INPUT_BYTES, record: bool = True) -> bytes:
    """The bytes of a regular input file, at most `limit`; a FIFO, device or socket is refused
    at once (opened without blocking, so a FIFO with no writer cannot hang the command)."""
    source = _input_name(path, what, error)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} file not found: {source}") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} file {source}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        _check_regular_input(source, st, what, error, limit)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} file {source}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while read
        raise error(f"{what} file {source} is larger than {_mib(limit)}; "
                    "that is not a file ttplan wrote")
    if record:
        note_input(source)
    return data


def check_input_file(path: str | os.PathLike, what: str, error: type[TtplanError] = SpecError,
                     limit: int | None = MAX_TEXT_INPUT_BYTES) -> str:
    """Refuse now what no reader should open: a missing path, a directory, a FIFO, a device or
    a socket (opening one could wait forever), or a file over `limit` bytes. The path as text."""
    source = _input_name(path, what, error)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise error(f"{what} file not found: {source}") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} file {source}: {_reason(exc)}") from None
    _check_regular_input(source, st, what, error, limit)
    return source


def _input_name(path, what: str, error: type[TtplanError]) -> str:
    source = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if source == "":
        raise error(f"{what} file name is empty")
    if "\0" in source:
        raise error(f"{what} file name contains a NUL character")
    return source


def _check_regular_input(source: str, st: os.stat_result, what: str,
                         error: type[TtplanError], limit: int | None) -> None:
    kind = st.st_mode
    if stat.S_ISDIR(kind):
        raise error(f"{what} file {source} is a directory, not a file")
    if not stat.S_ISREG(kind):
        raise error(f"{what} file {source} is {_special_kind(kind)}, not a regular file")
    if limit is not None and st.st_size > limit:
        raise error(f"{what} file {source} is larger than {_mib(limit)}; "
                    "that is not a file ttplan wrote")


def _special_kind(mode: int) -> str:
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device"
            if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a special file")


def _mib(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit:,} bytes"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` as the module docstring says (atomically for files), UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` as the module docstring says (atomically for files)."""
    how, name, existing = _output_target(path)
    if how == "through":
        _write_through(name, data)
    else:
        _replace_file(name, data, existing)


def check_output_target(path: str | os.PathLike) -> None:
    """Refuse now, before any work, what `write_text_atomic(path, ...)` would refuse (the
    check against the command's inputs is repeated when writing, once they are known)."""
    _output_target(path)


def _output_target(path) -> tuple[str, str, os.stat_result | None]:
    """("through" | "replace", the path to write, the existing file's stat or None)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(name, str) or not name:
        raise SpecError("the output file name is empty: give a path, or leave --out out "
                        "to print on stdout")
    if "\0" in name:
        raise SpecError("the output file name contains a NUL character")
    try:
        st = os.stat(name)  # follows symlinks: what the path finally names
    except FileNotFoundError:
        if os.path.islink(name):
            raise SpecError(f"cannot write {name}: it is a symlink to "
                            f"{os.readlink(name)!r}, which does not exist") from None
        directory = os.path.dirname(name) or "."
        if not os.path.isdir(directory):
            raise SpecError(f"cannot write {name}: no directory {directory}")
        return "replace", name, None
    except OSError as exc:
        raise SpecError(f"cannot write {name}: {_reason(exc)}") from None
    kind = st.st_mode
    if stat.S_ISCHR(kind) or stat.S_ISFIFO(kind):
        return "through", name, st
    if stat.S_ISREG(kind):
        _check_replaceable(name, st)
        return "replace", os.path.realpath(name), st
    what = ("a directory" if stat.S_ISDIR(kind) else "a block device" if stat.S_ISBLK(kind)
            else "a socket" if stat.S_ISSOCK(kind) else "not a regular file")
    raise SpecError(f"cannot write {name}: it is {what}")


def _check_replaceable(name: str, st: os.stat_result) -> None:
    inputs = _INPUTS.get()
    if inputs is not None and (st.st_dev, st.st_ino) in inputs:
        raise SpecError(f"refusing to write {name}: it is an input of this command "
                        "(choose another --out)")
    if st.st_nlink > 1:
        raise SpecError(f"refusing to replace {name}: it has {st.st_nlink} hard links, which "
                        "replacing it would cut (remove it first or choose another --out)")
    # The mode bits too: root may write anything, but a 0444 file says "do not".
    if not st.st_mode & 0o222 or not os.access(name, os.W_OK):
        raise SpecError(f"refusing to replace {name}: it is read-only")


def _write_through(name: str, data: bytes) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SpecError(f"cannot write {name}: {_reason(exc)}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise SpecError(f"cannot write {name}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _replace_file(target: str, data: bytes, existing: os.stat_result | None) -> None:
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.",
                                        suffix=".tmp")
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot write {target}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        if existing is None:
            os.chmod(tmp_name, _default_file_mode())
        else:
            os.chmod(tmp_name, stat.S_IMODE(existing.st_mode))
            if os.geteuid() == 0 and (existing.st_uid, existing.st_gid) != (0, 0):
                with contextlib.suppress(OSError):
                    os.chown(tmp_name, existing.st_uid, existing.st_gid)
        os.replace(tmp_name, target)
    except OSError as exc:
        _unlink_quietly(tmp_name)
        raise SpecError(f"cannot write {target}: {_reason(exc)}") from None
    except BaseException:
        _unlink_quietly(tmp_name)
        raise


def _default_file_mode() -> int:
    # mkstemp creates files 0600; a new output file gets the usual 0666 & ~umask.
    # Reading the umask means setting it; put it straight back.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
