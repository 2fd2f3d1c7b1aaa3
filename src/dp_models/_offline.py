"""Offline enforcement: every framework's offline flags, and its caches inside MODELS_ROOT.

:func:`enforce_offline` sets the environment variables the pipeline's frameworks read
(Hugging Face Hub, transformers, datasets, sentence-transformers, torch.hub, Ultralytics,
...) so that none of them tries the network or reads a cache outside MODELS_ROOT. Some
frameworks read their flags once, at import: when one is already imported, its
module-level copy of the flag is set too, so the order of imports does not matter.

It runs when a :class:`~dp_models._manager.ModelManager` is created; processors can call
it first thing, before importing any framework::

    import dp_models
    dp_models.enforce_offline()          # MODELS_ROOT from $DP_MODELS_ROOT / $MODELS_ROOT

What :func:`enforce_offline` sets stays. A manager's switches can be undone instead
(:func:`switch_offline` records what it changed in an :class:`OfflineSwitch`): leaving
``with ModelManager(...) as mm:`` puts the environment and the frameworks' flags back, so
that a notebook is not left offline for other libraries.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ._errors import ConfigurationError
from ._settings import ENV_HF_CACHE, Settings

__all__ = [
    "LEGACY_CACHE_VARS",
    "OFFLINE_FLAGS",
    "OfflineSwitch",
    "cache_dirs",
    "enforce_offline",
    "switch_offline",
]

log = logging.getLogger("dp_models")

#: Flags that switch a framework to offline operation.
OFFLINE_FLAGS: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (and everything built on it)
    "TRANSFORMERS_OFFLINE": "1",  # transformers
    "HF_DATASETS_OFFLINE": "1",  # datasets
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub usage reports
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",  # never send a stored token anywhere
    "DISABLE_TELEMETRY": "1",  # older transformers / diffusers telemetry switch
    "YOLO_AUTOINSTALL": "False",  # ultralytics: never pip-install a missing package
    "YOLO_OFFLINE": "True",  # ultralytics (compares with "true"): no online checks, no assets
    "DO_NOT_TRACK": "1",  # tools that honour the common opt-out (e.g. gradio, ultralytics)
}


def cache_dirs(root: Path) -> dict[str, str]:
    """Cache variables pointed inside ``root``, so a framework that looks for a cached file
    finds what was provisioned there or nothing, never a copy from elsewhere."""
    return {
        "HF_HOME": str(root / "huggingface"),
        "HF_HUB_CACHE": str(root / "huggingface" / "hub"),
        "HF_ASSETS_CACHE": str(root / "huggingface" / "assets"),
        "HF_DATASETS_CACHE": str(root / "huggingface" / "datasets"),
        "SENTENCE_TRANSFORMERS_HOME": str(root / "sentence_transformers"),
        "TORCH_HOME": str(root / "torch"),
    }


#: Older cache variables that would still send a framework to a cache outside MODELS_ROOT
#: (transformers 4.x reads them, and warns when TRANSFORMERS_CACHE is set): removed.
LEGACY_CACHE_VARS = (
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "PYTORCH_TRANSFORMERS_CACHE",
    "PYTORCH_PRETRAINED_BERT_CACHE",
)


def enforce_offline(
    models_root: str | os.PathLike[str] | None = None, *, settings: Settings | None = None
) -> dict[str, str]:
    """Set every framework's offline flags and point their caches into MODELS_ROOT.

    MODELS_ROOT comes from ``settings`` (what a ModelManager passes: resolved once for
    both), else from ``models_root``, ``$DP_MODELS_ROOT``, ``$MODELS_ROOT``
    (:meth:`Settings.resolve <dp_models._settings.Settings.resolve>`). Returns the
    variables it set. Values the caller had set differently are replaced (logged at
    INFO): a cache outside MODELS_ROOT would hold unverified weights. Frameworks already
    imported are switched to offline mode too.

    What it sets stays for the life of the process; a :class:`ModelManager
    <dp_models._manager.ModelManager>` used in a ``with`` block undoes its own switches
    on exit (:func:`switch_offline`).
    """
    return switch_offline(models_root, settings=settings, undoable=False).values


class _Absent:
    """An unset variable, a missing attribute."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


@dataclass
class _Change:
    """One value a switch set: what was there before it, and what it set."""

    before: Any
    after: Any


#: Attributes of framework modules, as (module, attribute).
_Attr = tuple[str, str]


