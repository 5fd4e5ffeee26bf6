"""The losses whose gradients the Fisher probe measures (planner.fisher.probe).

Each loss is made by a factory `(model, support, seed, batch_size) -> (queries, criterion)`:
`queries(batch_size)` yields the inputs the probe runs, batch by batch in sample order, and
`criterion(output, labels)` is the SUM of the per-sample losses of a batch (so the gradient at
sample n's activation is that of sample n's own loss).

* "protonet" (TinyTrain's, Eq. 1): prototypes c_k = mean features of class k's support samples
  (no gradient, one streamed pass); the queries are the support samples augmented once, in
  order, from `Generator().manual_seed(seed)` (appendix C; images only — other samples are
  their own queries); logits = 10 · cos(f(q), c_k).
* "ce": the model ends in a classifier over labels 0..K-1; the un-augmented samples.
* a callable (output, labels) -> scalar: applied to the un-augmented samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ttplan.costmodel.errors import SpecError, TraceError

from ..support.sources import augment
from ..support.base import SupportSet, TensorSupport

# Logits = cos(f(q), c_k) / τ with τ = 0.1, i.e. a scale of 10: the initial value of the
# learnable cosine scale in Hu et al. 2022's ProtoNet (the fine-tuning recipe the paper
# follows, appendix C). A scale of 1 would squash the softmax (logits in [-1, 1]) and make
# every gradient tiny and nearly uniform across classes.
PROTONET_SCALE = 10.0

LOSSES = ("auto", "protonet", "ce")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Queries = Callable[[int], Iterator[torch.Tensor]]


def resolve_loss(loss: str | LossFn) -> tuple[str, Callable]:
    """(name recorded in the Fisher file, factory)."""
    if callable(loss):
        def make_custom(model, support: SupportSet, seed, batch_size):
            return support.batches, loss

        return "custom", make_custom
    if loss not in LOSSES:
        raise SpecError(f"unknown Fisher loss {loss!r}: choose protonet, ce or auto")
    return ("ce", make_ce) if loss == "ce" else ("protonet", make_protonet)


def make_ce(model: nn.Module, support: SupportSet, seed: int, batch_size: int):
    top_label = int(support.labels.max())

    def criterion(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if output.dim() != 2 or output.shape[1] <= top_label:
            raise SpecError(
                f"loss 'ce' needs a classifier output N×K with K > {top_label}, "
                f"got {tuple(output.shape)}; use the protonet loss for a feature backbone"
            )
        return F.cross_entropy(output, labels, reduction="sum")

    return support.batches, criterion


def make_protonet(model: nn.Module, support: SupportSet, seed: int, batch_size: int):
    classes, labels = torch.unique(support.labels, sorted=True, return_inverse=True)
    if len(classes) < 2:
        raise SpecError("the protonet loss needs samples of at least two classes")
    prototypes = _prototypes(model, support, labels, len(classes), batch_size)
    unit_prototypes = F.normalize(prototypes, dim=1)

    def queries(size: int) -> Iterator[torch.Tensor]:
        # One generator across the batches: each sample draws in order, as augment(all) would.
        generator = torch.Generator().manual_seed(seed)
        for batch in support.batches(size):
            yield augment_images(batch, generator)

    # The probe feeds the original labels; map them to prototype indices by position.
    label_of = {int(c): i for i, c in enumerate(classes.tolist())}

    def criterion(output: torch.Tensor, batch_labels: torch.Tensor) -> torch.Tensor:
        features = F.normalize(output.reshape(len(output), -1), dim=1)
        logits = PROTONET_SCALE * features @ unit_prototypes.T
        targets = torch.tensor([label_of[int(v)] for v in batch_labels.tolist()], device=output.device)
        return F.cross_entropy(logits, targets, reduction="sum")

    return queries, criterion


def augment_images(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Appendix C's augmentation for float N×C×H×W images; other samples (sequences, audio
    features, token ids) are their own pseudo-queries: flips and crops of them have no
    agreed meaning."""
    if batch.dim() == 4 and batch.is_floating_point():
        return augment(batch, generator)
    return batch


def protonet_criterion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
                       batch_size: int = 1) -> tuple[torch.Tensor, LossFn]:
    """(pseudo-queries, criterion): the probe's ProtoNet loss, for fine-tuning with it too.
    Prototypes come from `model` on the un-augmented `x` now, without gradient; the queries are
    the probe's augmentation of `x` seeded by `seed`; criterion(features, labels) is the SUM of
    the per-query cosine cross-entropies (scale PROTONET_SCALE), labels as given in `y`."""
    queries, criterion = make_protonet(model, TensorSupport(x, y), seed, batch_size)
    return torch.cat(list(queries(len(x)))), criterion


def class_prototypes(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted class labels, their prototypes): the probe's mean features per class, no grad."""
    classes, labels = torch.unique(y, sorted=True, return_inverse=True)
    return classes, _prototypes(model, TensorSupport(x, y), labels, len(classes), batch_size)


def _prototypes(model: nn.Module, support: SupportSet, labels: torch.Tensor, num_classes: int,
                batch_size: int) -> torch.Tensor:
    """c_k = mean of the flattened features of class k's support samples, without gradient.
    Summed batch by batch, sample after sample, as one index_add_ over all features would."""
    device = model_device(model)
    sums = counts = None
    begin = 0
    with torch.no_grad():
        for batch in support.batches(batch_size):
            features = run_model(model, batch.to(device)).reshape(len(batch), -1)
            batch_labels = labels[begin : begin + len(batch)].to(features.device)
            begin += len(batch)
            if sums is None:
                sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype,
                                   device=features.device)
            sums.index_add_(0, batch_labels, features)
        counts = torch.bincount(labels, minlength=num_classes).to(sums.dtype).to(sums.device)
        return sums / counts[:, None]


def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) as a tensor; a model that fails on the samples is a one-line TraceError."""
    try:
        output = model(x)
    except (SpecError, TraceError):
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise TraceError(f"the model fails on support samples of shape {list(x.shape)}: "
                         f"{type(exc).__name__}: {text}") from None
    return as_tensor(output)


def as_tensor(output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise SpecError(f"the model returns {type(output).__name__}; the probe needs a tensor output")
    return output


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")
