"""Stateful models and several streams (``ModelHandle.open``, ``ModelManager.open``): a
MediaPipe task per video, built from the verified bytes, on real MediaPipe; and the routing
of MediaPipe's native log lines (``DP_MODELS_NATIVE_LOGS``).

The face detector here is ``probe_face_detector`` (dp_models.testing.fakes.mediapipe):
what it finds follows each frame's brightness, so results that mix two videos show."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mediapipe as mp  # type: ignore[import-untyped]
import numpy as np
import pytest

from dp_models import LoadContext, ModelManager
from dp_models._errors import (
    ConfigurationError,
    DigestMismatchError,
    LoaderArgsError,
    LoaderError,
)
from dp_models._settings import ENV_NATIVE_LOGS, Settings
from dp_models.loaders import get_loader
from dp_models.loaders import mediapipe as mp_loader
from dp_models.loaders.mediapipe import LiveStreamTask
from dp_models.testing import fake_models_root
from dp_models.testing.fakes.mediapipe import probe_face_detector

from .fakeroots import manager, repin, set_loader_args

DETECTOR = "mediapipe_face_detector"
DETECTOR_FILE = "visual/mediapipe/blaze_face_short_range.tflite"
NAMES = [DETECTOR, "mediapipe_face_landmarker", "places365_categories", "optical_flow_raft_triton"]

#: Two videos: each frame a uniform square image of this brightness (<= 100: no face).
VIDEO_A = [0, 120, 200, 50, 255, 140, 0, 180]
VIDEO_B = [180, 0, 130, 220, 0, 160, 101, 90]


def frame(value: int) -> Any:
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.full((64, 64, 3), value, np.uint8))


def summary(result: Any) -> tuple[int, tuple[tuple[int, int, int, int, float], ...]]:
    """What a detection result says, comparable: each face's box and score."""
    faces = tuple(
        sorted(
            (
                d.bounding_box.origin_x,
                d.bounding_box.origin_y,
                d.bounding_box.width,
                d.bounding_box.height,
                round(d.categories[0].score, 5),
            )
            for d in result.detections
        )
    )
    return len(faces), faces


def run_video(task: Any, video: Sequence[int]) -> list[Any]:
    """A video through a VIDEO-mode task, timestamps from 0 (33 ms apart)."""
    return [summary(task.detect_for_video(frame(v), i * 33)) for i, v in enumerate(video)]


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = fake_models_root(tmp_path_factory.mktemp("streams") / "root", names=NAMES)
    (root / DETECTOR_FILE).write_bytes(probe_face_detector())
    repin(root)
    return root


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_root, tmp_path / "root"))


@pytest.fixture
def mm(root: Path, tmp_path: Path) -> Iterator[ModelManager]:
    with manager(root, tmp_path) as mm:
        yield mm


