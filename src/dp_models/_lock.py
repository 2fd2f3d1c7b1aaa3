"""The catalog's lock: digests of artifacts provisioned in-house.

Upstream-published digests live in the specs. Everything else is pinned here, by
``dp-models lock`` from a provisioned root, the way a package lock pins resolved
versions. The lock is JSON, keyed by artifact path (relative to MODELS_ROOT)::

    {
      "format": 1,
      "artifacts": {
        "visual/emonet/emonet_8.pth": {"kind": "file", "sha256": "…", "size": 1234},
        "text/minilm": {"kind": "dir", "sha256": "…", "size": 5678,
                        "files": {"config.json": {"sha256": "…", "size": 612}, …}}
      }
    }

An artifact exported from another spec's weights (``dp-models export onnx``) carries its
lineage, ``derived``: the source spec, the weights digest it was exported from, the
exporter and the framework versions that made it (:class:`Lineage`)::

    "triton/clip_vit_b32/model.onnx": {"kind": "file", "sha256": "…", "size": 351,
        "derived": {"from": "clip_vit_b32", "weights_digest": "40d36571…",
                    "exporter": "dp_models 0.1.0 torch.onnx (TorchScript) opset 17",
                    "frameworks": {"onnx": "1.19.0", "torch": "2.14.1"}}}

A directory's entry may carry its manifest, ``files``: each file's path relative to the
directory (``/``-separated) with its sha256 and size, so ``dp-models pull`` can fetch and
verify a directory file by file. A manifest must agree with its entry: the directory
digest of its files is the entry's ``sha256`` and their sizes add up to its ``size``.
Entries without one (locks written before manifests) still load.

It is written atomically with sorted keys, so it diffs cleanly in review.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._digest import MAX_DIRECTORY_FILES, directory_digest, is_sha256
from ._errors import FileTooLargeError, JsonRejectedError, LockError, NotRegularFileError
from ._io import atomic_write, read_regular
from ._json import load_json
from ._spec import REVISION, check_relative_path

__all__ = [
    "LOCK_FORMAT",
    "Lineage",
    "Lock",
    "LockEntry",
    "ManifestFile",
    "manifest_problem",
    "unwritable",
]

LOCK_FORMAT = 1
_KEYS = frozenset({"kind", "sha256", "size", "files", "source", "revision", "derived"})
_LINEAGE_KEYS = frozenset({"from", "weights_digest", "exporter", "frameworks"})
_MAX_LOCK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    """One file of a directory artifact's manifest."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Lineage:
    """Where an exported artifact came from: the in-process spec (``source``), the
    weights digest of that spec's verified artifacts it was exported from, the exporter
    and the versions of the frameworks that made it."""

    source: str
    weights_digest: str
    exporter: str
    frameworks: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "weights_digest": self.weights_digest,
            "exporter": self.exporter,
            "frameworks": dict(sorted(self.frameworks.items())),
        }


@dataclass(frozen=True)
class LockEntry:
    """The pinned digest and size of one artifact; for a directory, optionally its
    manifest (relative posix path -> :class:`ManifestFile`). The manifest does not take
    part in comparisons: the directory digest already covers every path and digest."""

    kind: Literal["file", "dir"]
    sha256: str
    size: int
    files: Mapping[str, ManifestFile] | None = field(default=None, compare=False, repr=False)
    #: Where ``dp-models pull --pin`` fetched it (a mirror, masked, or an upstream URL).
    source: str | None = field(default=None, compare=False)
    #: The commit revision of a Hugging Face-style source it was fetched from.
    revision: str | None = field(default=None, compare=False)
    #: Where an exported artifact came from (``dp-models export onnx``).
    derived: Lineage | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "sha256": self.sha256, "size": self.size}
        if self.source is not None:
            data["source"] = self.source
        if self.revision is not None:
            data["revision"] = self.revision
        if self.derived is not None:
            data["derived"] = self.derived.to_json()
        if self.files is not None:
            data["files"] = {
                rel: {"sha256": f.sha256, "size": f.size} for rel, f in sorted(self.files.items())
            }
        return data


