"""Video clip preprocessing in numpy: PyTorchVideo's SlowFast evaluation transform.

The public entry is :mod:`dp_models.preprocess` (preset ``kinetics400_slowfast_256``), where
the definition is documented. The reference is a chain of torch operations (PyTorchVideo's
``UniformTemporalSubsample``, ``/ 255``, ``NormalizeVideo``, ``ShortSideScale``,
``CenterCropVideo``, ``PackPathway``); this module computes what they compute, in the
same float32 operations and order, so that the output is equal, not close:

- ``torch.linspace`` in float32: ``start + step * i`` for the first half, ``end - step *
  (steps - 1 - i)`` for the rest, each a fused multiply-add (:func:`linspace32`);
- ATen's bilinear ``interpolate`` (``align_corners=False``), whose CPU kernel compiles
  ``a * w0 + b * w1`` (and the source index ``scale * (i + 0.5) - 0.5``) to fused
  multiply-adds: :func:`fma32` rounds those exactly once, as the hardware does;
- only the pixels the centre crop keeps are computed (each output pixel depends on four
  source pixels only, so the rest of the resized frame never needs to exist).

Those are the kernels torch runs on x86-64 CPUs with AVX2 and on aarch64; on an x86-64 CPU
without FMA (older than AVX2) torch's baseline kernels round those steps twice, and its
output differs from this one in the last bit.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SlowFastClipPreset", "bilinear_weights", "fma32", "linspace32"]

Float32 = npt.NDArray[np.float32]
Int64 = npt.NDArray[np.int64]

_HALF_ULP32 = np.uint64(1 << 28)  # float64 mantissa bits below float32's: 29; their midpoint
_LOW29 = np.uint64((1 << 29) - 1)


def fma32(a: Any, b: Any, c: Any) -> Float32:
    """``a * b + c`` on float32 values, rounded once to float32 (a fused multiply-add).

    The float64 product of two float32 values is exact; the float64 sum then rounds once,
    and rounding that to float32 is right except when the float64 sum sits exactly halfway
    between two float32 values while the exact sum does not (double rounding): there the
    exact remainder of the sum (Knuth's TwoSum) says which way to go."""
    total = np.asarray(np.multiply(a, b, dtype=np.float64))
    total += c
    rounded = total.astype(np.float32)
    tie = (total.view(np.uint64) & _LOW29) == _HALF_ULP32
    if tie.any():
        product = np.multiply(
            np.broadcast_to(a, tie.shape)[tie], np.broadcast_to(b, tie.shape)[tie], dtype=np.float64
        )
        addend = np.broadcast_to(c, tie.shape)[tie].astype(np.float64)
        wide = total[tie]
        virtual = wide - product
        error = (product - (wide - virtual)) + (addend - virtual)
        near = rounded[tie]
        up = np.where(near > wide, near, np.nextafter(near, np.float32(np.inf)))
        down = np.where(near < wide, near, np.nextafter(near, np.float32(-np.inf)))
        rounded[tie] = np.where(error > 0, up, np.where(error < 0, down, near))
    return rounded


def linspace32(start: float, end: float, steps: int) -> Float32:
    """``torch.linspace(start, end, steps)`` (float32), value for value."""
    first, last = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([first], dtype=np.float32)
    step = np.float32((last - first) / np.float32(steps - 1))
    index = np.arange(steps)
    half = steps // 2
    low = fma32(step, index[:half].astype(np.float32), first)
    high = fma32(-step, (steps - 1 - index[half:]).astype(np.float32), last)
    return np.concatenate([low, high])


def bilinear_weights(size: int, out: int) -> tuple[Int64, Int64, Float32, Float32]:
    """ATen's source indices and weights for resizing ``size`` to ``out`` (bilinear,
    ``align_corners=False``, no scale factor): ``(index0, index1, weight0, weight1)``."""
    if size == out:
        same = np.arange(out, dtype=np.int64)
        return same, same, np.ones(out, np.float32), np.zeros(out, np.float32)
    scale = np.float32(size) / np.float32(out)
    centres = np.arange(out).astype(np.float32) + np.float32(0.5)
    source = np.maximum(fma32(scale, centres, np.float32(-0.5)), np.float32(0.0))
    index0 = np.minimum(np.floor(source).astype(np.int64), size - 1)
    weight1 = np.clip(source - index0.astype(np.float32), np.float32(0.0), np.float32(1.0))
    weight0 = np.float32(1.0) - weight1
    index1 = index0 + (index0 < size - 1)
    return index0, index1, weight0.astype(np.float32), weight1.astype(np.float32)


def _frames(frames: Any, channels: str) -> tuple[list[Any], int, int]:
    """The frames of a clip (a list of HxWx3 or HxWx4 uint8 images, or a T x H x W x 3|4
    array), their height and width; refuses anything else."""
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"channels must be 'rgb' or 'bgr' (OpenCV's order), not {channels!r}")
    if isinstance(frames, (list, tuple)):
        listed = [np.asarray(f) for f in frames]
    else:
        array = np.asarray(frames)
        if array.ndim != 4:
            raise ValueError(
                "a clip is T x H x W x 3 (or a list of H x W x 3 frames), not an array of "
                f"shape {array.shape}"
            )
        listed = list(array)
    if not listed:
        raise ValueError("an empty clip: give at least one frame")
    first = listed[0]
    for number, frame in enumerate(listed):
        if frame.dtype != np.uint8:
            raise TypeError(
                f"a frame is a uint8 array (HWC, RGB), not {frame.dtype} (frame {number})"
            )
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or 0 in frame.shape:
            raise ValueError(
                f"a frame is H x W x 3 (RGB) or H x W x 4 (RGBA), not {frame.shape} "
                f"(frame {number})"
            )
        if frame.shape[:2] != first.shape[:2]:
            raise ValueError(
                f"the frames of a clip have one size: frame {number} is "
                f"{frame.shape[1]}x{frame.shape[0]}, frame 0 {first.shape[1]}x{first.shape[0]}"
            )
    return listed, first.shape[0], first.shape[1]


