"""The registry: one open table keyed by operator kind, holding each kind's `Rule` and every
key the tracer meets it under (module classes, looked up through the MRO; module class names;
functions; tensor method names).

Each family module (conv.py, norm.py, …) declares its `Operator`s; the package takes them in,
one step each, into `REGISTRY` (`costmodel.rules`). Every way in (the families, `register_rule`, ``rules=`` overrides, a
`Registry` built from tables) passes `check_rule`: a Rule whose backward MACs are unstated is
refused, and a kind or key that already has a rule is refused unless the caller overrides.
"""

from __future__ import annotations

import torch.nn as nn

from ..errors import SpecError
from .rule import Operator, Rule, check_rule


class Registry:
    """Kinds of modules, functions and tensor methods, and the rule of each kind."""

    def __init__(self, rules: dict[str, Rule], modules: dict[type, str],
                 functions: dict[object, str], methods: dict[str, str],
                 module_names: dict[str, str] | None = None):
        for kind, rule in rules.items():
            check_rule(rule, f"kind {kind!r}")
        self.rules, self.modules = dict(rules), dict(modules)
        self.functions, self.methods = dict(functions), dict(methods)
        self.module_names = dict(module_names or {})

    @classmethod
    def from_operators(cls, operators) -> Registry:
        """A registry of `operators`, each taken in one step (a duplicate key is an error)."""
        registry = cls({}, {}, {}, {})
        for op in operators:
            registry.add(op)
        return registry

    # ---- lookup ----------------------------------------------------------------------------

    def rule_for(self, kind: str) -> Rule | None:
        """The rule of a kind, or None for an operator ttplan does not know (reported, never 0)."""
        return self.rules.get(kind)

    def module_kind(self, module: nn.Module) -> str:
        """The kind of the nearest class in the module's MRO that has one."""
        for cls in type(module).__mro__:
            kind = self.modules.get(cls)
            if kind is not None:
                return kind
        return self._named_kind(module) or "unknown"

    def _named_kind(self, module: nn.Module) -> str | None:
        """Kinds known by class name only (each library writes its own DropPath)."""
        for cls in type(module).__mro__:
            if cls.__name__ in self.module_names:
                return self.module_names[cls.__name__]
        return None

    def is_leaf(self, module: nn.Module) -> bool:
        """Is a module one operator? Yes when its class (or a base class whose `forward` it
        keeps) has a kind; a subclass with its own forward is traced into."""
        for cls in type(module).__mro__:
            if cls in self.modules:
                return type(module).forward is cls.forward or cls is type(module)
        return self._named_kind(module) is not None

    def function_kind(self, target) -> str:
        if isinstance(target, str):
            return self.methods.get(target, "unknown")
        return self.functions.get(target, "unknown")

    # ---- registration ----------------------------------------------------------------------

    def add(self, op: Operator, *, replace_ok: bool = False, label: str | None = None) -> str:
        """Take in one operator — its rule and all its keys — or nothing: a checked rule, and
        no kind or key that already has one unless `replace_ok`. Returns the kind."""
        check_rule(op.rule, label or f"kind {op.kind!r}")
        tables = ((self.modules, op.modules), (self.module_names, op.module_names),
                  (self.functions, op.functions), (self.methods, op.methods))
        if not replace_ok:
            for table, keys in tables:
                for i, key in enumerate(keys):
                    if key in table or key in keys[:i]:
                        owner = table.get(key, op.kind)
                        raise SpecError(f"{_label(key)} already has a cost rule (kind {owner!r})")
            if op.kind in self.rules:
                raise SpecError(f"kind {op.kind!r} already has a cost rule")
        for table, keys in tables:
            table.update(dict.fromkeys(keys, op.kind))
        self.rules[op.kind] = op.rule
        return op.kind

    def register(self, key, rule: Rule, kind: str | None = None, *, replace_ok=False) -> str:
        """Give `key` (an nn.Module subclass, a function, or a kind name) the rule `rule`;
        returns the kind. Refuses a key or kind that already has one unless `replace_ok`."""
        if isinstance(key, str):
            op = Operator(key, rule)
        elif isinstance(key, type) and issubclass(key, nn.Module):
            op = Operator(kind or f"{key.__module__}.{key.__qualname__}", rule, modules=(key,))
        elif callable(key):
            name = f"{getattr(key, '__module__', '')}.{getattr(key, '__qualname__', key)}"
            op = Operator(kind or name, rule, functions=(key,))
        else:
            raise SpecError(f"cannot register a cost rule for {key!r}: give an nn.Module "
                            "subclass, a function or a kind name")
        return self.add(op, replace_ok=replace_ok, label=_label(key))

    def with_rules(self, overrides: dict | None) -> Registry:
        """A copy in which `overrides` {module class | function | kind: Rule} take precedence."""
        if not overrides:
            return self
        copy = Registry(self.rules, self.modules, self.functions, self.methods,
                        self.module_names)
        for key, rule in overrides.items():
            copy.register(key, rule, replace_ok=True)
        return copy


def _label(key) -> str:
    return getattr(key, "__qualname__", None) or repr(key)
