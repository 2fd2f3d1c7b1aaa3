"""The ``ultralytics`` and ``ultralytics_tracker`` loaders (dp_models.loaders.ultralytics),
through the ModelManager on fake roots: a tiny YOLO11-style detector that Ultralytics really
loads, predicts and tracks with, and Ultralytics' ByteTrack defaults."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from dp_models._catalog import Catalog
from dp_models._errors import (
    LoaderError,
    MissingExtraError,
    UnsafeCheckpointError,
)
from dp_models._guard import network_guard
from dp_models.loaders.ultralytics import BYTETRACK_DEFAULTS, TrackerConfig
from dp_models.testing import FakeWeightsError, fake_models_root
from dp_models.testing.fakes.ultralytics import make_detector

from .fakeroots import RunsCode, catalog_problem, manager, needs_cuda, repin, set_loader_args

DETECTOR, TRACKER = "yolo11n_detector", "bytetrack_tracker"
WEIGHTS, TRACKER_YAML = "visual/yolo/yolo11n.pt", "visual/yolo/bytetrack.yaml"
FRAME = np.zeros((64, 96, 3), np.uint8)


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake root for the detector and its tracker (Ultralytics builds it in ~3 s)."""
    return fake_models_root(tmp_path_factory.mktemp("yolo") / "root", names=[DETECTOR])


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    """A private copy of the fake root, free to corrupt."""
    return Path(shutil.copytree(base_root, tmp_path / "root"))


# -- the detector --------------------------------------------------------------------------


