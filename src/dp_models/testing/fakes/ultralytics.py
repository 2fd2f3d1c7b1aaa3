"""Fake artifacts for ``ultralytics`` (a tiny detector) and ``ultralytics_tracker``
(ByteTrack's defaults)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..._errors import FakeWeightsError
from ..._spec import Spec
from ...loaders.base import require
from ...loaders.ultralytics import BYTETRACK_DEFAULTS, UltralyticsArgs, _ultralytics
from . import write_artifacts

__all__ = ["make_detector", "make_tracker_config"]

#: A YOLO11-style detector small enough for tests: three strides (8, 16, 32), 80 classes.
_FAKE_DETECTOR_YAML = """\
# dp_models fake weights: a tiny detector with the layout of YOLO11 (80 classes, P3-P5).
nc: 80
backbone:
  - [-1, 1, Conv, [8, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
head:
  - [[2, 3, 4], 1, Detect, [nc]]
"""


def make_detector(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A randomly initialised detector of about 390k parameters with YOLO11's head (80
    classes, strides 8/16/32), built from a model YAML and saved with ``YOLO.save`` (the
    way Ultralytics writes its ``.pt`` files); placeholders for the other artifacts. Only
    ``task: detect`` (or no task) can be faked."""
    task = UltralyticsArgs.model_validate(spec.loader_args).task
    if task not in (None, "detect"):
        raise FakeWeightsError(
            f"spec {spec.name!r}: fake Ultralytics weights exist for detect models only, "
            f"not task {task!r}"
        )
    ul = _ultralytics(spec.name)
    torch = require("torch", extra="yolo", spec=spec.name)

    def save(path: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="dp_models_yolo_"))
        try:
            cfg = tmp / "dp_models_fake_yolo.yaml"
            cfg.write_text(_FAKE_DETECTOR_YAML, encoding="utf-8")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                ul.YOLO(str(cfg), task="detect", verbose=False).save(str(path))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    write_artifacts(spec, root, ("pt",), save)
    return None


def make_tracker_config(spec: Spec, root: Path) -> dict[str, Any] | None:
    """Ultralytics' ByteTrack defaults (the same values as the real file)."""
    text = "# dp_models fake: Ultralytics' ByteTrack defaults\n" + yaml.safe_dump(
        dict(BYTETRACK_DEFAULTS), sort_keys=False
    )
    write_artifacts(spec, root, ("yaml", "yml"), lambda path: path.write_text(text, "utf-8"))
    return None
