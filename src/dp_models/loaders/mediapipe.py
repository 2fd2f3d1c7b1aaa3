"""MediaPipe loader: a MediaPipe Tasks vision task from a local ``.task`` bundle or
``.tflite`` model.

``loader: mediapipe`` builds ``FaceDetector``, ``FaceLandmarker``, ``HandLandmarker`` or
``PoseLandmarker`` (``mediapipe.tasks.python.vision``) with
``BaseOptions(model_asset_buffer=<verified bytes>)``: the models MediaPipe's wheels used
to bundle, and the ones its examples fetch, are artifacts of the spec instead. The
running mode comes from loader_args; ``LIVE_STREAM`` needs a result callback, so that mode
returns a :class:`LiveStreamTask` whose results arrive in a queue.

Streams: a task in ``VIDEO`` or ``LIVE_STREAM`` mode keeps the last timestamp it was given
(and, for the landmarkers, what it tracks), so one task serves one stream. The loader is
*stateful*: :meth:`MediaPipeLoader.stream_factory` reads the verified artifact once and
returns a factory of fresh tasks, which ``ModelHandle.open()`` calls once per stream (many
videos, one after another or at once); ``ModelManager.load`` caches one task per process
(one video). Every task is built from the bytes that were verified, never from the file
read again.

Native logs: MediaPipe's native code (absl, TFLite, LiteRT) writes a dozen lines to stderr
whenever a task is created or closed (``INFO: Created TensorFlow Lite XNNPACK delegate for
CPU.``, ``W0000 ... Feedback manager requires ...``). ``GLOG_minloglevel`` and
``TF_CPP_MIN_LOG_LEVEL`` do not reach it (MediaPipe 1.x reads no variable for it), so while a
task is created or closed this module points file descriptor 2 at a temporary file, then
routes what was written: native log lines to the ``dp_models.native`` logger (INFO and
WARNING lines at DEBUG, ERROR and FATAL at ERROR), anything else back to stderr as it was.
``DP_MODELS_NATIVE_LOGS=keep`` (``Settings.native_logs``, ``LoadContext.native_logs``)
leaves stderr alone.

Device: ``cpu`` only, on MediaPipe's CPU delegate (XNNPACK); ``cuda`` is a
:class:`~dp_models._errors.DeviceUnavailableError` (``auto`` resolves to ``cpu``). MediaPipe
has no CUDA delegate, and its GPU delegate (OpenGL ES through EGL) is not used: it is not
the device the spec names, and where EGL falls back to Mesa's software renderer it loads a
second LLVM into the process, after which ``import triton`` (torch.compile) crashes the
interpreter with a segmentation fault.

loader_args: :class:`MediaPipeArgs`.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import logging
import os
import queue
import re
import sys
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Literal, NamedTuple

from pydantic import Field

from .._errors import (
    ConfigurationError,
    DeviceUnavailableError,
    DPModelsError,
    LoaderArgsError,
    LoaderError,
    MissingExtraError,
)
from .._settings import NATIVE_LOG_MODES
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


# -- native logs ------------------------------------------------------------------------------

#: The logger MediaPipe's native log lines go to (``DP_MODELS_NATIVE_LOGS=route``).
_NATIVE_LOGGER = "dp_models.native"

# absl: "W0000 00:00:1796077613.873482    9797 file.cc:1433] message" (before InitGoogle
# the date is 0000 and the seconds count from the epoch), "I0312 14:02:11.123456 ..." after
_ABSL_LINE = re.compile(rb"([IWEF])\d{4} \d+:\d+:\d+\.\d+ +\d+ [^ \]]+\] ")
# TFLite and LiteRT: "INFO: [environment.cc:36] message", "ERROR: message"
_PLAIN_LINE = re.compile(rb"(VERBOSE|DEBUG|INFO|WARNING|ERROR|FATAL): ")
# absl's stack trace under an error: "Stack trace:", then "    @     0x7f...  symbol"
_CONTINUATION = re.compile(rb"Stack trace:|[ \t]")


def _native_level(line: bytes) -> int | None:
    """The logging level a native log line goes to, or None for a line that is not one."""
    match = _ABSL_LINE.match(line) or _PLAIN_LINE.match(line)
    if match is None:
        return None
    severity = match.group(1)
    return logging.ERROR if severity[:1] in (b"E", b"F") else logging.DEBUG


def _write_stderr(data: bytes) -> None:
    while data:
        data = data[os.write(2, data) :]


def _route(data: bytes) -> None:
    """Native log lines in ``data`` to the ``dp_models.native`` logger (an error's stack
    trace with it), every other line back to stderr, in order."""
    log = logging.getLogger(_NATIVE_LOGGER)
    record: list[str] = []
    level = logging.DEBUG

    def emit() -> None:
        if record:
            log.log(level, "%s", "\n".join(record))
            record.clear()

    for line in data.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n")
        found = _native_level(bare)
        if found is not None:
            emit()
            level = found
            record.append(bare.decode("utf-8", "replace"))
        elif record and _CONTINUATION.match(bare):
            record.append(bare.decode("utf-8", "replace"))
        else:
            emit()
            _write_stderr(line)
    emit()


class _StderrCapture:
    """File descriptor 2 held on a temporary file while any task is created or closed.

    fd 2 is the process's: two threads building tasks at once share one capture (the first
    in points fd 2 at the file, the last out restores it and routes what was written), so
    that neither restores the other's file as stderr. Whatever else the process writes to
    stderr meanwhile (another thread's output) is written back when the capture ends. The
    lock is reentrant and a capture being set up or torn down refuses to nest, because a
    task's finalizer (its ``close()``) may run inside either, on the same thread, when the
    garbage collector does."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._busy = False
        self._saved = -1
        self._file: IO[bytes] | None = None

    def enter(self) -> bool:
        """Start (or join) the capture; False when stderr cannot be captured (fd 2 closed,
        no temporary directory): the caller runs without."""
        with self._lock:
            if self._busy:
                return False
            if self._depth == 0:
                self._busy = True
                try:
                    self._start()
                except Exception:
                    return False
                finally:
                    self._busy = False
            self._depth += 1
            return True

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth:
                return
            self._busy = True
            try:
                data = self._stop()
            finally:
                self._busy = False
            try:
                _route(data)  # under the lock: no capture starts until stderr has it back
            except OSError:  # stderr itself is gone (closed, a broken pipe): nowhere to write
                pass

    def _start(self) -> None:
        if sys.stderr is not None:
            sys.stderr.flush()  # what Python wrote before goes out before the capture
        saved = os.dup(2)
        try:
            file = tempfile.TemporaryFile()
            try:
                os.dup2(file.fileno(), 2)
            except BaseException:
                file.close()
                raise
        except BaseException:
            os.close(saved)
            raise
        self._saved, self._file = saved, file

    def _stop(self) -> bytes:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved, file = self._saved, self._file
        self._saved, self._file = -1, None
        try:
            os.dup2(saved, 2)
        finally:
            os.close(saved)
        assert file is not None
        with file:
            file.seek(0)
            return file.read()


_CAPTURE = _StderrCapture()


@contextmanager
def _native_logs(mode: str) -> Iterator[None]:
    """With ``mode`` ``"route"``, route what MediaPipe's native code writes to stderr
    inside the block; with ``"keep"``, leave stderr alone (``Settings.native_logs``)."""
    entered = mode == "route" and _CAPTURE.enter()
    try:
        yield
    finally:
        if entered:
            _CAPTURE.exit()


_ROUTED: dict[type, type] = {}
_ROUTED_LOCK = threading.Lock()


def _routed_class(cls: type) -> type:
    """``cls`` (a MediaPipe task class) with a ``close()`` whose native log lines are routed
    like those of the task's creation: same name, same module, a subclass of ``cls``."""
    if getattr(cls, "_dp_models_routed", False):
        return cls

    def close(self: Any) -> None:
        _OPEN.discard(self)
        with _native_logs(getattr(self, "_dp_models_native_logs", "route")):
            cls.close(self)  # type: ignore[attr-defined]

    with _ROUTED_LOCK:
        routed = _ROUTED.get(cls)
        if routed is None:
            namespace = {
                "close": close,
                "_dp_models_routed": True,
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            }
            routed = _ROUTED[cls] = type(cls.__name__, (cls,), namespace)
        return routed


# -- tasks -----------------------------------------------------------------------------------

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


#: The tasks made here and not closed yet: closed at exit (:func:`_close_open_tasks`).
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()


def _close_open_tasks() -> None:
    """Close every task still open when the interpreter exits (a task the manager caches,
    a stream nobody closed), while the modules its close needs are still there: left to
    its ``__del__`` at teardown, MediaPipe's close finds its C bindings gone and prints
    "Exception ignored in ...__del__ ... 'NoneType' object is not callable"."""
    for task in list(_OPEN):
        try:
            task.close()
        except Exception:  # already closed, or its runtime gone: nothing more to do
            _OPEN.discard(task)


atexit.register(_close_open_tasks)


def _adopt(task: Any, native_logs: str) -> Any:
    """A task just created: its close routed like its creation (:func:`_routed_class`),
    its dispatcher held, and closed at exit if nobody has closed it."""
    try:
        task.__class__ = _routed_class(type(task))
        task._dp_models_native_logs = native_logs
    except (TypeError, AttributeError):  # another layout (slots): its close is not routed
        pass
    else:
        _OPEN.add(task)
    return _keep_dispatcher(task)


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


class _TaskFactory:
    """Fresh tasks of one spec, from the verified artifact's bytes: what
    :meth:`MediaPipeLoader.stream_factory` returns. ``factory()`` is a new task (a
    :class:`LiveStreamTask` in ``LIVE_STREAM`` mode), ``factory(result_callback=fn)`` in
    ``LIVE_STREAM`` mode the bare MediaPipe task calling ``fn(result, image, timestamp_ms)``.
    Safe to call from several threads at once: each call builds its own options."""

    def __init__(self, ctx: LoadContext, args: MediaPipeArgs, loader: str) -> None:
        name = ctx.spec.name
        self._spec = name
        self._loader = loader
        self._args = args
        self._task = task = TASKS[args.task]
        self._source = ctx.source(*task.formats)  # for messages only
        vision = _vision(name)
        self._tasks = require("mediapipe.tasks.python", extra="mediapipe", spec=name)
        self._cls = getattr(vision, task.cls)
        self._options_cls = getattr(vision, f"{task.cls}Options")
        _check_options(ctx, self._options_cls, args.options)
        self._mode = getattr(vision.RunningMode, args.running_mode)
        if ctx.native_logs not in NATIVE_LOG_MODES:
            raise ConfigurationError(
                f"spec {name!r}: native_logs must be one of {', '.join(NATIVE_LOG_MODES)}; "
                f"got {ctx.native_logs!r}"
            )
        self._native_logs = ctx.native_logs
        self._data = ctx.read_bytes(*task.formats)  # the verified bytes, read once

    def __repr__(self) -> str:
        return f"<mediapipe task factory {self._spec} {self._task.cls} {self._args.running_mode}>"

    def __call__(self, **given: Any) -> Any:
        result_callback = given.pop("result_callback", None)
        live = self._args.running_mode == "LIVE_STREAM"
        if given:
            raise LoaderArgsError(
                f"spec {self._spec!r}: open() takes no option {', '.join(sorted(given))}; "
                "the only one is result_callback (LIVE_STREAM mode). The task's options are "
                "the spec's loader_args.options, recorded in models_used.",
                spec=self._spec,
                loader=self._loader,
            )
        if result_callback is not None and not (live and callable(result_callback)):
            raise LoaderArgsError(
                f"spec {self._spec!r}: result_callback must be a callable, for running_mode "
                f"LIVE_STREAM; this spec's {self._task.cls} runs in "
                f"{self._args.running_mode} mode"
                + ("" if live else ", whose results each call returns"),
                spec=self._spec,
                loader=self._loader,
            )
        base = self._tasks.BaseOptions(
            model_asset_buffer=self._data, delegate=self._tasks.BaseOptions.Delegate.CPU
        )
        options = self._options_cls(
            base_options=base, running_mode=self._mode, **self._args.options
        )
        create = self._cls.create_from_options
        try:
            with _native_logs(self._native_logs):
                if live and result_callback is None:
                    stream = LiveStreamTask(create, options)
                    _adopt(stream.task, self._native_logs)
                    return stream
                if result_callback is not None:
                    options.result_callback = result_callback
                return _adopt(create(options), self._native_logs)
        except DPModelsError:
            raise
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            kind = "a .task bundle" if "task" in self._task.formats else "a .tflite model"
            raise LoaderError(
                f"spec {self._spec!r}: MediaPipe could not build a {self._task.cls} from "
                f"{self._source} ({type(exc).__name__}: {message}). The file passed its digest "
                f"check, so the pinned artifact is not {kind} for task {self._args.task!r} "
                "that this MediaPipe can run: check loader_args.task and the provisioned file.",
                spec=self._spec,
                loader=self._loader,
            ) from exc


class MediaPipeLoader(Loader[MediaPipeArgs]):
    """``loader: mediapipe``."""

    name = "mediapipe"
    framework = "mediapipe"
    extra = "mediapipe"
    args_model = MediaPipeArgs
    precisions = ("fp32",)
    stateful = True

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
        """One task (what ``ModelManager.load`` caches: one stream per process)."""
        return self.stream_factory(ctx)()

    def stream_factory(self, ctx: LoadContext) -> Callable[..., Any]:
        """A factory of fresh tasks from the verified artifact's bytes (read here, once):
        ``ModelHandle.open()`` calls it for each stream."""
        args = self.args(ctx)
        name = ctx.spec.name
        if ctx.device != "cpu":
            raise DeviceUnavailableError(
                f"spec {name!r}: MediaPipe runs on the CPU only (device {ctx.device!r} asked "
                "for): it has no CUDA delegate, and dp_models does not use its OpenGL ES GPU "
                "delegate. Ask for device cpu.",
                spec=name,
                requested=ctx.device,
            )
        return _TaskFactory(ctx, args, self.name)