@pytest.mark.no_network
def test_detector_loads_from_the_local_file_in_eval_mode(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    det = mm.load(DETECTOR)
    assert type(det).__name__ == "YOLO" and det.task == "detect"
    assert det.overrides["model"] == str(root.resolve() / WEIGHTS)  # the artifact, by path
    assert det.overrides["device"] == "cpu" and det.overrides["half"] is False
    net = det.model
    assert not net.training and len(net.names) == 80
    assert {p.device.type for p in net.parameters()} == {"cpu"}
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    with torch.inference_mode():
        first = net(torch.full((1, 3, 64, 64), 0.5))[0]
        second = net(torch.full((1, 3, 64, 64), 0.5))[0]
    assert first.shape == (1, 84, 84)  # 4 box + 80 class rows; 8x8 + 4x4 + 2x2 anchors
    assert torch.equal(first, second)
    assert mm.load(DETECTOR) is det  # cached


@pytest.mark.no_network
def test_detector_records_ultralytics_and_its_tracker(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    mm.load(DETECTOR)
    used = {e["name"]: e for e in mm.models_used()}
    assert set(used) == {DETECTOR, TRACKER}
    for entry in used.values():
        assert entry["framework"] == {
            "name": "ultralytics",
            "version": metadata.version("ultralytics"),
        }
    assert used[DETECTOR]["requires"] == [TRACKER]
    assert used[DETECTOR]["loader_args"] == {"task": "detect"}
    assert used[TRACKER]["model_info"] == dict(BYTETRACK_DEFAULTS)


@pytest.mark.no_network
def test_predict_track_and_plot_reach_no_network(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    det, tracker = mm.load(DETECTOR), mm.load(TRACKER)
    with network_guard(["predict"]) as blocked:
        results = det.predict(FRAME, verbose=False)
        for _ in range(3):
            tracked = det.track(FRAME, tracker=tracker, persist=True, verbose=False)
        drawn = tracked[0].plot(pil=True)  # PIL drawing looks for a font: locally only
    assert blocked == []
    assert results[0].boxes.data.shape == (0, 6) and results[0].orig_shape == (64, 96)
    assert np.asarray(drawn).shape == FRAME.shape
    # control: Ultralytics' own font lookup does try to download, and the guard sees it
    checks = importlib.import_module("ultralytics.utils.checks")
    with network_guard(["control"]) as blocked:
        checks.check_font("dp-models-no-such-font.ttf")
    assert blocked and "DNS lookup" in blocked[0].destination


@pytest.mark.no_network
def test_track_reads_the_pinned_tracker_config(root: Path, tmp_path: Path) -> None:
    path = root / TRACKER_YAML
    path.write_text(yaml.safe_dump({**BYTETRACK_DEFAULTS, "track_buffer": 7}))
    repin(root)
    mm = manager(root, tmp_path)
    det, tracker = mm.load(DETECTOR), mm.load(TRACKER)
    assert isinstance(tracker, TrackerConfig)
    # Ultralytics reads the tracker file when tracking starts: a private copy of the
    # verified bytes, so an edit of the artifact after the load changes nothing
    assert tracker.path != path.resolve() and os.fspath(tracker) == str(tracker.path)
    assert tracker.path.read_bytes() == path.read_bytes()
    assert tracker.config["track_buffer"] == 7
    path.write_text(yaml.safe_dump({**BYTETRACK_DEFAULTS, "track_buffer": 99}))
    det.track(FRAME, tracker=tracker, persist=True, verbose=False)
    assert str(det.predictor.args.tracker) == str(tracker.path)
    assert det.predictor.trackers[0].args.track_buffer == 7  # the verified copy was read
    (bytetrack,) = det.predictor.trackers
    assert type(bytetrack).__name__ == "BYTETracker"
    assert bytetrack.args.track_buffer == 7  # Ultralytics' packaged bytetrack.yaml says 30


@pytest.mark.no_network
def test_opting_out_of_weights_only_still_loads_the_file(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, DETECTOR, weights_only=False)
    det = manager(root, tmp_path).load(DETECTOR)
    assert det.task == "detect" and not det.model.training


@pytest.mark.adversarial
def test_a_pickle_that_runs_code_is_refused_before_it_runs(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"model": RunsCode(marker)}, root / WEIGHTS)
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match="could run code; it was refused") as info:
        manager(root, tmp_path).load(DETECTOR)
    assert not marker.exists()
    assert info.value.spec == DETECTOR and info.value.loader == "ultralytics"
    assert "posix.system" in str(info.value) and "weights_only: false" in str(info.value)


def test_a_foreign_global_needs_the_opt_out(root: Path, tmp_path: Path) -> None:
    torch.save({"model": argparse.Namespace(layers=3)}, root / WEIGHTS)
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match=r"GLOBAL argparse\.Namespace") as info:
        manager(root, tmp_path).load(DETECTOR)
    assert info.value.spec == DETECTOR
    set_loader_args(root, DETECTOR, weights_only=False)  # unpickled now, and still no YOLO
    with pytest.raises(LoaderError, match=r"cannot load .* as a YOLO checkpoint") as refused:
        manager(root, tmp_path).load(DETECTOR)
    assert not isinstance(refused.value, UnsafeCheckpointError)
    assert "references types outside" in str(refused.value)


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda data: b"not a checkpoint at all", "Unsupported operand"),
        (lambda data: data[: len(data) // 2], "not a loadable checkpoint"),
    ],
    ids=["junk", "truncated"],
)
def test_a_corrupt_checkpoint_is_a_loader_error(
    root: Path, tmp_path: Path, damage: Callable[[bytes], bytes], detail: str
) -> None:
    path = root / WEIGHTS
    path.write_bytes(damage(path.read_bytes()))
    repin(root)
    with pytest.raises(LoaderError, match=r"^spec 'yolo11n_detector': Ultralytics cannot") as info:
        manager(root, tmp_path).load(DETECTOR)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert detail in str(info.value) and "passed its digest check" in str(info.value)
    assert info.value.__cause__ is not None


def test_the_checkpoint_must_hold_the_spec_task(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, DETECTOR, task="segment")
    message = r"holds a 'detect' model, but the spec's loader_args\.task is 'segment'"
    with pytest.raises(LoaderError, match=message):
        manager(root, tmp_path).load(DETECTOR)


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"task": "track"}, "task", r"'detect', 'segment', 'classify', 'pose' or 'obb'"),
        ({"weights_only": "yes"}, "weights_only", r"valid boolean \(got 'yes'\)"),
    ],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, args: dict[str, Any], field: str, message: str
) -> None:
    set_loader_args(root, DETECTOR, **args)
    problem = catalog_problem(root, tmp_path)
    assert problem.field == f"loader_args.{field}"
    assert re.search(message, problem.message), problem.message


