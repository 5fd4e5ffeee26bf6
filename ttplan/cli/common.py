"""What every command shares: one-line errors with exit status 2, and atomic output."""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Optional

import typer

from ttplan.costmodel.errors import TtplanError
from ttplan.costmodel.fileio import write_text_atomic


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def run_safely(fn):
    """Turn user errors into one line and exit 2; let Typer's own exits through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch/fx chatter is not for the user
                return fn(*args, **kwargs)
        except TtplanError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted")
    return wrapper


def emit(text: str, out: Optional[str]) -> None:
    if out:
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}", err=True)
    else:
        sys.stdout.write(text)
