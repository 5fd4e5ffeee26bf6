"""Command-line options, each defined once, and how a command takes them in groups.

Each option is an `Annotated` type: a command declares `optimizer: Optimizer = "sgd"` and gets
the same flag name and help text as every other command that takes it. Every number goes
through `ttplan.specs` (ASCII digits, bounded): integer options use `parser=`, so a bad value
is a usage error (one line, exit status 2) naming the option.

This module holds the means (`count_option`, `choice_option`, `format_option`,
`fraction_option`, the option groups' decorator `option_groups`) and the options every subject
shares (`Seed`, `Progress`); the options and their groups live by subject beside it:
`options_model` (the model, its inputs, the support set), `options_plan` (cost conventions,
budgets, planning, the Fisher probe, what-if grids), `options_device` (a device, its runs,
training and measuring) and `options_output` (formats and output files).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from enum import Enum
from typing import Annotated, Optional, get_type_hints

import typer

from ttplan.specs import MAX_INT, SpecError, parse_fraction, parse_int


def _number(parse, *bounds):
    def parser(value):
        if not isinstance(value, str):  # a default already of the right type
            return value
        try:
            return parse(value, "value", *bounds)
        except SpecError as exc:
            raise typer.BadParameter(str(exc).replace("invalid value ", "")) from None
    return parser


_NO_DEFAULT = object()


def count_option(help_text: str, minimum: int = 1, maximum: int = MAX_INT, default=_NO_DEFAULT):
    """An integer option parsed by `ttplan.specs.parse_int` (no default inside `Annotated`)."""
    first = () if default is _NO_DEFAULT else (default,)
    return typer.Option(*first, help=help_text, parser=_number(parse_int, minimum, maximum),
                        metavar="<int>")


# Typer >= 0.22 raises its own vendored copy of Click's exceptions: the UsageError that
# `common.OneLineErrors` prints as it is (a BadParameter would be "Invalid value for ...").
_USAGE_ERROR = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")


def _one_of(choices) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def choice_option(what: str, choices, help_text: str, *flags: str):
    """A text option that is one of `choices` (its default in the command's signature),
    checked while the command line is read: any other value is the usage error
    `unknown WHAT 'x': use a, b or c`, before any work."""
    choices = tuple(str(getattr(c, "value", c)) for c in choices)

    def parser(value):
        if value is None or value in choices:
            return value
        raise _USAGE_ERROR(f"unknown {what} {value!r}: use {_one_of(choices)}")

    return typer.Option(*flags, help=help_text, parser=parser,
                        metavar="[" + "|".join(choices) + "]")


class OutputFormat(str, Enum):
    """Every format a command writes; each command offers some of them (`format_option`)."""
    TABLE = "table"  # for people: fits $COLUMNS, human units (--wide: everything)
    JSON = "json"
    CSV = "csv"
    MD = "md"
    LATEX = "latex"
    HTML = "html"
    SPARSEUPDATE = "sparseupdate"  # SparseUpdate's backward_config


def format_option(*formats: OutputFormat, note: str = ""):
    """`--format`, one of `formats` (listed by --help), any other refused while the command
    line is read."""
    return choice_option("--format", formats, "output format" + (f" {note}" if note else ""),
                         "--format")


def fraction_option(help_text: str, default=_NO_DEFAULT):
    """A decimal in (0, 1] parsed by `ttplan.specs.parse_fraction` (no default inside
    `Annotated`)."""
    first = () if default is _NO_DEFAULT else (default,)
    return typer.Option(*first, help=help_text, parser=_number(parse_fraction),
                        metavar="<fraction>")


Seed = Annotated[int, count_option("random seed: synthetic samples, augmentation, sample "
                                   "order, random channels, sparseupdate's search", minimum=0)]
Progress = Annotated[Optional[bool], typer.Option(
    help="progress bars on stderr (default: when it is a terminal)")]


# --- Option groups ---------------------------------------------------------------------------
# What travels together is one frozen dataclass whose fields are options; a command callback
# takes the group (`inputs: Inputs`) and `option_groups` shows Typer its fields, so a flag is
# declared once and a callback builds its request in one step. A command that needs another
# default or help text for one option of a group takes a variant: a subclass that
# re-annotates that field (it keeps its place in the group).

# Frozen, without __eq__/__hash__: a group is built once per run and read; each method
# dataclass generates is compiled at import, and `ttplan --help` imports every group (eq=False
# halves the cost of declaring one: 0.36 against 0.70 ms, Python 3.11).
group = dataclasses.dataclass(frozen=True, eq=False)


@functools.cache
def _group_options(kind) -> tuple[inspect.Parameter, ...]:
    """The options a group shows Typer: its fields, keyword-only, annotated."""
    hints = get_type_hints(kind, include_extras=True)
    return tuple(inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
        default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(kind))


def option_groups(command):
    """Show Typer each dataclass-typed parameter of `command` as its fields (through
    `__signature__`, which Typer reads) and call `command` with the dataclasses built from
    them. Field names are the flags' parameter names, so they must be unique in a command."""
    hints = get_type_hints(command, include_extras=True)
    shown, groups = [], {}
    for name, param in inspect.signature(command).parameters.items():
        kind = hints.get(name, param.annotation)
        if not dataclasses.is_dataclass(kind):
            shown.append(param.replace(annotation=kind, kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        options = _group_options(kind)
        groups[name] = (kind, tuple(option.name for option in options))
        shown.extend(options)
    names = [p.name for p in shown]
    if len(names) != len(set(names)):
        raise TypeError(f"{command.__name__}: an option appears in two groups")

    @functools.wraps(command)
    def flat(**options):
        for name, (kind, fields) in groups.items():
            options[name] = kind(**{field: options.pop(field) for field in fields})
        return command(**options)

    flat.__signature__ = inspect.Signature(shown)
    del flat.__wrapped__  # Typer must see the flat signature, not the grouped one
    flat.__annotations__ = {p.name: p.annotation for p in shown}
    flat.grouped = command
    return flat
