"""Names of a public module loaded on first use (PEP 562), shared by `ttplan` and its public
modules (`ttplan.io`, `ttplan.specs`, `ttplan.render`).

A public module lists `public name -> (module, attribute)`; the attribute is imported the
first time it is asked for, so `from ttplan.specs import parse_bytes` imports the one module
that defines it, and `ttplan --help` imports neither torch nor pandas.
"""

from __future__ import annotations

import importlib


def lazy_exports(namespace: dict, exports: dict[str, tuple[str, str]]):
    """`__getattr__` and `__dir__` for the module whose globals are `namespace`."""
    owner = namespace["__name__"]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        module, attribute = exports[name]
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
