"""Ultralytics loaders: ``ultralytics`` (a YOLO model from its local ``.pt``) and
``ultralytics_tracker`` (a ByteTrack configuration for ``YOLO.track``).

``ultralytics`` calls ``YOLO(<absolute path of the verified artifact>)``: never a bare
model name (Ultralytics would download one) and never a URL. An Ultralytics ``.pt`` is a
pickle of model objects; it is read with ``torch.load(weights_only=True)`` through
Ultralytics' own restricted loader, which rebuilds only known Ultralytics and torch layer
classes (``ULTRALYTICS_SAFE_LOAD``, Ultralytics 8.4). A checkpoint that needs anything else
is an :class:`~dp_models._errors.UnsafeCheckpointError` before any of it runs, unless the
spec opts out with ``weights_only: false`` (trusted files only, e.g. a model with custom
layers). The loaded ``YOLO`` predicts and tracks on the spec's device and precision by
default (its ``overrides``).

Ultralytics reaches for the network on its own in a few places; while loading, these are
switched off in the imported modules: the online check run at import (``YOLO_OFFLINE`` is
set first), the usage analytics (``events``), and the font download behind
``Results.plot(pil=True)`` (fonts are looked up locally only; PIL's default font is used
when none is found).

loader_args (``ultralytics``): :class:`UltralyticsArgs`.

``ultralytics_tracker`` returns a :class:`TrackerConfig`: the verified YAML's path and its
validated content (ByteTrack only; every key checked). Pass it as ``tracker=`` to
``YOLO.track``. No loader_args.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pickle
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import Field

from .._errors import DPModelsError, LoaderError, MissingExtraError, UnsafeCheckpointError
from .._offline import OFFLINE_FLAGS
from .._spec import Spec
from .base import LoadContext, Loader, LoaderArgs, NoArgs, require
from .torch import _ANSI, _unpickler_detail, refused_global

__all__ = [
    "BYTETRACK_DEFAULTS",
    "TrackerConfig",
    "TrackerConfigLoader",
    "UltralyticsArgs",
    "UltralyticsLoader",
]

#: Ultralytics' restricted loader reads a module global; loads that set it are serialised.
_SAFE_LOAD_LOCK = threading.Lock()

#: ByteTrack's keys and types, and the values of Ultralytics' ``cfg/trackers/bytetrack.yaml``.
BYTETRACK_DEFAULTS: Mapping[str, Any] = {
    "tracker_type": "bytetrack",
    "track_high_thresh": 0.25,
    "track_low_thresh": 0.1,
    "new_track_thresh": 0.25,
    "track_buffer": 30,
    "match_thresh": 0.8,
    "fuse_score": True,
}


class UltralyticsArgs(LoaderArgs):
    """``loader_args`` of ``ultralytics``."""

    task: Literal["detect", "segment", "classify", "pose", "obb"] | None = Field(
        default=None, description="the task the checkpoint must hold; null: any"
    )
    weights_only: bool = Field(
        default=True, description="false: unrestricted unpickling, for trusted files only"
    )


def _ultralytics(spec: str | None = None) -> ModuleType:
    """Import ultralytics offline: ``YOLO_OFFLINE`` before the first import (it resolves
    two host names at import time otherwise), then the module copies of its online flag."""
    if "ultralytics" not in sys.modules:
        os.environ["YOLO_OFFLINE"] = OFFLINE_FLAGS["YOLO_OFFLINE"]
    ul = require("ultralytics", extra="yolo", spec=spec)
    _keep_offline()
    return ul


def _keep_offline() -> None:
    utils = importlib.import_module("ultralytics.utils")
    checks = importlib.import_module("ultralytics.utils.checks")
    events = importlib.import_module("ultralytics.utils.events")
    plotting = importlib.import_module("ultralytics.utils.plotting")
    utils.ONLINE = False  # type: ignore[attr-defined]
    checks.ONLINE = False  # type: ignore[attr-defined]  # pip AutoUpdate, PyPI version check
    events.ONLINE = False  # type: ignore[attr-defined]
    events.events.enabled = False  # usage analytics
    plotting.check_font = _local_font  # type: ignore[attr-defined]


def _local_font(font: str = "Arial.ttf") -> Path | str | None:
    """Ultralytics' ``check_font`` without its download: the font from Ultralytics' config
    directory or matplotlib's font list, else None (the annotator then uses PIL's default)."""
    utils = importlib.import_module("ultralytics.utils")
    local = Path(utils.USER_CONFIG_DIR) / Path(font).name
    if local.exists():
        return local
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if font in entry.fname and os.path.exists(entry.fname):
            return str(entry.fname)
    return None


@contextlib.contextmanager
def _restricted(tasks: Any, on: bool) -> Iterator[None]:
    """Ultralytics' restricted (``weights_only=True``) checkpoint loading on or off for one
    load; it reads the module global ``SAFE_LOAD``."""
    with _SAFE_LOAD_LOCK:
        previous = tasks.SAFE_LOAD
        tasks.SAFE_LOAD = on
        try:
            yield
        finally:
            tasks.SAFE_LOAD = previous


def _clean(text: str) -> str:
    """An Ultralytics message without colours, emoji and its advice to download a model."""
    text = _ANSI.sub("", text).replace("ERROR ❌️ ", "").strip()
    return text.split("\n")[0].split(", i.e. 'yolo")[0].rstrip(". ")


def _checkpoint_error(
    ctx: LoadContext, path: Path, exc: Exception, weights_only: bool
) -> Exception:
    name = ctx.spec.name
    cause = exc.__cause__
    if weights_only and isinstance(cause, pickle.UnpicklingError):
        if refused_global(cause):
            return UnsafeCheckpointError(
                f"spec {name!r}: {path} needs more than Ultralytics and torch layer classes to "
                "unpickle, so loading it could run code; it was refused and nothing in it ran. "
                "Use an Ultralytics checkpoint, or, if you trust the file, set loader_args "
                f"weights_only: false in the spec. (torch: {_unpickler_detail(cause)})",
                spec=name,
                loader="ultralytics",
            )
        detail = _unpickler_detail(cause)
    elif isinstance(exc, ModuleNotFoundError):
        detail = f"it needs module {exc.name!r}, which this ultralytics does not have"
    else:
        detail = _clean(str(exc)) or type(exc).__name__
    return LoaderError(
        f"spec {name!r}: Ultralytics cannot load {path} as a YOLO checkpoint ({detail}). The "
        "file passed its digest check, so the pinned artifact itself is not an Ultralytics "
        ".pt this ultralytics can read: check the provisioned file and the spec's format.",
        spec=name,
        loader="ultralytics",
    )


class UltralyticsLoader(Loader[UltralyticsArgs]):
    """``loader: ultralytics``: an ``ultralytics.YOLO`` from the spec's local ``pt``."""

    name = "ultralytics"
    framework = "ultralytics"
    extra = "yolo"
    args_model = UltralyticsArgs
    precisions = ("fp32", "fp16")

    def cuda_available(self) -> bool:
        _ultralytics()  # a missing ultralytics is a MissingExtraError
        return bool(require("torch", extra=self.extra).cuda.is_available())

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        weights_only, task = args.weights_only, args.task
        path = ctx.artifact("pt")
        ul = _ultralytics(name)
        tasks = importlib.import_module("ultralytics.nn.tasks")
        safe = getattr(tasks, "_SafeLoad", None)
        if weights_only and (safe is None or not getattr(safe, "SUPPORTED", False)):
            raise UnsafeCheckpointError(
                f"spec {name!r}: this ultralytics ({ul.__version__}) or torch cannot read "
                "checkpoints with weights_only=True (Ultralytics' restricted loader needs "
                "ultralytics>=8.4 and torch>=2.6); nothing was loaded. Upgrade them, or, if "
                "you trust the file, set loader_args weights_only: false in the spec.",
                spec=name,
                loader=self.name,
            )
        try:
            with _restricted(tasks, weights_only):
                # an absolute path, never a model name; not resolved: it leads to the
                # verified, open file (LoadContext.artifact), its target does not
                model = ul.YOLO(str(path), task=task)
        except DPModelsError:
            raise
        except Exception as exc:
            raise _checkpoint_error(ctx, path, exc, weights_only) from exc
        if task is not None and model.task != task:
            raise LoaderError(
                f"spec {name!r}: {path} holds a {model.task!r} model, but the spec's "
                f"loader_args.task is {task!r}",
                spec=name,
                loader=self.name,
            )
        model.to(ctx.device)
        # the weights were read from the verified file; record the artifact, not the link
        # to it that is gone after the load
        model.overrides["model"] = model.ckpt_path = str(ctx.source("pt"))
        # predict() and track() run where and how the spec says unless a call overrides it
        model.overrides["device"] = ctx.device
        model.overrides["half"] = ctx.precision == "fp16"
        return model