@dataclass(eq=False)
class OfflineSwitch:
    """The offline switches one :func:`switch_offline` set, and what was there before, so
    that :meth:`restore` can put it back.

    Switches stack, process-wide, in the order they were set. Restoring one puts back
    what it changed, except where a switch set after it and still in effect changed the
    same thing: that one now restores to what was there before both (so two managers may
    end in any order), and nothing changes yet. A value changed since the switch set it
    (by the user, or another library) is left as it is (logged at INFO): it is someone
    else's now."""

    #: The variables it set (what :func:`enforce_offline` returns).
    values: dict[str, str]
    env: dict[str, _Change] = field(default_factory=dict)
    attrs: dict[_Attr, _Change] = field(default_factory=dict)
    #: False for :func:`enforce_offline`'s: never restored (kept for the stacking).
    undoable: bool = True
    active: bool = True

    def restore(self) -> dict[str, str | None]:
        """Undo this switch (once; later calls do nothing). Returns the variables set back,
        with their value now (None: unset). Framework modules imported since the switch
        was set read their flags from the environment at import: those of
        ``huggingface_hub.constants`` are read again from the restored environment."""
        restored: dict[str, str | None] = {}
        with _switches_lock:
            if not self.active:
                return restored
            self.active = False
            index = _switches.index(self)
            later = _switches[index + 1 :]
            del _switches[index]
            for name, change in self.env.items():
                heir = next((s.env[name] for s in later if name in s.env), None)
                if heir is not None:
                    heir.before = change.before  # restored when that one is
                    continue
                now = os.environ.get(name, _ABSENT)
                if now != change.after:
                    log.info("%s left as %r: changed since dp_models set it", name, now)
                    continue
                if change.before is _ABSENT:
                    os.environ.pop(name, None)
                    if change.after is not _ABSENT:
                        restored[name] = None
                elif change.before != change.after:
                    os.environ[name] = change.before
                    restored[name] = change.before
            for attr, change in self.attrs.items():
                heir = next((s.attrs[attr] for s in later if attr in s.attrs), None)
                if heir is not None:
                    heir.before = change.before
                    continue
                module = sys.modules.get(attr[0])
                if module is None:
                    continue  # unloaded since: nothing holds the value any more
                now = getattr(module, attr[1], _ABSENT)
                if now != change.after:
                    log.info("%s.%s left as %r: changed since dp_models set it", *attr, now)
                elif change.before is _ABSENT:
                    delattr(module, attr[1])
                else:
                    setattr(module, attr[1], change.before)
            _reread_imported(self, _switches)
        return restored


_switches: list[OfflineSwitch] = []  # in effect, in the order they were set
_switches_lock = threading.Lock()


def switch_offline(
    models_root: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    undoable: bool = True,
) -> OfflineSwitch:
    """:func:`enforce_offline`, recording what it changed: the returned
    :class:`OfflineSwitch` puts it back (:meth:`OfflineSwitch.restore`). What a
    :class:`ModelManager <dp_models._manager.ModelManager>` calls."""
    if settings is None:
        settings = Settings.resolve(models_root=models_root)
    elif models_root is not None:
        raise ConfigurationError(
            "enforce_offline takes models_root or settings, not both: the root is the "
            "settings' (pass Settings.resolve(models_root=...))"
        )
    root = settings.require_root()
    wanted = {**OFFLINE_FLAGS, **cache_dirs(root)}
    with _switches_lock:
        if settings.hf_cache is not None and not os.environ.get(ENV_HF_CACHE, "").strip():
            # HF_HUB_CACHE is pointed into the root below: remember where the hub cache that
            # ``huggingface`` snapshots are read from was, for the settings resolved after this
            wanted[ENV_HF_CACHE] = str(settings.hf_cache)
        switch = OfflineSwitch(wanted, undoable=undoable)
        for name, value in wanted.items():
            old = os.environ.get(name)
            if old is not None and old != value:
                log.info("%s=%r replaced by %r (offline, caches in MODELS_ROOT)", name, old, value)
            # recorded even when unchanged: another switch ending first must not undo it
            switch.env[name] = _Change(_ABSENT if old is None else old, value)
            os.environ[name] = value
        for name in LEGACY_CACHE_VARS:
            old = os.environ.pop(name, None)
            if old is not None:
                log.info("%s removed (caches live in MODELS_ROOT: HF_HUB_CACHE)", name)
            switch.env[name] = _Change(_ABSENT if old is None else old, _ABSENT)
        if ENV_HF_CACHE not in switch.env:  # set already (by an earlier switch?): keep it so
            kept = os.environ.get(ENV_HF_CACHE, _ABSENT)
            switch.env[ENV_HF_CACHE] = _Change(kept, kept)
        _patch_imported(root, switch)
        top = _switches[-1] if _switches else None
        if not undoable and top is not None and not top.undoable:
            _merge(top, switch)  # two permanent switches in a row act as one
        else:
            _switches.append(switch)
    return switch


