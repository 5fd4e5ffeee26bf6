"""The user's few labelled samples (the support set), loaded deterministically.

Three sources, each a `SupportSet`: the labels `y` (int64, N) up front, and the samples `x`
(float32, N×C×H×W, model-ready) read batch by batch in a fixed order, so that 10,000 images
never sit in memory at once (`open_support`; `load_support` reads them all, for small sets):

* a folder of class sub-folders of images: class names sorted → labels 0..K-1, files sorted by
  name; each image is converted to RGB (L for a 1-channel model), resized bilinearly to the
  model's H×W, scaled to [0, 1] and normalised with the ImageNet mean/std the backbones were
  pre-trained with;
* an `.npz` with arrays `x` and `y` (see `planner.support.npz` for the layouts it accepts and
  the checks made on its headers before anything is read);
* `synthetic_data(...)`: Gaussian images whose mean depends on the class, for trying the tool
  without data.

`augment` is the pseudo-query augmentation of the paper's appendix C (after Hu et al., 2022),
written with plain torch ops so it needs no torchvision and is reproducible from a generator.

Nothing here draws from torch's global RNG: the same arguments give the same tensors, on one
intra-op thread (`one_thread`), because some kernels (bilinear resizing) round differently
when the work is split across threads (notes/fisher_determinism.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.fileio import check_input_file, note_input
from ttplan.costmodel.inputs import ModelInputs

from .npz import open_npz
from .sequences import open_sequence_support
from .base import (GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, SupportSet,
                   TensorSupport, balanced_subset, check_classes, normalise, one_thread)

# Importable from here too, where the sources are.
__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GRAY_MEAN", "GRAY_STD", "SupportSet",
           "TensorSupport", "balanced_subset", "normalise", "one_thread", "load_support",
           "open_support", "synthetic_data", "SyntheticSupport", "augment",
           "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm"})
# Synthetic data when the user gives no count: 5-way 5-shot, the paper's running example
# ("e.g. 25 samples").
SYNTHETIC_DEFAULT_SAMPLES = 25
SYNTHETIC_DEFAULT_CLASSES = 5


# An image larger than this is refused before it is decoded (a "decompression bomb": a small
# file that expands to gigabytes). PIL's own default, which PIL only warns about.
MAX_IMAGE_PIXELS = 89_478_485


# ----------------------------------------------------------------------------- entry point


def load_support(
    source: str | None,
    input_shape: Sequence[int],
    samples: int | None,
    seed: int,
    synthetic: bool,
    vocab: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Load the whole support set → (x, y, one-line description); see `open_support`."""
    support = open_support(source, input_shape, samples, seed, synthetic, vocab)
    with one_thread():
        return support.tensor(), support.labels, support.description


def open_support(
    source: str | None,
    input_shape: Sequence[int],
    samples: int | None,
    seed: int,
    synthetic: bool,
    vocab: int | None = None,
) -> SupportSet:
    """The support set, checked (labels, shapes, classes), its samples read lazily.

    `input_shape` is the model's input, (C, H, W) or (N, C, H, W) (a leading batch dimension is
    ignored), or its `costmodel.inputs.ModelInputs`: one image input (float, N×C×H×W), or
    anything else (`planner.support.sequences`; `vocab`: synthetic token ids' range).
    `samples` keeps at most that many samples, class-balanced (see `balanced_subset`).
    `seed` only matters for synthetic data; folders and npz files involve no randomness.
    """
    if samples is not None and (isinstance(samples, bool) or samples < 1):
        raise SpecError(f"--samples must be a positive number of samples, got {samples}")
    if isinstance(input_shape, ModelInputs):
        spec = input_shape.specs[0]
        if len(input_shape.specs) > 1 or not (spec.is_float and len(spec.shape) == 4):
            if synthetic and source is not None:
                raise SpecError("give either a data source or --synthetic, not both")
            if not synthetic and source is None:
                raise SpecError("no support data: give an .npz with x and y, or --synthetic")
            if source is not None and not Path(source).exists():
                raise SpecError(f"support data not found: {source}")
            return open_sequence_support(source, input_shape, samples, seed, synthetic, vocab,
                                         SYNTHETIC_DEFAULT_SAMPLES, SYNTHETIC_DEFAULT_CLASSES)
        input_shape = spec.shape
    channels, height, width = _chw(input_shape)
    if synthetic:
        if source is not None:
            raise SpecError("give either a data source or --synthetic, not both")
        n = samples if samples is not None else SYNTHETIC_DEFAULT_SAMPLES
        classes = min(SYNTHETIC_DEFAULT_CLASSES, n)
        return SyntheticSupport(n, classes, (channels, height, width), seed)
    if source is None:
        raise SpecError("no support data: give a folder of class sub-folders, an .npz file, or --synthetic")

    path = Path(source)
    if not path.exists():
        raise SpecError(f"support data not found: {path}")
    if path.is_dir():
        return _open_folder(path, (channels, height, width), samples)
    check_input_file(path, "support data", limit=None)  # a FIFO or device: refused, not waited on
    if path.suffix.lower() == ".npz":
        return open_npz(path, (channels, height, width), samples)
    raise SpecError(f"unsupported support data {path}: expected a folder of class sub-folders or an .npz file")


