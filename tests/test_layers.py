"""The package's layers import downward only, and no module imports another in a cycle.

costmodel -> planner -> devices -> reports -> ttplan (public API) -> ttplan.cli: a module may
import its own layer and those before it. Every import is read, including those inside
function bodies, from the source files themselves (no import is executed).

The CLI is a client of the public API only: `ttplan` and the public modules beside it
(`ttplan.specs`, `ttplan.io`, `ttplan.render`), never the four layers underneath.
"""

import ast
import importlib
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ttplan.costmodel": "costmodel", "ttplan.planner": "planner",
            "ttplan.devices": "devices", "ttplan.reports": "reports", "ttplan.cli": "ttplan/cli"}
ORDER = ["ttplan.costmodel", "ttplan.planner", "ttplan.devices", "ttplan.reports", "ttplan",
         "ttplan.cli"]
ENTRY_POINTS = {"ttplan.__main__"}  # `python -m ttplan`: the CLI's layer, like the console script
INTERNAL_LAYERS = ORDER[:4]


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package,) + parts)
            found[name.removesuffix(".__init__")] = path
    for path in sorted((ROOT / "ttplan").glob("*.py")):
        found["ttplan" if path.stem == "__init__" else f"ttplan.{path.stem}"] = path
    return found


def _layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return ORDER.index("ttplan.cli")
    for i, prefix in reversed(list(enumerate(ORDER))):
        if module == prefix or module.startswith(prefix + "."):
            return i
    raise AssertionError(module)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(name, path, set(modules)):
            graph.add_edge(name, target)
    return graph


def test_every_import_goes_down_the_layers():
    graph = _import_graph()
    upward = []
    for source, target in graph.edges:
        if target == "ttplan" and _layer(source) < ORDER.index("ttplan"):
            upward.append(f"{source} -> ttplan (the public API is above every layer)")
        elif _layer(target) > _layer(source):
            upward.append(f"{source} -> {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = _import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle in the code.
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_nothing_imports_the_cli():
    graph = _import_graph()
    importers = {s for s, t in graph.edges if t.startswith("ttplan.cli") and
                 not s.startswith("ttplan.cli") and s not in ENTRY_POINTS}
    assert not importers


def test_the_checker_sees_imports_in_function_bodies(tmp_path):
    body = "def f():\n    from ttplan.planner.api import plan\n"
    path = tmp_path / "m.py"
    path.write_text(body)
    assert "ttplan.planner.api" in _imports("ttplan.costmodel.m", path, set(_modules()))


def _public_api_modules(modules) -> set[str]:
    """`ttplan` and the public modules directly under ttplan/ (no leading underscore)."""
    return {"ttplan"} | {m for m in modules if m.count(".") == 1 and _layer(m) == 4
                         and not m.split(".")[1].startswith("_") and m not in ENTRY_POINTS}


def test_the_cli_imports_only_the_public_api():
    graph = _import_graph()
    public = _public_api_modules(set(graph.nodes))
    assert {"ttplan", "ttplan.specs", "ttplan.io", "ttplan.render"} <= public
    bypassing = sorted(f"{source} -> {target}" for source, target in graph.edges
                       if source.startswith("ttplan.cli")
                       and not target.startswith("ttplan.cli") and target not in public)
    assert not bypassing, "the CLI imports past the public API:\n" + "\n".join(bypassing)


def test_every_name_the_cli_imports_from_the_public_api_is_exported():
    """A name the CLI imports inside a command body is looked up only when the command runs:
    checked here against each public module's `__all__` (importing these loads nothing heavy)."""
    modules = _modules()
    public = _public_api_modules(set(modules))
    missing = []
    for name, path in modules.items():
        if not name.startswith("ttplan.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in public:
                exported = importlib.import_module(node.module).__all__
                missing += [f"{name}: {node.module}.{alias.name}" for alias in node.names
                            if alias.name not in exported]
    assert not missing, "not in the public API:\n" + "\n".join(missing)


def test_the_checker_sees_the_cli_bypassing_the_api(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ttplan.reports.render import render_rows\n")
    targets = _imports("ttplan.cli.m", path, set(_modules()))
    assert "ttplan.reports.render" in targets
    assert not targets & _public_api_modules(set(_modules()))
