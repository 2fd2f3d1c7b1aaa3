"""dp_models: every model of the video-analysis pipeline, from a verified catalog.

``import dp_models`` is cheap: it imports no framework and not even pydantic. Each public
name is loaded from its module on first use.

>>> from dp_models import Catalog
>>> Catalog.load()["clip_vit_b32"].runtime
'inprocess'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .catalog import Catalog, Pin
    from .digest import DigestCache, Hasher, directory_digest, sha256_file
    from .errors import (
        ArtifactChangedError,
        ArtifactError,
        ArtifactMissingError,
        ArtifactUnreadableError,
        CatalogError,
        CatalogProblem,
        ConfigurationError,
        DigestMismatchError,
        DPModelsError,
        LockError,
        ModelsRootError,
        SizeMismatchError,
        SpecNotFoundError,
        UnpinnedArtifactError,
        UnsafePathError,
    )
    from .lock import Lock, LockEntry
    from .settings import resolve_models_root
    from .spec import Artifact, Spec, TritonSection, TritonTensor
    from .verify import ArtifactReport, Verifier

__all__ = [
    "Artifact",
    "ArtifactChangedError",
    "ArtifactError",
    "ArtifactMissingError",
    "ArtifactReport",
    "ArtifactUnreadableError",
    "Catalog",
    "CatalogError",
    "CatalogProblem",
    "ConfigurationError",
    "DPModelsError",
    "DigestCache",
    "DigestMismatchError",
    "Hasher",
    "Lock",
    "LockEntry",
    "LockError",
    "ModelsRootError",
    "Pin",
    "SizeMismatchError",
    "Spec",
    "SpecNotFoundError",
    "TritonSection",
    "TritonTensor",
    "UnpinnedArtifactError",
    "UnsafePathError",
    "Verifier",
    "__version__",
    "directory_digest",
    "resolve_models_root",
    "sha256_file",
]

_WHERE = {
    "Catalog": "catalog",
    "Pin": "catalog",
    "DigestCache": "digest",
    "Hasher": "digest",
    "directory_digest": "digest",
    "sha256_file": "digest",
    "Lock": "lock",
    "LockEntry": "lock",
    "resolve_models_root": "settings",
    "Artifact": "spec",
    "Spec": "spec",
    "TritonSection": "spec",
    "TritonTensor": "spec",
    "ArtifactReport": "verify",
    "Verifier": "verify",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None and name in __all__:
        module = "errors"
    if module is None:
        raise AttributeError(f"module 'dp_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