def _merge(into: OfflineSwitch, later: OfflineSwitch) -> None:
    into.values = later.values
    for name, change in later.env.items():
        into.env.setdefault(name, change).after = change.after
    for attr, change in later.attrs.items():
        into.attrs.setdefault(attr, change).after = change.after


def _set_attr(switch: OfflineSwitch, module: ModuleType, name: str, value: Any) -> None:
    switch.attrs[(module.__name__, name)] = _Change(getattr(module, name, _ABSENT), value)
    setattr(module, name, value)


def _patch_imported(root: Path, switch: OfflineSwitch) -> None:
    """Frameworks that copied their flags into module globals at import time."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        for name in _HUB_FLAGS:
            _set_attr(switch, hub, name, True)
        for name in _HUB_PATHS:
            if hasattr(hub, name):
                _set_attr(switch, hub, name, os.environ[name])
    tf_hub = sys.modules.get("transformers.utils.hub")
    if tf_hub is not None and hasattr(tf_hub, "_is_offline_mode"):
        _set_attr(switch, tf_hub, "_is_offline_mode", True)
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and hasattr(datasets_config, "HF_DATASETS_OFFLINE"):
        _set_attr(switch, datasets_config, "HF_DATASETS_OFFLINE", True)
    torch_hub = sys.modules.get("torch.hub")
    if torch_hub is not None and hasattr(torch_hub, "set_dir"):
        before = getattr(torch_hub, "_hub_dir", _ABSENT)
        torch_hub.set_dir(str(root / "torch" / "hub"))
        switch.attrs[("torch.hub", "_hub_dir")] = _Change(before, torch_hub._hub_dir)
    ul_utils = sys.modules.get("ultralytics.utils")
    if ul_utils is not None and hasattr(ul_utils, "ONLINE"):
        _set_attr(switch, ul_utils, "ONLINE", False)
    # YOLO_AUTOINSTALL, read at import: ultralytics.utils.checks holds its own copy
    for name in ("ultralytics.utils", "ultralytics.utils.checks"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "AUTOINSTALL"):
            _set_attr(switch, module, "AUTOINSTALL", False)


#: huggingface_hub's flags and cache paths, as ``huggingface_hub.constants`` reads them at
#: import (its boolean parsing: "1", "ON", "YES", "TRUE", any case).
_HUB_FLAGS = ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_IMPLICIT_TOKEN")
_HUB_PATHS = ("HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE")


def _is_true(*names: str) -> bool:
    return any(os.environ.get(n, "").upper() in ("1", "ON", "YES", "TRUE") for n in names)


def _hub_from_environ() -> dict[str, Any]:
    """What ``huggingface_hub.constants`` would read from the environment now."""
    default = os.path.join(os.path.expanduser("~"), ".cache")
    home = os.path.join(os.environ.get("XDG_CACHE_HOME", default), "huggingface")
    home = os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME", home)))
    hub = os.environ.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    assets = os.environ.get("HUGGINGFACE_ASSETS_CACHE", os.path.join(home, "assets"))
    return {
        "HF_HUB_OFFLINE": _is_true("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
        "HF_HUB_DISABLE_TELEMETRY": _is_true(
            "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY", "DO_NOT_TRACK"
        ),
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": _is_true("HF_HUB_DISABLE_IMPLICIT_TOKEN"),
        "HF_HOME": home,
        "HF_HUB_CACHE": os.path.expandvars(os.path.expanduser(os.environ.get("HF_HUB_CACHE", hub))),
        "HF_ASSETS_CACHE": os.path.expandvars(
            os.path.expanduser(os.environ.get("HF_ASSETS_CACHE", assets))
        ),
    }


def _reread_imported(restored: OfflineSwitch, remaining: list[OfflineSwitch]) -> None:
    """``huggingface_hub.constants`` imported while ``restored`` was in effect read its
    offline values from the environment: read them again from the environment as it is
    now. Only values still as the switch left them are touched; ones another switch in
    effect recorded are that one's to restore."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is None:
        return
    fresh = _hub_from_environ()
    forced: dict[str, Any] = {name: True for name in _HUB_FLAGS}
    forced.update({name: restored.values.get(name) for name in _HUB_PATHS})
    for name, value in fresh.items():
        attr = ("huggingface_hub.constants", name)
        if attr in restored.attrs or any(attr in s.attrs for s in remaining):
            continue
        if hasattr(hub, name) and getattr(hub, name) == forced[name]:
            setattr(hub, name, value)
