"""Checking specs' artifacts against their homes: present, inside their home, pinned,
right size, right digest.

An artifact is looked for in each root in order (the first that holds anything at its
path serves it: what is found there is verified, never skipped for a later root), then,
for an artifact with a ``huggingface`` section, in the hub cache; an ``installed``
artifact is the installed distribution it names (:mod:`dp_models._homes`). Each report
says which home served it.

Cheap checks run first for every artifact (path safety, presence, kind, size), then
every file still in question is hashed once, in parallel, through the digest cache.
:meth:`Verifier.check` never raises for an artifact's problem: it returns one
:class:`ArtifactReport` per artifact, each with the typed error it would raise, so that
``dp-models doctor`` can show them all. :meth:`Verifier.verify` raises the first.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from ._catalog import Catalog, Pin
from ._digest import (
    FileDigest,
    Hasher,
    directory_digest,
    directory_files,
    sha256_fd,
    stat_key,
)
from ._errors import (
    ArtifactChangedError,
    ArtifactError,
    ArtifactMissingError,
    ArtifactUnreadableError,
    DigestMismatchError,
    FileChangedError,
    NotRegularFileError,
    OutsideRootError,
    SizeMismatchError,
    UnpinnedArtifactError,
    UnsafePathError,
)
from ._homes import (
    Located,
    hub_snapshot,
    hub_snapshot_present,
    installed_distribution,
    pip_line,
)
from ._io import describe_mode, open_regular
from ._paths import ensure_inside, resolve_artifact_path
from ._spec import IN_HOUSE, ArchiveSource, Artifact, Spec

__all__ = ["ArtifactReport", "LoadSet", "OpenedFile", "Status", "Verifier"]

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
    identities: list[tuple[int, int, int, int, int]] = field(default_factory=list, repr=False)
    #: Each hashed file as (path relative to the artifact, sha256, size); a directory's
    #: manifest (:class:`~dp_models._lock.LockEntry`'s ``files``).
    manifest: list[tuple[str, str, int]] = field(default_factory=list, repr=False)
    #: Which home served it: ``"root"``, ``"huggingface"`` (a hub cache snapshot) or
    #: ``"installed"`` (an installed distribution).
    home: str = "root"
    #: The root, hub cache or site directory it was found in.
    location: Path | None = None
    #: An installed artifact's RECORD: each file's (sha256, size), and the RECORD's own name.
    record: dict[str, tuple[str, int | None]] = field(default_factory=dict, repr=False)
    record_name: str | None = field(default=None, repr=False)
    record_sha256: str | None = field(default=None, repr=False)
    #: An installed artifact's distribution: (name, installed version).
    distribution: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def where(self) -> dict[str, object]:
        """Where it was found, as ``models_used`` records it: the home, its location, and an
        installed artifact's distribution and version."""
        found: dict[str, object] = {
            "home": self.home,
            "location": str(self.location) if self.location is not None else None,
        }
        if self.distribution is not None:
            found["distribution"] = {"name": self.distribution[0], "version": self.distribution[1]}
        return found

    def adopt(self, located: Located) -> None:
        """Take what :mod:`dp_models._homes` located outside the roots."""
        self.home, self.location, self.path = located.home, located.location, located.path
        self.files = located.files
        self.record, self.record_name = located.record, located.record_name
        self.record_sha256 = located.record_sha256
        self.distribution = located.distribution

    def fail(self, status: Status, error: ArtifactError) -> None:
        self.status, self.error = status, error

    def mismatch(self, actual: str) -> DigestMismatchError:
        """The error for a digest ``actual`` that is not the pinned one."""
        expected = self.pin.sha256 if self.pin is not None else "(no pin)"
        source = self.pin.source if self.pin is not None else "nowhere"
        return DigestMismatchError(
            f"spec {self.spec!r}: artifact {self.path} has sha256 {actual}, expected "
            f"{expected} (pinned in the {source}). It is not the pinned artifact: "
            f"{_reprovision(self.artifact)}",
            spec=self.spec,
            path=self.path,
            expected=expected,
            actual=actual,
        )


