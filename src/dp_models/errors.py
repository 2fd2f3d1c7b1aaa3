"""Every error dp_models raises, in one rooted tree.

::

    DPModelsError
    ├── ConfigurationError (ValueError)      a setting (argument or variable) with a bad value
    ├── CatalogError (ValueError)            a catalog that does not validate; .problems lists all
    ├── LockError (ValueError)               a lock file that is malformed or disagrees
    ├── SpecNotFoundError (KeyError)         an unknown spec name; .suggestions
    ├── ModelsRootError (FileNotFoundError)  MODELS_ROOT unset, missing or not a directory
    └── ArtifactError                        one artifact of one spec; .spec, .path
        ├── ArtifactMissingError (FileNotFoundError)
        ├── UnsafePathError (PermissionError)    a path that would leave MODELS_ROOT
        ├── UnpinnedArtifactError (LookupError)  no digest in the spec or the lock
        ├── ArtifactUnreadableError (OSError)    present but cannot be read
        ├── ArtifactChangedError (RuntimeError)  changed while it was being verified
        ├── SizeMismatchError (ValueError)       .expected, .actual (bytes)
        └── DigestMismatchError (ValueError)     .expected, .actual (sha256)

Each leaf also subclasses the builtin a caller would naturally catch, and carries the
facts as attributes so that code and tests never parse messages. Messages are written
for the person on call: what was expected, what was found, and the command that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ArtifactChangedError",
    "ArtifactError",
    "ArtifactMissingError",
    "ArtifactUnreadableError",
    "CatalogError",
    "CatalogProblem",
    "ConfigurationError",
    "DPModelsError",
    "DigestMismatchError",
    "LockError",
    "ModelsRootError",
    "SizeMismatchError",
    "SpecNotFoundError",
    "UnpinnedArtifactError",
    "UnsafePathError",
]


class DPModelsError(Exception):
    """Root of every error raised by dp_models."""


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


class ArtifactUnreadableError(ArtifactError, OSError):
    """An artifact that exists but cannot be read (permissions, I/O error)."""


class ArtifactChangedError(ArtifactError, RuntimeError):
    """An artifact that changed while it was being verified."""


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
