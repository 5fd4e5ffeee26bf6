"""What every command shares: one-line errors with exit status 2, output on stdout only when
the command succeeded, and `--out` through `ttplan.io` (written whole or not at all).

`run_safely` wraps a command body:
* user errors (`TtplanError`), Ctrl-C and running out of memory become one `error:` line on
  stderr and exit status 2;
* files the command reads are recorded (`ttplan.io.command_io`) so `--out` can refuse them;
* while the body runs, stdout (Python's and file descriptor 1, which C libraries such as
  HiGHS print to) points at stderr, so nothing but the result reaches stdout; `emit` keeps the
  results and they are written, in order, once the body succeeded and stdout is stdout again
  (so `--out /dev/stdout` is the real stdout). A closed or full stdout is one line too.
* notes and warnings for the person (`tell`) are held the same way: shown on stderr once the
  command succeeded, dropped when it fails, so a failure's stderr is its `error:` line alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import sys
import warnings
from typing import Optional

import typer
from typer.core import TyperGroup

from ttplan.io import check_output_target, command_io, write_text_atomic
from ttplan.render import DEFAULT_WIDTH, wrap_lines
from ttplan.specs import SpecError, TtplanError

# (text, --out path or None for stdout) that `emit` holds until the command body has returned.
_pending: list[tuple[str, Optional[str]]] = []
# stderr lines (notes, warnings, "wrote ...") held until the command body has returned.
_told: list[str] = []


def fail(message: str) -> None:
    _echo_error(message)
    raise typer.Exit(code=2)


def _echo_error(message: str) -> None:
    line = " ".join(str(message).split()) or "failed"
    with contextlib.suppress(Exception):  # a closed stderr cannot be told anything
        typer.echo(f"error: {line}", err=True)


_freeze_checked = False


def _freeze_once() -> None:
    global _freeze_checked
    _freeze_checked = True
    if not gc.get_freeze_count():
        gc.freeze()


def run_safely(fn):
    """Turn user errors into one line and exit 2; let Typer's own exits through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _pending.clear()
        _told.clear()
        try:
            # Imported here, not at the top: `--help` and usage errors never import torch.
            from ttplan.io import command_line_models

            # torch's import-time objects live as long as the process: moved out of the
            # collector's reach (once), the first full collection does not walk them (~0.1 s
            # of CPU). Asked once per process: gc.get_freeze_count() walks every frozen object
            # (~45 ms in a test process that froze ~10^6 of them, at every command run in it).
            if not _freeze_checked:
                _freeze_once()
            with warnings.catch_warnings(), command_io(), command_line_models():
                warnings.simplefilter("ignore")  # torch/fx chatter is not for the user
                if kwargs.get("out") is not None:
                    check_output_target(kwargs["out"])  # before any work, not after it
                with _stdout_to_stderr():
                    result = fn(*args, **kwargs)
                for text, out in _pending:  # inside command_io: --out is checked against inputs
                    _write_result(text, out)
                _flush_told()  # once the results are out: a failed write is its error alone
            return result
        except TtplanError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted")
        except MemoryError:
            fail("out of memory (a smaller --batch-size, --samples or input shape needs less)")
        finally:
            _pending.clear()
            _told.clear()
    return wrapper


def model_inputs(input_shape: Optional[str], specs: Optional[list[str]],
                 inputs_file: Optional[str], default: Optional[str] = None):
    """What the model is called with (a `ttplan.specs.ModelInputs`), from --input-shape,
    --input (repeatable) or --inputs (at most one of them); `default` (a shape) when none is
    given, else None."""
    from ttplan.specs import inputs_from_shape, inputs_from_specs  # imports torch
    from ttplan.specs import parse_input_shape

    given = [flag for flag, value in (("--input-shape", input_shape), ("--input", specs),
                                      ("--inputs", inputs_file)) if value]
    if len(given) > 1:
        raise SpecError(f"give one of {' and '.join(given)}, not both")
    if specs:
        return inputs_from_specs(list(specs))
    if inputs_file:
        if not inputs_file.lower().endswith(".npz"):
            raise SpecError(f"--inputs takes an .npz file, not {inputs_file!r}")
        return inputs_from_specs(inputs_file)
    shape = input_shape or default
    return inputs_from_shape(parse_input_shape(shape)) if shape else None


