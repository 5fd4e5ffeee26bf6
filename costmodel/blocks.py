"""Which block an operator belongs to: what `last-blocks:K` counts.

In order of precedence:

1. The model names its blocks (zoo models: ``ttplan_block_aliases`` {module-path prefix: block}
   and ``ttplan_blocks``).
2. The user names them with a regular expression (``--blocks``, ``blocks=``): an operator's
   block is the shortest prefix of its module path that the expression matches in full, e.g.
   ``stages\\.\\d+\\.blocks\\.\\d+`` or ``layers\\.\\d+``.
3. Repeated units, as model libraries build them: a *unit container* is a Sequential /
   ModuleList / ModuleDict with at least two children that each hold two or more conv /
   linear / recurrent layers (residual and inverted-residual blocks, transformer layers). A
   block is such a child that holds no unit container itself (``stages.2.blocks.1``,
   ``encoder.layer.3``, ``blocks.5``), so a stage of blocks is not a block, and a conv-BN-act
   triple inside a block is not one either. Operators outside every unit (stem, downsampling
   between stages, head) belong to no counted block.
4. Otherwise (no unit container): the top-level modules, or the composite children of a
   top-level Sequential/ModuleList (``features.3``, ``layer1.0``).
"""

from __future__ import annotations

import re

import torch.nn as nn

from .errors import SpecError
from .graph import MAC_KINDS

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
MIN_UNIT_LAYERS = 2  # MAC layers a child needs to be a repeated unit


def compile_block_pattern(pattern: str | None):
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern.strip():
        raise SpecError("a block pattern must be a non-empty regular expression")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SpecError(f"invalid block pattern {pattern!r}: {exc}") from None


class BlockFinder:
    def __init__(self, model: nn.Module, registry, pattern=None, named_modules=None):
        """`named_modules`: `list(model.named_modules())` when the caller has it."""
        self.model = model
        self._named_modules = named_modules
        self.registry = registry
        self.pattern = compile_block_pattern(pattern)
        self.aliases = dict(getattr(model, "ttplan_block_aliases", {}) or {})
        self._blocks: dict[str, str] = {}  # module path -> block, computed once per path
        self._counted: dict[str, bool] = {}  # block -> is it one last-blocks counts?
        self._composite: dict[int, bool] = {}
        self._unit_prefixes: dict[str, str | None] = {}  # path -> its longest unit prefix
        self._units = None if self.aliases or self.pattern else self._unit_blocks()

    # ---- public --------------------------------------------------------------------------

    def block_of(self, path: str) -> str:
        if not path:
            return ""
        if path not in self._blocks:
            self._blocks[path] = self._find(path)
        return self._blocks[path]

    def counted_blocks(self, blocks_in_order) -> list[str] | None:
        """The blocks `last-blocks` counts, in execution order, when a pattern or repeated
        units define them (None: every block that holds a MAC layer counts)."""
        if self.pattern is None and not self._units:
            return None
        counted = [b for b in blocks_in_order if self._counted.get(b)]
        if self.pattern is not None and not counted:
            raise SpecError(f"block pattern {self.pattern.pattern!r} matches no module path "
                            "that holds a conv/linear layer")
        return counted

    # ---- finding -------------------------------------------------------------------------

    def _find(self, path: str) -> str:
        for prefix, block in self.aliases.items():
            if path == prefix or path.startswith(prefix + "."):
                return block
        parts = path.split(".")
        if self.pattern is not None:
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if self.pattern.fullmatch(prefix):
                    self._counted[prefix] = True
                    return prefix
        elif self._units:
            unit = self._unit_prefix(path)
            if unit is not None:
                self._counted[unit] = True
                return unit
        return self._generic(parts)

    def _unit_prefix(self, path: str) -> str | None:
        """The longest prefix of `path` (itself included) that is a repeated unit, or None;
        remembered per prefix, so sibling paths share their parents' answer."""
        found = self._unit_prefixes.get(path, False)
        if found is False:
            if path in self._units:
                found = path
            else:
                parent = path.rpartition(".")[0]
                found = self._unit_prefix(parent) if parent else None
            self._unit_prefixes[path] = found
        return found

    def _generic(self, parts) -> str:
        module = self.model
        for depth, part in enumerate(parts):
            module = module._modules.get(part) if module is not None else None
            if not self._has_composite_child(module) or depth == len(parts) - 1:
                return ".".join(parts[: depth + 1])
        return ".".join(parts)

    def _has_composite_child(self, module) -> bool:
        """Is `module` a plain container holding composite modules? Cached per container: a
        container of thousands of leaves would otherwise be scanned once per op."""
        if not isinstance(module, _CONTAINERS):
            return False
        key = id(module)
        if key not in self._composite:
            self._composite[key] = any(len(c._modules) > 0 for c in module.children())
        return self._composite[key]

    def _unit_blocks(self) -> set[str]:
        """Paths of the repeated units (see the module docstring), one walk over the model."""
        layers: dict[int, int] = {}
        is_mac: dict[type, int] = {}  # a module's kind depends on its class only

        def count(module) -> int:
            if id(module) not in layers:
                own = is_mac.get(type(module))
                if own is None:
                    own = is_mac[type(module)] = int(self.registry.module_kind(module)
                                                     in MAC_KINDS)
                layers[id(module)] = own + sum(count(c) for c in _children(module))
            return layers[id(module)]

        count(self.model)
        named = self._named_modules
        if named is None:
            named = list(self.model.named_modules())
        containers = {}
        for path, module in named:
            if isinstance(module, _CONTAINERS):
                units = [c for c in _children(module) if layers[id(c)] >= MIN_UNIT_LAYERS]
                if len(units) >= 2:
                    containers[path] = {id(c) for c in units}
        has_nested: dict[str, bool] = {}
        for path in containers:
            parts = path.split(".") if path else []
            for depth in range(len(parts)):
                has_nested[".".join(parts[:depth])] = True
        units = set()
        for path, module in named:
            parent = path.rpartition(".")[0] if "." in path else ""
            if not path or parent not in containers or id(module) not in containers[parent]:
                continue
            if not has_nested.get(path):
                units.add(path)
        return units


def _children(module: nn.Module) -> list:
    """`list(module.children())` (each child once, in order) without its generators, unless
    the class lists its children its own way."""
    if type(module).children is not nn.Module.children or \
            type(module).named_children is not nn.Module.named_children:
        return list(module.children())
    found, seen = [], set()
    for child in module._modules.values():
        if child is not None and id(child) not in seen:
            seen.add(id(child))
            found.append(child)
    return found
