"""Client-side preprocess presets (dp_models.preprocess) against their in-process references,
on the same inputs:

- ``openai_clip_*``: open_clip's own inference transform;
- ``places365_*``: the Places365 torchvision transform;
- ``imagenet_224``: torchvision's ImageNet evaluation transform;
- ``midas_384``: Hugging Face's DPT image processor (Pillow backend) set to 384 x 384,
  bicubic, mean and std 0.5;
- ``raft_frames``: torchvision's RAFT weights transform (``OpticalFlow``);
- ``audio_16k_mono``: ``scipy.signal.resample_poly`` of the channel mean;
- ``whisper_log_mel_*``: Hugging Face's ``WhisperFeatureExtractor`` (which matches OpenAI
  Whisper's ``log_mel_spectrogram``);
- ``log_mel_128``: ``librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=80)``;
- ``kinetics400_slowfast_256``: PyTorchVideo's SlowFast evaluation transform, written as the
  torch operations it runs (``torch.linspace``, ``F.interpolate``, ...): equal, bit for bit.

Tolerance, images: the presets reproduce Pillow 13's antialiased resize exactly (its 8-bit
fixed-point arithmetic and its pass order), so they must equal the references up to float
rounding (1e-6). (``midas_384``'s reference is the processor's Pillow backend: its default
torchvision backend resizes with torchvision's own kernel, horizontal pass first.)

Tolerance, audio: the presets compute in float64, the references partly in float32.
Allowed: 1e-6 absolute on resampled waveforms, 1e-4 on Whisper's features (values of order
1), 1e-3 dB on ``log_mel_128``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import librosa
import numpy as np
import open_clip
import pytest
import scipy.signal
import torch
from PIL import Image
from torchvision import transforms
from torchvision.models.optical_flow import Raft_Small_Weights
from transformers import WhisperFeatureExtractor
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

from dp_models._catalog import Catalog
from dp_models._errors import ConfigurationError
from dp_models._spec import PREPROCESS_PRESETS
from dp_models._video import fma32, linspace32
from dp_models.preprocess import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PRESETS,
    AudioPreset,
    FramePairPreset,
    LogMelPreset,
    WhisperLogMelPreset,
    preprocess,
    resample,
    resize,
)
from dp_models.triton.client import TritonClient

#: (height, width): landscape, portrait, square, smaller than the crop (upscaled)
SHAPES = [(301, 457), (480, 270), (256, 256), (120, 200)]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Gradients and noise: smooth areas and edges, deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256]
    )
    noisy = base.transpose(1, 2, 0) + rng.integers(-40, 40, (height, width, 3))
    image: np.ndarray[Any, np.dtype[np.uint8]] = np.clip(noisy, 0, 255).astype(np.uint8)
    return image


def _assert_equal(got: np.ndarray[Any, Any], ref: np.ndarray[Any, Any]) -> None:
    """Equal, bit for bit: the preset runs what its reference runs."""
    assert got.dtype == np.float32
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_every_preset_of_the_spec_schema_is_here() -> None:
    assert set(PREPROCESS_PRESETS) == set(PRESETS)


@pytest.mark.parametrize("size", [224, 336, 448])
@pytest.mark.parametrize("shape", SHAPES)
def test_openai_clip_presets_match_open_clip(size: int, shape: tuple[int, int]) -> None:
    image = _image(*shape)
    reference = open_clip.image_transform(
        size, is_train=False, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
    )(Image.fromarray(image))
    got = preprocess(f"openai_clip_{size}", image)
    assert got.shape == (3, size, size)
    _assert_equal(got, reference.numpy())


@pytest.mark.parametrize("size", [224, 336, 448])
@pytest.mark.parametrize("shape", SHAPES)
def test_places365_presets_match_the_places365_transform(size: int, shape: tuple[int, int]) -> None:
    image = _image(*shape, seed=1)
    resized = size * 8 // 7  # 256 for 224, as the Places365 reference code
    reference = transforms.Compose(
        [
            transforms.Resize((resized, resized)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(Image.fromarray(image))
    got = preprocess(f"places365_{size}", image)
    assert got.shape == (3, size, size)
    _assert_equal(got, reference.numpy())


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_resize_matches_pillow(method: str) -> None:
    """Every mix of growing, shrinking and keeping each axis, both pass orders."""
    mode = Image.Resampling.BICUBIC if method == "bicubic" else Image.Resampling.BILINEAR
    rng = np.random.default_rng(8)
    sizes = [(int(h), int(w)) for h, w in rng.integers(8, 240, size=(40, 2))]
    sizes += [(90, 61), (90, 300), (37, 140), (200, 140), (60, 200), (200, 60), (90, 140)]
    image = _image(90, 140, seed=2)
    for height, width in sizes:
        reference = np.asarray(Image.fromarray(image).resize((width, height), mode))
        np.testing.assert_array_equal(
            resize(image, height, width, method), reference, err_msg=f"{height}x{width}"
        )


def test_gray_and_rgba_images_become_rgb() -> None:
    gray = _image(64, 80)[:, :, 0]
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(
        preprocess("openai_clip_224", gray), preprocess("openai_clip_224", rgb)
    )
    rgba = np.concatenate([rgb, np.full((64, 80, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(
        preprocess("places365_224", rgba), preprocess("places365_224", rgb)
    )


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="no preprocess preset 'clip'; known: audio_16k_mono"):
        preprocess("clip", _image(10, 10))
    with pytest.raises(TypeError, match="uint8 array"):
        preprocess("openai_clip_224", _image(10, 10).astype(np.float32))
    with pytest.raises(ValueError, match=r"not \(10, 10, 2\)"):
        preprocess("openai_clip_224", np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="resize method must be one of bicubic, bilinear"):
        resize(_image(10, 10), 5, 5, "lanczos")


@pytest.mark.parametrize("shape", SHAPES)
def test_imagenet_224_matches_the_torchvision_evaluation_transform(shape: tuple[int, int]) -> None:
    image = _image(*shape, seed=3)
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(Image.fromarray(image))
    got = preprocess("imagenet_224", image)
    assert got.shape == (3, 224, 224)
    _assert_equal(got, reference.numpy())


@pytest.mark.parametrize("shape", SHAPES)
def test_midas_384_matches_the_dpt_image_processor(shape: tuple[int, int]) -> None:
    image = _image(*shape, seed=4)
    options: dict[str, Any] = {
        "size": {"height": 384, "width": 384},
        "keep_aspect_ratio": False,
        "resample": Image.Resampling.BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(HALF),
        "image_std": list(HALF),
        "do_pad": False,
    }
    got = preprocess("midas_384", image)
    assert got.shape == (3, 384, 384)
    reference = DPTImageProcessorPil(**options)(Image.fromarray(image), return_tensors="np")
    _assert_equal(got, reference["pixel_values"][0])


def test_raft_frames_match_the_torchvision_optical_flow_transform() -> None:
    first, second = _image(64, 96, seed=5), _image(64, 96, seed=6)
    transform = Raft_Small_Weights.DEFAULT.transforms()
    as_batch = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in (first, second)]
    ref0, ref1 = transform(*as_batch)
    got0, got1 = preprocess("raft_frames", first, second)
    assert got0.dtype == got1.dtype == np.float32 and got0.shape == (3, 64, 96)
    np.testing.assert_array_equal(got0, ref0[0].numpy())
    np.testing.assert_array_equal(got1, ref1[0].numpy())
    assert got0.min() >= -1.0 and got0.max() <= 1.0
    with pytest.raises(ValueError, match="both frames must have one size"):
        preprocess("raft_frames", first, _image(64, 88))
    with pytest.raises(ValueError, match="multiples of 8, not 60x96: resize or crop"):
        preprocess("raft_frames", first[:60], second[:60])


# -- audio ----------------------------------------------------------------------------------


def _tone(seconds: float, rate: int, channels: int = 0, seed: int = 0) -> np.ndarray[Any, Any]:
    """A chirp with noise (energy across the band, so that resampling and mel filters
    matter), float32; ``(channels, samples)`` when ``channels``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)
    if channels:
        wave = np.stack([wave * (1 + c) / channels for c in range(channels)])
    return wave.astype(np.float32)