class Verifier:
    """Verifies specs of ``catalog`` against the resolved ``root`` (or roots, in search
    order; the last is :attr:`root`, the writable one) with ``hasher``; artifacts with a
    ``huggingface`` section are also looked for in ``hf_cache``."""

    def __init__(
        self,
        catalog: Catalog,
        root: Path | Sequence[Path],
        hasher: Hasher,
        *,
        hf_cache: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.roots: tuple[Path, ...] = (root,) if isinstance(root, Path) else tuple(root)
        if not self.roots:
            raise ValueError("a Verifier needs at least one root")
        self.root = self.roots[-1]
        self.hasher = hasher
        self.hf_cache = hf_cache

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
        self._hash([r for r in reports if r.ok or (r.status == "unpinned" and hash_unpinned)])
        return reports

    def absent(self, spec: Spec) -> bool:
        """Whether none of ``spec``'s artifacts is under the root at all, not even as a
        dangling symlink: the one rule for "not provisioned here" (an optional spec is then
        skipped, a Triton spec served elsewhere). Anything at an artifact's path, a broken
        link included, was provisioned and is verified: its problem is an error, never
        absence."""
        return not any(self._present(a) for a in spec.artifacts)

    def _present(self, art: Artifact) -> bool:
        if art.installed is not None:
            requirement = art.requirement
            assert requirement is not None
            try:
                importlib.metadata.distribution(requirement[0])
            except importlib.metadata.PackageNotFoundError:
                return False
            return True
        if self._root_of(art) is not None:
            return True
        return art.huggingface is not None and hub_snapshot_present(self.hf_cache, art)

    def _root_of(self, art: Artifact) -> Path | None:
        """The first root holding anything at the artifact's path (a broken link included)."""
        for root in self.roots:
            if os.path.lexists(root / art.path):
                return root
        return None

    def inspect(self, spec: Spec) -> list[ArtifactReport]:
        """The cheap checks only (path, presence, kind, pin, size), or the first typed error:
        for a load that hashes the files as it reads them (:meth:`open_for_load`)."""
        reports = [self._inspect(spec, art) for art in spec.artifacts]
        for r in reports:
            if r.error is not None:
                raise r.error
        return reports

    def open_for_load(self, spec: Spec) -> LoadSet:
        """``spec``'s artifacts opened for a load, or the first artifact's typed error.

        Each file artifact is opened once and the loader reads that descriptor
        (:class:`OpenedFile`): with the ``cached`` policy it is verified here (a cache hit
        is keyed by the descriptor's stat); with ``always`` it is hashed while the loader
        reads it, before the loader gets a byte. Directory artifacts are hashed here."""
        reports = self.inspect(spec)
        self._hash([r for r in reports if r.artifact.kind == "dir"])
        for r in reports:
            if r.error is not None:
                raise r.error
        workdir = _Workdir()
        files: dict[str, OpenedFile] = {}
        load = LoadSet(reports, files, workdir)
        try:
            for r in reports:
                if r.home == "huggingface" and r.artifact.kind == "dir":
                    # the loader sees the verified files only, not the rest of the snapshot
                    load.views[r.artifact.path] = workdir.view(r.artifact.path, r.files)
                if r.artifact.kind != "file":
                    continue
                try:
                    fd = open_regular(r.files[0][1])  # the file found (a cache blob)
                except (OSError, ValueError) as exc:
                    raise self._hash_failure(r, exc)[1] from exc
                files[r.artifact.path] = OpenedFile(r, fd, self.hasher, workdir)
                if self.hasher.policy == "cached":
                    files[r.artifact.path].verify()
        except BaseException:
            load.close()
            raise
        return load

    def _hash(self, reports: Sequence[ArtifactReport]) -> None:
        """Hash the files of ``reports`` (in parallel, each once) and conclude each."""
        to_hash: dict[str, Path] = {}
        for r in reports:
            for _, p in r.files:
                to_hash.setdefault(str(p), p)
        digests = dict(zip(to_hash, self.hasher.files(list(to_hash.values())), strict=True))
        for r in reports:
            self._conclude(r, digests)

    # -- phase 1: cheap checks -----------------------------------------------------------

    def _inspect(self, spec: Spec, art: Artifact) -> ArtifactReport:
        root = self._root_of(art)
        report = ArtifactReport(
            spec.name, art, (root or self.roots[0]) / art.path, self.catalog.pin(art)
        )
        report.location = root or self.roots[0]
        try:
            if art.installed is not None:
                report.adopt(installed_distribution(art, spec=spec.name))
                report.size = self._installed_sizes(report)
            elif root is None and art.huggingface is not None:
                report.adopt(hub_snapshot(self.hf_cache, art, spec=spec.name, roots=self.roots))
                report.size = sum(os.stat(p).st_size for _, p in report.files)
            elif root is None and len(self.roots) > 1:
                raise ArtifactMissingError(
                    f"spec {spec.name!r}: required artifact {art.path!r} is in none of the "
                    f"roots {', '.join(str(r) for r in self.roots)}. {_provision(art)} "
                    "then run `dp-models doctor`.",
                    spec=spec.name,
                    path=report.path,
                )
            else:
                root = root or self.roots[0]
                report.path = resolve_artifact_path(root, art.path, spec=spec.name)
                report.files, report.size = self._files(spec, art, report.path, root)
        except ArtifactError as exc:
            status: Status = "missing"
            if isinstance(exc, UnsafePathError):
                status = "unsafe_path"
            elif isinstance(exc, ArtifactUnreadableError):
                status = "unreadable"
            elif isinstance(exc, SizeMismatchError):
                status = "size_mismatch"
            report.fail(status, exc)
            return report
        except NotRegularFileError as exc:
            report.fail(
                "unreadable", ArtifactUnreadableError(str(exc), spec=spec.name, path=report.path)
            )
            return report
        except OSError as exc:
            report.fail(
                "unreadable",
                ArtifactUnreadableError(
                    f"spec {spec.name!r}: artifact {art.path!r} cannot be read ({exc}). Check its "
                    f"permissions under {report.location}.",
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
                    f"a provisioned root with `dp-models lock --root {report.location}` (or put "
                    "the upstream-published sha256 in the spec).",
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

    def _installed_sizes(self, r: ArtifactReport) -> int:
        """The total size of an installed artifact's files, each first held to the size its
        RECORD gives (the cheap check, naming the file, before any digest)."""
        total = 0
        for rel, p in r.files:
            size = os.stat(p).st_size
            want = r.record.get(rel, (None, None))[1]
            if want is not None and size != want:
                raise SizeMismatchError(
                    f"spec {r.spec!r}: file {rel} of the installed {r.artifact.installed} "
                    f"({r.location}) is {size} bytes, but the wheel's RECORD says {want}: it "
                    "was modified after the install. Reinstall it: "
                    f"`{pip_line(r.artifact, reinstall=True)}`.",
                    spec=r.spec,
                    path=p,
                    expected=want,
                    actual=size,
                )
            total += size
        return total

    def _files(
        self, spec: Spec, art: Artifact, path: Path, root: Path
    ) -> tuple[list[tuple[str, Path]], int]:
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
        if not is_dir and not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(
                f"spec {spec.name!r}: artifact {art.path!r} at {path} is "
                f"{describe_mode(st.st_mode)}, not a regular file; it was not opened (a FIFO "
                "would block, a device never ends). Replace it with the file the spec describes.",
                path=path,
                kind=describe_mode(st.st_mode),
            )
        if not is_dir:
            return [(art.path, path)], st.st_size
        try:
            files = directory_files(path, within=root)
        except OutsideRootError as exc:
            raise UnsafePathError(
                f"spec {spec.name!r}: directory artifact {art.path!r} holds a symlink that "
                f"leaves MODELS_ROOT {root} ({exc}). Artifacts must live inside the root: "
                "replace the link by what it points to.",
                spec=spec.name,
                path=path,
            ) from None
        total = 0
        for rel, p in files:
            ensure_inside(root, p, spec=spec.name, shown=f"{art.path}/{rel}")
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
        r.identities = [d.identity for _, d in done]
        r.manifest = [(rel, d.sha256, d.size) for rel, d in done]
        if r.home == "installed":
            self._conclude_installed(r, done)
            return
        if r.artifact.kind == "file":
            r.sha256 = done[0][1].sha256
        else:
            r.sha256 = directory_digest([(rel, d.sha256) for rel, d in done])
        if r.pin is not None and r.sha256 != r.pin.sha256:
            r.fail("digest_mismatch", r.mismatch(r.sha256))

    def _conclude_installed(self, r: ArtifactReport, done: list[tuple[str, FileDigest]]) -> None:
        """Every file against its RECORD hash; the artifact's digest is the RECORD's."""
        for rel, d in done:
            if rel == r.record_name:
                r.sha256 = d.sha256
                if d.sha256 != r.record_sha256:  # not the RECORD whose hashes are checked
                    r.fail(
                        "changed",
                        ArtifactChangedError(
                            f"spec {r.spec!r}: the RECORD of the installed "
                            f"{r.artifact.installed} ({r.location}) changed while it was being "
                            "verified. Wait for whatever installs it to finish, then verify "
                            "again.",
                            spec=r.spec,
                            path=r.location / rel if r.location is not None else rel,
                        ),
                    )
                    return
                continue
            want, size = r.record[rel]
            if d.sha256 != want or (size is not None and d.size != size):
                r.sha256 = d.sha256
                r.fail(
                    "digest_mismatch",
                    DigestMismatchError(
                        f"spec {r.spec!r}: file {rel} of the installed {r.artifact.installed} "
                        f"({r.location}) has sha256 {d.sha256} ({d.size} bytes), but the "
                        f"wheel's RECORD says {want}"
                        + (f" ({size} bytes)" if size is not None else "")
                        + ": it was modified after the install. Reinstall it: "
                        f"`{pip_line(r.artifact, reinstall=True)}`.",
                        spec=r.spec,
                        path=r.location / rel if r.location is not None else rel,
                        expected=want,
                        actual=d.sha256,
                    ),
                )
                return
        if r.pin is not None and r.sha256 != r.pin.sha256:
            assert r.sha256 is not None
            r.fail("digest_mismatch", r.mismatch(r.sha256))

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


def _where(art: Artifact) -> str:
    """Where the artifact's spec says it comes from, for messages."""
    if art.source is None:
        return ""
    if art.source == IN_HOUSE:
        return " from the site's mirror (an in-house build)"
    if isinstance(art.source, ArchiveSource):
        return f" from {art.source.url} (member {art.source.member})"
    return f" from {art.source}"


def _provision(art: Artifact) -> str:
    return (
        f"Provision it{_where(art)} (loads never download: `dp-models pull` fetches it from a "
        "mirror, or with --upstream from its source),"
    )


def _reprovision(art: Artifact) -> str:
    where = _where(art)
    return (
        f"re-provision it{where}. If the new file is intended, update the pin (the spec's "
        "sha256, or `dp-models lock --root ROOT` for a lock pin)."
    )


# -- what a load reads -------------------------------------------------------------------


class OpenedFile:
    """One file artifact held open for a load: the loader reads *this* file, the one that
    was verified, never a second lookup of its path.

    The descriptor is opened once (regular files only). Its digest comes from the digest
    cache when the policy allows and the cache entry matches the descriptor's stat, or from
    hashing the descriptor, before anything is handed to the loader: with
    :meth:`read_bytes` / :meth:`open` the bytes read for the hash are the bytes handed over
    (one read); with :meth:`framework_path` the framework opens ``/proc/self/fd/N`` (on
    Linux), the same open file whatever was renamed onto the path since, and reads the
    pages the hash just read from the page cache (its native reader is faster than any
    Python file object; ``benchmarks/results/runtime.md``). :meth:`check_unchanged` (after
    the load) catches writes in place through the stat; writes through a shared memory map
    change no stat field and are the documented limit (docs/security.md).
    """

    def __init__(self, report: ArtifactReport, fd: int, hasher: Hasher, workdir: _Workdir):
        self.report = report
        self._fd = fd
        self._identity = stat_key(os.fstat(fd))
        self._hasher = hasher
        self._workdir = workdir
        self._sha256: str | None = None
        self._data: bytes | None = None
        self._alias: Path | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.report.path

    @property
    def sha256(self) -> str | None:
        """The verified digest, or None while the file has not been verified yet."""
        return self._sha256

    def verify(self, *, keep: bool = False) -> str:
        """Establish the digest (from the cache, or by hashing the descriptor) and check it
        against the pin; with ``keep``, a file that has to be hashed keeps its bytes for
        :meth:`read_bytes`."""
        with self._lock:
            if self._sha256 is not None:
                return self._sha256
            chunks: list[bytes] | None = [] if keep else None
            try:
                found = self._hasher.file_fd(self.path, self._fd, keep=chunks)
            except (OSError, ValueError) as exc:
                raise self._failure(exc) from exc
            self._identity = found.identity  # what was hashed (or matched the cache)
            pin = self.report.pin
            if pin is None or found.sha256 != pin.sha256:
                self.report.sha256 = found.sha256
                raise self.report.mismatch(found.sha256)
            if chunks:
                self._data = b"".join(chunks)
            self._sha256 = found.sha256
            return found.sha256

    def read_bytes(self) -> bytes:
        """The verified bytes of the file (read once, hashed while read when needed)."""
        self.verify(keep=True)
        with self._lock:
            if self._data is None:
                size = os.fstat(self._fd).st_size
                chunks = []
                offset = 0
                while offset < size and (chunk := os.pread(self._fd, size - offset, offset)):
                    chunks.append(chunk)
                    offset += len(chunk)
                self._data = b"".join(chunks)
            return self._data

    def open(self) -> BinaryIO:
        """A binary file object over the verified file, positioned at 0: its bytes when
        they were read for the hash, else a new descriptor on the same open file (no
        lookup by path)."""
        if self._sha256 is None:
            self.verify(keep=True)
        if self._data is not None:
            return io.BytesIO(self._data)
        f = os.fdopen(os.dup(self._fd), "rb")
        f.seek(0)
        return f

    def framework_path(self) -> Path:
        """A path for frameworks that only open paths: verified first, then a link in a
        private directory, named like the artifact, to ``/proc/self/fd/N`` (the open,
        verified file). Where ``/proc`` has no such links, the artifact's own path (the
        window until :meth:`check_unchanged` is documented)."""
        self.verify()
        with self._lock:
            if self._alias is None:
                target = Path(f"/proc/self/fd/{self._fd}")
                if not _PROC_FD:
                    self._alias = self.path
                else:
                    self._alias = self._workdir.link(self.path.name, target)
            return self._alias

    def check_unchanged(self) -> None:
        """Raise :class:`ArtifactChangedError` when the file was written since it was opened.
        Only its ctime moved (a rename over its path, a link, chmod, a restored mtime): its
        content decides, hashed again from the descriptor."""
        now = stat_key(os.fstat(self._fd))
        if now == self._identity:
            return
        if now[:4] == self._identity[:4] and sha256_fd(self._fd) == self._sha256:
            return
        raise self._changed("during the load")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._data = None

    def _changed(self, when: str) -> ArtifactChangedError:
        return ArtifactChangedError(
            f"spec {self.report.spec!r}: artifact {self.path} was written {when}; the model "
            "built from it is discarded. Wait for whatever writes it to finish, then load again.",
            spec=self.report.spec,
            path=self.path,
        )

    def _failure(self, exc: BaseException) -> ArtifactError:
        if isinstance(exc, FileChangedError):
            return self._changed("while it was being verified")
        return ArtifactUnreadableError(
            f"spec {self.report.spec!r}: artifact {self.path} cannot be read ({exc}).",
            spec=self.report.spec,
            path=self.path,
        )


_PROC_FD = os.path.isdir("/proc/self/fd")


class _Workdir:
    """A private temporary directory for one load's path links, made on first use."""

    def __init__(self) -> None:
        self._dir: str | None = None

    def link(self, name: str, target: Path) -> Path:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="dp_models-load-")
        sub = Path(tempfile.mkdtemp(dir=self._dir))  # one per file: names may repeat
        alias = sub / name
        os.symlink(target, alias)
        return alias

    def view(self, name: str, files: Sequence[tuple[str, Path]]) -> Path:
        """A directory holding a link to each of ``files`` at its relative name."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="dp_models-load-")
        top = Path(tempfile.mkdtemp(dir=self._dir)) / PurePosixPath(name).name
        for rel, target in files:
            link = top / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, link)
        top.mkdir(exist_ok=True)
        return top

    def remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class LoadSet:
    """A spec's artifacts opened for one load (:meth:`Verifier.open_for_load`).

    File artifacts are :class:`OpenedFile` (verified before the loader sees them, lazily
    when the policy is ``always`` so that reading and hashing are one pass); directory
    artifacts are verified up front and checked again, file by file, after the load.
    """

    def __init__(
        self, reports: list[ArtifactReport], files: dict[str, OpenedFile], workdir: _Workdir
    ):
        self.reports = reports
        self.files = files
        #: A hub cache directory artifact's view (links to its verified files only), by path.
        self.views: dict[str, Path] = {}
        self._workdir = workdir  # the files' path links, removed by close()

    def directory(self, report: ArtifactReport) -> Path:
        """The directory a loader is given for a directory artifact."""
        return self.views.get(report.artifact.path, report.path)

    def digests(self) -> tuple[str, ...]:
        """Every artifact's verified digest, in spec order (verifies what the load did
        not touch)."""
        out = []
        for r in self.reports:
            opened = self.files.get(r.artifact.path)
            out.append(opened.verify() if opened is not None else _sha(r))
        return tuple(out)

    def check_unchanged(self) -> None:
        """After the load: no file was written and no directory entry replaced."""
        for r in self.reports:
            opened = self.files.get(r.artifact.path)
            if opened is not None:
                opened.check_unchanged()
                continue
            if r.home != "root":  # the files found, each still the one verified
                try:
                    same = [stat_key(os.stat(p)) for _, p in r.files] == r.identities
                except OSError:
                    same = False
                if not same:
                    raise ArtifactChangedError(
                        f"spec {r.spec!r}: artifact {r.path} changed during the load; the "
                        "model built from it is discarded. Load again.",
                        spec=r.spec,
                        path=r.path,
                    )
                continue
            now = []
            try:
                listed = directory_files(r.path)
                now = [stat_key(os.stat(p)) for _, p in listed]
            except OSError:
                listed = []
            if [rel for rel, _ in listed] != [rel for rel, _ in r.files] or now != r.identities:
                raise ArtifactChangedError(
                    f"spec {r.spec!r}: directory artifact {r.path} changed during the load; "
                    "the model built from it is discarded. Wait for whatever writes it to "
                    "finish, then load again.",
                    spec=r.spec,
                    path=r.path,
                )

    def close(self) -> None:
        for opened in self.files.values():
            opened.close()
        self._workdir.remove()

    def __enter__(self) -> LoadSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sha(report: ArtifactReport) -> str:
    assert report.sha256 is not None
    return report.sha256
