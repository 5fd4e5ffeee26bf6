"""Can a Typer command take option groups (dataclasses) instead of one parameter per option?

A decorator flattens each dataclass-typed parameter into its fields (each an `Annotated`
option) through `__signature__`, which Typer reads with `inspect.signature`; the callback
then receives the dataclasses built in one step.

Run: python notes/probe_typer_option_groups.py. With typer 0.29.2 it printed exit status 0
with the two dataclasses built, every field's flag in --help, and "parameters Typer sees: 6;
parameters of the callback: 4".

The decorator is now `ttplan.cli.options.option_groups` (required fields, a flag in two
groups refused), used by every command that has groups; this probe is kept as the record.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Annotated, Optional, get_type_hints

import typer
from typer.testing import CliRunner


def option_groups(fn):
    """`fn(a, inputs: Inputs, out: Output)`, each dataclass parameter shown to Typer as its
    fields; called with the dataclasses."""
    hints = get_type_hints(fn, include_extras=True)
    params, groups = [], {}
    for name, param in inspect.signature(fn).parameters.items():
        kind = hints.get(name)
        if dataclasses.is_dataclass(kind):
            fields = get_type_hints(kind, include_extras=True)
            groups[name] = (kind, [f.name for f in dataclasses.fields(kind)])
            for f in dataclasses.fields(kind):
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                                default=f.default, annotation=fields[f.name]))
        else:
            params.append(param.replace(annotation=hints.get(name, param.annotation),
                                        kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(fn)
    def flat(**kwargs):
        for name, (kind, names) in groups.items():
            kwargs[name] = kind(**{n: kwargs.pop(n) for n in names})
        return fn(**kwargs)

    flat.__signature__ = inspect.Signature(params)
    del flat.__wrapped__  # Typer must see the flat signature, not fn's
    flat.grouped = fn
    return flat


@dataclasses.dataclass(frozen=True)
class Inputs:
    input_shape: Annotated[Optional[str], typer.Option(help="N,C,H,W")] = None
    batch_size: Annotated[Optional[int], typer.Option(help="replaces N")] = None


@dataclasses.dataclass(frozen=True)
class Output:
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table"
    out: Annotated[Optional[str], typer.Option(help="file")] = None


app = typer.Typer()


@app.command()
@option_groups
def profile(model: Annotated[str, typer.Argument()], inputs: Inputs, output: Output,
            verify: Annotated[bool, typer.Option()] = False):
    print(model, inputs, output, verify)


@app.command()
def other():
    pass


if __name__ == "__main__":
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "m", "--input-shape", "1,3,8,8", "--format", "json",
                                 "--batch-size", "2", "--verify"])
    print(result.exit_code, result.output.strip())
    help_text = runner.invoke(app, ["profile", "--help"]).output
    print("options in --help:", [w for w in help_text.split() if w.startswith("--")])
    shown = len(inspect.signature(profile).parameters)
    print(f"parameters Typer sees: {shown}; parameters of the callback: "
          f"{len(inspect.signature(profile.grouped).parameters)}")