@dataclass(frozen=True)
class TrackerConfig:
    """A verified tracker configuration: pass it (or its ``path``) as ``YOLO.track(...,
    tracker=...)``; Ultralytics reads the file at ``path``."""

    path: Path
    config: Mapping[str, Any]

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:  # Ultralytics calls str() on the tracker argument
        return str(self.path)


def _tracker_problems(cfg: Any) -> list[str]:
    if not isinstance(cfg, Mapping):
        return [f"it holds a {type(cfg).__name__}, not a mapping of tracker settings"]
    problems = []
    if cfg.get("tracker_type") != "bytetrack":
        problems.append(
            f"tracker_type is {cfg.get('tracker_type')!r}; only 'bytetrack' is supported (the "
            "others can fetch re-identification weights)"
        )
    missing = [k for k in BYTETRACK_DEFAULTS if k not in cfg]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    unknown = sorted(str(k) for k in cfg if k not in BYTETRACK_DEFAULTS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    for key, default in BYTETRACK_DEFAULTS.items():
        if key == "tracker_type" or key not in cfg:
            continue
        value = cfg[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and 0.0 <= value <= 1.0
        if not ok:
            want = type(default).__name__ + (" in [0, 1]" if isinstance(default, float) else "")
            problems.append(f"{key} must be a {want}, got {value!r}")
    return problems


def _tracker_config(name: str, data: bytes, cfg: dict[str, Any]) -> TrackerConfig:
    """A :class:`TrackerConfig` whose file is a private copy of the verified bytes:
    Ultralytics reads the tracker file when tracking starts, long after the load, and must
    read what was verified, not whatever is at the artifact's path by then. The copy is
    removed when the config is garbage-collected (or at exit)."""
    directory = tempfile.mkdtemp(prefix="dp_models-tracker-")
    copy = Path(directory) / name
    copy.write_bytes(data)
    config = TrackerConfig(copy, cfg)
    weakref.finalize(config, shutil.rmtree, directory, True)
    return config


class TrackerConfigLoader(Loader[NoArgs]):
    """``loader: ultralytics_tracker``: a validated ByteTrack YAML as a :class:`TrackerConfig`.
    A configuration has no weights: its one precision is ``fp32``, the spec's default."""

    name = "ultralytics_tracker"
    framework = "ultralytics"
    extra = "yolo"
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        if importlib.util.find_spec("ultralytics") is None:  # no import at get()
            raise MissingExtraError("ultralytics", extra=self.extra)
        return False  # association is numpy on the CPU

    def describe(self, spec: Spec, paths: Mapping[str, Path]) -> Mapping[str, Any] | None:
        """The tracker settings (they decide the track ids), recorded as ``model_info``."""
        from .._yaml import load_spec_yaml

        try:
            path = next(paths[a.path] for a in spec.artifacts if a.format in ("yaml", "yml"))
            cfg = load_spec_yaml(path.read_bytes())
        except Exception:  # unreadable here: load() reports it with a typed error
            return None
        return dict(cfg) if not _tracker_problems(cfg) else None

    def load(self, ctx: LoadContext) -> TrackerConfig:
        from .._yaml import load_spec_yaml

        name = ctx.spec.name
        _ultralytics(name)
        require("lap", extra=self.extra, spec=name)  # ByteTrack's matcher; else a pip attempt
        path = Path(next(a.path for a in ctx.spec.artifacts if a.format in ("yaml", "yml")))
        data = ctx.read_bytes("yaml", "yml")
        try:
            cfg = load_spec_yaml(data)
        except Exception as exc:
            raise LoaderError(
                f"spec {name!r}: {path} is not a readable tracker YAML ({exc})",
                spec=name,
                loader=self.name,
            ) from exc
        problems = _tracker_problems(cfg)
        if problems:
            raise LoaderError(
                f"spec {name!r}: {path} is not a valid ByteTrack configuration: "
                + "; ".join(problems),
                spec=name,
                loader=self.name,
            )
        return _tracker_config(path.name, data, dict(cfg))
