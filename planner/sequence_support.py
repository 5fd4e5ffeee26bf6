"""Support sets for models whose input is not one float image: sequences, audio features,
token ids (issue 17). The image sources (`planner.data`) stay as they were.

* an `.npz` with `x` of shape N×(the model input's per-sample shape) and labels `y`
  (`npz_support.open_npz_samples`): used as it is, converted to the input's dtype;
* `SyntheticSequences`: per-class patterns for trying the tool without data — Gaussian
  features around a per-class mean for a float input; for integer token ids, ids drawn from
  [0, vocab) where every other position takes a token of the class's own band of the
  vocabulary (so the classes are separable); all-True for a boolean input.

`vocab` (integer inputs, synthetic only): given, else the `num_embeddings` of the model's
first `nn.Embedding` (`infer_vocab`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.inputs import InputSpec

from .npz_support import open_npz_samples
from .support import SupportSet, one_thread


def infer_vocab(model: nn.Module) -> int | None:
    """The vocabulary size of the model's first nn.Embedding (None without one)."""
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return int(module.num_embeddings)
    return None


def open_sequence_support(source, spec: InputSpec, samples, seed, synthetic, vocab,
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
    return open_npz_samples(path, spec.shape[1:], spec.dtype, samples)


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
