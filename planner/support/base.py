"""What every support set is: labels now, samples batch by batch (`SupportSet`), and the
helpers every source shares (class-balanced selection, ImageNet normalisation, one thread).

The sources are in `planner.support.sources` (folders, synthetic) and `planner.support.npz`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from ttplan.costmodel.errors import SpecError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A grayscale model sees the average of the RGB statistics (the usual choice when a 1-channel
# input is fed to an ImageNet-style normalisation).
GRAY_MEAN = (sum(IMAGENET_MEAN) / 3,)
GRAY_STD = (sum(IMAGENET_STD) / 3,)


class SupportSet:
    """Labelled samples: `labels` now, the samples in order, one batch at a time."""

    labels: torch.Tensor  # int64, N
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """float32 N×C×H×W batches of the samples, in order; each call starts again."""
        raise NotImplementedError

    def tensor(self) -> torch.Tensor:
        """All samples at once (small sets only)."""
        return torch.cat(list(self.batches(max(1, len(self)))))


class TensorSupport(SupportSet):
    """Samples already in memory."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, description: str = "tensors"):
        self.x, self.labels, self.description = x, y, description

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for begin in range(0, len(self.x), batch_size):
            yield self.x[begin : begin + batch_size]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for the duration: results that do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- selection


def balanced_subset(labels: Sequence[int], limit: int | None) -> list[int]:
    """Indices of at most `limit` samples, taken round-robin over the sorted classes.

    Round k takes the k-th sample (in the given order) of every class that still has one, so
    `limit` samples spread as evenly as the classes allow. The kept indices are returned in
    their original order, so labels stay grouped as in the source.
    """
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    per_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        per_class.setdefault(int(label), []).append(index)
    queues = [per_class[label] for label in sorted(per_class)]
    chosen: list[int] = []
    for round_index in range(max(len(q) for q in queues)):
        for queue in queues:
            if round_index < len(queue):
                chosen.append(queue[round_index])
                if len(chosen) == limit:
                    return sorted(chosen)
    return sorted(chosen)


def check_classes(y: torch.Tensor, where: str) -> None:
    if y.numel() == 0:
        raise SpecError(f"{where} holds no samples")
    if torch.unique(y).numel() < 2:
        raise SpecError(f"{where} has only one class; the Fisher probe needs at least two")


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels → ImageNet-normalised inputs (per-channel mean/std)."""
    channels = x.shape[1]
    mean, std = (GRAY_MEAN, GRAY_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    if channels not in (1, 3):
        raise SpecError(f"ImageNet normalisation needs 1 or 3 channels, got {channels}")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
    return (x - mean_t) / std_t
