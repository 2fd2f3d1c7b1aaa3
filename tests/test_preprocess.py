"""Client-side preprocess presets (dp_models.preprocess) against their in-process references:
open_clip's own inference transform for ``openai_clip_*`` and the Places365 torchvision
transform for ``places365_*``, on the same images.

Tolerance: the presets reproduce Pillow's antialiased resize in its 8-bit fixed-point
arithmetic (horizontal pass first), so most outputs are bit-identical; the Pillow build
installed here runs the vertical pass first for some sizes, which moves some pixels by
one uint8 level. Allowed: at most one uint8 level per value (1 / 255 / std in normalized
units, about 0.018) and a mean absolute difference below 0.01.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dp_models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PRESETS,
    preprocess,
    resize,
)
from dp_models.spec import PREPROCESS_PRESETS

#: (height, width): landscape, portrait, square, smaller than the crop (upscaled)
SHAPES = [(301, 457), (480, 270), (256, 256), (120, 200)]
MAX_LEVELS = 1
MEAN_ABS = 0.01


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


def _assert_close(
    got: np.ndarray[Any, Any], ref: np.ndarray[Any, Any], std: tuple[float, ...]
) -> None:
    assert got.dtype == np.float32
    assert got.shape == ref.shape
    diff = np.abs(got - ref)
    assert diff.max() <= MAX_LEVELS / 255 / min(std) + 1e-6
    assert diff.mean() < MEAN_ABS


def test_every_image_preset_of_the_spec_schema_is_here() -> None:
    image_presets = {p for p in PREPROCESS_PRESETS if p.startswith(("openai_clip_", "places365_"))}
    assert image_presets == set(PRESETS)


@pytest.mark.parametrize("size", [224, 336, 448])
@pytest.mark.parametrize("shape", SHAPES)
def test_openai_clip_presets_match_open_clip(size: int, shape: tuple[int, int]) -> None:
    open_clip = pytest.importorskip("open_clip")
    image_module = pytest.importorskip("PIL.Image")
    image = _image(*shape)
    reference = open_clip.image_transform(
        size, is_train=False, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
    )(image_module.fromarray(image))
    got = preprocess(f"openai_clip_{size}", image)
    assert got.shape == (3, size, size)
    _assert_close(got, reference.numpy(), OPENAI_CLIP_STD)


@pytest.mark.parametrize("size", [224, 336, 448])
@pytest.mark.parametrize("shape", SHAPES)
def test_places365_presets_match_the_places365_transform(size: int, shape: tuple[int, int]) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    image_module = pytest.importorskip("PIL.Image")
    image = _image(*shape, seed=1)
    resized = size * 8 // 7  # 256 for 224, as the Places365 reference code
    reference = transforms.Compose(
        [
            transforms.Resize((resized, resized)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(image_module.fromarray(image))
    got = preprocess(f"places365_{size}", image)
    assert got.shape == (3, size, size)
    _assert_close(got, reference.numpy(), IMAGENET_STD)


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_resize_matches_pillow_on_one_axis(method: str) -> None:
    image_module = pytest.importorskip("PIL.Image")
    image = _image(90, 140, seed=2)
    for height, width in ((90, 61), (90, 300), (37, 140), (200, 140)):
        mode = image_module.Resampling.BICUBIC if method == "bicubic" else image_module.BILINEAR
        reference = np.asarray(image_module.fromarray(image).resize((width, height), mode))
        np.testing.assert_array_equal(resize(image, height, width, method), reference)


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
    with pytest.raises(ValueError, match="no image preprocess preset 'clip'; known: openai_clip"):
        preprocess("clip", _image(10, 10))
    with pytest.raises(TypeError, match="uint8 array"):
        preprocess("openai_clip_224", _image(10, 10).astype(np.float32))
    with pytest.raises(ValueError, match=r"not \(10, 10, 2\)"):
        preprocess("openai_clip_224", np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="resize method must be one of bicubic, bilinear"):
        resize(_image(10, 10), 5, 5, "lanczos")
