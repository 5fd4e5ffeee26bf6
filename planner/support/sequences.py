"""Support sets for models whose input is not one float image: sequences, audio features,
token ids (issue 17). The image sources (`planner.support.sources`) stay as they were.

* an `.npz` with `x` of shape N×(the model input's per-sample shape) and labels `y`
  (`npz_support.open_npz_samples`): used as it is, converted to the input's dtype; a model
  of several inputs reads one array per input (`sample_keys`) and gets them packed
  (`PackedSupport`, unpacked by `feeding`);
* `SyntheticSequences`: per-class patterns for trying the tool without data — Gaussian
  features around a per-class mean for a float input; for integer token ids, ids drawn from
  [0, vocab) where every other position takes a token of the class's own band of the
  vocabulary (so the classes are separable); all-True for a boolean input.

`vocab` (integer inputs, synthetic only): given, else the `num_embeddings` of the model's
first `nn.Embedding` (`infer_vocab`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import InputSpec, ModelInputs

from .npz import open_npz_samples
from .base import SupportSet, one_thread


def infer_vocab(model: nn.Module) -> int | None:
    """The vocabulary size of the model's first nn.Embedding (None without one)."""
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return int(module.num_embeddings)
    return None


def sample_keys(inputs: ModelInputs) -> list[str]:
    """The .npz array of each input: `x` for a model of one input; with several, each
    keyword input's name, `x` for the first positional one, `x1`, `x2`, ... for the others."""
    if len(inputs.specs) == 1:
        return ["x"]
    return [s.name or ("x" if i == 0 else f"x{i}") for i, s in enumerate(inputs.specs)]


def open_sequence_support(source, inputs: ModelInputs, samples, seed, synthetic, vocab,
                          default_samples: int, default_classes: int) -> SupportSet:
    parts = [_open_one(source, spec, key, samples, seed + i, synthetic, vocab, default_samples,
                       default_classes)
             for i, (spec, key) in enumerate(zip(inputs.specs, sample_keys(inputs)))]
    return parts[0] if len(parts) == 1 else PackedSupport(parts)


def _open_one(source, spec: InputSpec, key, samples, seed, synthetic, vocab,
              default_samples: int, default_classes: int) -> SupportSet:
    if synthetic:
        n = samples if samples is not None else default_samples
        return SyntheticSequences(n, min(default_classes, n), spec, seed, vocab)
    path = Path(source)
    if path.is_dir():
        raise SpecError(f"{path} is a folder (image folders feed image models), but the model's input is "
                        f"{spec.text()}: give an .npz with x (N×"
                        f"{'×'.join(map(str, spec.shape[1:]))}) and labels y")
    if path.suffix.lower() != ".npz":
        raise SpecError(f"unsupported support data {path}: expected an .npz with x and y")
    return open_npz_samples(path, spec.shape[1:], spec.dtype, samples, key)


# Integers up to 2**53 (token ids, masks, float32 features) survive float64 exactly.
_EXACT_FLOAT64 = 2**53


class PackedSupport(SupportSet):
    """Several inputs' samples as ONE float64 tensor per batch, N × (the inputs' per-sample
    sizes, flattened, side by side), so the probe and `train` index, split and hold out one
    tensor; `feeding(model, inputs)` unpacks it into the model's arguments."""

    def __init__(self, parts: list[SupportSet]):
        self.parts = parts
        self.labels = parts[0].labels
        if any(not torch.equal(p.labels, self.labels) for p in parts[1:]):
            raise SpecError("the inputs' samples disagree on the labels")
        self.description = f"{parts[0].description} (+{len(parts) - 1} more input(s))"

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for chunks in zip(*(p.batches(batch_size) for p in self.parts)):
            flat = [c.reshape(len(c), -1) for c in chunks]
            for c in flat:
                if not c.is_floating_point() and c.numel() and \
                        int(c.abs().max() if c.dtype != torch.bool else 0) >= _EXACT_FLOAT64:
                    raise SpecError(f"integer samples beyond 2**53 cannot be packed: {c.dtype}")
            yield torch.cat([c.to(torch.float64) for c in flat], dim=1)


