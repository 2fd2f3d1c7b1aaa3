"""Client-side preprocessing presets (numpy, Pillow, scipy; the spec's ``preprocess``):
what the client of a Triton spec runs before
:meth:`~dp_models.triton.client.TritonClient.infer`.

>>> import numpy as np
>>> from dp_models.preprocess import preprocess
>>> image = np.zeros((480, 640, 3), dtype=np.uint8)          # HWC RGB uint8
>>> preprocess("openai_clip_224", image).shape
(3, 224, 224)
>>> preprocess("whisper_log_mel_80", np.zeros(48_000, np.float32), sample_rate=48_000).shape
(80, 3000)

Images (HWC uint8, RGB by default, RGBA or HW gray) to CHW float32; a batch (a list of
images, or an ``N x H x W x C`` array) to one ``N x 3 x H x W`` array:

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

Video clips (``T x H x W x 3`` uint8, or a list of frames; ``channels`` as for images):

``kinetics400_slowfast_256``
    PyTorchVideo's SlowFast evaluation transform (its Kinetics-400 models, ``slowfast_r50``):
    32 frames sampled uniformly (``torch.linspace`` indices), ``/ 255``, normalized with
    mean 0.45 and std 0.225, the short side scaled to 256 (bilinear, ``align_corners=False``),
    center crop 256, packed into the two pathways: returns ``(slow, fast)``, float32
    ``(3, 8, 256, 256)`` (frames ``linspace(0, 31, 8)``: every alpha = 4th) and
    ``(3, 32, 256, 256)``. numpy only; equal, bit for bit, to those torch operations
    (``torch.nn.functional.interpolate`` is reproduced with its fused multiply-adds,
    ``dp_models._video``), and computes only the pixels the crop keeps.

Each image preset runs what its reference runs: Pillow's resize (what torchvision's
``Resize`` and open_clip's transform call on a PIL image), then the crop and the float32
arithmetic of ``ToTensor`` and ``Normalize`` in their order, so its output is equal to the
reference's, not close (the tests compare them bit for bit). ``channels="bgr"`` takes
OpenCV's channel order (BGR, BGRA); the default is ``"rgb"``, and nothing is guessed. The
frames of a batch are processed on a thread pool (``workers``, default one per CPU; Pillow
releases the GIL while it resizes), each written straight into its slot of the one output
array.

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

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._audio import AudioPreset, LogMelPreset, WhisperLogMelPreset, mel_filters, resample
from ._errors import MissingExtraError
from ._video import SlowFastClipPreset

__all__ = [
    "CHANNELS",
    "PRESETS",
    "AudioPreset",
    "FramePairPreset",
    "ImagePreset",
    "LogMelPreset",
    "SlowFastClipPreset",
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

UInt8Image = npt.NDArray[np.uint8]
Float32 = npt.NDArray[np.float32]


_METHODS = ("bicubic", "bilinear")
#: Channel orders an image may come in.
CHANNELS = ("rgb", "bgr")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # a dependency of dp_models: only a broken install lacks it
        raise MissingExtraError("pillow", extra="all") from exc
    return Image


def resize(image: UInt8Image, height: int, width: int, method: str = "bicubic") -> UInt8Image:
    """Resize an HWC uint8 image with Pillow's ``Image.resize((width, height), method)``
    (antialiased; ``method`` is ``bicubic`` or ``bilinear``): what the presets'
    references run."""
    if method not in _METHODS:
        raise ValueError(f"resize method must be one of {', '.join(_METHODS)}, not {method!r}")
    image_module = _pillow()
    mode = getattr(image_module.Resampling, method.upper())
    if image.shape[:2] == (height, width):
        return image
    resized: UInt8Image = np.asarray(image_module.fromarray(image).resize((width, height), mode))
    return resized


def _as_rgb(image: Any, channels: str = "rgb") -> UInt8Image:
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 'rgb' or 'bgr' (OpenCV's order), not {channels!r}")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"an image is a uint8 array (HWC, RGB), not {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"an image is HxW, HxWx3 (RGB) or HxWx4 (RGBA), not {array.shape}")
    rgb = array[:, :, 2::-1] if channels == "bgr" else array[:, :, :3]
    return np.ascontiguousarray(rgb)


def _center_crop(image: UInt8Image, size: int) -> UInt8Image:
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot center-crop {size}x{size} from {height}x{width}")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image[top : top + size, left : left + size]


def _normalize(
    image: UInt8Image,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """``ToTensor`` then ``Normalize``, in their float32 operations and order, into
    ``out`` (a CHW float32 array) when given."""
    if out is None:
        out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    np.divide(image.transpose(2, 0, 1), np.float32(255.0), out=out, dtype=np.float32)
    out -= np.asarray(mean, dtype=np.float32)[:, None, None]
    out /= np.asarray(std, dtype=np.float32)[:, None, None]
    return out


def _batch(images: Any) -> list[Any] | None:
    """The frames of a batch (a list or tuple of images, or an N x H x W x C array), or
    None for one image."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("an empty batch: give at least one image")
        return list(images)
    array = np.asarray(images)
    return list(array) if array.ndim == 4 else None