@dataclass(frozen=True)
class SlowFastClipPreset:
    """PyTorchVideo's SlowFast evaluation transform: ``frames`` frames uniformly sampled,
    ``/ 255``, normalized with ``mean``/``std``, the short side scaled to ``side`` (bilinear),
    centre-cropped to ``crop``, packed into a slow pathway (every ``alpha``-th frame, by
    ``torch.linspace``) and a fast one (all). Returns ``(slow, fast)``: float32
    ``(3, frames / alpha, crop, crop)`` and ``(3, frames, crop, crop)``."""

    name: str
    frames: int = 32
    side: int = 256
    crop: int = 256
    alpha: int = 4
    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    std: tuple[float, ...] = (0.225, 0.225, 0.225)

    def __call__(
        self, frames: Any, *, channels: str = "rgb", workers: int | None = None
    ) -> tuple[Float32, Float32]:
        """One clip (``T x H x W x 3`` uint8, or a list of frames) to ``(slow, fast)``.
        ``channels``: ``"rgb"`` or ``"bgr"`` (OpenCV's order); ``workers``: threads (default
        one per CPU, each frame on one)."""
        listed, height, width = _frames(frames, channels)
        count = len(listed)
        picked = np.clip(linspace32(0, count - 1, self.frames), 0, count - 1).astype(np.int64)
        if width < height:  # pytorchvideo's short_side_scale, in Python floats as it is
            size = (math.floor((float(height) / width) * self.side), self.side)
        else:
            size = (self.side, math.floor((float(width) / height) * self.side))
        top = round((size[0] - self.crop) / 2.0)
        left = round((size[1] - self.crop) / 2.0)
        rows = [w[top : top + self.crop] for w in bilinear_weights(height, size[0])]
        cols = [w[left : left + self.crop] for w in bilinear_weights(width, size[1])]
        fast = np.empty((3, self.frames, self.crop, self.crop), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        order = slice(2, None, -1) if channels == "bgr" else slice(0, 3)
        # the four source pixels of every kept output pixel: rows index0 then index1,
        # columns likewise
        source_rows, source_cols = np.concatenate(rows[:2]), np.concatenate(cols[:2])

        def one(slot: int) -> None:
            frame = listed[int(picked[slot])]
            window = frame[source_rows][:, source_cols][..., order]
            values = window.astype(np.float32) / np.float32(255.0)
            values -= mean
            values /= std
            n = self.crop
            col0, col1 = cols[2][:, None], cols[3][:, None]
            upper = fma32(values[:n, :n], col0, values[:n, n:] * col1)
            lower = fma32(values[n:, :n], col0, values[n:, n:] * col1)
            out = fma32(upper, rows[2][:, None, None], lower * rows[3][:, None, None])
            fast[:, slot] = out.transpose(2, 0, 1)

        _run(one, self.frames, workers)
        slow_index = linspace32(0, self.frames - 1, self.frames // self.alpha).astype(np.int64)
        return np.ascontiguousarray(fast[:, slow_index]), fast


def _run(work: Any, count: int, workers: int | None) -> None:
    threads = min(count, workers or os.cpu_count() or 1)
    if threads <= 1:
        for slot in range(count):
            work(slot)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="dp-models-preprocess") as pool:
        list(pool.map(work, range(count)))
