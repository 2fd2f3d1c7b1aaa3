"""MediaPipe loader: a MediaPipe Tasks vision task from a local ``.task`` bundle or
``.tflite`` model.

``loader: mediapipe`` builds ``FaceDetector``, ``FaceLandmarker``, ``HandLandmarker`` or
``PoseLandmarker`` (``mediapipe.tasks.python.vision``) with
``BaseOptions(model_asset_path=<verified artifact>)``: the models MediaPipe's wheels used
to bundle, and the ones its examples fetch, are artifacts of the spec instead. The
running mode comes from loader_args; ``LIVE_STREAM`` needs a result callback, so that mode
returns a :class:`LiveStreamTask` whose results arrive in a queue.

Device: ``cpu`` only, on MediaPipe's CPU delegate (XNNPACK); ``cuda`` is a
:class:`~dp_models._errors.DeviceUnavailableError` (``auto`` resolves to ``cpu``). MediaPipe
has no CUDA delegate, and its GPU delegate (OpenGL ES through EGL) is not used: it is not
the device the spec names, and where EGL falls back to Mesa's software renderer it loads a
second LLVM into the process, after which ``import triton`` (torch.compile) crashes the
interpreter with a segmentation fault.

loader_args: :class:`MediaPipeArgs`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import queue
import threading
import weakref
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple

from pydantic import Field

from .._errors import (
    DeviceUnavailableError,
    DPModelsError,
    LoaderArgsError,
    LoaderError,
    MissingExtraError,
)
from .._spec import Spec
from .base import LoadContext, Loader, LoaderArgs, require

__all__ = ["TASKS", "LiveStreamTask", "MediaPipeArgs", "MediaPipeLoader"]


class _Task(NamedTuple):
    cls: str  # class in mediapipe.tasks.python.vision; its options class is cls + "Options"
    formats: tuple[str, ...]  # artifact formats it loads


#: The tasks this loader builds.
TASKS: Mapping[str, _Task] = {
    "face_detector": _Task("FaceDetector", ("tflite",)),
    "face_landmarker": _Task("FaceLandmarker", ("task",)),
    "hand_landmarker": _Task("HandLandmarker", ("task",)),
    "pose_landmarker": _Task("PoseLandmarker", ("task",)),
}

_FIXED_OPTIONS = frozenset({"base_options", "running_mode", "result_callback"})


class MediaPipeArgs(LoaderArgs):
    """``loader_args`` of ``mediapipe``."""

    task: Literal["face_detector", "face_landmarker", "hand_landmarker", "pose_landmarker"] = Field(
        description="the MediaPipe Tasks vision task to build"
    )
    running_mode: Literal["IMAGE", "VIDEO", "LIVE_STREAM"] = Field(
        default="IMAGE", description="the task's running mode"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="fields of the task's options (num_faces, min_..._confidence, ...), "
        "checked against the installed MediaPipe at load",
    )


def _vision(spec: str | None = None) -> ModuleType:
    return require("mediapipe.tasks.python.vision", extra="mediapipe", spec=spec)


def _check_options(ctx: LoadContext, options_cls: Any, options: Mapping[str, Any]) -> None:
    """``loader_args.options`` against the task's options dataclass: known fields, each of
    the type of its default (MediaPipe itself fails late, with a bare ``TypeError``)."""
    name, cls = ctx.spec.name, options_cls.__name__
    fields = {
        f.name: f.default for f in dataclasses.fields(options_cls) if f.name not in _FIXED_OPTIONS
    }
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise LoaderArgsError(
            f"spec {name!r}: {cls} has no field(s) {', '.join(unknown)} (loader_args.options); "
            f"it takes {', '.join(sorted(fields))}",
            spec=name,
            loader="mediapipe",
        )
    for key, value in options.items():
        default = fields[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = True  # a field without a plain default: MediaPipe checks it
        if not ok:
            raise LoaderArgsError(
                f"spec {name!r}: loader_args.options.{key} must be a {type(default).__name__} "
                f"(like its default, {default!r}), got {value!r}",
                spec=name,
                loader="mediapipe",
            )


#: Each open task's serial dispatcher (by the task's id), held until the task is collected.
_DISPATCHERS: dict[int, Any] = {}
_DISPATCHERS_LOCK = threading.Lock()


def _keep_dispatcher(task: Any) -> Any:
    """Keep ``task``'s serial dispatcher alive as long as the task is.

    MediaPipe (1.x) runs a task's native calls on the one worker thread of the task's own
    serial dispatcher (``task._lib``), and the task's ``__del__`` closes it through that
    worker. The dispatcher refers to itself (its methods are closures), so a dropped task
    and its dispatcher are collected together by the cyclic collector, in no set order:
    the executor can go first, its worker thread exits, and the task's close then waits
    forever for it (seen: the test suite hung in an unrelated test; a loop of 40 dropped
    tasks hangs without this). Held from here, the dispatcher is not part of that garbage;
    the finalizer below, which the collector runs before the task's ``__del__``, lets go
    of it, and the close still finds its worker."""
    dispatcher = getattr(task, "_lib", None)
    if getattr(dispatcher, "_executor", None) is None:  # another layout: nothing to hold
        return task
    key = id(task)
    with _DISPATCHERS_LOCK:
        _DISPATCHERS[key] = dispatcher
    weakref.finalize(task, _let_go, key)
    return task


def _let_go(key: int) -> None:
    with _DISPATCHERS_LOCK:
        _DISPATCHERS.pop(key, None)


class LiveStreamTask:
    """A MediaPipe task in ``LIVE_STREAM`` mode. ``detect_async(image, timestamp_ms)``
    queues a frame; each result lands in :attr:`results` as
    ``(result, output_image, timestamp_ms)``. Everything else goes to :attr:`task`."""

    def __init__(self, create: Any, options: Any) -> None:
        self.results: queue.Queue[tuple[Any, Any, int]] = queue.Queue()
        options.result_callback = self._on_result
        self.task = create(options)

    def _on_result(self, result: Any, image: Any, timestamp_ms: int) -> None:
        self.results.put((result, image, timestamp_ms))

    def detect_async(self, image: Any, timestamp_ms: int, *args: Any) -> None:
        self.task.detect_async(image, timestamp_ms, *args)

    def close(self) -> None:
        self.task.close()

    def __enter__(self) -> LiveStreamTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name == "task":  # not set: the task was never created
            raise AttributeError(name)
        return getattr(self.task, name)


class MediaPipeLoader(Loader[MediaPipeArgs]):
    """``loader: mediapipe``."""

    name = "mediapipe"
    framework = "mediapipe"
    extra = "mediapipe"
    args_model = MediaPipeArgs
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        if importlib.util.find_spec("mediapipe") is None:  # no import at get(): it is slow
            raise MissingExtraError("mediapipe", extra=self.extra)
        # MediaPipe has no CUDA delegate; its GPU delegate is OpenGL ES, not offered (module doc)
        return False

    def describe(self, spec: Spec, paths: Mapping[str, Path]) -> Mapping[str, Any] | None:
        """The models inside a ``.task`` bundle (a zip), recorded as ``model_info``."""
        for art in spec.artifacts:
            if art.format == "task":
                try:
                    with zipfile.ZipFile(paths[art.path]) as bundle:
                        return {"bundle": sorted(bundle.namelist())}
                except (OSError, zipfile.BadZipFile):
                    return None  # load() reports it with a typed error
        return None

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        task = TASKS[args.task]
        mode = args.running_mode
        if ctx.device != "cpu":
            raise DeviceUnavailableError(
                f"spec {name!r}: MediaPipe runs on the CPU only (device {ctx.device!r} asked "
                "for): it has no CUDA delegate, and dp_models does not use its OpenGL ES GPU "
                "delegate. Ask for device cpu.",
                spec=name,
                requested=ctx.device,
            )
        path = ctx.artifact(*task.formats)
        vision = _vision(name)
        tasks = require("mediapipe.tasks.python", extra=self.extra, spec=name)
        task_cls = getattr(vision, task.cls)
        options_cls = getattr(vision, f"{task.cls}Options")
        _check_options(ctx, options_cls, args.options)
        base = tasks.BaseOptions(
            model_asset_path=str(path), delegate=tasks.BaseOptions.Delegate.CPU
        )
        running_mode = getattr(vision.RunningMode, mode)
        options = options_cls(base_options=base, running_mode=running_mode, **args.options)
        try:
            if mode == "LIVE_STREAM":
                live = LiveStreamTask(task_cls.create_from_options, options)
                _keep_dispatcher(live.task)
                return live
            return _keep_dispatcher(task_cls.create_from_options(options))
        except DPModelsError:
            raise
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            kind = "a .task bundle" if "task" in task.formats else "a .tflite model"
            raise LoaderError(
                f"spec {name!r}: MediaPipe could not build a {task.cls} from {path} "
                f"({type(exc).__name__}: {message}). The file passed its digest check, so the "
                f"pinned artifact is not {kind} for task {args.task!r} that this MediaPipe "
                "can run: check loader_args.task and the provisioned file.",
                spec=name,
                loader=self.name,
            ) from exc
