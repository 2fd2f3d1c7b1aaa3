"""The catalog's lock: digests of artifacts provisioned in-house.

Upstream-published digests live in the specs. Everything else is pinned here, by
``dp-models lock`` from a provisioned root, the way a package lock pins resolved
versions. The lock is JSON, keyed by artifact path (relative to MODELS_ROOT)::

    {
      "format": 1,
      "artifacts": {
        "visual/emonet/emonet_8.pth": {"kind": "file", "sha256": "…", "size": 1234}
      }
    }

It is written atomically with sorted keys, so it diffs cleanly in review.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .digest import is_sha256
from .errors import LockError
from .spec import check_relative_path

__all__ = ["LOCK_FORMAT", "Lock", "LockEntry"]

LOCK_FORMAT = 1
_MAX_LOCK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class LockEntry:
    """The pinned digest and size of one artifact."""

    kind: Literal["file", "dir"]
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.sha256, "size": self.size}


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
            with open(path, "rb") as f:
                raw = f.read(_MAX_LOCK_BYTES + 1)
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise LockError(f"cannot read lock {path}: {exc}", path=path) from exc
        if len(raw) > _MAX_LOCK_BYTES:
            raise LockError(f"lock {path} is larger than {_MAX_LOCK_BYTES} bytes", path=path)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LockError(
                f"lock {path} is not valid JSON ({exc}). Regenerate it with `dp-models lock`.",
                path=path,
            ) from None
        return cls(path, _parse(data, path), exists=True)

    def write(self) -> None:
        """Write atomically: a reader sees the old lock or the new one, never a partial file."""
        payload = {
            "format": LOCK_FORMAT,
            "artifacts": {k: self.artifacts[k].to_json() for k in sorted(self.artifacts)},
        }
        text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _parse(data: Any, path: Path) -> dict[str, LockEntry]:
    def bad(why: str) -> LockError:
        return LockError(
            f"lock {path} is malformed: {why}. Regenerate it with `dp-models lock --root ROOT`.",
            path=path,
        )

    if not isinstance(data, dict) or set(data) != {"format", "artifacts"}:
        raise bad("expected an object with exactly the keys 'format' and 'artifacts'")
    if data["format"] != LOCK_FORMAT:
        raise bad(f"format {data['format']!r} is not supported (expected {LOCK_FORMAT})")
    artifacts = data["artifacts"]
    if not isinstance(artifacts, dict):
        raise bad("'artifacts' must be an object keyed by artifact path")
    entries: dict[str, LockEntry] = {}
    for key, value in artifacts.items():
        if not isinstance(value, dict) or set(value) != {"kind", "sha256", "size"}:
            raise bad(f"entry {key!r} must have exactly 'kind', 'sha256' and 'size'")
        if (problem := check_relative_path(key)) is not None:
            raise bad(f"artifact path {key!r} {problem}")
        kind, digest, size = value["kind"], value["sha256"], value["size"]
        if kind not in ("file", "dir"):
            raise bad(f"entry {key!r}: kind must be 'file' or 'dir', got {kind!r}")
        if not is_sha256(digest):
            raise bad(f"entry {key!r}: sha256 must be 64 lowercase hex characters")
        if type(size) is not int or size < 0:
            raise bad(f"entry {key!r}: size must be a non-negative integer")
        entries[key] = LockEntry(kind, digest, size)
    return entries
