"""Values are built once at the boundary and passed down (issue 20), read from the source files
themselves, like tests/test_layers.py reads the imports:

- `CostOptions(` is constructed in at most two places outside tests (the factory
  `costmodel.options.cost_options`; everything else derives from a CostOptions it was given);
- no public function of the library (costmodel, planner, devices, reports) or of the API
  layer (ttplan/*.py, `ttplan`'s exports) takes more than eight parameters (self/cls
  excluded): what travels together is a request value (notes/api_requests.md).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("costmodel", "planner", "devices", "reports")
MAX_PARAMETERS = 8


def _sources(folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_cost_options_built_in_at_most_two_places():
    sites = [f"{path.relative_to(ROOT)}:{number}"
             for path in _sources(LIBRARY + ("ttplan", "benchmarks"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\bCostOptions\(", line)]
    assert len(sites) <= 2, sites


def _public_functions(path: Path):
    """(qualified name, parameter count) of module-level functions and methods of module-level
    classes whose names do not start with '_' (dunder methods included: __init__ is public)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                not node.name.startswith("_"):
            yield node.name, _count(node, method=False)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        (not item.name.startswith("_") or item.name == "__init__"):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                                 for d in item.decorator_list)
                    yield f"{node.name}.{item.name}", _count(item, method=not static)


def _count(node, method: bool) -> int:
    args = node.args
    total = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + \
        (args.vararg is not None) + (args.kwarg is not None)
    return total - 1 if method else total


def _api_modules():
    """The API layer's own modules (ttplan/*.py: the commands' whole jobs live there too)."""
    return sorted((ROOT / "ttplan").glob("*.py"))


def _too_many():
    found = {}
    for path in [*_sources(LIBRARY), *_api_modules()]:
        for name, count in _public_functions(path):
            if count > MAX_PARAMETERS:
                found[f"{path.relative_to(ROOT)}:{name}"] = count
    return found


def test_counter_counts_parameters():
    tree = ast.parse("def f(a, /, b, *c, d, **e): pass\n"
                     "class C:\n    def m(self, a, b): pass\n    @staticmethod\n"
                     "    def s(a, b): pass\n")
    f, c = tree.body
    assert _count(f, method=False) == 5
    assert _count(c.body[0], method=True) == 2 and _count(c.body[1], method=False) == 2


# Public functions still over the limit, each with its parameter count: the list may only
# shrink (a function leaving it must be removed here, so the count cannot creep back).
REMAINING: dict[str, int] = {}


def test_no_public_function_takes_more_than_eight_parameters():
    assert _too_many() == REMAINING
