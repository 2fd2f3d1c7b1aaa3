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
    from ._bundle import (
        BundleReport,
        bundle_create,
        bundle_import,
    )
    from ._catalog import (
        Catalog,
        Pin,
    )
    from ._compare import (
        RuntimeComparison,
        compare_runtimes,
    )
    from ._digest import (
        DigestCache,
        Hasher,
        directory_digest,
        sha256_file,
    )
    from ._doctor import (
        DoctorReport,
        doctor,
    )
    from ._errors import (
        ArtifactChangedError,
        ArtifactError,
        ArtifactMissingError,
        ArtifactUnreadableError,
        BundleError,
        BundleMismatchError,
        BundleTamperedError,
        CatalogError,
        CatalogProblem,
        ConfigurationError,
        DerivedExportError,
        DestinationUnavailableError,
        DeviceUnavailableError,
        DigestMismatchError,
        DirectoryTooLargeError,
        DistributionVersionError,
        DPModelsError,
        FakeWeightsError,
        FaultProxyError,
        FileChangedError,
        FileTooLargeError,
        LabelsError,
        LineageError,
        LineageInputError,
        LoaderArgsError,
        LoaderError,
        LoaderNotFoundError,
        LockError,
        LockSignatureError,
        MissingExtraError,
        ModelsRootError,
        NetworkBlockedError,
        NotPullableError,
        NotPushableError,
        NotRegularFileError,
        OciManifestError,
        OutsideRootError,
        PrecisionError,
        ProvenanceError,
        PulledFileMismatchError,
        PullError,
        PushedFileMismatchError,
        PushError,
        RedirectLoopError,
        RunnerInputError,
        RunnerOutputError,
        S3ServerError,
        SizeMismatchError,
        SourceNotFoundError,
        SourceUnavailableError,
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
        TritonSharedMemoryError,
        TritonTimeoutError,
        TritonUnavailableError,
        UnknownTokenError,
        UnpinnedArtifactError,
        UnprovisionedTokenizerError,
        UnsafeCheckpointError,
        UnsafePathError,
    )
    from ._guard import (
        network_guard,
    )
    from ._health import (
        HealthReport,
        HealthStatus,
        ReplicaHealth,
    )
    from ._lock import (
        Lock,
        LockEntry,
    )
    from ._manager import (
        ModelHandle,
        ModelManager,
    )
    from ._offline import (
        enforce_offline,
    )
    from ._provenance import (
        check_artifact,
        check_stamps,
        load_npz,
        read_stamps,
        save_npz,
        stamp,
        write_json,
    )
    from ._pull import (
        PullReport,
        import_hf_cache,
        pull,
    )
    from ._push import (
        PushReport,
        push,
    )
    from ._runner import (
        Runner,
    )
    from ._settings import (
        Settings,
        resolve_models_root,
    )
    from ._signing import (
        sign_lock,
        verify_lock,
    )
    from ._spec import (
        Artifact,
        Spec,
        TritonSection,
        TritonTensor,
    )
    from ._verify import (
        ArtifactReport,
        Verifier,
    )
    from .loaders import (
        LoadContext,
        Loader,
        register_loader,
    )
    from .triton.client import (
        TritonClient,
    )

