"""Client-side preprocessing presets in numpy (the spec's ``preprocess``): what the client
of a Triton spec runs before :meth:`~dp_models.triton.client.TritonClient.infer`.

>>> import numpy as np
>>> from dp_models.preprocess import preprocess
>>> image = np.zeros((480, 640, 3), dtype=np.uint8)          # HWC RGB uint8
>>> preprocess("openai_clip_224", image).shape
(3, 224, 224)
>>> preprocess("whisper_log_mel_80", np.zeros(48_000, np.float32), sample_rate=48_000).shape
(80, 3000)

Images (HWC uint8 RGB, RGBA or HW gray) to CHW float32:

``openai_clip_{224,336,448}``
    open_clip's inference transform: resize the shortest side to N (bicubic), center crop
    N x N, scale to [0, 1], normalize with the OpenAI CLIP mean/std.
``places365_{224,336,448}``
    The Places365 reference transform: resize to (8/7 N) x (8/7 N) (bilinear; 256 for
    224), center crop N x N, ImageNet mean/std.
``imagenet_224``
    torchvision's ImageNet evaluation transform (the ResNet ``IMAGENET1K_V1`` weights):
    resize the shortest side to 256 (bilinear), center crop 224, ImageNet mean/std.
``midas_384``
    MiDaS DPT-Hybrid at a fixed 384 x 384 input: resize to 384 x 384 (bicubic, aspect not
    kept), mean and std 0.5 (values in [-1, 1]).
``raft_frames``
    Two frames of one size (height and width multiples of 8, as RAFT needs), each scaled
    to [-1, 1]: ``preprocess("raft_frames", frame0, frame1)`` returns both.

The resize reproduces Pillow 13's (what torchvision's ``Resize`` runs on a PIL image, and
so what open_clip's transform runs): separable, antialiased convolution in Pillow's
8-bit fixed-point arithmetic with an 8-bit intermediate; the horizontal pass first,
except where Pillow 13 runs the vertical one first (the height shrinks, and
``2 * (new width - width) > new height - height``). The tests compare each image preset
with its in-process reference on the same images: equal up to float rounding.

Audio (``waveform``: float, or int16/int32 PCM, ``(samples,)`` or ``(channels,
samples)``; ``sample_rate`` in Hz, default 16000):

``audio_16k_mono``
    The channels averaged, resampled to 16 kHz: band-limited polyphase resampling, the
    definition of ``scipy.signal.resample_poly`` (Kaiser-windowed sinc, beta 5); float32
    ``(samples,)``.
``whisper_log_mel_80``, ``whisper_log_mel_128``
    ``audio_16k_mono``, padded with silence or cut to 30 s, then Whisper's log-mel
    features (400-point STFT every 160 samples, Slaney mel filters, log10, clipped to 8
    below the maximum, ``(x + 4) / 4``): ``(80 | 128, 3000)`` float32, as OpenAI Whisper's
    ``log_mel_spectrogram`` and Hugging Face's ``WhisperFeatureExtractor`` compute them.
``log_mel_128``
    ``audio_16k_mono``, then a 128-bin power mel spectrogram (1024-point STFT every 256
    samples, zero-padded centered frames, Slaney mel filters to 8 kHz) in dB, floored at
    80 dB below its maximum: ``(128, 1 + samples // 256)`` float32, as
    ``librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=80)`` computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._audio import AudioPreset, LogMelPreset, WhisperLogMelPreset, mel_filters, resample

__all__ = [
    "PRESETS",
    "AudioPreset",
    "FramePairPreset",
    "ImagePreset",
    "LogMelPreset",
    "WhisperLogMelPreset",
    "mel_filters",
    "preprocess",
    "resample",
    "resize",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images

UInt8Image = npt.NDArray[np.uint8]
Float32 = npt.NDArray[np.float32]


def _bicubic(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS: dict[str, tuple[Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]], float]] = {
    "bicubic": (_bicubic, 2.0),
    "bilinear": (_bilinear, 1.0),
}


def _coefficients(
    in_size: int, out_size: int, method: str
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Pillow's ``precompute_coeffs`` and ``normalize_coeffs_8bpc``: per output pixel, the
    input indices and fixed-point weights (padded with zero weights)."""
    kernel, base_support = _FILTERS[method]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) truncates toward zero
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.intp), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.intp), in_size) - xmin
    offsets = np.arange(ksize, dtype=np.intp)
    index = xmin[:, None] + offsets[None, :]
    valid = offsets[None, :] < xmax[:, None]
    weights = kernel((index - center[:, None] + 0.5) / filterscale) * valid
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    scaled = weights * (1 << _PRECISION_BITS)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    return np.minimum(index, in_size - 1), fixed


