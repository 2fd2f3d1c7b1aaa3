"""dp_models: every model of the video-analysis pipeline, from a verified catalog.

``import dp_models`` is cheap: it imports no framework and not even pydantic. Each public
name is loaded from its module on first use.

>>> from dp_models import Catalog
>>> Catalog.load()["clip_vit_b32"].runtime
'inprocess'
"""

from __future__ import annotations

import importlib

from ._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (import time)

if TYPE_CHECKING:
    from .catalog import (
        Catalog,
        Pin,
    )
    from .digest import (
        DigestCache,
        Hasher,
        directory_digest,
        sha256_file,
    )
    from .errors import (
        ArtifactChangedError,
        ArtifactError,
        ArtifactMissingError,
        ArtifactUnreadableError,
        CatalogError,
        CatalogProblem,
        ConfigurationError,
        DeviceUnavailableError,
        DigestMismatchError,
        DirectoryTooLargeError,
        DPModelsError,
        FakeWeightsError,
        FaultProxyError,
        FileChangedError,
        FileTooLargeError,
        LoaderArgsError,
        LoaderError,
        LoaderNotFoundError,
        LockError,
        LockSignatureError,
        MissingExtraError,
        ModelsRootError,
        NetworkBlockedError,
        NotRegularFileError,
        OutsideRootError,
        PrecisionError,
        ProvenanceError,
        SizeMismatchError,
        SpecNotFoundError,
        StateDictMismatchError,
        TritonDigestMismatchError,
        TritonError,
        TritonExportError,
        TritonInferenceError,
        TritonInputError,
        TritonMetadataMismatchError,
        TritonServerError,
        TritonServerNotFoundError,
        TritonTimeoutError,
        TritonUnavailableError,
        UnpinnedArtifactError,
        UnprovisionedTokenizerError,
        UnsafeCheckpointError,
        UnsafePathError,
    )
    from .guard import (
        network_guard,
    )
    from .loaders import (
        LoadContext,
        Loader,
        register_loader,
    )
    from .lock import (
        Lock,
        LockEntry,
    )
    from .manager import (
        ModelHandle,
        ModelManager,
    )
    from .offline import (
        enforce_offline,
    )
    from .provenance import (
        check_stamps,
        load_npz,
        read_stamps,
        save_npz,
        write_json,
    )
    from .settings import (
        resolve_models_root,
    )
    from .spec import (
        Artifact,
        Spec,
        TritonSection,
        TritonTensor,
    )
    from .triton.client import (
        TritonClient,
    )
    from .verify import (
        ArtifactReport,
        Verifier,
    )

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
    "DeviceUnavailableError",
    "DigestCache",
    "DigestMismatchError",
    "DirectoryTooLargeError",
    "FakeWeightsError",
    "FaultProxyError",
    "FileChangedError",
    "FileTooLargeError",
    "Hasher",
    "LoadContext",
    "Loader",
    "LoaderArgsError",
    "LoaderError",
    "LoaderNotFoundError",
    "Lock",
    "LockEntry",
    "LockError",
    "LockSignatureError",
    "MissingExtraError",
    "ModelHandle",
    "ModelManager",
    "ModelsRootError",
    "NetworkBlockedError",
    "NotRegularFileError",
    "OutsideRootError",
    "Pin",
    "PrecisionError",
    "ProvenanceError",
    "SizeMismatchError",
    "Spec",
    "SpecNotFoundError",
    "StateDictMismatchError",
    "TritonClient",
    "TritonDigestMismatchError",
    "TritonError",
    "TritonExportError",
    "TritonInferenceError",
    "TritonInputError",
    "TritonMetadataMismatchError",
    "TritonSection",
    "TritonServerError",
    "TritonServerNotFoundError",
    "TritonTensor",
    "TritonTimeoutError",
    "TritonUnavailableError",
    "UnpinnedArtifactError",
    "UnprovisionedTokenizerError",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "Verifier",
    "__version__",
    "check_stamps",
    "directory_digest",
    "enforce_offline",
    "load_npz",
    "network_guard",
    "read_stamps",
    "register_loader",
    "resolve_models_root",
    "save_npz",
    "sha256_file",
    "write_json",
]

_WHERE = {
    "Artifact": "spec",
    "ArtifactReport": "verify",
    "Catalog": "catalog",
    "DigestCache": "digest",
    "Hasher": "digest",
    "LoadContext": "loaders",
    "Loader": "loaders",
    "Lock": "lock",
    "LockEntry": "lock",
    "ModelHandle": "manager",
    "ModelManager": "manager",
    "Pin": "catalog",
    "Spec": "spec",
    "TritonClient": "triton.client",
    "TritonSection": "spec",
    "TritonTensor": "spec",
    "Verifier": "verify",
    "check_stamps": "provenance",
    "directory_digest": "digest",
    "enforce_offline": "offline",
    "load_npz": "provenance",
    "network_guard": "guard",
    "read_stamps": "provenance",
    "register_loader": "loaders",
    "resolve_models_root": "settings",
    "save_npz": "provenance",
    "sha256_file": "digest",
    "write_json": "provenance",
}


def __getattr__(name: str) -> object:
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