def _map_into(
    frames: list[Any],
    shape: tuple[int, ...],
    work: Callable[[Any, npt.NDArray[np.float32]], object],
    workers: int | None,
) -> npt.NDArray[np.float32]:
    """One ``(N, *shape)`` float32 array, frame ``i`` written into slot ``i`` by ``work``,
    on a thread pool of ``workers`` (default: one per CPU)."""
    out = np.empty((len(frames), *shape), dtype=np.float32)
    count = min(len(frames), workers or os.cpu_count() or 1)
    if count <= 1:
        for frame, slot in zip(frames, out, strict=True):
            work(frame, slot)
        return out
    with ThreadPoolExecutor(count, thread_name_prefix="dp-models-preprocess") as pool:
        list(pool.map(work, frames, out))
    return out


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

    def __call__(
        self, image: Any, *, channels: str = "rgb", workers: int | None = None
    ) -> npt.NDArray[np.float32]:
        """One image (HWC) to ``(3, crop, crop)``; a batch (a list, or ``N x H x W x C``)
        to ``(N, 3, crop, crop)`` on ``workers`` threads. ``channels``: ``"rgb"`` or
        ``"bgr"`` (OpenCV's order)."""
        frames = _batch(image)
        if frames is None:
            return self._one(image, channels, None)
        return _map_into(
            frames,
            (3, self.crop, self.crop),
            lambda frame, slot: self._one(frame, channels, slot),
            workers,
        )

    def _one(
        self, image: Any, channels: str, out: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        rgb = _as_rgb(image, channels)
        height, width = rgb.shape[:2]
        if self.square:
            size = (self.resize, self.resize)
        elif height <= width:  # torchvision: the long side is truncated, not rounded
            size = (self.resize, int(self.resize * width / height))
        else:
            size = (int(self.resize * height / width), self.resize)
        resized = resize(rgb, size[0], size[1], self.method)
        return _normalize(_center_crop(resized, self.crop), self.mean, self.std, out)


@dataclass(frozen=True)
class FramePairPreset:
    """Two frames of one size, each scaled to [-1, 1] (CHW float32); height and width must
    be multiples of ``multiple``."""

    name: str
    multiple: int = 8

    def __call__(
        self, frame0: Any, frame1: Any, *, channels: str = "rgb"
    ) -> tuple[Float32, Float32]:
        first, second = _as_rgb(frame0, channels), _as_rgb(frame1, channels)
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


Preset = (
    ImagePreset
    | FramePairPreset
    | SlowFastClipPreset
    | AudioPreset
    | WhisperLogMelPreset
    | LogMelPreset
)

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
    "kinetics400_slowfast_256": SlowFastClipPreset("kinetics400_slowfast_256"),
    "audio_16k_mono": AudioPreset("audio_16k_mono"),
    "whisper_log_mel_80": WhisperLogMelPreset("whisper_log_mel_80", 80),
    "whisper_log_mel_128": WhisperLogMelPreset("whisper_log_mel_128", 128),
    "log_mel_128": LogMelPreset("log_mel_128", 128),
}


def preprocess(name: str, *data: Any, **options: Any) -> Any:
    """``data`` through the preset ``name`` (see the module documentation): an image
    preset takes one image, ``raft_frames`` two frames (and returns two arrays), the video
    preset one clip (and returns its two pathways), an audio preset a waveform and
    ``sample_rate=``."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"no preprocess preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None
    return preset(*data, **options)
