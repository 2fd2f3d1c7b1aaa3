"""In-process preprocessing (``ModelHandle.preprocess``): frames in, a batch out, as the
model takes it (on the handle's device, in its precision), through the one implementation
the runner uses (``dp_models._runner.preset_batch``); data the preset cannot take and a
spec without a preset are typed errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dp_models import Catalog, ConfigurationError, RunnerInputError
from dp_models._runner import preset_batch
from dp_models.preprocess import preprocess
from dp_models.testing import fake_models_root

from .fakeroots import edit_spec, manager

FEATURES = "resnet18_features"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logging.disable(logging.WARNING)
    try:
        root = fake_models_root(tmp_path_factory.mktemp("pre") / "root", names=[FEATURES])
    finally:
        logging.disable(logging.NOTSET)
    edit_spec(root, FEATURES, allow_half_on_cpu=True)
    return root


def _frames(count: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, 180, 240, 3), dtype=np.uint8)


def test_frames_become_the_batch_the_loaded_model_takes(root: Path, tmp_path: Path) -> None:
    handle = manager(root, tmp_path).get(FEATURES, device="cpu")
    frames = _frames(3)
    batch = handle.preprocess(frames)
    assert isinstance(batch, torch.Tensor)
    assert (batch.shape, batch.dtype, batch.device.type) == ((3, 3, 224, 224), torch.float32, "cpu")
    assert np.array_equal(batch.numpy(), preprocess("imagenet_224", frames))
    one = handle.preprocess(frames[0])  # one image: a batch of one
    assert one.shape == (1, 3, 224, 224) and torch.equal(one[0], batch[0])
    listed = handle.preprocess(list(frames))
    assert torch.equal(listed, batch)
    bgr = handle.preprocess(frames[..., ::-1], channels="bgr")
    assert torch.equal(bgr, batch)
    with torch.inference_mode():
        out = handle.load()(batch)
    assert out.shape[0] == 3


def test_the_batch_is_in_the_handles_precision(root: Path, tmp_path: Path) -> None:
    handle = manager(root, tmp_path).get(FEATURES, device="cpu", precision="bf16")
    batch = handle.preprocess(_frames(2))
    assert batch.dtype == torch.bfloat16
    with torch.inference_mode():
        out = handle.load()(batch)  # the model in bf16 takes it as it is
    assert out.dtype == torch.bfloat16 and out.shape[0] == 2


def test_data_the_preset_cannot_take_is_a_typed_error(root: Path, tmp_path: Path) -> None:
    handle = manager(root, tmp_path).get(FEATURES, device="cpu")
    with pytest.raises(RunnerInputError, match="imagenet_224 preset cannot take") as info:
        handle.preprocess(np.zeros((2, 64, 64, 3), dtype=np.float32))
    assert (info.value.spec, info.value.runtime) == (FEATURES, "inprocess")
    with pytest.raises(RunnerInputError, match="preset cannot take"):
        handle.preprocess(np.zeros((64, 64, 2), dtype=np.uint8))  # two channels


def test_a_spec_without_a_preset_says_so(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    handle = mm.get(FEATURES, device="cpu")
    bare = handle.spec.model_copy(update={"preprocess": None})
    with pytest.raises(ConfigurationError, match="names no preprocess preset"):
        preset_batch(bare, _frames(1))


def test_presets_that_make_one_item_get_a_batch_dimension_of_one() -> None:
    catalog = Catalog.load()
    clip = np.random.default_rng(1).integers(0, 256, (40, 128, 160, 3), dtype=np.uint8)
    slow, fast = preset_batch(catalog["slowfast_r50"], clip)
    assert slow.shape == (1, 3, 8, 256, 256) and fast.shape == (1, 3, 32, 256, 256)
    expected = preprocess("kinetics400_slowfast_256", clip)
    assert np.array_equal(slow[0], expected[0]) and np.array_equal(fast[0], expected[1])
    raw = preset_batch(catalog["slowfast_r50"], clip, batch=False)
    assert raw[0].shape == (3, 8, 256, 256)
