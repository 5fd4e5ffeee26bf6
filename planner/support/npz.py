"""Support sets from an `.npz` with arrays `x` and `y`, read without trusting the file.

An `.npz` is a zip of `.npy` files; each `.npy` starts with a header giving dtype, shape and
order. Everything is checked from those headers before any array data is read: dtypes are
numbers (never objects), `y` is one label per sample, the sample count and the bytes of one
sample are bounded, and the zip's own record of each member's size must cover what its header
promises (a mislabelled or truncated file is refused up front). Then only `y` is read whole;
the samples of `x` are read one at a time, only those `--samples` keeps, batch by batch, so a
"zip bomb" or a 10,000-image archive never expands into memory.

`x` layouts, told apart by where the model's channel count sits:
  * N×C×H×W — if floating point, taken as already model-ready (no scaling);
  * N×H×W×C — transposed to N×C×H×W;
  * N×H×W   — for a 1-channel model.
Integer pixels (uint8) are 0..255: scaled to [0, 1] and ImageNet-normalised like images;
floating-point arrays are used as they are. A spatial size other than the model's is resized
bilinearly. When both axes 1 and 3 equal C, uint8 is read as N×H×W×C (how images are stored)
and floats as N×C×H×W (how tensors are). Labels are integers (or integral floats) in
[0, MAX_LABEL].
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.fileio import note_input
from ttplan.costmodel.specs import MAX_INPUT_ELEMENTS

from .base import SupportSet, balanced_subset, check_classes, normalise

MAX_SAMPLES = 10_000_000
MAX_LABEL = 2**31 - 1
_READ_CHUNK_BYTES = 1 << 20


def _open_heads(path: Path, key: str = "x"):
    """(`key`'s header, y's labels), checked from the headers; nothing of `key` read yet."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SpecError(f"cannot read {path}: not an .npz (zip) archive ({_reason(exc)})") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        missing = [k for k in (key, "y") if f"{k}.npy" not in members]
        if missing:
            raise SpecError(f"{path} lacks array(s) {', '.join(missing)} (expected '{key}' and 'y')")
        x_head = _header(archive, members[f"{key}.npy"], path, key)
        y_head = _header(archive, members["y.npy"], path, "y")
        y_np = _read_labels(archive, members["y.npy"], y_head, path)
    note_input(path)
    return x_head, y_np


def _keep_labels(path: Path, y_np: np.ndarray, samples: int | None):
    labels = y_np.astype(np.int64)
    keep = balanced_subset(labels.tolist(), samples)
    y = torch.from_numpy(labels[keep])
    check_classes(y, f"{path}" + (f" after --samples {samples}" if samples else ""))
    return keep, y


def open_npz_samples(path: Path, sample_shape: tuple[int, ...], dtype: torch.dtype,
                     samples: int | None, key: str = "x") -> SupportSet:
    """Samples of any shape and dtype (sequences, audio features, token ids): array `key` is
    N×`sample_shape`, used as it is (no scaling, no resizing), converted to `dtype` — an
    integer or boolean model input takes integer or boolean samples only."""
    x_head, y_np = _open_heads(path, key)
    shape, x_dtype, _ = x_head
    if not shape or shape[0] != len(y_np):
        raise SpecError(f"{path}: '{key}' has {shape[0] if shape else 0} samples but 'y' has "
                        f"{len(y_np)}")
    if tuple(shape[1:]) != tuple(sample_shape):
        raise SpecError(f"{path}: '{key}' holds samples of shape {list(shape[1:])}; the model's "
                        f"input takes {list(sample_shape)} per sample (dimension 0 is the batch)")
    kinds = "iufb" if dtype.is_floating_point else "iub"
    if x_dtype.kind not in kinds:
        raise SpecError(f"{path}: '{key}' holds {x_dtype}; the model's input is {dtype} "
                        f"({'numbers' if dtype.is_floating_point else 'integers'} expected)")
    keep, y = _keep_labels(path, y_np, samples)
    support = _NpzSamples(path, keep, y, x_head, dtype,
                          f"npz {path}: {len(y)} samples, {torch.unique(y).numel()} classes")
    support.key = key
    return support


def open_npz(path: Path, chw: tuple[int, int, int], samples: int | None) -> SupportSet:
    channels, height, width = chw
    x_head, y_np = _open_heads(path)
    shape, dtype, fortran = x_head
    if dtype.kind not in "iuf":
        raise SpecError(f"{path}: 'x' must hold numbers, got {dtype}")
    if len(shape) not in (3, 4) or (shape[0] if shape else 0) != len(y_np):
        if len(shape) >= 1 and shape[0] != len(y_np):
            raise SpecError(f"{path}: 'x' has {shape[0]} samples but 'y' has {len(y_np)}")
        raise SpecError(f"{path}: 'x' must be N×C×H×W or N×H×W×C, got shape {shape}")
    if math.prod(shape[1:]) > MAX_INPUT_ELEMENTS:
        raise SpecError(f"{path}: one sample of 'x' has {math.prod(shape[1:]):,} values, more "
                        f"than ttplan reads ({MAX_INPUT_ELEMENTS:,})")
    integer_pixels = dtype.kind in "iu"
    channels_last = _layout(shape, channels, integer_pixels, path)

    keep, y = _keep_labels(path, y_np, samples)
    classes = torch.unique(y).numel()
    return _NpzSupport(path, keep, y, x_head, channels_last, integer_pixels, (height, width),
                       f"npz {path}: {len(y)} samples, {classes} classes")


