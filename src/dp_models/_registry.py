"""Named plugins, found lazily: the loader registry, and the registry type the fake-weight
makers of :mod:`dp_models.testing` reuse.

A :class:`Registry` maps names to objects from three sources, first match wins:

1. objects given to it (the mapping it is built with, or :meth:`Registry.register`);
2. a built-in table of ``"module:attribute"`` targets;
3. an entry-point group of the installed distributions.

Targets and entry points are imported when a name is first asked for, never before: so
``import dp_models`` imports no loader, and :mod:`dp_models._catalog` (a lower layer than
the loaders) finds each loader's ``args_model`` through this module without importing the
loaders package. :func:`default_loaders` is the process-wide loader registry that
:func:`~dp_models.loaders.register_loader` adds to; a
:class:`~dp_models.ModelManager` may be given its own (``loaders=``).

>>> default_loaders().get("onnxruntime").framework
'onnxruntime'
"""

from __future__ import annotations

import copy
import importlib
import threading
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from ._errors import LoaderNotFoundError

if TYPE_CHECKING:
    from .loaders.base import Loader

__all__ = [
    "BUILTIN_LOADERS",
    "LOADERS_GROUP",
    "LOADER_MEMBERS",
    "LoaderRegistry",
    "Registry",
    "default_loaders",
    "loader_set",
]

T = TypeVar("T")
R = TypeVar("R", bound="Registry[Any]")

#: The entry-point group third-party loaders are published in.
LOADERS_GROUP = "dp_models.loaders"

#: Built-in loaders: name -> "module:attribute", imported on first use.
BUILTIN_LOADERS: Mapping[str, str] = {
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
    "labels": "dp_models.loaders.labels:LabelsLoader",
}

#: What every loader has (:class:`dp_models.loaders.Loader` declares each, with defaults
#: for all but name, framework and load): checked when a loader is registered or first used.
LOADER_MEMBERS = (
    "name",
    "framework",
    "extra",
    "args_model",
    "precisions",
    "engines",
    "formats",
    "cuda_available",
    "describe",
    "load",
)


def _import(target: str) -> object:
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> objects, from given objects, a built-in table and an entry-point group,
    each imported once, on first use (see the module doc). ``convert(name, obj)`` turns
    what a source holds into the registry's object (instantiating a class, say) or raises
    ``TypeError``. Thread-safe."""

    def __init__(
        self,
        *,
        kind: str,
        convert: Callable[[str, object], T],
        group: str | None = None,
        builtin: Mapping[str, str] | None = None,
        objects: Mapping[str, object] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._convert = convert
        self._builtin = dict(builtin or {})
        self._objects: dict[str, T] = {}
        self._lock = threading.Lock()
        for name, obj in (objects or {}).items():
            self._objects[name] = convert(name, obj)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.kind}s: {', '.join(self.names())}>"

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self.group is None:
            return {}
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every name this registry can resolve."""
        with self._lock:
            names = set(self._builtin) | set(self._objects)
        return sorted(names | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def find(self, name: str) -> T | None:
        """The object registered under ``name``, imported on first use; None when no source
        has the name. An import that fails raises as it failed."""
        with self._lock:
            found = self._objects.get(name)
        if found is not None:
            return found
        target = self._builtin.get(name)
        if target is not None:
            obj = _import(target)
        else:
            ep = self._entry_points().get(name)
            if ep is None:
                return None
            obj = ep.load()
        converted = self._convert(name, obj)
        with self._lock:
            return self._objects.setdefault(name, converted)

    def register(self, name: str, obj: object, *, replace: bool = False) -> None:
        """Register ``obj`` under ``name``; refuses to shadow a known name unless ``replace``."""
        converted = self._convert(name, obj)
        with self._lock:
            if not replace and (name in self._objects or name in self._builtin):
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._objects[name] = converted

    def extended(self: R, objects: Mapping[str, object]) -> R:
        """A new registry: this one's sources and objects, with ``objects`` added (they win
        over a name this one has). This one is left as it is."""
        added = {n: self._convert(n, o) for n, o in objects.items()}
        new = copy.copy(self)
        with self._lock:
            new._objects = {**self._objects, **added}
        new._lock = threading.Lock()
        return new


def _as_loader(name: str, obj: object) -> Loader[Any]:
    """A loader instance from what a source holds (an instance, or a class to instantiate)."""
    loader = obj() if isinstance(obj, type) else obj
    missing = [m for m in LOADER_MEMBERS if not hasattr(loader, m)]
    args_model = getattr(loader, "args_model", None)
    if missing or not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
        lacks = f" (it lacks {', '.join(missing)})" if missing else " (args_model)"
        raise TypeError(
            f"{obj!r}, registered as loader {name!r}, is not a dp_models Loader{lacks}: "
            "subclass dp_models.loaders.Loader (docs/loaders.md)"
        )
    return loader  # type: ignore[return-value]


class LoaderRegistry(Registry["Loader[Any]"]):
    """The loaders a manager and a catalog use: ``objects`` (name -> loader instance or
    class), the built-in loaders and the ``dp_models.loaders`` entry-point group (each
    source can be left out)."""

    def __init__(
        self,
        objects: Mapping[str, object] | None = None,
        *,
        builtin: bool = True,
        entry_points: bool = True,
    ) -> None:
        super().__init__(
            kind="loader",
            convert=_as_loader,
            group=LOADERS_GROUP if entry_points else None,
            builtin=BUILTIN_LOADERS if builtin else None,
            objects=objects,
        )

    def get(self, name: str, *, spec: str | None = None) -> Loader[Any]:
        """The loader named ``name``. Raises :class:`LoaderNotFoundError` listing the known
        names."""
        loader = self.find(name)
        if loader is None:
            raise LoaderNotFoundError(name, self.names(), spec=spec)
        return loader

    def args_model(self, name: str) -> type[BaseModel] | None:
        """The ``loader_args`` model of loader ``name``; None for a name no source has."""
        loader = self.find(name)
        return None if loader is None else loader.args_model

    def extensions(self, name: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The engines and artifact formats loader ``name`` accepts beyond the built-in
        lists (both empty for an unknown name)."""
        loader = self.find(name) if name is not None else None
        if loader is None:
            return (), ()
        return tuple(loader.engines), tuple(loader.formats)


_default: LoaderRegistry | None = None
_default_lock = threading.Lock()


def default_loaders() -> LoaderRegistry:
    """The process-wide loader registry: built-ins, entry points and whatever
    :func:`~dp_models.loaders.register_loader` added."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LoaderRegistry()
        return _default


def loader_set(loaders: LoaderRegistry | Mapping[str, object] | None) -> LoaderRegistry:
    """The registry ``loaders`` stands for: a registry as it is; a mapping (name -> loader
    instance or class) added to the default registry; None the default registry."""
    if loaders is None:
        return default_loaders()
    if isinstance(loaders, LoaderRegistry):
        return loaders
    return default_loaders().extended(loaders)