@contextlib.contextmanager
def feeding(model: nn.Module, inputs: ModelInputs) -> Iterator[nn.Module]:
    """`model(x)` for the support samples x of `inputs`: a model of one positional input is
    left alone; otherwise, for the duration, the instance's `forward` takes x (a keyword
    input's tensor, or a `PackedSupport` batch) and calls the real forward with the inputs'
    arguments. Module names, parameters and hooks are untouched."""
    specs = inputs.specs
    if len(specs) == 1 and specs[0].name is None:
        yield model
        return
    real = model.forward
    own = "forward" in vars(model)
    sizes = [math.prod(s.shape[1:]) for s in specs]

    def forward(x):
        if len(specs) == 1:
            return real(**{specs[0].name: x})
        args, kwargs = [], {}
        for spec, part in zip(specs, torch.split(x, sizes, dim=1)):
            value = part.reshape((len(x),) + spec.shape[1:]).to(spec.dtype)
            if spec.name is None:
                args.append(value)
            else:
                kwargs[spec.name] = value
        return real(*args, **kwargs)

    model.forward = forward
    try:
        yield model
    finally:
        if own:
            model.forward = real
        else:
            del model.forward


class SyntheticSequences(SupportSet):
    """`n` samples of `spec`'s per-sample shape and dtype, labels 0..K-1 cycled."""

    def __init__(self, n: int, num_classes: int, spec: InputSpec, seed: int, vocab):
        if isinstance(n, bool) or not isinstance(n, int) or num_classes < 2 or n < num_classes:
            raise SpecError(f"synthetic data needs at least two classes and one sample per "
                            f"class: {n} samples")
        integer = not spec.dtype.is_floating_point and spec.dtype != torch.bool
        if integer:
            if vocab is None:
                raise SpecError(f"synthetic token ids for {spec.text()}: the model has no "
                                "nn.Embedding to take the vocabulary size from; give --vocab")
            if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
                raise SpecError(f"vocabulary size must be a positive integer, not {vocab!r}")
            top = torch.iinfo(spec.dtype).max
            vocab = min(vocab, top + 1)
        self.n, self.num_classes, self.spec, self.seed, self.vocab = n, num_classes, spec, seed, vocab
        self.labels = torch.arange(n, dtype=torch.int64) % num_classes
        kind = f"token ids < {vocab}" if integer else spec.dtype_name
        self.description = (f"synthetic: {n} samples of {list(spec.shape[1:])} {kind}, "
                            f"{num_classes} classes, seed {seed}")

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        with one_thread():
            x = self._all()
        for begin in range(0, self.n, batch_size):
            yield x[begin: begin + batch_size]

    def _all(self) -> torch.Tensor:
        shape, dtype = tuple(self.spec.shape[1:]), self.spec.dtype
        generator = torch.Generator().manual_seed(self.seed)
        y = self.labels
        if dtype == torch.bool:
            return torch.ones((self.n,) + shape, dtype=torch.bool)
        if dtype.is_floating_point:
            means = torch.randn((self.num_classes,) + shape, generator=generator)
            noise = torch.randn((self.n,) + shape, generator=generator)
            return (means[y] + noise).to(dtype)
        ids = torch.randint(0, self.vocab, (self.n,) + shape, generator=generator)
        band = max(1, self.vocab // self.num_classes)
        own = (y.view((-1,) + (1,) * len(shape)) * band
               + torch.randint(0, band, (self.n,) + shape, generator=generator)) % self.vocab
        every_other = torch.zeros(shape, dtype=torch.bool)
        every_other.view(-1)[::2] = True
        return torch.where(every_other, own, ids).to(dtype)
