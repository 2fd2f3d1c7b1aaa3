"""In-process loaders: a plain registry keyed by a spec's ``loader``.

Built-in loaders live one framework per module under ``dp_models.loaders`` and import
their framework only when they load. Third-party packages add loaders through the
``dp_models.loaders`` entry-point group::

    [project.entry-points."dp_models.loaders"]
    my_loader = "my_package.loaders:MyLoader"

The object the entry point names is a :class:`Loader` instance or a class to instantiate.
:func:`register_loader` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

import importlib
import threading
from importlib import metadata

from ..errors import LoaderNotFoundError
from .base import LoadContext, Loader, require

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadContext",
    "Loader",
    "get_loader",
    "loader_names",
    "register_loader",
    "require",
]

ENTRY_POINT_GROUP = "dp_models.loaders"

#: Built-in loaders: name -> "module:attribute", imported on first use.
_BUILTIN = {
    "torch_state_dict": "dp_models.loaders.torch:TorchStateDictLoader",
    "torchscript": "dp_models.loaders.torch:TorchScriptLoader",
    "onnxruntime": "dp_models.loaders.onnx:OnnxRuntimeLoader",
    "open_clip": "dp_models.loaders.open_clip:OpenClipLoader",
    "torchvision": "dp_models.loaders.torchvision:TorchvisionLoader",
    "slowfast": "dp_models.loaders.slowfast:SlowFastLoader",
    "ultralytics": "dp_models.loaders.ultralytics:UltralyticsLoader",
    "ultralytics_tracker": "dp_models.loaders.ultralytics:TrackerConfigLoader",
    "mediapipe": "dp_models.loaders.mediapipe:MediaPipeLoader",
    "sentence_transformers": "dp_models.loaders.sentence_transformers:SentenceTransformersLoader",
    "laion_clap": "dp_models.loaders.laion_clap:LaionClapLoader",
    "spacy": "dp_models.loaders.spacy:SpacyLoader",
    "tokenizer": "dp_models.loaders.tokenizers:TokenizerLoader",
}

_registry: dict[str, Loader] = {}
_lock = threading.Lock()


def _instantiate(obj: object) -> Loader:
    loader = obj() if isinstance(obj, type) else obj
    if not isinstance(loader, Loader):
        raise TypeError(f"{obj!r} is not a dp_models Loader (needs name, framework, load())")
    return loader


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def loader_names() -> list[str]:
    """Every loader name available: built in, registered, and from entry points."""
    with _lock:
        names = set(_BUILTIN) | set(_registry)
    return sorted(names | set(_entry_points()))


def register_loader(name: str, loader: Loader | type, *, replace: bool = False) -> None:
    """Register ``loader`` under ``name``; refuses to shadow one unless ``replace``."""
    instance = _instantiate(loader)
    with _lock:
        if not replace and (name in _registry or name in _BUILTIN):
            raise ValueError(f"a loader named {name!r} is already registered")
        _registry[name] = instance


def get_loader(name: str, *, spec: str | None = None) -> Loader:
    """The loader registered under ``name``. Raises :class:`LoaderNotFoundError`."""
    with _lock:
        found = _registry.get(name)
    if found is not None:
        return found
    target = _BUILTIN.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        instance = _instantiate(getattr(importlib.import_module(module), attr))
    else:
        ep = _entry_points().get(name)
        if ep is None:
            raise LoaderNotFoundError(name, loader_names(), spec=spec)
        instance = _instantiate(ep.load())
    with _lock:
        return _registry.setdefault(name, instance)
