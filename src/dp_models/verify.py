"""Checking specs' artifacts against MODELS_ROOT: present, inside the root, pinned, right
size, right digest.

Cheap checks run first for every artifact (path safety, presence, kind, size), then
every file still in question is hashed once, in parallel, through the digest cache.
:meth:`Verifier.check` never raises for an artifact's problem: it returns one
:class:`ArtifactReport` per artifact, each with the typed error it would raise, so that
``dp-models doctor`` can show them all. :meth:`Verifier.verify` raises the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .catalog import Catalog, Pin
from .digest import (
    FileChangedError,
    FileDigest,
    Hasher,
    OutsideRootError,
    directory_digest,
    directory_files,
)
from .errors import (
    ArtifactChangedError,
    ArtifactError,
    ArtifactMissingError,
    ArtifactUnreadableError,
    DigestMismatchError,
    SizeMismatchError,
    UnpinnedArtifactError,
    UnsafePathError,
)
from .paths import ensure_inside, resolve_artifact_path
from .spec import Artifact, Spec

__all__ = ["ArtifactReport", "Status", "Verifier"]

Status = Literal[
    "ok",
    "missing",
    "unsafe_path",
    "unreadable",
    "unpinned",
    "size_mismatch",
    "digest_mismatch",
    "changed",
]


@dataclass
class ArtifactReport:
    """What verification found for one artifact of one spec."""

    spec: str
    artifact: Artifact
    path: Path
    pin: Pin | None
    status: Status = "ok"
    sha256: str | None = None
    size: int | None = None
    cached: bool = False
    error: ArtifactError | None = None
    files: list[tuple[str, Path]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, status: Status, error: ArtifactError) -> None:
        self.status, self.error = status, error


class Verifier:
    """Verifies specs of ``catalog`` against the resolved ``root`` with ``hasher``."""

    def __init__(self, catalog: Catalog, root: Path, hasher: Hasher) -> None:
        self.catalog = catalog
        self.root = root
        self.hasher = hasher

    def verify(self, specs: Spec | Iterable[Spec]) -> list[ArtifactReport]:
        """Verify and return the reports, or raise the first artifact's typed error."""
        reports = self.check([specs] if isinstance(specs, Spec) else list(specs))
        for report in reports:
            if report.error is not None:
                raise report.error
        return reports

    def check(self, specs: Sequence[Spec], *, hash_unpinned: bool = False) -> list[ArtifactReport]:
        """One report per artifact of ``specs``, in order. ``hash_unpinned`` also computes
        the digest of artifacts that have no pin (for writing the lock)."""
        reports = [self._inspect(spec, art) for spec in specs for art in spec.artifacts]
        to_hash: dict[str, Path] = {}
        for r in reports:
            if r.status == "ok" or (r.status == "unpinned" and hash_unpinned):
                for _, p in r.files:
                    to_hash.setdefault(str(p), p)
        digests = dict(zip(to_hash, self.hasher.files(list(to_hash.values())), strict=True))
        for r in reports:
            if r.status == "ok" or (r.status == "unpinned" and hash_unpinned):
                self._conclude(r, digests)
        return reports

    # -- phase 1: cheap checks -----------------------------------------------------------

    def _inspect(self, spec: Spec, art: Artifact) -> ArtifactReport:
        report = ArtifactReport(spec.name, art, self.root / art.path, self.catalog.pin(art))
        try:
            report.path = resolve_artifact_path(self.root, art.path, spec=spec.name)
            report.files, report.size = self._files(spec, art, report.path)
        except ArtifactError as exc:
            report.fail("unsafe_path" if isinstance(exc, UnsafePathError) else "missing", exc)
            return report
        except OSError as exc:
            report.fail(
                "unreadable",
                ArtifactUnreadableError(
                    f"spec {spec.name!r}: artifact {art.path!r} cannot be read ({exc}). Check its "
                    f"permissions under {self.root}.",
                    spec=spec.name,
                    path=report.path,
                ),
            )
            return report
        pin = report.pin
        if pin is None:
            report.fail(
                "unpinned",
                UnpinnedArtifactError(
                    f"spec {spec.name!r}: artifact {art.path!r} is not pinned: neither the "
                    f"spec nor the lock {self.catalog.lock.path} gives its sha256. Pin it from "
                    f"a provisioned root with `dp-models lock --root {self.root}` (or put the "
                    "upstream-published sha256 in the spec).",
                    spec=spec.name,
                    path=report.path,
                ),
            )
        elif pin.size is not None and report.size != pin.size:
            assert report.size is not None
            report.fail(
                "size_mismatch",
                SizeMismatchError(
                    f"spec {spec.name!r}: artifact {report.path} is {report.size} bytes, "
                    f"expected {pin.size} (pinned in the {pin.source}). It is truncated, still "
                    f"being copied, or another file: {_reprovision(art)}",
                    spec=spec.name,
                    path=report.path,
                    expected=pin.size,
                    actual=report.size,
                ),
            )
        return report

    def _files(self, spec: Spec, art: Artifact, path: Path) -> tuple[list[tuple[str, Path]], int]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ArtifactMissingError(
                f"spec {spec.name!r}: required artifact {art.path!r} is missing: expected a "
                f"{art.kind} at {path}. {_provision(art)} then run `dp-models doctor`.",
                spec=spec.name,
                path=path,
            ) from None
        is_dir = os.path.isdir(path)
        if is_dir != (art.kind == "dir"):
            found = "a directory" if is_dir else "a file"
            raise ArtifactMissingError(
                f"spec {spec.name!r}: artifact {art.path!r} must be a {art.kind}, but {path} is "
                f"{found}. Replace it with the {art.kind} the spec describes.",
                spec=spec.name,
                path=path,
            )
        if not is_dir:
            return [(art.path, path)], st.st_size
        try:
            files = directory_files(path, within=self.root)
        except OutsideRootError as exc:
            raise UnsafePathError(
                f"spec {spec.name!r}: directory artifact {art.path!r} holds a symlink that "
                f"leaves MODELS_ROOT {self.root} ({exc}). Artifacts must live inside the root: "
                "replace the link by what it points to.",
                spec=spec.name,
                path=path,
            ) from None
        total = 0
        for rel, p in files:
            ensure_inside(self.root, p, spec=spec.name, shown=f"{art.path}/{rel}")
            total += os.stat(p).st_size
        return files, total

    # -- phase 2: digests ----------------------------------------------------------------

    def _conclude(self, r: ArtifactReport, digests: dict[str, FileDigest | BaseException]) -> None:
        results = [(rel, digests[str(p)]) for rel, p in r.files]
        for _, res in results:
            if isinstance(res, BaseException):
                r.fail(*self._hash_failure(r, res))
                return
        done = [(rel, res) for rel, res in results if isinstance(res, FileDigest)]
        r.cached = bool(done) and all(d.cached for _, d in done)
        if r.artifact.kind == "file":
            r.sha256 = done[0][1].sha256
        else:
            r.sha256 = directory_digest([(rel, d.sha256) for rel, d in done])
        pin = r.pin
        if pin is not None and r.sha256 != pin.sha256:
            r.fail(
                "digest_mismatch",
                DigestMismatchError(
                    f"spec {r.spec!r}: artifact {r.path} has sha256 {r.sha256}, expected "
                    f"{pin.sha256} (pinned in the {pin.source}). It is not the pinned artifact: "
                    f"{_reprovision(r.artifact)}",
                    spec=r.spec,
                    path=r.path,
                    expected=pin.sha256,
                    actual=r.sha256,
                ),
            )

    def _hash_failure(self, r: ArtifactReport, exc: BaseException) -> tuple[Status, ArtifactError]:
        if isinstance(exc, FileChangedError):
            return "changed", ArtifactChangedError(
                f"spec {r.spec!r}: artifact {r.path} changed while it was being verified "
                f"({exc}). Wait for whatever writes it to finish, then verify again.",
                spec=r.spec,
                path=r.path,
            )
        if isinstance(exc, FileNotFoundError):
            return "missing", ArtifactMissingError(
                f"spec {r.spec!r}: artifact {r.path} disappeared while it was being verified. "
                f"{_provision(r.artifact)}",
                spec=r.spec,
                path=r.path,
            )
        return "unreadable", ArtifactUnreadableError(
            f"spec {r.spec!r}: artifact {r.path} cannot be read ({exc}). Check its permissions.",
            spec=r.spec,
            path=r.path,
        )


def _provision(art: Artifact) -> str:
    where = f" from {art.source}" if art.source else ""
    return f"Provision it{where} (dp_models never downloads),"


def _reprovision(art: Artifact) -> str:
    where = f" from {art.source}" if art.source else ""
    return (
        f"re-provision it{where}. If the new file is intended, update the pin (the spec's "
        "sha256, or `dp-models lock --root ROOT` for a lock pin)."
    )