@needs_cuda
@pytest.mark.no_network
def test_fp16_on_cuda(root: Path, tmp_path: Path) -> None:
    det = manager(root, tmp_path).load(DETECTOR, device="cuda", precision="fp16")
    assert det.overrides["device"] == "cuda" and det.overrides["half"] is True
    assert {p.device.type for p in det.model.parameters()} == {"cuda"}
    results = det.predict(FRAME, verbose=False)
    assert results[0].boxes.data.shape == (0, 6)


def test_fakes_exist_for_detectors_only(tmp_path: Path) -> None:
    spec = Catalog.load()[DETECTOR]
    segment = spec.model_copy(update={"loader_args": {"task": "segment"}})
    with pytest.raises(FakeWeightsError, match="for detect models only, not task 'segment'"):
        make_detector(segment, tmp_path)


def test_the_fake_checkpoint_is_small_and_saved_like_ultralytics(base_root: Path) -> None:
    path = base_root / WEIGHTS
    assert path.stat().st_size < 1_000_000
    with zipfile.ZipFile(path) as archive:  # torch.save's zip format
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"ultralytics.nn.tasks" in pickled and b"DetectionModel" in pickled


# -- the tracker ---------------------------------------------------------------------------


@pytest.mark.no_network
def test_tracker_config_is_validated_and_described(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    tracker = mm.load(TRACKER)
    assert tracker.config == dict(BYTETRACK_DEFAULTS)
    assert tracker.path.read_bytes() == (root / TRACKER_YAML).read_bytes()
    assert str(tracker) == str(tracker.path) and tracker.path.name == "bytetrack.yaml"
    assert mm.get(TRACKER).info == dict(BYTETRACK_DEFAULTS)
    assert mm.get(TRACKER).device == "cpu"


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        ({**BYTETRACK_DEFAULTS, "tracker_type": "botsort"}, ["tracker_type is 'botsort'"]),
        (
            {k: v for k, v in BYTETRACK_DEFAULTS.items() if k != "track_buffer"},
            ["missing track_buffer"],
        ),
        ({**BYTETRACK_DEFAULTS, "with_reid": True}, ["unknown key(s) with_reid"]),
        (
            {**BYTETRACK_DEFAULTS, "match_thresh": 1.5, "fuse_score": "yes"},
            ["match_thresh must be a float in [0, 1], got 1.5", "fuse_score must be a bool"],
        ),
        (["tracker_type", "bytetrack"], ["it holds a list, not a mapping"]),
    ],
    ids=["botsort", "missing", "unknown", "types", "list"],
)
def test_an_invalid_tracker_config_is_a_loader_error(
    root: Path, tmp_path: Path, content: Any, problems: list[str]
) -> None:
    (root / TRACKER_YAML).write_text(yaml.safe_dump(content))
    repin(root)
    mm = manager(root, tmp_path)
    assert mm.get(TRACKER).info is None  # nothing invalid is recorded as model_info
    with pytest.raises(LoaderError, match="is not a valid ByteTrack configuration") as info:
        mm.load(TRACKER)
    assert info.value.spec == TRACKER and info.value.loader == "ultralytics_tracker"
    for problem in problems:
        assert problem in str(info.value)


def test_tracker_yaml_that_does_not_parse(root: Path, tmp_path: Path) -> None:
    (root / TRACKER_YAML).write_text("tracker_type: [bytetrack\n")
    repin(root)
    with pytest.raises(LoaderError, match="is not a readable tracker YAML") as info:
        manager(root, tmp_path).load(TRACKER)
    assert info.value.spec == TRACKER


def test_tracker_without_lap(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ByteTrack's matcher is a package of its own (Ultralytics would pip-install it)."""
    monkeypatch.setitem(sys.modules, "lap", None)
    with pytest.raises(MissingExtraError, match=r"dp-models\[yolo\]") as info:
        manager(root, tmp_path).load(TRACKER)
    assert info.value.module == "lap" and info.value.spec == TRACKER


def test_fake_tracker_matches_ultralytics_defaults(base_root: Path) -> None:
    ultralytics = importlib.import_module("ultralytics")
    packaged = Path(str(ultralytics.__file__)).parent / "cfg" / "trackers" / "bytetrack.yaml"
    ours: Mapping[str, Any] = yaml.safe_load((base_root / TRACKER_YAML).read_text())
    assert ours == yaml.safe_load(packaged.read_text()) == dict(BYTETRACK_DEFAULTS)