def tell(line: str) -> None:
    """A line for the person on stderr (a note, a warning, a summary), shown once the command
    has succeeded; a failed command shows its error line only."""
    _told.append(line.rstrip("\n"))


def note(message: str) -> None:
    tell(f"note: {message}")


def _flush_told() -> None:
    lines, seen = [], set()
    for told in _told:
        if told not in seen:  # a warning is said once, whoever said it first
            seen.add(told)
            lines += told.splitlines()  # a summary's lines stay lines when wrapped
    _told.clear()
    with contextlib.suppress(Exception):
        for line in wrap_lines(lines, table_width(), "    "):  # a terminal's width, as tables
            typer.echo(line, err=True)


def emit(text: str, out: Optional[str]) -> None:
    """A result of the command: to `out` (see `ttplan.io`) or to stdout, written once the
    command body has succeeded."""
    _pending.append((text, out))


def _write_result(text: str, out: Optional[str]) -> None:
    if out is None:
        _write_stdout(text)
        return
    write_text_atomic(out, text)
    with contextlib.suppress(Exception):
        typer.echo(f"wrote {out}", err=True)  # after the write: the file is there


def _write_stdout(text: str) -> None:
    if not text:
        return
    stream = sys.stdout
    if stream is None:
        raise_stdout_error("stdout is closed")
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError) as exc:  # EPIPE, ENOSPC, EBADF; ValueError: closed file
        _silence_real_stdout(stream)
        reason = getattr(exc, "strerror", None) or str(exc)
        raise_stdout_error(f"cannot write to stdout: {reason}")


def raise_stdout_error(message: str) -> None:
    _echo_error(message)
    raise typer.Exit(code=2)


def _silence_real_stdout(stream) -> None:
    """After a failed write, Python would try to flush the same bytes again at exit and print
    'Exception ignored ...': point the real stdout at /dev/null first."""
    if stream is not sys.__stdout__:
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Python's stdout and file descriptor 1 point at stderr for the duration."""
    saved_fd = None
    with contextlib.suppress(Exception):
        _flush_all()
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved_fd is not None:
            _flush_all()
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def _flush_all() -> None:
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        _libc().fflush(None)  # C stdio buffers (HiGHS, OpenMP runtimes)


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None)


# Typer >= 0.22 raises its own vendored copy of Click's exceptions, older Typer Click's own:
# find the base class through the one Typer exports, whichever it is.
_CLICK_EXCEPTION = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")
# Click >= 8.2 raises this for a bare `ttplan`; its message is the whole help text.
_NO_ARGS_IS_HELP = getattr(sys.modules[_CLICK_EXCEPTION.__module__], "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad value, missing argument) as one `error:` line and
    exit status 2, instead of Click's multi-line box; also for `CliRunner` in the tests."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except _CLICK_EXCEPTION as exc:
            _echo_error(exc.format_message())
            sys.exit(2)
        except typer.Abort:
            _echo_error("interrupted")
            sys.exit(2)
        except KeyboardInterrupt:
            _echo_error("interrupted")
            sys.exit(2)
        except OSError as exc:  # a broken stdout while Click printed help
            _silence_real_stdout(sys.stdout)
            _echo_error(f"cannot write to stdout: {exc.strerror or exc}")
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def table_width() -> int:
    """The width tables fit (`ttplan.render.fit_table`): $COLUMNS when it is a sensible number,
    else 100. The terminal itself is not asked, so piped output is the same as on screen."""
    text = os.environ.get("COLUMNS", "")
    if text.isascii() and text.isdigit() and 40 <= int(text) <= 1000:
        return int(text)
    return DEFAULT_WIDTH


def warn_uncosted(graph, other_warnings=()) -> None:
    """One stderr line per kind of operator of `graph` without a cost rule, with how many
    there are (`ttplan.render.uncosted_warnings`); other warnings as they are."""
    from ttplan.render import uncosted_warnings

    for warning in uncosted_warnings(graph):
        tell(f"warning: {warning}")
    for warning in other_warnings:
        if not str(warning).startswith("no cost rule for "):
            tell(f"warning: {warning}")
