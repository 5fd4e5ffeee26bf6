"""What a model is called with: one float image (the `input_shape` shorthand) or any tensors.

`ModelInputs` is a list of `InputSpec` (keyword name or None for positional, shape, dtype) and,
when the user gave real tensors, those tensors. The tracer calls the model with
``model(*positional, **keyword)``; without real tensors every input is zeros of its dtype
(integer token ids 0, masks False), which is what tracing needs: costs depend on shapes and
dtypes, never on values.

The batch is dimension 0 of EVERY input: `with_batch(n)` replaces it in all of them (real
tensors are repeated or cut along dimension 0 to n rows).

Accepted forms, everywhere the API takes `inputs=` (and the CLI's `--input`, `--inputs`):
  * a tensor (one positional input), a tuple/list of tensors (positional), a dict
    {name: tensor} (keyword arguments);
  * a spec string, or a list of them: ``"int64[1,128]"``, ``"ids:int64[1,128]"``,
    ``"x:float32[1,40,100]"``, ``"[1,3,32,32]"`` (float32) — ``name:`` makes a keyword
    argument, no name a positional one, in the order given;
  * a path to an ``.npz`` of real tensors: arrays ``arr_0``, ``arr_1``, ... (what ``np.savez``
    names unnamed arrays) are positional, any other name a keyword argument.
A bad spec is a one-line SpecError, the same from the CLI and the API.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .errors import SpecError
from .fileio import note_input
from .specs import DEFAULT_INPUT_SHAPE, MAX_INPUT_ELEMENTS, check_input_size

# dtype names a spec may use -> torch dtype ("float" and "long" as PyTorch spells them too).
DTYPES = {
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
_NAME_OF = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
            torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
            torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}
_SPEC = re.compile(r"(?:(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63})\s*:\s*)?(?P<dtype>[a-z0-9]{1,10})?"
                   r"\s*\[(?P<dims>[0-9,x ]{1,100})\]", re.ASCII)
SPEC_FORM = "[name:]dtype[d0,d1,...] with dim 0 the batch, e.g. ids:int64[1,128] or float32[1,40,100]"
MAX_INPUTS = 32


@dataclass(frozen=True)
class InputSpec:
    """One input: its keyword name (None: positional), shape (batch first) and dtype."""

    name: str | None
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def dtype_name(self) -> str:
        return _NAME_OF[self.dtype]

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    def text(self) -> str:
        """The spec string this input is parsed from: ``ids:int64[1,128]``."""
        prefix = f"{self.name}:" if self.name else ""
        return f"{prefix}{self.dtype_name}[{','.join(map(str, self.shape))}]"

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype_name, "shape": list(self.shape)}


class ModelInputs:
    """The inputs a model is called with (see the module docstring)."""

    def __init__(self, specs, tensors=None):
        self.specs: tuple[InputSpec, ...] = tuple(specs)
        self.tensors: tuple[torch.Tensor, ...] | None = tuple(tensors) if tensors is not None else None
        if not self.specs:
            raise SpecError("no inputs given: expected at least one tensor or spec")
        if len(self.specs) > MAX_INPUTS:
            raise SpecError(f"{len(self.specs)} inputs given; ttplan takes at most {MAX_INPUTS}")
        names = [s.name for s in self.specs if s.name]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SpecError(f"input {twice[0]!r} given twice")
        positional = [s.name is None for s in self.specs]
        if any(positional[i] and not positional[i - 1] for i in range(1, len(positional))):
            raise SpecError("positional inputs (no name:) must come before keyword inputs")
        batches = {s.shape[0] for s in self.specs}
        if len(batches) > 1:
            raise SpecError("inputs disagree on the batch size (dimension 0): "
                            + ", ".join(s.text() for s in self.specs))
        total = sum(math.prod(s.shape) for s in self.specs)
        if total > MAX_INPUT_ELEMENTS:
            raise SpecError(f"the inputs have {total:,} elements; ttplan traces inputs of at "
                            f"most {MAX_INPUT_ELEMENTS:,}")

    # ---------------------------------------------------------------- what the rest reads
    @property
    def shape(self) -> tuple[int, ...]:
        """The first input's shape: what `LayerGraph.input_shape` and policies record."""
        return self.specs[0].shape

    @property
    def batch_size(self) -> int:
        return self.specs[0].shape[0]

    @property
    def is_image_shorthand(self) -> bool:
        """One positional float32 input: what `input_shape` alone describes."""
        return len(self.specs) == 1 and self.specs[0].name is None \
            and self.specs[0].dtype == torch.float32

    def text(self) -> str:
        return " ".join(s.text() for s in self.specs)

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.specs]

    def described(self) -> str:
        """How error messages name the inputs (the shorthand keeps its old wording)."""
        if self.is_image_shorthand:
            return f"an input of shape {list(self.shape)}"
        return f"inputs {self.text()}"

    def with_batch(self, batch_size) -> ModelInputs:
        """Dimension 0 of every input replaced by `batch_size` (None: unchanged)."""
        if batch_size is None:
            return self
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch size must be a positive integer, not {batch_size}")
        if batch_size == self.batch_size:
            return self
        specs = [replace(s, shape=check_input_size((batch_size,) + s.shape[1:]))
                 for s in self.specs]
        tensors = None
        if self.tensors is not None:
            rows = torch.arange(batch_size) % self.batch_size  # repeat, or keep the first rows
            tensors = [t[rows] for t in self.tensors]
        return ModelInputs(specs, tensors)

    def build(self, what: str = "the model") -> tuple[tuple, dict]:
        """(positional, keyword) tensors to call the model with: the real ones, else zeros."""
        if self.tensors is not None:
            values = list(self.tensors)
        else:
            try:
                values = [torch.zeros(s.shape, dtype=s.dtype) for s in self.specs]
            except (RuntimeError, MemoryError) as exc:
                raise SpecError(f"not enough memory to build {self.described()} for {what} "
                                f"({type(exc).__name__})") from None
        args = tuple(v for s, v in zip(self.specs, values) if s.name is None)
        kwargs = {s.name: v for s, v in zip(self.specs, values) if s.name is not None}
        return args, kwargs