class _NpzSupport(SupportSet):
    def __init__(self, path, keep, labels, x_head, channels_last, integer_pixels, size, description):
        self.path, self.keep, self.labels, self.description = path, keep, labels, description
        self.shape, self.dtype, self.fortran = x_head
        self.channels_last, self.integer_pixels, self.size = channels_last, integer_pixels, size

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        rows = self._rows()
        for begin in range(0, len(self.keep), batch_size):
            chunk = np.stack([next(rows) for _ in self.keep[begin : begin + batch_size]])
            yield self._prepare(chunk)

    key = "x"  # the array the samples are read from

    def _rows(self) -> Iterator[np.ndarray]:
        """The kept samples of `x`, in order, read from the zip one at a time."""
        row_shape = self.shape[1:]
        row_bytes = math.prod(row_shape) * self.dtype.itemsize
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.key}.npy") as stream:
                _skip_header(stream)
                if self.fortran:  # stored column-major: one sample is not contiguous
                    whole = _read_exact(stream, row_bytes * self.shape[0], self.path)
                    array = np.frombuffer(whole, self.dtype).reshape(self.shape, order="F")
                    for index in self.keep:
                        yield np.array(array[index])
                    return
                position = 0
                for index in self.keep:
                    _discard(stream, (index - position) * row_bytes, self.path)
                    data = _read_exact(stream, row_bytes, self.path)
                    position = index + 1
                    yield np.frombuffer(data, self.dtype).reshape(row_shape)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise SpecError(f"cannot read {self.path}: {_reason(exc)}") from None

    def _prepare(self, chunk: np.ndarray) -> torch.Tensor:
        if chunk.ndim == 3:
            chunk = chunk[:, None, :, :]
        elif self.channels_last:
            chunk = chunk.transpose(0, 3, 1, 2)
        native = chunk.dtype.newbyteorder("=")  # torch reads native byte order only
        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=native)).to(torch.float32)
        if not torch.isfinite(x).all():
            raise SpecError(f"{self.path}: 'x' contains NaN or infinite values")
        if self.integer_pixels:
            x = normalise(x / 255.0)
        if x.shape[2:] != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x


class _NpzSamples(_NpzSupport):
    """Rows of `x` as they are, converted to the model input's dtype."""

    def __init__(self, path, keep, labels, x_head, dtype: torch.dtype, description):
        super().__init__(path, keep, labels, x_head, False, False, None, description)
        self.target = dtype

    def _prepare(self, chunk: np.ndarray) -> torch.Tensor:
        native = chunk.dtype.newbyteorder("=") if chunk.dtype.kind != "b" else chunk.dtype
        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=native))
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise SpecError(f"{self.path}: 'x' contains NaN or infinite values")
        return x.to(self.target)


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str):
    """(shape, dtype, fortran_order) of member `key`, and a check that the zip holds its bytes."""
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            header_bytes = stream.tell()
    except Exception as exc:  # numpy raises ValueError/SyntaxError/… on a damaged header
        raise SpecError(f"cannot read {path}: array '{key}' has no valid .npy header "
                        f"({_reason(exc)})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise SpecError(f"{path}: array '{key}' holds {dtype}, not plain numbers")
    if shape and shape[0] > MAX_SAMPLES:
        raise SpecError(f"{path}: array '{key}' claims {shape[0]:,} samples; ttplan reads at "
                        f"most {MAX_SAMPLES:,}")
    needed = header_bytes + math.prod(shape) * dtype.itemsize
    if info.file_size < needed:
        raise SpecError(f"{path}: array '{key}' claims shape {shape} {dtype} "
                        f"({needed:,} bytes) but the archive holds {info.file_size:,}")
    return tuple(shape), dtype, bool(fortran)


def _read_labels(archive, info, head, path) -> np.ndarray:
    shape, dtype, fortran = head
    if len(shape) != 1 or dtype.kind not in "iuf":
        raise SpecError(f"{path}: 'y' must be a 1-D array of integer labels, got shape {shape} {dtype}")
    with archive.open(info) as stream:
        _skip_header(stream)
        y = np.frombuffer(_read_exact(stream, shape[0] * dtype.itemsize, path), dtype)
    if dtype.kind == "f" and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise SpecError(f"{path}: 'y' must be a 1-D array of integer labels, got shape {shape} {dtype}")
    if len(y) and (y.min() < 0 or y.max() > MAX_LABEL):
        raise SpecError(f"{path}: labels in 'y' must be integers from 0 to {MAX_LABEL:,}")
    return y


def _layout(shape, channels: int, integer_pixels: bool, path: Path) -> bool:
    """True when x is N×H×W×C (transposed on reading)."""
    if len(shape) == 3:
        if channels != 1:
            raise SpecError(f"{path}: 'x' must be N×C×H×W or N×H×W×C, got shape {shape}")
        return False
    first, last = shape[1] == channels, shape[3] == channels
    if first and last:
        return integer_pixels
    if first or last:
        return last
    raise SpecError(f"{path}: 'x' of shape {shape} has no axis of {channels} channels for this model")


def _skip_header(stream) -> None:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        np.lib.format.read_array_header_1_0(stream)
    else:
        np.lib.format.read_array_header_2_0(stream)


def _read_exact(stream, count: int, path) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise SpecError(f"cannot read {path}: an array ends early (truncated or mislabelled file)")
    return data


def _discard(stream, count: int, path) -> None:
    while count > 0:
        step = min(count, _READ_CHUNK_BYTES)
        _read_exact(stream, step, path)
        count -= step


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