@pytest.fixture(scope="module")
def alone(base_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """Each video run alone, in a task of its own."""
    mm = manager(base_root, tmp_path_factory.mktemp("alone"))
    handle = mm.get(DETECTOR)
    results = {}
    for key, video in (("A", VIDEO_A), ("B", VIDEO_B)):
        with handle.open() as task:
            results[key] = run_video(task, video)
    return results


# -- the probe finds what the frame holds ----------------------------------------------------


def test_the_probe_detector_follows_the_frame(alone: dict[str, list[Any]]) -> None:
    counts = [count for count, _ in alone["A"]]
    assert [c > 0 for c in counts] == [v > 100 for v in VIDEO_A]
    scores = {faces[0][4] for _, faces in alone["A"] + alone["B"] if faces}
    assert len(scores) >= 5  # brightness sets the score: the frames are told apart
    assert alone["A"] != alone["B"]


# -- several videos --------------------------------------------------------------------------


@pytest.mark.no_network
def test_two_interleaved_videos_give_what_each_gives_alone(
    mm: ModelManager, alone: dict[str, list[Any]]
) -> None:
    handle = mm.get(DETECTOR)
    results: dict[str, list[Any]] = {"A": [], "B": []}
    with handle.open() as a, handle.open() as b:
        assert a is not b
        for i, (va, vb) in enumerate(zip(VIDEO_A, VIDEO_B, strict=True)):
            # each task's timestamps restart at 0: the other's frames never reach it
            results["A"].append(summary(a.detect_for_video(frame(va), i * 33)))
            results["B"].append(summary(b.detect_for_video(frame(vb), i * 33)))
    assert results == alone


@pytest.mark.no_network
def test_a_second_video_after_the_first_is_closed(
    mm: ModelManager, alone: dict[str, list[Any]]
) -> None:
    handle = mm.get(DETECTOR)
    with handle.open() as first:
        assert run_video(first, VIDEO_A) == alone["A"]
    with handle.open() as second:
        assert second is not first
        assert run_video(second, VIDEO_B) == alone["B"]  # timestamps from 0 again


@pytest.mark.no_network
def test_two_streams_on_two_threads(mm: ModelManager, alone: dict[str, list[Any]]) -> None:
    handle = mm.get(DETECTOR)
    start = threading.Barrier(2)
    results: dict[str, list[list[Any]]] = {"A": [], "B": []}
    errors: list[BaseException] = []

    def work(key: str, video: list[int]) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(5):  # opened, run and closed while the other thread does the same
                with handle.open() as task:
                    results[key].append(run_video(task, video))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=("A", VIDEO_A)),
        threading.Thread(target=work, args=("B", VIDEO_B)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results == {"A": [alone["A"]] * 5, "B": [alone["B"]] * 5}


@pytest.mark.no_network
def test_the_cached_task_of_load_is_one_stream(mm: ModelManager) -> None:
    """``load()`` keeps its contract, one task per (name, device, precision): a second
    video's restarted timestamps fail in MediaPipe (docs/manager.md, one video)."""
    task = mm.load(DETECTOR)
    assert mm.load(DETECTOR) is task
    run_video(task, VIDEO_A)
    with pytest.raises(ValueError, match="monotonically increasing"):
        run_video(task, VIDEO_B)
    with mm.get(DETECTOR).open() as fresh:
        assert fresh is not task
        run_video(fresh, VIDEO_B)
    task.close()


# -- what open() reads -----------------------------------------------------------------------


@pytest.mark.no_network
def test_open_builds_from_the_verified_bytes_once(
    mm: ModelManager, root: Path, alone: dict[str, list[Any]]
) -> None:
    handle = mm.get(DETECTOR)
    with handle.open() as task:
        run_video(task, VIDEO_A)
    # The file changes after the factory was built: open() reads no file again, so every
    # later task is the verified model ...
    path = root / DETECTOR_FILE
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with handle.open() as task:
        assert run_video(task, VIDEO_A) == alone["A"]
    # ... until the factory is dropped: then open() verifies again, and refuses
    assert mm.unload(DETECTOR) == 1
    with pytest.raises(DigestMismatchError):
        handle.open()


def test_open_verifies_at_its_first_call(mm: ModelManager, root: Path) -> None:
    handle = mm.get(DETECTOR)
    (root / DETECTOR_FILE).write_bytes(probe_face_detector()[:-1] + b"\x01")  # same size
    with pytest.raises(DigestMismatchError):
        handle.open()


@pytest.mark.no_network
@pytest.mark.parametrize("verify", ["cached", "always"])
def test_manager_open_records_the_model(root: Path, tmp_path: Path, verify: str) -> None:
    mm = manager(root, tmp_path, verify=verify)
    with mm.open(DETECTOR) as task:
        assert type(task).__name__ == "FaceDetector"
        assert isinstance(task, mp.tasks.vision.FaceDetector)
        run_video(task, VIDEO_A)
    [entry] = mm.models_used()
    assert entry["name"] == DETECTOR and entry["loader_args"]["running_mode"] == "VIDEO"
    assert mm.check([DETECTOR])["models"][0]["loaded"] is True  # the factory is held


# -- options and refusals --------------------------------------------------------------------


@pytest.mark.no_network
def test_live_stream_streams_each_get_their_own_results(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, DETECTOR, running_mode="LIVE_STREAM")
    mm = manager(root, tmp_path)
    handle = mm.get(DETECTOR)
    got: list[tuple[Any, int]] = []
    done = threading.Event()

    def on_result(result: Any, image: Any, timestamp_ms: int) -> None:
        got.append((summary(result), timestamp_ms))
        done.set()

    with handle.open() as a, handle.open() as b, handle.open(result_callback=on_result) as c:
        assert isinstance(a, LiveStreamTask) and isinstance(b, LiveStreamTask)
        assert type(c).__name__ == "FaceDetector"  # the bare task, calling on_result
        a.detect_async(frame(200), 0)
        b.detect_async(frame(0), 0)
        c.detect_async(frame(200), 7)
        result_a, _, _ = a.results.get(timeout=10)
        result_b, _, _ = b.results.get(timeout=10)
        assert done.wait(timeout=10)
    assert summary(result_a)[0] > 0 and summary(result_b) == (0, ())
    assert got == [(summary(result_a), 7)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_faces": 2}, r"open\(\) takes no option num_faces; .*loader_args\.options"),
        ({"result_callback": print}, "result_callback must be a callable, for running_mode LIVE"),
    ],
    ids=["unknown", "callback-in-video-mode"],
)
def test_options_open_refuses(mm: ModelManager, options: dict[str, Any], message: str) -> None:
    with pytest.raises(LoaderArgsError, match=message) as info:
        mm.get(DETECTOR).open(**options)
    assert info.value.spec == DETECTOR and info.value.loader == "mediapipe"