def from_json(specs, where: str = "inputs") -> ModelInputs:
    """ModelInputs (zeros when built) from `ModelInputs.to_json()`'s list, checked."""
    if not isinstance(specs, list) or not specs:
        raise SpecError(f"{where} must be a non-empty list of {{name, dtype, shape}}")
    out = []
    for spec in specs:
        if not (isinstance(spec, dict) and set(spec) == {"name", "dtype", "shape"}
                and (spec["name"] is None or isinstance(spec["name"], str)
                     and spec["name"].isidentifier())
                and spec["dtype"] in _NAME_OF.values() and isinstance(spec["shape"], list)
                and all(isinstance(d, int) and not isinstance(d, bool) for d in spec["shape"])):
            raise SpecError(f"{where} must be a list of {{name, dtype, shape}} with a known "
                            "dtype and integer dims")
        out.append(InputSpec(spec["name"], check_input_size(tuple(spec["shape"]), where),
                             DTYPES[spec["dtype"]]))
    return ModelInputs(out)


def from_shape(input_shape) -> ModelInputs:
    """The float-image shorthand: one positional float32 input of `input_shape`."""
    return ModelInputs([InputSpec(None, check_input_size(tuple(input_shape)))])


def as_inputs(value) -> ModelInputs:
    """ModelInputs from any accepted form (module docstring); a shape of ints is the shorthand."""
    if isinstance(value, ModelInputs):
        return value
    if isinstance(value, torch.Tensor):
        return _from_tensors([(None, value)])
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isidentifier() for k in value):
            raise SpecError("keyword inputs must be keyed by argument names")
        return _from_tensors(list(value.items()))
    if isinstance(value, Path) or isinstance(value, str) and value.strip().lower().endswith(".npz"):
        return load_npz_inputs(Path(value))
    if isinstance(value, str):
        return parse_input_specs([value])
    if isinstance(value, (tuple, list)) and value:
        if all(isinstance(v, torch.Tensor) for v in value):
            return _from_tensors([(None, v) for v in value])
        if all(isinstance(v, str) for v in value):
            return parse_input_specs(list(value))
        if all(hasattr(v, "__index__") and not isinstance(v, bool) for v in value):
            return from_shape(tuple(operator.index(v) for v in value))
    raise SpecError("inputs must be a tensor, a tuple of tensors, a dict of tensors, spec "
                    f"strings ({SPEC_FORM}) or an .npz file, not {type(value).__name__}")


def shape_of(inputs) -> tuple[int, ...]:
    """The first input's shape, of ModelInputs or of an input shape (the float-image
    shorthand) alike: what a graph's `input_shape` records."""
    if isinstance(inputs, ModelInputs):
        return inputs.shape
    return tuple(int(d) for d in inputs)


def at_batch(inputs, batch_size: int):
    """`inputs` with dimension 0 replaced by `batch_size`, in their own form: ModelInputs
    (every input) or an input shape (a tuple), so a trace sees what it would have seen."""
    if isinstance(inputs, ModelInputs):
        return inputs.with_batch(batch_size)
    return (int(batch_size),) + shape_of(inputs)[1:]


