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
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ._errors import ConfigurationError
from ._settings import ENV_HF_CACHE, Settings

__all__ = ["LEGACY_CACHE_VARS", "OFFLINE_FLAGS", "cache_dirs", "enforce_offline"]

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
    """
    if settings is None:
        settings = Settings.resolve(models_root=models_root)
    elif models_root is not None:
        raise ConfigurationError(
            "enforce_offline takes models_root or settings, not both: the root is the "
            "settings' (pass Settings.resolve(models_root=...))"
        )
    root = settings.require_root()
    wanted = {**OFFLINE_FLAGS, **cache_dirs(root)}
    if settings.hf_cache is not None and not os.environ.get(ENV_HF_CACHE, "").strip():
        # HF_HUB_CACHE is pointed into the root below: remember where the hub cache that
        # ``huggingface`` snapshots are read from was, for the settings resolved after this
        wanted[ENV_HF_CACHE] = str(settings.hf_cache)
    for name, value in wanted.items():
        old = os.environ.get(name)
        if old is not None and old != value:
            log.info("%s=%r replaced by %r (offline, caches in MODELS_ROOT)", name, old, value)
        os.environ[name] = value
    for name in LEGACY_CACHE_VARS:
        if os.environ.pop(name, None) is not None:
            log.info("%s removed (caches live in MODELS_ROOT: HF_HUB_CACHE)", name)
    _patch_imported(root)
    return wanted


def _patch_imported(root: Path) -> None:
    """Frameworks that copied their flags into module globals at import time."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        hub.HF_HUB_DISABLE_TELEMETRY = True  # type: ignore[attr-defined]
        hub.HF_HUB_DISABLE_IMPLICIT_TOKEN = True  # type: ignore[attr-defined]
        for name in ("HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE"):
            if hasattr(hub, name):
                setattr(hub, name, os.environ[name])
    tf_hub = sys.modules.get("transformers.utils.hub")
    if tf_hub is not None and hasattr(tf_hub, "_is_offline_mode"):
        tf_hub._is_offline_mode = True  # type: ignore[attr-defined]
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and hasattr(datasets_config, "HF_DATASETS_OFFLINE"):
        datasets_config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]
    torch_hub = sys.modules.get("torch.hub")
    if torch_hub is not None and hasattr(torch_hub, "set_dir"):
        torch_hub.set_dir(str(root / "torch" / "hub"))
    ul_utils = sys.modules.get("ultralytics.utils")
    if ul_utils is not None and hasattr(ul_utils, "ONLINE"):
        ul_utils.ONLINE = False  # type: ignore[attr-defined]
