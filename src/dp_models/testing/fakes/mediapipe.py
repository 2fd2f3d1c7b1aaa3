"""Fake assets for ``mediapipe``: constant TFLite models with the tensor shapes each task's
graph expects (:mod:`dp_models.testing.tflite`), bundled as ``.task`` files for the
landmarkers; and a face detector whose findings follow the frame
(:func:`probe_face_detector`)."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..._errors import FakeWeightsError
from ..._spec import Spec
from ..tflite import constant_model, linear_model
from . import write_artifacts

__all__ = ["FAKE_ASSETS", "make_mediapipe", "probe_face_detector"]

#: One model of a fake: (input shape, [(output shape, constant value), ...]).
_Model = tuple[list[int], list[tuple[list[int], float]]]

_NONE = -100.0  # detector score logit of the fakes: nothing is ever found
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same fake bytes on every run

#: task -> {file in the bundle (or "" for a bare .tflite): model}. The shapes are those
#: MediaPipe's task graphs expect from the real models (input size, anchors x coordinates,
#: scores).
FAKE_ASSETS: Mapping[str, Mapping[str, _Model]] = {
    "face_detector": {"": ([1, 128, 128, 3], [([1, 896, 16], 0.0), ([1, 896, 1], _NONE)])},
    "face_landmarker": {
        "face_detector.tflite": ([1, 128, 128, 3], [([1, 896, 16], 0.0), ([1, 896, 1], _NONE)]),
        "face_landmarks_detector.tflite": (
            [1, 256, 256, 3],
            [([1, 1, 1, 1434], 0.0), ([1, 1, 1, 1], _NONE)],
        ),
        "face_blendshapes.tflite": ([1, 146, 2], [([52], 0.0)]),
    },
    "hand_landmarker": {
        "hand_detector.tflite": ([1, 192, 192, 3], [([1, 2016, 18], 0.0), ([1, 2016, 1], _NONE)]),
        "hand_landmarks_detector.tflite": (
            [1, 224, 224, 3],
            [([1, 63], 0.0), ([1, 1], _NONE), ([1, 1], 0.0), ([1, 63], 0.0)],
        ),
    },
    "pose_landmarker": {
        "pose_detector.tflite": ([1, 224, 224, 3], [([1, 2254, 12], 0.0), ([1, 2254, 1], _NONE)]),
        "pose_landmarks_detector.tflite": (
            [1, 256, 256, 3],
            [
                ([1, 195], 0.0),
                ([1, 1], _NONE),
                ([1, 256, 256, 1], 0.0),
                ([1, 64, 64, 39], 0.0),
                ([1, 117], 0.0),
            ],
        ),
    },
}


def _fake_asset(models: Mapping[str, _Model], input_type: str = "uint8") -> bytes:
    def model(name: str) -> bytes:
        shape, outputs = models[name]
        kind = "float32" if name == "face_blendshapes.tflite" else input_type
        return constant_model(shape, outputs, input_type=kind)

    if "" in models:
        return model("")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
        for name in models:
            info = zipfile.ZipInfo(name, _ZIP_EPOCH)
            # MediaPipe reads the models in place: start each one 16-byte aligned, as the
            # real bundles do (padding in an extra field, like Android's zipalign)
            pad = -(out.tell() + 30 + len(name.encode()) + 4) % 16
            info.extra = struct.pack("<HH", 0xD935, pad) + bytes(pad)
            bundle.writestr(info, model(name))
    return out.getvalue()


def make_mediapipe(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A valid asset for the spec's task that MediaPipe really loads and runs: a constant
    TFLite model with the tensor shapes the task's graph expects (a ``.task`` bundle of
    them for the landmarkers), a few KB each, that finds nothing in any image.
    Placeholders for the other artifacts."""
    models = FAKE_ASSETS.get(str(spec.loader_args.get("task")))
    if models is None:
        raise FakeWeightsError(
            f"spec {spec.name!r}: no fake MediaPipe asset for task "
            f"{spec.loader_args.get('task')!r}; known tasks: {', '.join(FAKE_ASSETS)}"
        )
    data = _fake_asset(models)
    write_artifacts(spec, root, ("task", "tflite"), lambda path: path.write_bytes(data))
    return None


def probe_face_detector() -> bytes:
    """A ``.tflite`` face detector (the shapes of ``blaze_face_short_range.tflite``) whose
    findings follow the frame, for tests where per-frame results must not mix (streams):
    every anchor's score logit is ``(v - 100) / 20`` for the frame's top-left pixel value
    ``v`` (first channel), every box a quarter of the input wide. A uniform frame of value
    100 or less finds nothing; a brighter one finds faces (a few dozen, after MediaPipe's
    non-maximum suppression) whose score grows with ``v``. Use square frames: MediaPipe pads
    others, and the top-left pixel is then padding."""
    return linear_model([1, 128, 128, 3], [([1, 896, 16], 32.0, 0.0), ([1, 896, 1], -5.0, 0.05)])