def resolve_inputs(inputs=None, input_shape=None, batch_size=None,
                   default=DEFAULT_INPUT_SHAPE) -> ModelInputs:
    """The model's inputs from `inputs` or `input_shape` (not both), batch replaced."""
    if inputs is not None and input_shape is not None:
        raise SpecError("give inputs or an input shape, not both")
    if inputs is None:
        if isinstance(input_shape, ModelInputs):
            return input_shape.with_batch(batch_size)
        shape = input_shape if input_shape is not None else default
        return from_shape(tuple(int(d) for d in shape)).with_batch(batch_size)
    return as_inputs(inputs).with_batch(batch_size)


def parse_input_specs(texts) -> ModelInputs:
    """['ids:int64[1,128]', 'mask:bool[1,128]'] -> ModelInputs (zeros when built)."""
    return ModelInputs([parse_input_spec(t) for t in texts])


def parse_input_spec(text: str) -> InputSpec:
    stripped = text.strip() if isinstance(text, str) else ""
    match = _SPEC.fullmatch(stripped)
    if not match:
        raise SpecError(f"invalid input spec {_shown(text)}: expected {SPEC_FORM}")
    dtype_name = match.group("dtype") or "float32"
    if dtype_name not in DTYPES:
        raise SpecError(f"invalid input spec {_shown(text)}: unknown dtype {dtype_name!r}; "
                        f"use one of {', '.join(sorted(set(_NAME_OF.values())))}")
    dims_text = match.group("dims").replace(" ", "")
    sep = "," if "," in dims_text else "x"
    parts = dims_text.split(sep)
    if not 1 <= len(parts) <= 8 or not all(p.isdigit() and len(p.lstrip("0")) <= 10 for p in parts):
        raise SpecError(f"invalid input spec {_shown(text)}: expected {SPEC_FORM}")
    shape = check_input_size(tuple(int(p) for p in parts), f"input spec {_shown(text)} shape")
    return InputSpec(match.group("name"), shape, DTYPES[dtype_name])


def load_npz_inputs(path: Path) -> ModelInputs:
    """Real tensors from an .npz (arr_0, arr_1 ... positional; other names keyword)."""
    import zipfile

    import numpy as np

    if not path.is_file():
        raise SpecError(f"inputs file not found: {path}")
    note_input(path)  # an --out naming it is refused
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        text = str(exc).strip().splitlines()
        raise SpecError(f"cannot read inputs from {path}: {text[0][:200] if text else type(exc).__name__}") from None
    if not arrays:
        raise SpecError(f"{path} holds no arrays")
    positional = sorted((k for k in arrays if re.fullmatch(r"arr_\d{1,3}", k)),
                        key=lambda k: int(k[4:]))
    if positional != [f"arr_{i}" for i in range(len(positional))]:
        raise SpecError(f"{path}: positional arrays must be arr_0, arr_1, ... without gaps")
    keyword = [k for k in arrays if k not in positional]
    items = []
    for key in positional + keyword:
        array = arrays[key]
        if array.dtype.kind not in "biuf" or array.dtype.itemsize > 8:
            raise SpecError(f"{path}: array {key!r} holds {array.dtype}, not numbers or booleans")
        if array.ndim < 1:
            raise SpecError(f"{path}: array {key!r} has no batch dimension (dimension 0)")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SpecError(f"{path}: array {key!r} contains NaN or infinite values")
        items.append((None if key in positional else key, tensor))
    return _from_tensors(items)


def _from_tensors(items) -> ModelInputs:
    specs, tensors = [], []
    for name, tensor in items:
        if not isinstance(tensor, torch.Tensor):
            raise SpecError(f"input {name or len(specs)} is a {type(tensor).__name__}, not a tensor")
        if tensor.dtype not in _NAME_OF:
            raise SpecError(f"input {name or len(specs)} has dtype {tensor.dtype}; ttplan takes "
                            f"{', '.join(sorted(set(_NAME_OF.values())))}")
        if tensor.dim() < 1:
            raise SpecError(f"input {name or len(specs)} is a scalar: dimension 0 is the batch")
        shape = check_input_size(tuple(tensor.shape), f"input {name or len(specs)} shape")
        specs.append(InputSpec(name, shape, tensor.dtype))
        tensors.append(tensor.detach())
    return ModelInputs(specs, tensors)


def call_args(x) -> tuple[tuple, dict]:
    """(positional, keyword) for model(...) from a tensor, tuple, dict or ModelInputs."""
    if isinstance(x, ModelInputs):
        return x.build()
    if isinstance(x, dict):
        return (), dict(x)
    if isinstance(x, (tuple, list)):
        return tuple(x), {}
    return (x,), {}


def _shown(text) -> str:
    text = str(text)
    return repr(text if len(text) <= 40 else text[:30] + "...")


__all__ = ["InputSpec", "ModelInputs", "as_inputs", "from_shape", "from_json", "resolve_inputs",
           "parse_input_spec", "parse_input_specs", "load_npz_inputs", "call_args", "DTYPES"]