__all__ = [
    "Artifact",
    "ArtifactChangedError",
    "ArtifactError",
    "ArtifactMissingError",
    "ArtifactReport",
    "ArtifactUnreadableError",
    "BundleError",
    "BundleMismatchError",
    "BundleReport",
    "BundleTamperedError",
    "Catalog",
    "CatalogError",
    "CatalogProblem",
    "ConfigurationError",
    "DPModelsError",
    "DerivedExportError",
    "DestinationUnavailableError",
    "DeviceUnavailableError",
    "DigestCache",
    "DigestMismatchError",
    "DirectoryTooLargeError",
    "DistributionVersionError",
    "DoctorReport",
    "FakeWeightsError",
    "FaultProxyError",
    "FileChangedError",
    "FileTooLargeError",
    "Hasher",
    "HealthReport",
    "HealthStatus",
    "LabelsError",
    "LineageError",
    "LineageInputError",
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
    "NotPullableError",
    "NotPushableError",
    "NotRegularFileError",
    "OciManifestError",
    "OutsideRootError",
    "Pin",
    "PrecisionError",
    "ProvenanceError",
    "PullError",
    "PullReport",
    "PulledFileMismatchError",
    "PushError",
    "PushReport",
    "PushedFileMismatchError",
    "RedirectLoopError",
    "ReplicaHealth",
    "Runner",
    "RunnerInputError",
    "RunnerOutputError",
    "RuntimeComparison",
    "S3ServerError",
    "Settings",
    "SizeMismatchError",
    "SourceNotFoundError",
    "SourceUnavailableError",
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
    "TritonSharedMemoryError",
    "TritonTensor",
    "TritonTimeoutError",
    "TritonUnavailableError",
    "UnknownTokenError",
    "UnpinnedArtifactError",
    "UnprovisionedTokenizerError",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "Verifier",
    "__version__",
    "bundle_create",
    "bundle_import",
    "check_artifact",
    "check_stamps",
    "compare_runtimes",
    "directory_digest",
    "doctor",
    "enforce_offline",
    "import_hf_cache",
    "load_npz",
    "network_guard",
    "pull",
    "push",
    "read_stamps",
    "register_loader",
    "resolve_models_root",
    "save_npz",
    "sha256_file",
    "sign_lock",
    "stamp",
    "verify_lock",
    "write_json",
]

#: The public API, in one place: these modules' ``__all__`` (and, for the packages, the
#: modules in them). Every other module has a leading underscore in its name and may
#: change without notice. Guarded by tests/test_api.py; listed in docs/architecture.md.
_PUBLIC_MODULES = (
    "dp_models",
    "dp_models.loaders",
    "dp_models.preprocess",
    "dp_models.testing",
    "dp_models.triton",
)

_WHERE = {
    "HealthReport": "_health",
    "HealthStatus": "_health",
    "ReplicaHealth": "_health",
    "Settings": "_settings",
    "sign_lock": "_signing",
    "stamp": "_provenance",
    "verify_lock": "_signing",
    "Artifact": "_spec",
    "ArtifactReport": "_verify",
    "BundleReport": "_bundle",
    "bundle_create": "_bundle",
    "bundle_import": "_bundle",
    "Catalog": "_catalog",
    "DigestCache": "_digest",
    "Hasher": "_digest",
    "LoadContext": "loaders",
    "Loader": "loaders",
    "Lock": "_lock",
    "LockEntry": "_lock",
    "ModelHandle": "_manager",
    "ModelManager": "_manager",
    "Runner": "_runner",
    "Pin": "_catalog",
    "PullReport": "_pull",
    "pull": "_pull",
    "import_hf_cache": "_pull",
    "PushReport": "_push",
    "push": "_push",
    "Spec": "_spec",
    "TritonClient": "triton.client",
    "TritonSection": "_spec",
    "TritonTensor": "_spec",
    "Verifier": "_verify",
    "check_artifact": "_provenance",
    "check_stamps": "_provenance",
    "directory_digest": "_digest",
    "compare_runtimes": "_compare",
    "RuntimeComparison": "_compare",
    "doctor": "_doctor",
    "DoctorReport": "_doctor",
    "enforce_offline": "_offline",
    "load_npz": "_provenance",
    "network_guard": "_guard",
    "read_stamps": "_provenance",
    "register_loader": "loaders",
    "resolve_models_root": "_settings",
    "save_npz": "_provenance",
    "sha256_file": "_digest",
    "write_json": "_provenance",
}


#: The public submodules: ``dp_models.preprocess`` works without importing it first.
SUBMODULES = ("loaders", "preprocess", "testing", "triton")


def __getattr__(name: str) -> object:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # binds itself in globals()
    module = _WHERE.get(name)
    if module is None and name in __all__:
        module = "_errors"
    if module is None:
        raise AttributeError(f"module 'dp_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names and submodules (what tab completion offers), each of which
    resolves."""
    return sorted({*__all__, *SUBMODULES, "SUBMODULES"})