def _resampled(wave: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    mono = wave.astype(np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    g = math.gcd(rate, 16000)
    return scipy.signal.resample_poly(mono, 16000 // g, rate // g)  # type: ignore[no-any-return]


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [0, 2])
def test_audio_16k_mono_matches_scipy_resample_poly(rate: int, channels: int) -> None:
    wave = _tone(1.3, rate, channels)
    got = preprocess("audio_16k_mono", wave, sample_rate=rate)
    reference = _resampled(wave, rate)
    assert got.dtype == np.float32 and got.shape == reference.shape
    assert got.shape == (math.ceil(len(wave.T) * 16000 / rate),)
    np.testing.assert_array_equal(got, reference.astype(np.float32))


def test_audio_16k_mono_reads_pcm_and_refuses_what_it_cannot_read() -> None:
    wave = _tone(0.5, 16000)
    pcm = np.round(wave * 32767).astype(np.int16)
    np.testing.assert_allclose(preprocess("audio_16k_mono", pcm), pcm / 32768.0, rtol=0, atol=1e-7)
    pcm32 = pcm.astype(np.int32) << 16
    np.testing.assert_array_equal(
        preprocess("audio_16k_mono", pcm32), preprocess("audio_16k_mono", pcm)
    )
    with pytest.raises(ValueError, match=r"pass the transpose of a \(samples, channels\)"):
        preprocess("audio_16k_mono", np.zeros((8000, 2), np.float32))
    with pytest.raises(TypeError, match=r"float array \(or int16/int32 PCM\), not uint8"):
        preprocess("audio_16k_mono", np.zeros(100, np.uint8))
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess("audio_16k_mono", np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match=r"\(samples,\) or \(channels, samples\)"):
        preprocess("audio_16k_mono", np.zeros(0, np.float32))
    with pytest.raises(TypeError, match=r"sample_rate is an integer in Hz, not 44100\.0"):
        preprocess("audio_16k_mono", wave, sample_rate=44100.0)
    with pytest.raises(ValueError, match="sample rates are positive"):
        preprocess("audio_16k_mono", wave, sample_rate=0)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize(("seconds", "rate"), [(7.0, 16000), (31.5, 16000), (4.0, 44100)])
def test_whisper_log_mel_matches_the_whisper_feature_extractor(
    n_mels: int, seconds: float, rate: int
) -> None:
    wave = _tone(seconds, rate, seed=n_mels)
    audio = wave if rate == 16000 else _resampled(wave, rate).astype(np.float32)
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    reference = extractor(audio, sampling_rate=16000, return_tensors="np")["input_features"][0]
    got = preprocess(f"whisper_log_mel_{n_mels}", wave, sample_rate=rate)
    assert got.dtype == np.float32 and got.shape == (n_mels, 3000) == reference.shape
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)


def test_whisper_log_mel_of_silence_is_the_floor() -> None:
    got = preprocess("whisper_log_mel_80", np.zeros(16000, np.float32))
    np.testing.assert_array_equal(got, np.full((80, 3000), (-10.0 + 4.0) / 4.0, np.float32))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_log_mel_128_matches_librosa(rate: int) -> None:
    wave = _tone(3.0, rate, channels=2, seed=7)
    audio = _resampled(wave, rate).astype(np.float32)
    power = librosa.feature.melspectrogram(
        y=audio,
        sr=16000,
        n_fft=1024,
        hop_length=256,
        n_mels=128,
        fmax=8000,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    reference = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
    got = preprocess("log_mel_128", wave, sample_rate=rate)
    assert got.dtype == np.float32 and got.shape == reference.shape
    assert got.shape == (128, 1 + len(audio) // 256)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-3)


# -- the catalog's Triton specs take what their presets make ----------------------------------


@pytest.mark.parametrize(
    "name",
    sorted(n for n, s in Catalog.load().items() if s.runtime == "triton" and s.preprocess),
)
def test_each_triton_spec_takes_what_its_preset_makes(name: str) -> None:
    spec = Catalog.load()[name]
    assert spec.triton is not None and spec.preprocess is not None
    client = TritonClient(spec, "http://127.0.0.1:1")  # nothing is sent: inputs are only checked
    preset = PRESETS[spec.preprocess]
    if isinstance(preset, FramePairPreset):
        made = client.preprocess(_image(120, 160), _image(120, 160, seed=1))
    elif isinstance(preset, AudioPreset | WhisperLogMelPreset | LogMelPreset):
        made = client.preprocess(_tone(2.0, 44100, channels=2), sample_rate=44100)
    else:
        made = client.preprocess(_image(301, 457))
    arrays = made if isinstance(made, tuple) else (made,)
    assert len(arrays) == len(spec.triton.inputs)
    inputs = {t.name: np.stack([a, a]) for t, a in zip(spec.triton.inputs, arrays, strict=True)}
    assert client.validate_inputs(inputs) == 2


def test_a_spec_without_preset_has_no_client_preprocess() -> None:
    spec = next(s for s in Catalog.load().values() if s.runtime == "triton")
    bare = spec.model_copy(update={"preprocess": None})
    with pytest.raises(ConfigurationError, match="names no preprocess preset"):
        TritonClient(bare, "http://127.0.0.1:1").preprocess(_image(10, 10))


@pytest.mark.parametrize(("rate", "target"), [(44100, 16000), (16001, 16000), (8000, 16000)])
@pytest.mark.parametrize("length", [1, 5, 441, 10_007])
def test_resample_matches_scipy_on_short_and_odd_lengths(
    rate: int, target: int, length: int
) -> None:
    wave = np.random.default_rng(length).standard_normal(length)
    g = math.gcd(rate, target)
    reference = scipy.signal.resample_poly(wave, target // g, rate // g)
    got = resample(wave, rate, target)
    assert got.shape == reference.shape
    np.testing.assert_array_equal(got, reference)


# -- channel order, batches ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["openai_clip_224", "places365_224", "imagenet_224", "midas_384"])
def test_bgr_frames_give_what_the_rgb_frame_gives(name: str) -> None:
    """OpenCV's order is said, never guessed: the BGR (and BGRA) frame gives the RGB
    frame's output, and the same frame read as RGB gives another."""
    rgb = _image(120, 160, seed=11)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    bgra = np.concatenate([bgr, np.full((120, 160, 1), 255, np.uint8)], axis=2)
    expected = preprocess(name, rgb)
    np.testing.assert_array_equal(preprocess(name, bgr, channels="bgr"), expected)
    np.testing.assert_array_equal(preprocess(name, bgra, channels="bgr"), expected)
    assert not np.array_equal(preprocess(name, bgr), expected)
    with pytest.raises(ValueError, match="channels must be 'rgb' or 'bgr'"):
        preprocess(name, rgb, channels="BGR ")


@pytest.mark.parametrize("workers", [None, 1, 2, 3])
def test_a_batch_is_one_array_equal_to_each_frame_alone(workers: int | None) -> None:
    frames = [_image(90 + 10 * i, 140 - 5 * i, seed=20 + i) for i in range(5)]
    one_by_one = np.stack([preprocess("openai_clip_224", f) for f in frames])
    as_list = preprocess("openai_clip_224", frames, workers=workers)
    assert as_list.shape == (5, 3, 224, 224) and as_list.dtype == np.float32
    assert as_list.flags.c_contiguous
    np.testing.assert_array_equal(as_list, one_by_one)
    same_size = np.stack([_image(120, 160, seed=30 + i) for i in range(4)])  # N x H x W x 3
    stacked = preprocess("imagenet_224", same_size[:, :, :, ::-1], channels="bgr", workers=workers)
    np.testing.assert_array_equal(
        stacked, np.stack([preprocess("imagenet_224", f) for f in same_size])
    )


@pytest.mark.adversarial
def test_a_bad_frame_in_a_batch_is_its_error() -> None:
    frames = [_image(64, 64), np.zeros((64, 64, 3), np.float32)]
    with pytest.raises(TypeError, match="uint8"):
        preprocess("openai_clip_224", frames, workers=2)
    with pytest.raises(ValueError, match="empty batch"):
        preprocess("openai_clip_224", [])


# -- video clips: kinetics400_slowfast_256 against PyTorchVideo's transform, in torch ops ------


def _pytorchvideo_slowfast(frames: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
    """PyTorchVideo's SlowFast evaluation transform (its hub tutorial), each step the torch
    operation PyTorchVideo runs (pytorchvideo itself is not a test dependency): the clip as
    its decoders give it (float32 C x T x H x W, 0..255), UniformTemporalSubsample(32),
    ``/ 255``, NormalizeVideo(0.45, 0.225), ShortSideScale(256), CenterCropVideo(256),
    PackPathway(alpha 4)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).to(torch.float32)
    count = x.shape[1]
    picked = torch.clamp(torch.linspace(0, count - 1, 32), 0, count - 1).long()
    x = torch.index_select(x, 1, picked) / 255.0
    mean = torch.as_tensor([0.45] * 3, dtype=x.dtype)[:, None, None, None]
    std = torch.as_tensor([0.225] * 3, dtype=x.dtype)[:, None, None, None]
    x = x.clone().sub_(mean).div_(std)
    height, width = x.shape[-2:]
    if width < height:
        size = (math.floor((float(height) / width) * 256), 256)
    else:
        size = (256, math.floor((float(width) / height) * 256))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = round((size[0] - 256) / 2.0), round((size[1] - 256) / 2.0)
    fast = x[..., top : top + 256, left : left + 256]
    slow = torch.index_select(fast, 1, torch.linspace(0, 31, 8).long())
    return slow.numpy(), fast.numpy()


def _clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.stack([_image(height, width, seed=seed + i) for i in range(frames)])


@pytest.mark.parametrize(
    "shape",
    [(40, 60, 80), (33, 300, 257), (7, 256, 320), (95, 72, 72)],
    ids=["upscaled", "portrait, downscaled", "short side already 256", "more frames, square"],
)
def test_kinetics400_slowfast_256_matches_pytorchvideos_transform(
    shape: tuple[int, int, int],
) -> None:
    clip = _clip(*shape)
    slow, fast = preprocess("kinetics400_slowfast_256", clip)
    reference_slow, reference_fast = _pytorchvideo_slowfast(clip)
    _assert_equal(fast, reference_fast)
    _assert_equal(slow, reference_slow)
    assert slow.shape == (3, 8, 256, 256) and fast.shape == (3, 32, 256, 256)


def test_the_clip_preset_takes_lists_bgr_rgba_and_any_thread_count() -> None:
    clip = _clip(12, 40, 64, seed=3)
    expected = preprocess("kinetics400_slowfast_256", clip, workers=1)
    bgra = np.concatenate([clip[..., ::-1], np.full((*clip.shape[:3], 1), 255, np.uint8)], -1)
    for got in (
        preprocess("kinetics400_slowfast_256", list(clip), workers=3),
        preprocess("kinetics400_slowfast_256", list(bgra), channels="bgr"),
    ):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    swapped = preprocess("kinetics400_slowfast_256", clip[..., ::-1])
    assert not np.array_equal(swapped[1], expected[1])


@pytest.mark.parametrize(
    ("clip", "error", "message"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), TypeError, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), ValueError, r"a clip is T x H x W x 3"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], ValueError, "one size"),
        ([np.zeros((8, 8), np.uint8)], ValueError, r"H x W x 3 \(RGB\)"),
        ([], ValueError, "an empty clip"),
    ],
)
def test_a_clip_the_preset_cannot_read_is_refused(clip: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        preprocess("kinetics400_slowfast_256", clip)
    with pytest.raises(ValueError, match="channels must be 'rgb' or 'bgr'"):
        preprocess("kinetics400_slowfast_256", _clip(2, 8, 8), channels="BGR")


def test_linspace32_is_torch_linspace_value_for_value() -> None:
    for steps in (8, 32):
        for count in range(1, 400):
            expected = torch.linspace(0, count - 1, steps).numpy()
            np.testing.assert_array_equal(linspace32(0, count - 1, steps), expected)


def _fma_exact(a: float, b: float, c: float) -> np.float32:
    """The float32 nearest to a * b + c (ties to even), from exact fractions."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    guess = np.float32(float(exact))  # at most one float32 away
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.inf)]
    return min(
        candidates,
        key=lambda v: (abs(Fraction(float(v)) - exact), int(np.float32(v).view(np.uint32)) & 1),
    )


def test_fma32_rounds_once_where_float64_would_round_twice() -> None:
    # 1 + 2^-23 + 2^-24 - 2^-70: float64 rounds it to the float32 midpoint, which ties to
    # even (1 + 2^-22); rounded once, it is 1 + 2^-23
    a, b, c = np.float32(1 + 2**-23), np.float32((1 - 2**-23) * 2**-24), np.float32(1 + 2**-23)
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(1 + 2**-22)
    assert fma32(a, b, c) == np.float32(1 + 2**-23) == _fma_exact(float(a), float(b), float(c))
    rng = np.random.default_rng(5)
    values = rng.standard_normal((3, 2000)).astype(np.float32)
    values[2] *= np.float32(2.0**20)  # addends far larger than the products
    got = fma32(*values)
    expected = [_fma_exact(float(x), float(y), float(z)) for x, y, z in values.T]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))