def test_open_of_a_model_that_is_not_stateful(mm: ModelManager) -> None:
    handle = mm.get("places365_categories")
    with pytest.raises(ConfigurationError, match=r"is not stateful.* use handle\.load\(\)"):
        handle.open()
    with pytest.raises(ConfigurationError, match="is not stateful"):
        mm.open("places365_categories")
    assert handle.load()  # what it offers instead


def test_open_of_a_triton_spec(mm: ModelManager) -> None:
    with pytest.raises(LoaderError, match="served by Triton"):
        mm.get("optical_flow_raft_triton").open()


# -- native logs -----------------------------------------------------------------------------

_CREATE_AND_CLOSE = """
import sys
from dp_models import LoadContext, ModelManager
from dp_models.testing import fake_catalog_dir
root = sys.argv[1]
mm = ModelManager(models_root=root, catalog=fake_catalog_dir(root), cache_dir=sys.argv[2])
print("user line before", file=sys.stderr)
for name in sys.argv[3:]:
    handle = mm.get(name)
    with handle.open():
        print("user line inside", name, file=sys.stderr)
left_open = [mm.load(sys.argv[3]), mm.get(sys.argv[3]).open()]  # closed at exit, quietly
print("user line after", file=sys.stderr)
"""

#: Lines MediaPipe's native code writes when these tasks are created and closed (seen here,
#: MediaPipe 1.2: LiteRT, TFLite, absl).
TASKS = [DETECTOR, "mediapipe_face_landmarker"]
NATIVE_LINES = [
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "XNNPACK CPU accelerator registered.",
    "DestroyAccelerator",
    "Feedback manager requires a model with a single signature inference",
]


def create_and_close(root: Path, tmp_path: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _CREATE_AND_CLOSE, str(root), str(tmp_path / "cache"), *TASKS],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.mark.no_network
def test_native_log_lines_are_routed_by_default_and_kept_on_request(
    base_root: Path, tmp_path: Path
) -> None:
    routed = create_and_close(base_root, tmp_path, {})
    assert routed.splitlines() == [
        "user line before",
        f"user line inside {DETECTOR}",
        "user line inside mediapipe_face_landmarker",
        "user line after",
    ]
    kept = create_and_close(base_root, tmp_path, {ENV_NATIVE_LOGS: "keep"})
    for line in NATIVE_LINES:
        assert line in kept
    assert "user line inside mediapipe_face_landmarker" in kept


