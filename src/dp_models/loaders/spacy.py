"""spaCy loader: a ``spacy.Language`` from a verified pipeline directory.

``loader: spacy`` calls ``spacy.load(<verified directory>)``: never a package name (that
resolves against whatever is installed, or suggests ``spacy download``) and never a
download. The directory is the pipeline's data directory, the one holding ``meta.json``
and ``config.cfg`` (``en_core_web_sm/en_core_web_sm-3.8.0/`` inside the release wheel),
from either home of a ``spacy_pipeline`` artifact:

- ``installed: en_core_web_sm==3.8.0`` (the packaged specs): the pip-installed package,
  found through ``importlib.metadata``; every file is checked against the wheel's
  ``RECORD`` first (:mod:`dp_models._homes`), and the loader is given the data directory
  inside the installation (``site-packages/en_core_web_sm/en_core_web_sm-3.8.0``).
- ``path: text/spacy/en_core_web_sm-3.8.0``, ``kind: dir``: that data directory copied
  under MODELS_ROOT (``dp-models pull --upstream`` takes it out of the wheel), pinned by
  its directory digest.

Before spaCy is imported, the pipeline's ``meta.json`` is checked against the spec: its
version must be the spec's ``version`` and its name (``<lang>_<name>``) the one
``loader_args.pipeline`` names, and the installed spaCy must satisfy the pipeline's
``spacy_version`` range (spaCy itself only warns, and a pipeline trained for another
spaCy can give other results). ``describe`` records the pipeline's name, version,
language, spaCy range and components as ``model_info`` in ``models_used``.

Device: ``cpu`` only (the small CNN pipelines; spaCy's GPU switch is process-wide), so
``cuda`` is a :class:`~dp_models._errors.DeviceUnavailableError` at ``get`` and ``auto``
resolves to ``cpu``. Precision: ``fp32`` only.

loader_args: :class:`SpacyArgs`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from .._errors import DPModelsError, LoaderError, MissingExtraError
from .._io import open_regular
from .._spec import Spec
from .base import LoadContext, Loader, LoaderArgs, require

__all__ = ["SpacyArgs", "SpacyLoader"]

_NAME = "spacy"
_FORMAT = "spacy_pipeline"
_MAX_META_BYTES = 1024 * 1024


class SpacyArgs(LoaderArgs):
    """``loader_args`` of ``spacy``."""

    pipeline: str | None = Field(
        default=None,
        description="the pipeline's package name, e.g. en_core_web_sm; null: not checked",
    )


class _MetaError(ValueError):
    """meta.json is missing or not a spaCy pipeline's meta."""


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    try:
        with os.fdopen(open_regular(path), "rb") as f:  # a FIFO here would block
            raw = f.read(_MAX_META_BYTES + 1)
    except OSError as exc:
        raise _MetaError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_META_BYTES:
        raise _MetaError(f"{path} is larger than {_MAX_META_BYTES} bytes")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise _MetaError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise _MetaError(f"{path} holds a {type(meta).__name__}, not a mapping")
    bad = [k for k in ("lang", "name", "version") if not isinstance(meta.get(k), str)]
    if bad:
        raise _MetaError(f"{path} has no string {', '.join(bad)}")
    return meta


def _pipeline_name(meta: Mapping[str, Any]) -> str:
    """The package name spaCy gives a pipeline: ``<lang>_<name>``."""
    return f"{meta['lang']}_{meta['name']}"


class SpacyLoader(Loader[SpacyArgs]):
    """``loader: spacy``: a ``spacy.Language`` from the spec's ``spacy_pipeline`` directory."""

    name = _NAME
    framework = "spacy"
    extra = "spacy"
    args_model = SpacyArgs
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        if importlib.util.find_spec("spacy") is None:  # no import at get(): spaCy is slow
            raise MissingExtraError("spacy", extra=self.extra)
        return False  # CPU pipelines only; see the module docstring

    def describe(self, spec: Spec, paths: Mapping[str, Path]) -> Mapping[str, Any] | None:
        """The pipeline's ``meta.json`` facts, recorded as ``model_info``."""
        for art in spec.artifacts:
            if art.format == _FORMAT:
                try:
                    meta = _read_meta(paths[art.path])
                except _MetaError:
                    return None  # load() reports it with a typed error
                components = meta.get("pipeline")
                return {
                    "name": _pipeline_name(meta),
                    "version": meta["version"],
                    "lang": meta["lang"],
                    "spacy_version": meta.get("spacy_version"),
                    "pipeline": list(components) if isinstance(components, list) else None,
                }
        return None

    def load(self, ctx: LoadContext) -> Any:
        name = ctx.spec.name
        want = self.args(ctx).pipeline
        path = ctx.artifact(_FORMAT)
        try:
            meta = _read_meta(path)
        except _MetaError as exc:
            raise LoaderError(
                f"spec {name!r}: {path} is not a spaCy pipeline directory: {exc}. Provision "
                "the pipeline's data directory (the one holding meta.json and config.cfg, "
                "e.g. en_core_web_sm/en_core_web_sm-3.8.0 inside the release wheel).",
                spec=name,
                loader=self.name,
            ) from exc
        found = f"{_pipeline_name(meta)} {meta['version']}"
        expected = f"{want or 'the pipeline'} {ctx.spec.version}"
        if meta["version"] != ctx.spec.version or (want and _pipeline_name(meta) != want):
            raise LoaderError(
                f"spec {name!r} expects {expected}, but {path / 'meta.json'} says {found}. "
                "Provision the pipeline the spec names, or change the spec's version (and "
                "loader_args.pipeline) deliberately.",
                spec=name,
                loader=self.name,
            )
        spacy = require("spacy", extra=self.extra, spec=name)
        installed = spacy.about.__version__
        needed = meta.get("spacy_version")
        if isinstance(needed, str) and spacy.util.is_compatible_version(installed, needed) is False:
            raise LoaderError(
                f"spec {name!r}: pipeline {found} needs spaCy {needed}, but spaCy {installed} "
                "is installed; a pipeline run on another spaCy can give other results. "
                "Install a matching spaCy, or provision the pipeline built for this one.",
                spec=name,
                loader=self.name,
            )
        try:
            return spacy.load(path)
        except DPModelsError:
            raise
        except ImportError as exc:  # a component's dependency, e.g. pymorphy3 for Russian
            raise LoaderError(
                f"spec {name!r}: pipeline {found} needs a package that is not installed: {exc}",
                spec=name,
                loader=self.name,
            ) from exc
        except Exception as exc:
            raise LoaderError(
                f"spec {name!r}: spaCy {installed} cannot load {path} "
                f"({type(exc).__name__}: {exc}). The directory passed its digest check, so "
                "the pinned pipeline itself does not load with this spaCy and its installed "
                "packages: check the provisioned directory.",
                spec=name,
                loader=self.name,
            ) from exc