def _chw(input_shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(input_shape)
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims):
        raise SpecError(f"input shape must be C×H×W (or N×C×H×W) positive integers, got {tuple(input_shape)}")
    return dims  # type: ignore[return-value]


# ----------------------------------------------------------------------------- image folders


def _open_folder(root: Path, chw: tuple[int, int, int], samples: int | None) -> SupportSet:
    channels, height, width = chw
    if channels not in (1, 3):
        raise SpecError(f"image folders need a model with 1 or 3 input channels, this one takes {channels}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise SpecError(f"no class sub-folders in {root} (expected {root}/<class>/<image>)")

    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        images = sorted(
            p for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            # Skipping it would silently shift every later class's label.
            raise SpecError(f"class folder {class_dir} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend(images)
        labels.extend([label] * len(images))
    if len(class_dirs) < 2:
        raise SpecError(f"{root} has only one class ({class_dirs[0].name}); the Fisher probe needs at least two")

    keep = balanced_subset(labels, samples)
    y = torch.tensor([labels[i] for i in keep], dtype=torch.int64)
    check_classes(y, f"{root} after --samples {samples}")
    kept_classes = len(set(y.tolist()))
    return _FolderSupport([files[i] for i in keep], y, "L" if channels == 1 else "RGB",
                          height, width, f"folder {root}: {len(keep)} images, {kept_classes} classes")


class _FolderSupport(SupportSet):
    def __init__(self, files: list[Path], labels: torch.Tensor, mode: str, height: int,
                 width: int, description: str):
        self.files, self.labels, self.description = files, labels, description
        self.mode, self.height, self.width = mode, height, width

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for begin in range(0, len(self.files), batch_size):
            chunk = self.files[begin : begin + batch_size]
            yield normalise(torch.stack([_read_image(f, self.mode, self.height, self.width)
                                         for f in chunk]))


def _read_image(path: Path, mode: str, height: int, width: int) -> torch.Tensor:
    """One image → float32 C×H×W in [0, 1]. Its size is checked before it is decoded."""
    try:
        with Image.open(path) as image:
            pixels_count = image.size[0] * image.size[1]
            if pixels_count > MAX_IMAGE_PIXELS:
                raise SpecError(f"image {path} has {pixels_count:,} pixels, more than the "
                                f"{MAX_IMAGE_PIXELS:,} ttplan decodes")
            note_input(path)
            image = image.convert(mode).resize((width, height), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except SpecError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SpecError(f"cannot read image {path}: {_first_line(exc)}") from None
    except MemoryError:
        raise SpecError(f"cannot read image {path}: not enough memory to decode it") from None
    except Exception as exc:  # a damaged file makes decoders raise anything (SyntaxError, struct.error …)
        raise SpecError(f"cannot read image {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# ----------------------------------------------------------------------------- synthetic


def synthetic_data(
    n: int, num_classes: int, input_shape: Sequence[int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` Gaussian images, labels 0..K-1 cycled (balanced), class-dependent mean.

    Each class's mean is a smooth random pattern (4×4 noise upsampled bilinearly) so that both
    per-channel averages and spatial structure separate the classes: a backbone can learn the task.
    The unit-variance noise on top makes the samples of one class differ.
    """
    channels, height, width = _chw(input_shape)
    _check_synthetic(n, num_classes)
    with one_thread():
        generator, means = _class_means(num_classes, (channels, height, width), seed)
        y = torch.arange(n, dtype=torch.int64) % num_classes
        noise = torch.randn(n, channels, height, width, generator=generator)
        return (means[y] + noise).to(torch.float32), y


class SyntheticSupport(SupportSet):
    """`synthetic_data(n, num_classes, chw, seed)` generated batch by batch, bit for bit the
    same tensor: CPU `randn` fills a float32 tensor of at least 16 elements from uniform draws
    taken in order and transformed in blocks of 16, so consecutive pieces whose sizes are
    multiples of 16 draw exactly what one call would. A sample of another size is generated
    whole (tested in tests/test_hostile_inputs.py)."""

    def __init__(self, n: int, num_classes: int, chw: tuple[int, int, int], seed: int):
        _check_synthetic(n, num_classes)
        self.n, self.num_classes, self.chw, self.seed = n, num_classes, chw, seed
        self.labels = torch.arange(n, dtype=torch.int64) % num_classes
        self.description = f"synthetic: {n} samples, {num_classes} classes, seed {seed}"

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        channels, height, width = self.chw
        generator, means = _class_means(self.num_classes, self.chw, self.seed)
        per_sample = channels * height * width
        if per_sample % 16:
            noise = torch.randn(self.n, channels, height, width, generator=generator)
            for begin in range(0, self.n, batch_size):
                y = self.labels[begin : begin + batch_size]
                yield (means[y] + noise[begin : begin + batch_size]).to(torch.float32)
            return
        for begin in range(0, self.n, batch_size):
            y = self.labels[begin : begin + batch_size]
            noise = torch.randn(len(y), channels, height, width, generator=generator)
            yield (means[y] + noise).to(torch.float32)


def _check_synthetic(n, num_classes) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise SpecError("synthetic data needs integer sample and class counts")
    if num_classes < 2:
        raise SpecError(f"synthetic data needs at least two classes, got {num_classes}")
    if n < num_classes:
        raise SpecError(f"synthetic data needs at least one sample per class: {n} samples for {num_classes} classes")


def _class_means(num_classes: int, chw: tuple[int, int, int], seed: int):
    channels, height, width = chw
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=generator)
    means = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return generator, means


# ----------------------------------------------------------------------------- augmentation

FLIP_PROBABILITY = 0.5
CROP_AREA_RANGE = (0.8, 1.0)  # fraction of the image kept by the random crop
CROP_LOG_RATIO_RANGE = (math.log(3 / 4), math.log(4 / 3))  # aspect ratio, as RandomResizedCrop
JITTER_SCALE = 0.1  # contrast-like: x · (1 ± 0.1) per sample
JITTER_SHIFT = 0.1  # brightness/colour-like: + ±0.1 per channel (in normalised units)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pseudo-query augmentation (appendix C): flip, random-resized crop, small colour jitter.

    Works on normalised N×C×H×W inputs. Samples are processed in order and each draws its
    random numbers from `generator` in a fixed sequence, so the result depends only on `x`
    and the generator's state. The jitter acts in normalised space (a per-sample gain and a
    per-channel offset), which is what a small brightness/contrast/colour change becomes
    after the per-channel normalisation.
    """
    if x.dim() != 4:
        raise SpecError(f"augment expects N×C×H×W inputs, got shape {tuple(x.shape)}")
    _, channels, height, width = x.shape
    out = []
    for sample in x:
        draws = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        flip, area_u, ratio_u, top_u, left_u = draws
        if flip < FLIP_PROBABILITY:
            sample = sample.flip(-1)

        area = (CROP_AREA_RANGE[0] + (CROP_AREA_RANGE[1] - CROP_AREA_RANGE[0]) * area_u) * height * width
        ratio = math.exp(CROP_LOG_RATIO_RANGE[0] + (CROP_LOG_RATIO_RANGE[1] - CROP_LOG_RATIO_RANGE[0]) * ratio_u)
        crop_w = min(width, max(1, round(math.sqrt(area * ratio))))
        crop_h = min(height, max(1, round(math.sqrt(area / ratio))))
        top = int(top_u * (height - crop_h + 1))
        left = int(left_u * (width - crop_w + 1))
        crop = sample[:, top : top + crop_h, left : left + crop_w]
        if (crop_h, crop_w) != (height, width):
            crop = F.interpolate(crop[None], size=(height, width), mode="bilinear", align_corners=False)[0]

        gain = 1.0 + JITTER_SCALE * (2 * torch.rand(1, generator=generator) - 1)
        shift = JITTER_SHIFT * (2 * torch.rand(channels, 1, 1, generator=generator) - 1)
        out.append(crop * gain + shift)
    return torch.stack(out).to(x.dtype)
