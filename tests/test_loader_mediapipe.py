"""The ``mediapipe`` loader (dp_models.loaders.mediapipe), through the ModelManager on a fake
root whose assets real MediaPipe loads and runs: constant TFLite models with the tensor
shapes each task's graph expects (dp_models.testing.tflite), bundled as ``.task`` zips. Streams
(``handle.open()``) and native logs: tests/test_stateful_streams.py."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mediapipe as mp  # type: ignore[import-untyped]
import numpy as np
import pytest

from dp_models import LoadContext, ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import (
    DeviceUnavailableError,
    LoaderArgsError,
    LoaderError,
)
from dp_models.loaders import get_loader
from dp_models.loaders.mediapipe import LiveStreamTask
from dp_models.testing import FakeWeightsError, fake_models_root
from dp_models.testing.fakes.mediapipe import FAKE_ASSETS, make_mediapipe
from dp_models.testing.tflite import constant_model

from .fakeroots import catalog_problem, manager, repin, set_loader_args

SPECS = {
    "mediapipe_face_detector": ("FaceDetector", "visual/mediapipe/blaze_face_short_range.tflite"),
    "mediapipe_face_landmarker": ("FaceLandmarker", "visual/mediapipe/face_landmarker.task"),
    "mediapipe_hand_landmarker": ("HandLandmarker", "visual/mediapipe/hand_landmarker.task"),
    "mediapipe_pose_landmarker": ("PoseLandmarker", "visual/mediapipe/pose_landmarker_full.task"),
}
EMPTY: dict[str, dict[str, list[Any]]] = {
    "FaceDetector": {"detections": []},
    "FaceLandmarker": {"face_landmarks": [], "face_blendshapes": []},
    "HandLandmarker": {"hand_landmarks": [], "handedness": []},
    "PoseLandmarker": {"pose_landmarks": [], "pose_world_landmarks": []},
}
FRAME = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((90, 120, 3), np.uint8))


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("mediapipe") / "root", names=list(SPECS))


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_root, tmp_path / "root"))


@pytest.fixture
def mm(root: Path, tmp_path: Path) -> Iterator[ModelManager]:
    with manager(root, tmp_path) as mm:
        yield mm


@contextmanager
def loaded(mm: ModelManager, name: str, **kwargs: Any) -> Iterator[Any]:
    """A task from the manager, closed afterwards (MediaPipe tasks hold native graphs)."""
    task = mm.load(name, **kwargs)
    try:
        yield task
    finally:
        task.close()


# -- every spec, on real MediaPipe -----------------------------------------------------------


@pytest.mark.no_network
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_loads_and_runs_in_video_mode(mm: ModelManager, name: str) -> None:
    cls, _ = SPECS[name]
    with loaded(mm, name) as task:
        assert type(task).__name__ == cls
        for timestamp_ms in (0, 33, 66):
            result = task.detect_for_video(FRAME, timestamp_ms)
        for field, value in EMPTY[cls].items():
            assert getattr(result, field) == value  # the fakes find nothing, by design
        with pytest.raises(ValueError, match="not initialized with the image mode"):
            task.detect(FRAME)  # the spec's running mode, VIDEO, was applied


@pytest.mark.no_network
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_opens_a_task_per_stream(mm: ModelManager, name: str) -> None:
    """Two videos at once, each its own task, both timestamps from 0
    (tests/test_stateful_streams.py: results, threads, what open() reads)."""
    cls, _ = SPECS[name]
    handle = mm.get(name)
    with handle.open() as first, handle.open() as second:
        assert first is not second
        assert type(first).__name__ == cls and isinstance(first, getattr(mp.tasks.vision, cls))
        for timestamp_ms in (0, 33, 66):
            for task in (first, second):
                result = task.detect_for_video(FRAME, timestamp_ms)
                for field, value in EMPTY[cls].items():
                    assert getattr(result, field) == value


@pytest.mark.no_network
def test_models_used_records_mediapipe_and_the_bundle(mm: ModelManager) -> None:
    with loaded(mm, "mediapipe_hand_landmarker"), loaded(mm, "mediapipe_face_detector"):
        pass
    used = {e["name"]: e for e in mm.models_used()}
    for entry in used.values():
        assert entry["framework"] == {"name": "mediapipe", "version": metadata.version("mediapipe")}
        assert entry["device"] == "cpu" and entry["precision"] == "fp32"
    assert used["mediapipe_hand_landmarker"]["model_info"] == {
        "bundle": ["hand_detector.tflite", "hand_landmarks_detector.tflite"]
    }
    assert used["mediapipe_face_detector"]["model_info"] is None  # a bare .tflite
    assert used["mediapipe_hand_landmarker"]["loader_args"] == {
        "task": "hand_landmarker",
        "running_mode": "VIDEO",
    }


@pytest.mark.no_network
def test_image_mode_and_options(root: Path, tmp_path: Path) -> None:
    set_loader_args(
        root, "mediapipe_face_landmarker", running_mode="IMAGE", options={"num_faces": 3}
    )
    mm = manager(root, tmp_path)
    with loaded(mm, "mediapipe_face_landmarker") as task:
        assert task.detect(FRAME).face_landmarks == []
        with pytest.raises(ValueError, match="not initialized with the video mode"):
            task.detect_for_video(FRAME, 0)


@pytest.mark.no_network
def test_live_stream_results_arrive_in_a_queue(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, "mediapipe_face_detector", running_mode="LIVE_STREAM")
    mm = manager(root, tmp_path)
    with loaded(mm, "mediapipe_face_detector") as task:
        assert isinstance(task, LiveStreamTask)
        assert type(task.task).__name__ == "FaceDetector"
        task.detect_async(FRAME, 5)
        result, image, timestamp_ms = task.results.get(timeout=10)
    assert result.detections == [] and timestamp_ms == 5
    assert image.width == 120 and image.height == 90


# -- loader_args -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"task": "face_mesh"}, "task", r"'face_detector', 'face_landmarker', 'hand_land"),
        ({"task": None}, "task", r"'face_detector', .* \(got None\)"),
        ({"running_mode": "STREAM"}, "running_mode", r"'IMAGE', 'VIDEO' or 'LIVE_STREAM'"),
        ({"options": ["num_hands"]}, "options", "valid dictionary"),
    ],
    ids=["task", "no-task", "mode", "options-type"],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, args: dict[str, Any], field: str, message: str
) -> None:
    set_loader_args(root, "mediapipe_hand_landmarker", **args)
    problem = catalog_problem(root, tmp_path)
    assert problem.field == f"loader_args.{field}"
    assert re.search(message, problem.message), problem.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"refine_landmarks": True}, "has no field.* refine_land"),
        ({"num_hands": "two"}, r"options\.num_hands must be a int .* got 'two'"),
        ({"num_hands": True}, r"options\.num_hands must be a int"),
        ({"min_tracking_confidence": "high"}, "must be a float"),
    ],
    ids=["option", "str-int", "bool-int", "str-float"],
)
def test_options_this_mediapipe_refuses_at_load(
    root: Path, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    """The fields of a task's options are the installed MediaPipe's: checked at load."""
    set_loader_args(root, "mediapipe_hand_landmarker", options=options)
    mm = manager(root, tmp_path)
    with pytest.raises(LoaderArgsError, match=message) as info:
        mm.load("mediapipe_hand_landmarker")
    assert info.value.spec == "mediapipe_hand_landmarker" and info.value.loader == "mediapipe"


def test_unknown_options_list_the_known_ones(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, "mediapipe_hand_landmarker", options={"max_num_hands": 2})
    mm = manager(root, tmp_path)
    with pytest.raises(
        LoaderArgsError, match=r"it takes min_hand_detection_confidence, .*num_hands"
    ):
        mm.load("mediapipe_hand_landmarker")


def test_a_tflite_task_wants_a_tflite_artifact(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, "mediapipe_hand_landmarker", task="face_detector")
    mm = manager(root, tmp_path)
    with pytest.raises(LoaderArgsError, match="has no artifact of format tflite"):
        mm.load("mediapipe_hand_landmarker")


# -- artifacts MediaPipe rejects -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("mediapipe_face_detector", b"not a model", "not a valid Flatbuffer buffer"),
        ("mediapipe_pose_landmarker", b"not a zip", "Unable to open zip archive"),
        (
            "mediapipe_face_detector",
            constant_model([1, 128, 128, 3], [([1, 896, 16], 0.0)], input_type="float32"),
            "requires specifying NormalizationOptions metadata",
        ),
    ],
    ids=["junk-tflite", "junk-task", "float-input-without-metadata"],
)
def test_an_asset_mediapipe_rejects_is_a_loader_error(
    root: Path, tmp_path: Path, name: str, content: bytes, detail: str
) -> None:
    (root / SPECS[name][1]).write_bytes(content)
    repin(root)
    mm = manager(root, tmp_path)
    with pytest.raises(LoaderError, match=f"^spec '{name}': MediaPipe could not build") as info:
        mm.load(name)
    assert info.value.spec == name and info.value.loader == "mediapipe"
    assert detail in str(info.value) and "passed its digest check" in str(info.value)
    assert info.value.__cause__ is not None


def test_another_tasks_bundle_is_a_loader_error(root: Path, tmp_path: Path) -> None:
    hand = (root / SPECS["mediapipe_hand_landmarker"][1]).read_bytes()
    (root / SPECS["mediapipe_face_landmarker"][1]).write_bytes(hand)
    repin(root)
    mm = manager(root, tmp_path)
    with pytest.raises(LoaderError, match=r"not a \.task bundle for task 'face_landmarker'"):
        mm.load("mediapipe_face_landmarker")
    assert mm.get("mediapipe_face_landmarker").info == {
        "bundle": ["hand_detector.tflite", "hand_landmarks_detector.tflite"]
    }


# -- device, precision, framework ------------------------------------------------------------


def test_the_loader_itself_runs_on_the_cpu_only(mm: ModelManager) -> None:
    handle = mm.get("mediapipe_face_detector")
    spec = handle.spec
    ctx = LoadContext(spec, handle.paths, "cuda:0", "fp32", dict(spec.loader_args))
    with pytest.raises(DeviceUnavailableError, match="MediaPipe runs on the CPU only") as info:
        get_loader("mediapipe").load(ctx)
    assert info.value.spec == spec.name and info.value.requested == "cuda:0"


# -- the fakes -------------------------------------------------------------------------------


def test_fakes_are_small_valid_and_reproducible(base_root: Path, tmp_path: Path) -> None:
    again = fake_models_root(tmp_path / "again", names=list(SPECS))
    for name, (_, rel) in SPECS.items():
        data = (base_root / rel).read_bytes()
        assert len(data) < 16_384, name
        assert (again / rel).read_bytes() == data, name
    with zipfile.ZipFile(base_root / SPECS["mediapipe_pose_landmarker"][1]) as bundle:
        assert sorted(bundle.namelist()) == sorted(FAKE_ASSETS["pose_landmarker"])
        for info in bundle.infolist():  # stored, 16-byte aligned: MediaPipe reads in place
            assert info.compress_type == zipfile.ZIP_STORED
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 16 == 0
    assert (base_root / SPECS["mediapipe_face_detector"][1]).read_bytes()[4:8] == b"TFL3"


def test_fakes_need_a_known_task(tmp_path: Path) -> None:
    spec = Catalog.load()["mediapipe_face_detector"]
    holistic = spec.model_copy(update={"loader_args": {"task": "holistic_landmarker"}})
    with pytest.raises(FakeWeightsError, match="no fake MediaPipe asset for task 'holistic"):
        make_mediapipe(holistic, tmp_path)


_DROPPED_TASKS = """
import faulthandler, gc, sys
faulthandler.dump_traceback_later(90, exit=True)  # a hang fails the test with its stack
from dp_models import ModelManager
from dp_models.testing import fake_catalog_dir
root = sys.argv[1]
for _ in range(40):
    mm = ModelManager(models_root=root, catalog=fake_catalog_dir(root), cache_dir=sys.argv[2])
    task = mm.load("mediapipe_face_detector")
    garbage = [task, mm]
    garbage.append(garbage)  # only the cyclic collector frees it, task and dispatcher together
    del task, mm, garbage
    gc.collect()
print("collected")
"""


@pytest.mark.adversarial
def test_tasks_left_to_the_garbage_collector_never_hang(tmp_path: Path) -> None:
    """A task dropped without close() is finalized by the cyclic collector together with
    its serial dispatcher; MediaPipe's own finalizer then closes it through that
    dispatcher's worker, which must still be there (without the loader holding the
    dispatcher, this loop hangs within a few rounds)."""
    import subprocess
    import sys

    root = fake_models_root(tmp_path / "root", ["mediapipe_face_detector"])
    done = subprocess.run(
        [sys.executable, "-c", _DROPPED_TASKS, str(root), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0 and done.stdout.strip() == "collected", done.stderr[-3000:]
