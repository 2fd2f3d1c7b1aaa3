"""Every error dp_models raises, in one rooted tree.

::

    DPModelsError
    ├── ConfigurationError (ValueError)      a setting (argument or variable) with a bad value
    ├── CatalogError (ValueError)            a catalog that does not validate; .problems lists all
    ├── LockError (ValueError)               a lock file that is malformed or disagrees
    │   └── LockSignatureError               a lock not signed by the key it must be; .reason
    ├── SpecNotFoundError (KeyError)         an unknown spec name; .suggestions
    ├── ModelsRootError (FileNotFoundError)  MODELS_ROOT unset, missing or not a directory
    ├── MissingExtraError (ImportError)      a framework not installed; .extra names the fix
    ├── LoaderNotFoundError (LookupError)    a spec's loader is not registered
    ├── DeviceUnavailableError (RuntimeError) CUDA asked for where there is none; .requested
    ├── PrecisionError (ValueError)          a precision the device or spec does not allow
    ├── NetworkBlockedError (RuntimeError)   a connection or DNS lookup during a load
    ├── ProvenanceError (ValueError)         stamps that conflict or cannot be read
    │   └── LineageInputError                an input of a stamp (``inputs=``) whose own
    │                                        stamps fail verification; .path, .index,
    │                                        .differences
    ├── NotRegularFileError (OSError)        a FIFO, device or socket where a file belongs
    ├── FileTooLargeError (OSError)          a small file (spec, lock, entry) over its limit
    ├── FileChangedError (OSError)           a file changed while it was hashed; .path
    ├── DirectoryTooLargeError (OSError)     a directory of more files than a walk lists; .limit
    ├── OutsideRootError (OSError)           a symlinked directory that leads outside; .target
    ├── UnprovisionedTokenizerError (RuntimeError) laion-clap's training tokenizers were used
    ├── LoaderError (RuntimeError)           a loader failed; .spec, .loader
    │   ├── LoaderArgsError (TypeError)      loader_args the loader rejects (bad class path...)
    │   ├── StateDictMismatchError (ValueError) .missing, .unexpected keys
    │   ├── UnsafeCheckpointError (UnpicklingError) a pickle that would run code
    │   └── LabelsError (ValueError)         a label list that is malformed, or whose count
    │                                        its spec or model does not match; .labels,
    │                                        .expected, .actual
    ├── TritonError                          a model served by Triton; .spec, .endpoint
    │   ├── TritonUnavailableError (ConnectionError) server down, or model/version not ready
    │   │   └── TritonTimeoutError (TimeoutError) no answer within the configured timeout
    │   ├── TritonMetadataMismatchError (ValueError) served tensors differ; .differences
    │   ├── TritonDigestMismatchError (ValueError) served weights digest; .expected, .actual
    │   ├── TritonInputError (ValueError)    inputs that do not fit the spec; .problems
    │   ├── TritonInferenceError (RuntimeError) the server refused or failed a request
    │   │   └── UnknownTokenError (LookupError) token ids the tokenizer does not know
    │   │                                    (Whisper timestamps it lacks); .ids,
    │   │                                    .timestamps
    │   └── TritonSharedMemoryError          shared memory required (mode on), but the server
    │                                        or this host refused it; also a
    │                                        ConfigurationError (a setting to change); .reason
    ├── TritonExportError (ValueError)       a model repository that cannot be written; .spec
    ├── DerivedExportError (ValueError)      an export (``dp-models export onnx``) refused
    │                                        before anything is written; .spec, .source,
    │                                        .differences
    ├── RunnerInputError (ValueError)        a batch a runner (``handle.runner()``) refuses
    │                                        before anything runs: names, dtype, channels,
    │                                        shape, batch; .spec, .runtime, .problems
    ├── RunnerOutputError (RuntimeError)     an in-process model's outputs that differ from
    │                                        its spec's interface; .spec, .problems
    ├── ArtifactError                        one artifact of one spec; .spec, .path
    │   ├── ArtifactMissingError (FileNotFoundError)
    │   │   └── DistributionVersionError     an installed distribution at another version;
    │   │                                    .installed, .required
    │   ├── UnsafePathError (PermissionError)    a path that would leave MODELS_ROOT
    │   ├── UnpinnedArtifactError (LookupError)  no digest in the spec or the lock
    │   ├── ArtifactUnreadableError (OSError)    present but cannot be read
    │   ├── ArtifactChangedError (RuntimeError)  changed while it was being verified
    │   ├── LineageError (ValueError)        a derived artifact whose source weights changed
    │   │                                    since its export; .source, .recorded, .current
    │   ├── SizeMismatchError (ValueError)       .expected, .actual (bytes)
    │   └── DigestMismatchError (ValueError)     .expected, .actual (sha256)
    ├── PullError                            provisioning a root (``dp-models pull``); .path
    │   ├── NotPullableError (LookupError)   unpinned artifacts, directories without a manifest
    │   ├── SourceNotFoundError (FileNotFoundError) no mirror has the file; .sources (masked)
    │   ├── SourceUnavailableError (ConnectionError) a mirror that fails (5xx, refused, cut
    │   │   │                                short for good, bytes beyond the answer); .source
    │   │   └── RedirectLoopError            redirects that never end
    │   ├── PulledFileMismatchError (ValueError) fetched bytes that are not the pinned ones;
    │   │                                    .source, .expected, .actual
    │   ├── OciManifestError (ValueError)    a registry's manifest not what its digest says,
    │   │                                    or unsafe (paths that leave the root); .reference
    │   ├── BundleError                      a bundle (``dp-models bundle``) not made or taken in
    │   │   ├── BundleTamperedError (ValueError) unsafe, link/device, duplicate, unlisted,
    │   │   │                                altered or truncated member; .member
    │   │   └── BundleMismatchError (LookupError) made for other pins (or a root that does
    │   │                                    not verify, creating one); .paths
    │   └── PushError                        publishing a root (``dp-models push``); .destination
    │       ├── NotPushableError (LookupError) unpinned artifacts, or a root that does not
    │       │                                hold the pinned bytes; .paths
    │       ├── PushedFileMismatchError (ValueError) a file that changed while it was pushed;
    │       │                                .expected, .actual
    │       └── DestinationUnavailableError (ConnectionError) the store failed or refused
    │
    │   raised by dp_models.testing (test support):
    ├── FakeWeightsError (RuntimeError)      a spec whose artifacts cannot be faked
    ├── FaultProxyError (RuntimeError)       the fault proxy could not start or stop
    ├── TritonServerError (RuntimeError)     the test Triton server could not start
    │   └── TritonServerNotFoundError (FileNotFoundError) no tritonserver binary
    ├── S3ServerError (RuntimeError)         the test S3 server could not start
    │
    │   internal: raised and translated inside dp_models, never reach a caller, not exported:
    ├── YamlRejectedError (ValueError)       spec YAML refused (a CatalogError problem)
    ├── JsonRejectedError (ValueError)       lock or cache JSON refused (LockError, or ignored)
    ├── UnsupportedPickleError (UnpicklingError) a pickle the safe reader cannot translate
    │                                        (a LoaderError)
    │   from a Triton transport to the client (dp_models.triton.transport), a TritonError then:
    ├── DeadlineError (TimeoutError)         no complete answer within the call's timeout
    ├── ServerAnswerError                    the server answered with an error
    ├── NewConnectionError                   the call would use a connection opened since
    └── SharedMemoryRefusedError             no shared memory with the server; .reason

Each leaf also subclasses the builtin a caller would naturally catch, and carries the
facts as attributes so that code and tests never parse messages. Messages are written
for the person on call: what was expected, what was found, and the command that fixes it.

Every error pickles with its type, message and attributes (processors run in process
pools): :meth:`DPModelsError.__reduce__` rebuilds it from them, so a subclass whose
``__init__`` takes keyword-only fields needs nothing of its own.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ArtifactChangedError",
    "ArtifactError",
    "ArtifactMissingError",
    "ArtifactUnreadableError",
    "BundleError",
    "BundleMismatchError",
    "BundleTamperedError",
    "CatalogError",
    "CatalogProblem",
    "ConfigurationError",
    "DPModelsError",
    "DerivedExportError",
    "DestinationUnavailableError",
    "DeviceUnavailableError",
    "DigestMismatchError",
    "DirectoryTooLargeError",
    "DistributionVersionError",
    "FakeWeightsError",
    "FaultProxyError",
    "FileChangedError",
    "FileTooLargeError",
    "LabelsError",
    "LineageError",
    "LineageInputError",
    "LoaderArgsError",
    "LoaderError",
    "LoaderNotFoundError",
    "LockError",
    "LockSignatureError",
    "MissingExtraError",
    "ModelsRootError",
    "NetworkBlockedError",
    "NotPullableError",
    "NotPushableError",
    "NotRegularFileError",
    "OciManifestError",
    "OutsideRootError",
    "PrecisionError",
    "ProvenanceError",
    "PullError",
    "PulledFileMismatchError",
    "PushError",
    "PushedFileMismatchError",
    "RedirectLoopError",
    "RunnerInputError",
    "RunnerOutputError",
    "S3ServerError",
    "SizeMismatchError",
    "SourceNotFoundError",
    "SourceUnavailableError",
    "SpecNotFoundError",
    "StateDictMismatchError",
    "TritonDigestMismatchError",
    "TritonError",
    "TritonExportError",
    "TritonInferenceError",
    "TritonInputError",
    "TritonMetadataMismatchError",
    "TritonServerError",
    "TritonServerNotFoundError",
    "TritonSharedMemoryError",
    "TritonTimeoutError",
    "TritonUnavailableError",
    "UnknownTokenError",
    "UnpinnedArtifactError",
    "UnprovisionedTokenizerError",
    "UnsafeCheckpointError",
    "UnsafePathError",
]


class DPModelsError(Exception):
    """Root of every error raised by dp_models. Every one pickles with its fields."""

    def __reduce__(self) -> tuple[object, ...]:
        # The default calls ``type(self)(*self.args)`` when unpickling: a TypeError for
        # keyword-only fields, a wrong error where __init__ builds the message from fields.
        return (_rebuild, (type(self), self.args, _state(self)))


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python, not a builtin


def _state(err: BaseException) -> dict[str, object]:
    """The attributes of ``err``: its ``__dict__``, and the fields builtin bases keep in
    slots (``OSError.errno``, ``.filename``, ``ImportError.name``...)."""
    state = dict(vars(err))
    for base in type(err).__mro__:
        if base.__module__ == "builtins" and base is not BaseException:
            for name, member in vars(base).items():
                if isinstance(member, types.MemberDescriptorType):
                    value = getattr(err, name)
                    if value is not None:  # unset; set to None, OSError's str() would show it
                        state[name] = value
    return state


def _rebuild(
    cls: type[DPModelsError], args: tuple[object, ...], state: dict[str, object]
) -> DPModelsError:
    """Unpickle an error from its message and attributes, without calling ``__init__``."""
    if not (isinstance(cls, type) and issubclass(cls, DPModelsError)):
        raise TypeError(f"not a dp_models error: {cls!r}")
    # the builtin that lays the instance out (OSError for TritonServerNotFoundError, not
    # the RuntimeError before it in the MRO), as the constructor would
    layout: Any = cls
    while layout.__flags__ & _HEAP_TYPE:
        layout = layout.__base__
    err: DPModelsError = layout.__new__(cls)
    err.args = args
    for name, value in state.items():
        setattr(err, name, value)
    return err


@dataclass(frozen=True)
class CatalogProblem:
    """One problem in a catalog: the file, the field (dotted path, may be empty), what is wrong."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"


