"""Each command-line option is declared once, in an option group (`ttplan/cli/options.py`), and
a command callback takes its groups, not one parameter per option (issue 20), read from the
source like tests/test_api_requests.py reads the library's signatures."""

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from ttplan.cli.options import option_groups

CLI = Path(__file__).resolve().parents[1] / "ttplan" / "cli"
MAX_PARAMETERS = 8

# Command callbacks still over the limit, with their counts: the table may only shrink.
REMAINING: dict[str, int] = {}


def _commands():
    """(module, name) of every command `ttplan/cli/__init__.py` registers."""
    tree = ast.parse((CLI / "__init__.py").read_text())
    loop = next(node for node in ast.walk(tree) if isinstance(node, ast.For))
    return [(item.value.id, item.attr) for item in loop.iter.elts]


def _parameters(module: str, name: str) -> int:
    tree = ast.parse((CLI / f"{module}.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    args = node.args
    return len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + \
        (args.vararg is not None) + (args.kwarg is not None)


def test_every_command_is_counted():
    assert len(_commands()) == 16


def test_no_command_callback_takes_more_than_eight_parameters():
    over = {f"{module}.{name}": count for module, name in _commands()
            if (count := _parameters(module, name)) > MAX_PARAMETERS}
    assert over == REMAINING, over


@dataclasses.dataclass(frozen=True)
class _Size:
    width: Annotated[int, typer.Option(help="w")]
    height: Annotated[Optional[int], typer.Option(help="h")] = None


def test_option_groups_show_typer_the_fields_and_pass_the_group():
    seen = []

    @option_groups
    def command(name: Annotated[str, typer.Argument()], size: _Size, flag: bool = False):
        seen.append((name, size, flag))

    shown = inspect.signature(command).parameters
    assert list(shown) == ["name", "width", "height", "flag"]
    assert shown["width"].default is inspect.Parameter.empty  # required stays required
    command(name="m", width=3, height=None, flag=True)
    assert seen == [("m", _Size(3, None), True)]
    assert inspect.signature(command.grouped).parameters.keys() == {"name", "size", "flag"}


def test_an_option_in_two_groups_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Other:
        width: Annotated[int, typer.Option()] = 1

    def command(size: _Size, other: Other):
        pass

    try:
        option_groups(command)
    except TypeError as exc:
        assert "two groups" in str(exc)
    else:
        raise AssertionError("a flag declared twice was accepted")