@dataclass(frozen=True)
class Lock:
    """A lock file's content. ``exists`` is False for a lock that has not been written yet."""

    path: Path
    artifacts: Mapping[str, LockEntry] = field(default_factory=dict)
    exists: bool = False

    @classmethod
    def read(cls, path: Path) -> Lock:
        """Read and validate a lock; a missing file is an empty lock. Raises :class:`LockError`."""
        try:
            raw = read_regular(path, max_bytes=_MAX_LOCK_BYTES)
        except FileNotFoundError:
            return cls(path)
        except NotRegularFileError as exc:
            raise LockError(
                f"lock {path} is {exc.kind}, not a regular file; remove it and run "
                "`dp-models lock` to write the lock file",
                path=path,
            ) from None
        except FileTooLargeError:
            raise LockError(
                f"lock {path} is larger than {_MAX_LOCK_BYTES} bytes; regenerate it with "
                "`dp-models lock`",
                path=path,
            ) from None
        except OSError as exc:
            raise LockError(f"cannot read lock {path}: {exc}", path=path) from exc
        return cls.parse(raw, path)

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> Lock:
        """The lock whose file ``path`` holds ``raw``: for bytes already read (and verified,
        :mod:`dp_models._signing`), so what was checked is what is used. Raises
        :class:`LockError`."""
        try:
            data = load_json(raw)
        except JsonRejectedError as exc:
            raise LockError(
                f"lock {path} cannot be read: {exc}. Regenerate it with `dp-models lock`.",
                path=path,
            ) from None
        return cls(path, _parse(data, path), exists=True)

    def write(self) -> None:
        """Write atomically: a reader sees the old lock or the new one, never a partial file.
        A lock inside the installed package or any ``site-packages`` is refused
        (:func:`unwritable`): a site's lock is its own file. A place that cannot be written
        (read-only, not a directory) is a :class:`LockError` naming the lock."""
        if (problem := unwritable(self.path)) is not None:
            raise LockError(problem, path=self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, self.dumps())
        except OSError as exc:  # a read-only place: one typed error, the lock as it was
            raise LockError(
                f"cannot write the lock {self.path}: {exc.strerror or exc}. Write it where "
                "this user can: pass --lock PATH (or set $DP_MODELS_LOCK) to a writable file "
                "kept with the deployment",
                path=self.path,
            ) from exc

    def dumps(self) -> str:
        """The lock file's text (what :meth:`write` writes; :meth:`parse` reads it back)."""
        payload = {
            "format": LOCK_FORMAT,
            "artifacts": {k: self.artifacts[k].to_json() for k in sorted(self.artifacts)},
        }
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def unwritable(path: Path) -> str | None:
    """Why the lock at ``path`` must not be written, or None: a site's lock lives with its
    deployment (``--lock PATH``, ``$DP_MODELS_LOCK``), never inside the installed package
    (the packaged catalog's lock is the package's) or a ``site-packages`` directory, where
    an upgrade would silently replace it."""
    resolved = Path(os.path.abspath(path.expanduser()))
    package = Path(os.path.abspath(Path(__file__).parent))
    inside = resolved.is_relative_to(package) or resolved.resolve().is_relative_to(
        package.resolve()
    )
    if inside or {"site-packages", "dist-packages"} & set(resolved.parts):
        where = "the installed dp_models package" if inside else "site-packages"
        return (
            f"not writing the lock {path}: it is inside {where}. A site's lock is its own "
            "file, kept with its deployment: pass --lock PATH (e.g. deploy/models.lock.json) "
            "or set $DP_MODELS_LOCK"
        )
    return None