def test_routing_sends_native_lines_to_the_logger_and_the_rest_back(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dp_models.native")
    capfd.readouterr()
    with mp_loader._native_logs("route"):
        os.write(2, b"INFO: [environment.cc:36] Creating LiteRT environment\n")
        os.write(2, b"someone else's line\n")
        os.write(2, b"W0000 00:00:1796077613.873482    9797 x.cc:181] Sets acceleration\n")
        os.write(2, b"E0312 14:02:11.123456 17 metadata_utils.h:79] Metadata is missing.\n")
        os.write(2, b"Stack trace:\n    @     0x7f3faace20cd  absl::StatusBuilder\n")
        os.write(2, b"ERROR: The model is not a valid Flatbuffer buffer\n")
    assert capfd.readouterr().err == "someone else's line\n"
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (
            "dp_models.native",
            logging.DEBUG,
            "INFO: [environment.cc:36] Creating LiteRT environment",
        ),
        (
            "dp_models.native",
            logging.DEBUG,
            "W0000 00:00:1796077613.873482    9797 x.cc:181] Sets acceleration",
        ),
        (
            "dp_models.native",
            logging.ERROR,
            "E0312 14:02:11.123456 17 metadata_utils.h:79] Metadata is missing.\n"
            "Stack trace:\n    @     0x7f3faace20cd  absl::StatusBuilder",
        ),
        ("dp_models.native", logging.ERROR, "ERROR: The model is not a valid Flatbuffer buffer"),
    ]
    os.write(2, b"after\n")  # stderr is back
    assert capfd.readouterr().err == "after\n"


def test_captures_of_two_threads_share_one_and_restore_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Overlapping captures (two threads creating tasks at once) must not leave fd 2 on a
    capture file: the first in redirects, the last out restores."""
    caplog.set_level(logging.DEBUG, logger="dp_models.native")
    capfd.readouterr()
    inside = threading.Barrier(2)
    leave_first = threading.Event()

    def first() -> None:
        with mp_loader._native_logs("route"):
            inside.wait(timeout=10)
            os.write(2, b"INFO: from the first\n")
        leave_first.set()

    def second() -> None:
        with mp_loader._native_logs("route"):
            inside.wait(timeout=10)
            assert leave_first.wait(timeout=10)  # the first leaves while this one is inside
            os.write(2, b"INFO: from the second\nplain from the second\n")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    os.write(2, b"stderr is back\n")
    assert capfd.readouterr().err == "plain from the second\nstderr is back\n"
    assert sorted(r.getMessage() for r in caplog.records) == [
        "INFO: from the first",
        "INFO: from the second",
    ]


def test_keep_leaves_stderr_alone(capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    with mp_loader._native_logs("keep"):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert capfd.readouterr().err == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def test_native_logs_setting(
    monkeypatch: pytest.MonkeyPatch, root: Path, tmp_path: Path, mm: ModelManager
) -> None:
    assert Settings.resolve().native_logs == "route" == mm.settings.native_logs
    monkeypatch.setenv(ENV_NATIVE_LOGS, "Keep")
    assert Settings.resolve().native_logs == "keep"
    assert manager(root, tmp_path).settings.shown()["native_logs"] == "keep"
    monkeypatch.setenv(ENV_NATIVE_LOGS, "quiet")
    with pytest.raises(
        ConfigurationError, match=r"\$DP_MODELS_NATIVE_LOGS must be one of .*'quiet'"
    ):
        manager(root, tmp_path)


def test_a_context_made_by_hand_with_a_bad_native_logs(mm: ModelManager) -> None:
    handle = mm.get(DETECTOR)
    spec = handle.spec
    ctx = LoadContext(spec, handle.paths, "cpu", "fp32", dict(spec.loader_args), native_logs="x")
    with pytest.raises(ConfigurationError, match="native_logs must be one of route, keep"):
        get_loader("mediapipe").stream_factory(ctx)
