"""The package's layers import downward only, and no module imports another in a cycle.

costmodel -> planner -> devices -> reports -> ttplan (public API) -> ttplan.cli: a module may
import its own layer and those before it. Every import is read, including those inside
function bodies, from the source files themselves (no import is executed).
"""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ttplan.costmodel": "costmodel", "ttplan.planner": "planner",
            "ttplan.devices": "devices", "ttplan.reports": "reports", "ttplan.cli": "ttplan/cli"}
ORDER = ["ttplan.costmodel", "ttplan.planner", "ttplan.devices", "ttplan.reports", "ttplan",
         "ttplan.cli"]
ENTRY_POINTS = {"ttplan.__main__"}  # `python -m ttplan`: the CLI's layer, like the console script


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
        if target == "ttplan" and source != "ttplan":
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