def _resample_axis(image: UInt8Image, out_size: int, axis: int, method: str) -> UInt8Image:
    index, weights = _coefficients(image.shape[axis], out_size, method)
    gathered = np.take(image, index, axis=axis).astype(np.int64)  # axis -> (out, ksize)
    shape = [1] * gathered.ndim
    shape[axis], shape[axis + 1] = weights.shape
    acc = (gathered * weights.reshape(shape)).sum(axis=axis + 1)
    acc = (acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS
    clipped: UInt8Image = np.clip(acc, 0, 255).astype(np.uint8)
    return clipped


def resize(image: UInt8Image, height: int, width: int, method: str = "bicubic") -> UInt8Image:
    """Resize an HWC uint8 image as Pillow's ``Image.resize((width, height), method)`` does
    (antialiased; ``method`` is ``bicubic`` or ``bilinear``)."""
    if method not in _FILTERS:
        raise ValueError(f"resize method must be one of {', '.join(_FILTERS)}, not {method!r}")
    in_height, in_width = image.shape[:2]
    # Pillow 13 runs the vertical pass first when the height shrinks and
    # 2 * (width growth) > (height growth); the horizontal one first otherwise.
    axes = [(1, width), (0, height)]
    if height < in_height and 2 * (width - in_width) > height - in_height:
        axes.reverse()
    out = image
    for axis, size in axes:
        if out.shape[axis] != size:
            out = _resample_axis(out, size, axis, method)
    return out


def _as_rgb(image: Any) -> UInt8Image:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"an image is a uint8 array (HWC, RGB), not {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"an image is HxW, HxWx3 (RGB) or HxWx4 (RGBA), not {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def _center_crop(image: UInt8Image, size: int) -> UInt8Image:
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot center-crop {size}x{size} from {height}x{width}")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image[top : top + size, left : left + size]


def _normalize(
    image: UInt8Image, mean: tuple[float, ...], std: tuple[float, ...]
) -> npt.NDArray[np.float32]:
    chw = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((chw - m) / s, dtype=np.float32)


@dataclass(frozen=True)
class ImagePreset:
    """Resize (shortest side to ``resize``, or both sides when ``square``), center crop
    ``crop``, normalize with ``mean``/``std``; CHW float32."""

    name: str
    resize: int
    crop: int
    method: str
    square: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, image: Any) -> npt.NDArray[np.float32]:
        rgb = _as_rgb(image)
        height, width = rgb.shape[:2]
        if self.square:
            size = (self.resize, self.resize)
        elif height <= width:  # torchvision: the long side is truncated, not rounded
            size = (self.resize, int(self.resize * width / height))
        else:
            size = (int(self.resize * height / width), self.resize)
        resized = resize(rgb, size[0], size[1], self.method)
        return _normalize(_center_crop(resized, self.crop), self.mean, self.std)


@dataclass(frozen=True)
class FramePairPreset:
    """Two frames of one size, each scaled to [-1, 1] (CHW float32); height and width must
    be multiples of ``multiple``."""

    name: str
    multiple: int = 8

    def __call__(self, frame0: Any, frame1: Any) -> tuple[Float32, Float32]:
        first, second = _as_rgb(frame0), _as_rgb(frame1)
        if first.shape != second.shape:
            raise ValueError(
                f"both frames must have one size, not {first.shape[:2]} and {second.shape[:2]}"
            )
        height, width = first.shape[:2]
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"{self.name} takes frames whose height and width are multiples of "
                f"{self.multiple}, not {height}x{width}: resize or crop both frames first"
            )
        return _normalize(first, HALF, HALF), _normalize(second, HALF, HALF)


Preset = ImagePreset | FramePairPreset | AudioPreset | WhisperLogMelPreset | LogMelPreset

PRESETS: dict[str, Preset] = {
    **{
        f"openai_clip_{n}": ImagePreset(
            f"openai_clip_{n}", n, n, "bicubic", False, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        )
        for n in (224, 336, 448)
    },
    **{
        f"places365_{n}": ImagePreset(
            f"places365_{n}", n * 8 // 7, n, "bilinear", True, IMAGENET_MEAN, IMAGENET_STD
        )
        for n in (224, 336, 448)
    },
    "imagenet_224": ImagePreset(
        "imagenet_224", 256, 224, "bilinear", False, IMAGENET_MEAN, IMAGENET_STD
    ),
    "midas_384": ImagePreset("midas_384", 384, 384, "bicubic", True, HALF, HALF),
    "raft_frames": FramePairPreset("raft_frames"),
    "audio_16k_mono": AudioPreset("audio_16k_mono"),
    "whisper_log_mel_80": WhisperLogMelPreset("whisper_log_mel_80", 80),
    "whisper_log_mel_128": WhisperLogMelPreset("whisper_log_mel_128", 128),
    "log_mel_128": LogMelPreset("log_mel_128", 128),
}


def preprocess(name: str, *data: Any, **options: Any) -> Any:
    """``data`` through the preset ``name`` (see the module documentation): an image
    preset takes one image, ``raft_frames`` two frames (and returns two arrays), an audio
    preset a waveform and ``sample_rate=``."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"no preprocess preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None
    return preset(*data, **options)
