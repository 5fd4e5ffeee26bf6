"""Each command-line option is declared once, in an option group (`ttplan/cli/options_*.py`), and
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


# --- Each command is one call to the public API ----------------------------------------------
# A command body turns its options into request values, makes one call to the public API
# (`ttplan`) and renders what it returns (`ttplan.render`, `ttplan.io`, its module's helpers).
# Names of `ttplan` that build a request value (or resolve a device once), not an action:
REQUEST_VALUES = frozenset({
    "Budgets", "ModelSource", "PlanSearch", "Tracing", "Support", "RunSettings",
    "OnDevicePlan", "GridRuns", "WhatifAxes", "ProbeSettings", "MeasureGrid", "cost_options",
    "device_for", "device_context", "device_predictor"})


def _api_names(tree) -> dict[str, str]:
    """local name -> the `ttplan` export it is, for every `from ttplan import ...` (at the top
    or inside a function) of a module."""
    return {alias.asname or alias.name: alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "ttplan" and not node.level
            for alias in node.names}


def _functions(tree) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _api_actions(function: ast.FunctionDef, api: dict, helpers: dict, seen=None) -> list[str]:
    """The `ttplan` actions `function` calls, following the helpers (module-level functions
    of the CLI) it calls, each once."""
    seen = set() if seen is None else seen
    actions = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        while isinstance(func, ast.Attribute):  # OnDevicePlan.given(...) is OnDevicePlan's
            func = func.value
        if not isinstance(func, ast.Name):
            continue
        if func.id in api and api[func.id] not in REQUEST_VALUES:
            actions.append(api[func.id])
        elif func.id in helpers and func.id not in seen and func.id != function.name:
            seen.add(func.id)
            actions += _api_actions(helpers[func.id], api, helpers, seen)
    return actions


def _cli_actions(source: str, name: str) -> list[str]:
    tree = ast.parse(source)
    common = ast.parse((CLI / "common.py").read_text())
    api = {**_api_names(common), **_api_names(tree)}
    helpers = {**_functions(common), **_functions(tree)}
    return _api_actions(_functions(tree)[name], api, helpers)


def test_every_command_is_one_call_to_the_public_api():
    calls = {f"{module}.{name}": _cli_actions((CLI / f"{module}.py").read_text(), name)
             for module, name in _commands()}
    chained = {command: actions for command, actions in calls.items() if len(actions) != 1}
    assert not chained, f"commands that do not make exactly one API call: {chained}"


def test_option_groups_only_build_request_values():
    for path in sorted(CLI.glob("options*.py")):
        api = _api_names(ast.parse(path.read_text()))
        assert set(api.values()) <= REQUEST_VALUES, (path.name, set(api.values()) - REQUEST_VALUES)


def test_the_checker_sees_a_chain_through_a_helper():
    source = (
        "def _graph(model):\n"
        "    from ttplan import resolve_model, trace\n"
        "    return trace(*resolve_model(model))\n"
        "def command(model):\n"
        "    from ttplan import ModelSource, sweep\n"
        "    graph = _graph(ModelSource(model))\n"
        "    return sweep(model), graph\n")
    assert sorted(_cli_actions(source, "command")) == ["resolve_model", "sweep", "trace"]