def _short(value: object) -> str:
    """``repr(value)``, cut short: a hostile lock must not make a megabyte message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse(data: Any, path: Path) -> dict[str, LockEntry]:
    def bad(why: str) -> LockError:
        return LockError(
            f"lock {path} is malformed: {why}. Regenerate it with `dp-models lock --root ROOT`.",
            path=path,
        )

    if not isinstance(data, dict) or set(data) != {"format", "artifacts"}:
        raise bad("expected an object with exactly the keys 'format' and 'artifacts'")
    if data["format"] != LOCK_FORMAT:
        raise bad(f"format {_short(data['format'])} is not supported (expected {LOCK_FORMAT})")
    artifacts = data["artifacts"]
    if not isinstance(artifacts, dict):
        raise bad("'artifacts' must be an object keyed by artifact path")
    entries: dict[str, LockEntry] = {}
    for key, value in artifacts.items():
        if not isinstance(value, dict) or not ({"kind", "sha256", "size"} <= set(value) <= _KEYS):
            raise bad(
                f"entry {_short(key)} must have exactly 'kind', 'sha256' and 'size' "
                "(and optionally 'source', 'revision', 'derived'; for a directory, 'files')"
            )
        if (problem := check_relative_path(key)) is not None:
            raise bad(f"artifact path {_short(key)} {problem}")
        kind, digest, size = value["kind"], value["sha256"], value["size"]
        if kind not in ("file", "dir"):
            raise bad(f"entry {_short(key)}: kind must be 'file' or 'dir', got {_short(kind)}")
        if not is_sha256(digest):
            raise bad(f"entry {_short(key)}: sha256 must be 64 lowercase hex characters")
        if type(size) is not int or size < 0:
            raise bad(f"entry {_short(key)}: size must be a non-negative integer")
        files = None
        if "files" in value:
            if kind != "dir":
                raise bad(f"entry {_short(key)}: only a directory has 'files'")
            files = _manifest(value["files"], key, bad)
            if (problem := manifest_problem(files, digest, size)) is not None:
                raise bad(f"entry {_short(key)}: {problem}")
        source, revision = value.get("source"), value.get("revision")
        if source is not None and not (isinstance(source, str) and 0 < len(source) <= 2048):
            raise bad(f"entry {_short(key)}: source must be a string of at most 2048 characters")
        if revision is not None and not (isinstance(revision, str) and REVISION.match(revision)):
            raise bad(f"entry {_short(key)}: revision must be a 40-character commit revision")
        derived = _lineage(value["derived"], key, bad) if "derived" in value else None
        entries[key] = LockEntry(kind, digest, size, files, source, revision, derived)
    return entries


def _lineage(data: Any, key: str, bad: Callable[[str], LockError]) -> Lineage:
    where = f"entry {_short(key)}: derived"
    if not isinstance(data, dict) or set(data) != _LINEAGE_KEYS:
        raise bad(f"{where} must have exactly 'from', 'weights_digest', 'exporter', 'frameworks'")
    frameworks, source = data["frameworks"], data["from"]
    digest, exporter = data["weights_digest"], data["exporter"]
    if not (isinstance(source, str) and 0 < len(source) <= 200):
        raise bad(f"{where}: 'from' must be a spec name")
    if not is_sha256(digest):
        raise bad(f"{where}: weights_digest must be 64 lowercase hex characters")
    if not (isinstance(exporter, str) and 0 < len(exporter) <= 500):
        raise bad(f"{where}: exporter must be a string of at most 500 characters")
    if not (
        isinstance(frameworks, dict)
        and len(frameworks) <= 32
        and all(isinstance(k, str) and isinstance(v, str) for k, v in frameworks.items())
    ):
        raise bad(f"{where}: frameworks must map names to version strings")
    return Lineage(source, digest, exporter, dict(frameworks))


def _manifest(data: Any, key: str, bad: Callable[[str], LockError]) -> dict[str, ManifestFile]:
    if not isinstance(data, dict):
        raise bad(f"entry {_short(key)}: 'files' must be an object keyed by relative path")
    if len(data) > MAX_DIRECTORY_FILES:
        raise bad(f"entry {_short(key)}: more than {MAX_DIRECTORY_FILES} files")
    files: dict[str, ManifestFile] = {}
    for rel, value in data.items():
        if (problem := check_relative_path(rel)) is not None:
            raise bad(f"entry {_short(key)}: file path {_short(rel)} {problem}")
        if not isinstance(value, dict) or set(value) != {"sha256", "size"}:
            raise bad(f"entry {_short(key)}: file {_short(rel)} must have exactly 'sha256', 'size'")
        if not is_sha256(value["sha256"]):
            raise bad(f"entry {_short(key)}: file {_short(rel)}: sha256 must be lowercase hex")
        if type(value["size"]) is not int or value["size"] < 0:
            raise bad(f"entry {_short(key)}: file {_short(rel)}: size must be an integer >= 0")
        files[rel] = ManifestFile(value["sha256"], value["size"])
    return files


def manifest_problem(files: Mapping[str, ManifestFile], sha256: str, size: int) -> str | None:
    """Why the manifest ``files`` does not describe a directory of digest ``sha256`` and
    ``size`` bytes, or None when it does."""
    listed = directory_digest([(rel, f.sha256) for rel, f in files.items()])
    if listed != sha256:
        return f"its manifest's files give the directory digest {listed}, not {sha256}"
    total = sum(f.size for f in files.values())
    if total != size:
        return f"its manifest's files add up to {total} bytes, not {size}"
    return None