class ConfigurationError(DPModelsError, ValueError):
    """A setting (an argument or an environment variable) has a value that is not allowed."""


class CatalogError(DPModelsError, ValueError):
    """A catalog (or one spec file in it) is invalid. ``problems`` holds every problem found."""

    def __init__(self, problems: Sequence[CatalogProblem], *, catalog: Path | None = None) -> None:
        self.problems: tuple[CatalogProblem, ...] = tuple(problems)
        self.catalog = catalog
        head = f"catalog {catalog}" if catalog is not None else "catalog"
        count = len(self.problems)
        lines = [f"{head} is invalid ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("Fix the files above, then run `dp-models validate` to check the catalog.")
        super().__init__("\n".join(lines))


class LockError(DPModelsError, ValueError):
    """The lock file is malformed, or disagrees with the catalog or the root."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class LockSignatureError(LockError):
    """A lock that does not carry a valid signature by the expected key, or a key that cannot
    be used; refused before anything in the lock is trusted. ``.path`` (the lock),
    ``.signature``, ``.key`` (the key file) and ``.reason``, one of:

    ``"key"``: the key file is missing, unreadable, or not an EC P-256/384/521 key in PEM;
    ``"no-lock"``: there is no lock to verify; ``"unsigned"``: no signature beside the lock;
    ``"malformed"``: the signature is not an OMS signature dp_models can read;
    ``"wrong-key"``: it was made with another key; ``"invalid"``: it does not verify (altered);
    ``"modified"``: the lock changed after it was signed.
    """

    REASONS = ("key", "no-lock", "unsigned", "malformed", "wrong-key", "invalid", "modified")

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        path: Path | None,
        signature: Path | None = None,
        key: Path | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.reason = reason
        self.signature = signature
        self.key = key


class SpecNotFoundError(DPModelsError, KeyError):
    """No spec of that name in the catalog. ``suggestions`` holds close names."""

    def __init__(self, name: str, suggestions: Sequence[str] = (), *, catalog: Path | None = None):
        self.name = name
        self.suggestions = tuple(suggestions)
        self.catalog = catalog
        msg = f"no spec named {name!r} in the catalog"
        if catalog is not None:
            msg += f" {catalog}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        msg += " Run `dp-models list` to see every spec."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ModelsRootError(DPModelsError, FileNotFoundError):
    """MODELS_ROOT is not set, does not exist or is not a directory."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class MissingExtraError(DPModelsError, ImportError):
    """A framework a spec needs is not installed. ``extra`` is the dp-models extra to install."""

    def __init__(self, module: str, *, extra: str, spec: str | None = None) -> None:
        self.module = module
        self.extra = extra
        self.spec = spec
        needed = f" (spec {spec!r} needs it)" if spec else ""
        super().__init__(
            f"{module} is not installed{needed}. Install it with: pip install 'dp-models[{extra}]'"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class LoaderNotFoundError(DPModelsError, LookupError):
    """A spec names a loader that is neither built in nor registered by an installed package."""

    def __init__(self, loader: str, known: Sequence[str], *, spec: str | None = None) -> None:
        self.loader = loader
        self.known = tuple(known)
        self.spec = spec
        who = f"spec {spec!r} names loader" if spec else "loader"
        super().__init__(
            f"{who} {loader!r}, which is not registered. Known loaders: {', '.join(known)}. "
            "A third-party loader registers itself under the 'dp_models.loaders' entry-point "
            "group; install the package that provides it."
        )


class DeviceUnavailableError(DPModelsError, RuntimeError):
    """The requested device is not there; dp_models never falls back to another one."""

    def __init__(self, message: str, *, spec: str, requested: str) -> None:
        self.spec = spec
        self.requested = requested
        super().__init__(message)


class PrecisionError(DPModelsError, ValueError):
    """A precision the device or the spec does not allow."""

    def __init__(self, message: str, *, spec: str, precision: str, device: str) -> None:
        self.spec = spec
        self.precision = precision
        self.device = device
        super().__init__(message)


class NetworkBlockedError(DPModelsError, RuntimeError):
    """An outgoing connection or DNS lookup while a model was loading.

    Deliberately not an ``OSError``: HTTP libraries catch ``OSError`` to retry or to fall
    back to a cache, and this error must reach the caller unchanged, at once."""

    def __init__(self, destination: str, *, specs: Sequence[str], allowed: Sequence[str]) -> None:
        self.destination = destination
        self.specs = tuple(specs)
        self.allowed = tuple(allowed)
        loading = ", ".join(repr(s) for s in self.specs) or "a model"
        allow = ", ".join(self.allowed) or "none"
        what = destination if "DNS lookup" in destination else f"connection to {destination}"
        super().__init__(
            f"{what} blocked while loading {loading}: dp_models loads "
            "from MODELS_ROOT only and never downloads. Provision the artifact under "
            f"MODELS_ROOT instead (allowed destinations: the configured Triton endpoints: {allow})."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ProvenanceError(DPModelsError, ValueError):
    """Provenance stamps that conflict with those already present, or cannot be read."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class LineageInputError(ProvenanceError):
    """An input handed to ``ModelManager.stamp(meta, inputs=[...])`` whose own stamps (or
    those of its inputs, or an input file of its chain) fail verification against the
    catalog and lock: refused, so no output carries stamps that do not verify. ``.path``
    is the input file (None for stamps handed in as a mapping), ``.index`` its position
    in ``inputs``, ``.differences`` every difference found, as sentences."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None,
        index: int,
        differences: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.index = index
        self.differences = list(differences)
        super().__init__(message, key=f"inputs[{index}]")


class _PlainMessage:
    """Mixed into the OSError leaves: ``str()`` is the message as given (an OSError built
    with one argument would do the same, but these also carry fields)."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        return str(self.args[0])


class NotRegularFileError(_PlainMessage, DPModelsError, OSError):
    """A path that should be a regular file is a FIFO, a device, a socket or a directory:
    refused before a byte is read (a FIFO would block, ``/dev/zero`` never ends). ``.path``
    and ``.kind`` ("a FIFO (named pipe)", ...)."""

    def __init__(self, message: str, *, path: Path, kind: str) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


class FileTooLargeError(_PlainMessage, DPModelsError, OSError):
    """A file that is read whole (a spec, a lock, a cache entry, a stamp) is larger than its
    limit; it was not read. ``.path`` and ``.limit`` (bytes)."""

    def __init__(self, message: str, *, path: Path, limit: int) -> None:
        super().__init__(message)
        self.path = path
        self.limit = limit


class FileChangedError(_PlainMessage, DPModelsError, OSError):
    """A file whose identity (inode, size, times) changed while it was being hashed: the
    digest is of no one version, and is not used. ``.path``."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class DirectoryTooLargeError(_PlainMessage, DPModelsError, OSError):
    """A directory walk that found more than ``.limit`` files below ``.path`` (symlinks
    followed): a directory artifact is not that large, a symlink maze can be."""

    def __init__(self, message: str, *, path: Path, limit: int) -> None:
        super().__init__(message)
        self.path = path
        self.limit = limit


class OutsideRootError(_PlainMessage, DPModelsError, OSError):
    """A directory walk reached a symlinked directory (``.path``) that leads to ``.target``,
    outside the tree it must stay in (``.root``); it was not entered."""

    def __init__(self, message: str, *, path: Path, target: Path, root: Path) -> None:
        super().__init__(message)
        self.path = path
        self.target = target
        self.root = root


class UnprovisionedTokenizerError(DPModelsError, RuntimeError):
    """laion-clap's module-level training tokenizers are not provisioned by dp_models (they
    would come from the Hugging Face Hub); the model's own tokenizer is."""


class LoaderError(DPModelsError, RuntimeError):
    """A loader failed to build the model of a spec; the framework's error is chained."""

    def __init__(self, message: str, *, spec: str, loader: str) -> None:
        self.spec = spec
        self.loader = loader
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class LoaderArgsError(LoaderError, TypeError):
    """``loader_args`` the loader rejects: an unknown argument, a class path that does not
    import, keyword arguments the class does not take."""


class StateDictMismatchError(LoaderError, ValueError):
    """A state dict whose keys do not fit the model; ``missing`` and ``unexpected`` list them."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        loader: str,
        missing: Sequence[str],
        unexpected: Sequence[str],
    ) -> None:
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        super().__init__(message, spec=spec, loader=loader)


class UnsafeCheckpointError(LoaderError, pickle.UnpicklingError):
    """A pickled checkpoint that needs more than tensors to load (it could run code); refused."""


class LabelsError(LoaderError, ValueError):
    """A label list (a ``labels`` spec) that cannot be used: not UTF-8 or not valid JSON,
    names not numbered ``0..n-1`` once each, an empty, repeated or ill-formed name; or a
    count other than its spec declares (``count``) or the model that requires it has
    (``num_classes``, the classes of a Triton output). ``.labels`` names the labels spec;
    ``.expected`` and ``.actual`` are the counts when the count is what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        loader: str,
        labels: str,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        self.labels = labels
        self.expected = expected
        self.actual = actual
        super().__init__(message, spec=spec, loader=loader)


class TritonError(DPModelsError):
    """A problem with a model served by Triton: ``spec`` and ``endpoint`` (credentials masked)."""

    def __init__(self, message: str, *, spec: str, endpoint: str) -> None:
        self.spec = spec
        self.endpoint = endpoint
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class TritonUnavailableError(TritonError, ConnectionError):
    """The server is not live, or the model version is not ready, within the deadline; or the
    connection failed after the bounded retries. ``model`` and ``version`` name what was asked."""

    def __init__(self, message: str, *, spec: str, endpoint: str, model: str, version: int):
        self.model = model
        self.version = version
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonTimeoutError(TritonUnavailableError, TimeoutError):
    """The server did not answer within the configured timeout (``timeout_s``, which the
    ``option`` names). Not retried: the server may still be working on the request."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        endpoint: str,
        model: str,
        version: int,
        timeout_s: float,
        option: str,
    ):
        self.timeout_s = timeout_s
        self.option = option
        super().__init__(message, spec=spec, endpoint=endpoint, model=model, version=version)


class TritonMetadataMismatchError(TritonError, ValueError):
    """The served model's inputs, outputs, version or batch size differ from the spec;
    ``differences`` lists every one."""

    def __init__(self, message: str, *, spec: str, endpoint: str, differences: Sequence[str]):
        self.differences = tuple(differences)
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonDigestMismatchError(TritonError, ValueError):
    """The served weights digest differs from the catalog's (``actual`` None: not published)."""

    def __init__(
        self, message: str, *, spec: str, endpoint: str, expected: str | None, actual: str | None
    ):
        self.expected = expected
        self.actual = actual
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonInputError(TritonError, ValueError):
    """Inputs that do not fit the spec (names, dtypes, shapes), found before anything is sent;
    ``problems`` lists every one."""

    def __init__(self, message: str, *, spec: str, endpoint: str, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonInferenceError(TritonError, RuntimeError):
    """The server answered an inference request with an error (chained), or with outputs that
    cannot be read (token ids outside the vocabulary of the tokenizer the spec requires)."""


class UnknownTokenError(TritonInferenceError, LookupError):
    """Token ids the model returned that its tokenizer does not know: never dropped.
    ``.ids`` lists them; ``.timestamps`` those that are Whisper timestamp tokens the
    tokenizer file lacks (decoded on request: ``timestamps="decode"``, or ``segments``);
    any other unknown id means the served model and the tokenizer do not belong together."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        endpoint: str,
        ids: Sequence[int],
        timestamps: Sequence[int] = (),
    ) -> None:
        self.ids = tuple(ids)
        self.timestamps = tuple(timestamps)
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonSharedMemoryError(TritonError, ConfigurationError):
    """The endpoint's shared-memory mode is ``on`` (the server shares this host), but the
    server does not take the client's system shared memory, or this host cannot make it;
    ``reason`` says what was found. Set the mode to ``auto`` or ``off``, or run the server
    where it sees this host's ``/dev/shm``."""

    def __init__(self, message: str, *, spec: str, endpoint: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message, spec=spec, endpoint=endpoint)


class TritonExportError(DPModelsError, ValueError):
    """A model repository that cannot be written as asked: a spec that is not a Triton
    spec or cannot be exported, clashing names, an output directory in the way.
    Artifact problems raise the :class:`ArtifactError` leaves instead. ``.spec`` (or None)."""

    def __init__(self, message: str, *, spec: str | None = None) -> None:
        self.spec = spec
        super().__init__(message)


class DerivedExportError(DPModelsError, ValueError):
    """An export of a Triton spec's model from an in-process spec's weights (``dp-models
    export onnx``) that was refused before anything was written: a source whose loader
    cannot export, a target that does not name it in ``derived_from``, or an exported model
    whose inputs or outputs differ from what the Triton spec declares (``.differences``).
    ``.spec`` is the Triton spec, ``.source`` the in-process one."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        source: str,
        differences: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.source = source
        self.differences = list(differences)
        super().__init__(message)


class RunnerInputError(DPModelsError, ValueError):
    """A batch that does not fit the interface a runner declares (``handle.runner()``): input
    names, numpy dtype (nothing is cast), shape (a channel count, an image size), a missing
    batch dimension or inputs that disagree on the batch size. Found before anything runs,
    on either runtime; ``.problems`` lists every one, ``.runtime`` is the spec's."""

    def __init__(self, message: str, *, spec: str, runtime: str, problems: Sequence[str]):
        self.spec = spec
        self.runtime = runtime
        self.problems = tuple(problems)
        super().__init__(message)


class RunnerOutputError(DPModelsError, RuntimeError):
    """What an in-process model returned does not match the outputs its spec's ``interface``
    declares (a missing output, another shape or a non-numeric result); ``.problems``."""

    def __init__(self, message: str, *, spec: str, problems: Sequence[str]):
        self.spec = spec
        self.problems = tuple(problems)
        super().__init__(message)


class ArtifactError(DPModelsError):
    """A problem with one artifact of one spec."""

    def __init__(self, message: str, *, spec: str, path: Path | str) -> None:
        self.spec = spec
        self.path = Path(path)
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class ArtifactMissingError(ArtifactError, FileNotFoundError):
    """A required artifact is not under MODELS_ROOT (or is of the wrong kind)."""


class DistributionVersionError(ArtifactMissingError):
    """An installed distribution (``installed: name==version``) at another version than the
    spec names: ``.installed``, ``.required``."""

    def __init__(
        self, message: str, *, spec: str, path: Path | str, installed: str, required: str
    ) -> None:
        self.installed = installed
        self.required = required
        super().__init__(message, spec=spec, path=path)


class ArtifactUnreadableError(ArtifactError, OSError):
    """An artifact that exists but cannot be read (permissions, I/O error)."""


class ArtifactChangedError(ArtifactError, RuntimeError):
    """An artifact that changed while it was being verified."""


class LineageError(ArtifactError, ValueError):
    """A derived artifact (``derived_from``) whose lineage no longer holds: the lock
    records it was exported from the source spec's weights ``.recorded``, but that spec
    now pins ``.current``. ``.source`` names the source spec; export it again."""

    def __init__(
        self,
        message: str,
        *,
        spec: str,
        path: Path | str,
        source: str,
        recorded: str,
        current: str,
    ) -> None:
        self.source = source
        self.recorded = recorded
        self.current = current
        super().__init__(message, spec=spec, path=path)


class UnsafePathError(ArtifactError, PermissionError):
    """An artifact path that would leave MODELS_ROOT (absolute, ``..``, or a symlink outside)."""


class UnpinnedArtifactError(ArtifactError, LookupError):
    """An artifact with no sha256 in its spec nor in the catalog's lock."""


class SizeMismatchError(ArtifactError, ValueError):
    """An artifact whose size differs from the pinned size."""

    def __init__(self, message: str, *, spec: str, path: Path | str, expected: int, actual: int):
        self.expected = expected
        self.actual = actual
        super().__init__(message, spec=spec, path=path)


class DigestMismatchError(ArtifactError, ValueError):
    """An artifact whose sha256 differs from the pinned digest."""

    def __init__(self, message: str, *, spec: str, path: Path | str, expected: str, actual: str):
        self.expected = expected
        self.actual = actual
        super().__init__(message, spec=spec, path=path)


class PullError(DPModelsError):
    """Provisioning a MODELS_ROOT from mirrors failed (``dp-models pull``). ``.path`` is
    the file or artifact (relative to the root) it was about, when there is one. Nothing
    that failed became visible under the root."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class NotPullableError(PullError, LookupError):
    """Artifacts pull cannot fetch: unpinned ones (pin them with ``dp-models lock`` on a
    provisioned mirror), directories whose lock entry has no manifest. ``.paths``."""

    def __init__(self, message: str, *, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(message, path=self.paths[0] if self.paths else None)


class SourceNotFoundError(PullError, FileNotFoundError):
    """No mirror has the file. ``.sources``: the mirrors asked, credentials masked."""

    def __init__(self, message: str, *, path: str, sources: Sequence[str]) -> None:
        self.sources = list(sources)
        super().__init__(message, path=path)


class SourceUnavailableError(PullError, ConnectionError):
    """A mirror that could not deliver a file: an error status after the retries, a
    refused or dropped connection that resuming did not overcome, an answer longer or
    shorter than it announced. ``.source``: the URL or directory, credentials masked."""

    def __init__(self, message: str, *, source: str, path: str | None = None) -> None:
        self.source = source
        super().__init__(message, path=path)


class RedirectLoopError(SourceUnavailableError):
    """A mirror whose redirects go round in a loop, or on for more hops than allowed."""


class PulledFileMismatchError(PullError, ValueError):
    """Fetched bytes that are not the pinned ones (digest or size): nothing was made
    visible. ``.source`` (masked), ``.expected``, ``.actual``."""

    def __init__(self, message: str, *, source: str, path: str, expected: str, actual: str) -> None:
        self.source = source
        self.expected = expected
        self.actual = actual
        super().__init__(message, path=path)


class OciManifestError(PullError, ValueError):
    """An OCI registry's manifest (``oci://`` mirror) that cannot be trusted or read: bytes
    that are not the digest it was fetched by (or that the registry announces), an image
    index or another kind of manifest, malformed layer descriptors, a layer whose path
    annotation is unsafe (absolute, ``..``, a backslash) or given twice, a lock layer that
    is not a valid lock. Nothing was fetched from it. ``.reference``: the ``oci://``
    reference (by digest once resolved); ``.path``: the annotated path at fault, if any."""

    def __init__(self, message: str, *, reference: str, path: str | None = None) -> None:
        self.reference = reference
        super().__init__(message, path=path)


class BundleError(PullError):
    """A bundle (``dp-models bundle create`` / ``import``) that cannot be made or taken in.
    ``.path`` is the artifact or member it was about, when there is one. Nothing that failed
    became visible under the root, and no partial bundle was written."""


class BundleTamperedError(BundleError, ValueError):
    """A bundle whose content is not what its manifest lists: a member with an unsafe name
    (absolute, ``..``), a link, device or FIFO, a duplicate or unlisted member, a file whose
    size or sha256 differs, a truncated archive. ``.member``: the tar member's name, when
    there is one. The root is as it was."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        self.member = member
        super().__init__(message, path=member)


class BundleMismatchError(BundleError, LookupError):
    """A bundle made for other pins than the catalog and lock it is imported with (or
    a root that does not hold the pinned bytes, when creating one). ``.paths``."""

    def __init__(self, message: str, *, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(message, path=self.paths[0] if self.paths else None)


class PushError(PullError):
    """Publishing a root's verified files to a store failed (``dp-models push``).
    ``.destination``: the store (credentials masked); ``.path``: the file it was about, when
    there is one. No file that failed became visible there, and the store's manifest (the
    lock of what it holds) was not changed."""

    def __init__(self, message: str, *, destination: str, path: str | None = None) -> None:
        self.destination = destination
        super().__init__(message, path=path)


class NotPushableError(PushError, LookupError):
    """Artifacts push will not publish: unpinned ones, or ones the root does not hold as
    pinned (missing, changed). ``.paths``."""

    def __init__(self, message: str, *, destination: str, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(message, destination=destination, path=self.paths[0] if paths else None)


class PushedFileMismatchError(PushError, ValueError):
    """A file whose bytes, read while they were uploaded, were not the pinned ones (it
    changed after it was verified): the upload was abandoned. ``.expected``, ``.actual``."""

    def __init__(
        self, message: str, *, destination: str, path: str, expected: str, actual: str
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, destination=destination, path=path)


class DestinationUnavailableError(PushError, ConnectionError):
    """The store refused or failed an upload (after retries): credentials, permissions, a
    missing bucket or repository, a server error."""


# -- raised by dp_models.testing --------------------------------------------------------------


class FakeWeightsError(DPModelsError, RuntimeError):
    """A spec whose artifacts ``dp_models.testing`` cannot fake (no fake maker is
    registered for its loader, or the framework cannot build them here): provision small
    real artifacts for that test instead."""


class FaultProxyError(DPModelsError, RuntimeError):
    """The fault proxy (``dp_models.testing.faults``) could not start, or did not stop
    cleanly."""


class TritonServerError(DPModelsError, RuntimeError):
    """The test Triton server (``dp_models.testing.triton``) could not be started (its log's
    tail is in the message)."""


class TritonServerNotFoundError(TritonServerError, FileNotFoundError):
    """No ``tritonserver`` binary: run ``scripts/triton_env.sh``."""


# -- internal: raised and translated inside dp_models ------------------------------------------


class S3ServerError(DPModelsError, RuntimeError):
    """The test S3 server (``dp_models.testing.s3``, moto's server mode) could not start:
    not installed, or it exited or did not answer."""


class YamlRejectedError(DPModelsError, ValueError):
    """The text is not acceptable spec YAML; the message says why and where. The catalog
    reports it as a :class:`CatalogProblem` of a :class:`CatalogError`."""


class JsonRejectedError(DPModelsError, ValueError):
    """The bytes are not acceptable JSON (the lock, a digest-cache entry); the message says
    why. The lock reports it as a :class:`LockError`; the digest cache ignores the entry."""


class UnsupportedPickleError(DPModelsError, pickle.UnpicklingError):
    """A pickle that uses an opcode the safe checkpoint readers do not translate; the
    loaders report it as a :class:`LoaderError`."""


class DeadlineError(DPModelsError, TimeoutError):
    """A Triton transport's call got no complete answer within its ``timeout_s``; the
    client raises :class:`TritonTimeoutError`."""


class ServerAnswerError(DPModelsError):
    """The Triton server answered a transport's call with an error (its message,
    credentials masked); the client raises a :class:`TritonError` leaf."""


class NewConnectionError(DPModelsError):
    """A transport's call would have gone over a connection opened since the last call
    (a restarted server may be behind it); not sent. The client checks the deployment."""


class SharedMemoryRefusedError(DPModelsError):
    """A transport required to use system shared memory (mode ``on``) cannot: the server
    does not offer it or refused the client's region, or this host could not make one
    (``reason``). Nothing was sent; the client raises :class:`TritonSharedMemoryError`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
