"""Publishing a verified MODELS_ROOT to a site's store (``dp-models push``), so that
every node can ``pull --from`` it: an S3-compatible object store (``s3://BUCKET/PREFIX``,
:mod:`dp_models._s3`) or an OCI registry (``oci://REGISTRY/REPO:TAG``,
:mod:`dp_models._oci`).

:func:`push` plans like :func:`~dp_models._pull.pull`: the specs asked for and what they
``require``; every artifact must be pinned (spec or lock), else nothing is pushed
(:class:`~dp_models._errors.NotPushableError`). Then it checks that the root holds the
pinned bytes (through the digest cache; a pinned directory without a manifest in the lock is
listed from the root and held to its directory digest). A root that does not verify is
refused before anything is sent. Each file the store does not already hold is then
uploaded from the open file that was verified, and made visible only if it is still that
file: with the ``cached`` verify policy (the default) its identity (inode, size, mtime,
ctime: what the digest cache trusts) must not have moved by the end of the upload; with
``always`` its bytes are hashed again as they are read. Bytes that changed since they were
verified are never made visible (:class:`~dp_models._errors.PushedFileMismatchError`).
Last, the store's manifest is written: the lock of what was pushed (each directory with
its manifest), so a pull from the store can list directories and a reader that finds the
manifest finds every file it names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._catalog import Catalog
from ._digest import DigestCache, Hasher, directory_digest, directory_files, stat_key
from ._errors import (
    ConfigurationError,
    DestinationUnavailableError,
    NotPullableError,
    NotPushableError,
    PushedFileMismatchError,
    SourceUnavailableError,
)
from ._io import open_regular
from ._lock import Lock, LockEntry, ManifestFile
from ._paths import resolve_artifact_path
from ._pull import (
    DEFAULT_JOBS,
    _Open,
    _plan,
    _Planned,
    _Progress,
    _select,
    _settings_and_catalog,
    _verifies,
    _wait,
)
from ._settings import Settings
from ._transfer import Destination, _CancelledError, _PutMismatchError

__all__ = ["PushReport", "make_destination", "push"]


@dataclass
class PushReport:
    """What a push did (or, with ``dry_run``, would do): the store (masked), the reference
    a pull names (for a registry: by digest; None in a dry run), and per artifact its spec,
    path, kind, sha256, size and status: ``pushed`` (some file was uploaded), ``present``
    (the store held every file), ``planned`` (dry run)."""

    destination: str
    root: Path
    reference: str | None
    dry_run: bool
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes uploaded (dry run: to upload)."""
        return sum(a["sent"] for a in self.artifacts)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "destination": self.destination,
            "reference": self.reference,
            "root": str(self.root),
            "dry_run": self.dry_run,
            "bytes": self.bytes,
            "artifacts": self.artifacts,
        }


def make_destination(value: str, settings: Settings | None = None) -> Destination:
    """The store a ``--to`` value names: ``s3://BUCKET/PREFIX`` or ``oci://REGISTRY/REPO:TAG``
    (``settings`` give a registry's plain-http hosts and Docker config)."""
    lowered = value.lower()
    if lowered.startswith("s3://"):
        from ._s3 import S3Destination

        return S3Destination(value)
    if lowered.startswith("oci://"):
        from ._oci import OciDestination

        return OciDestination(value, settings=settings)
    raise ConfigurationError(
        f"push destination {value!r}: expected s3://BUCKET/PREFIX (an S3-compatible store) "
        "or oci://REGISTRY/REPOSITORY:TAG (an OCI registry)"
    )


@dataclass(frozen=True)
class _File:
    item: int  # index of its artifact in the plan
    path: str  # relative to the root
    sha256: str
    size: int


def _complete(
    root: Path, opened: Sequence[_Open], hasher: Hasher
) -> tuple[list[_Planned], list[str]]:
    """Pinned directories without a manifest in the lock: listed from the root, each file
    hashed, and held to the directory digest. The planned ones, and what did not verify."""
    planned: list[_Planned] = []
    bad: list[str] = []
    for o in opened:
        assert o.pin is not None  # push plans with pin=False: only pinned ones are opened
        path = resolve_artifact_path(root, o.artifact.path, spec=o.spec)
        try:
            listed = directory_files(path, within=root)
        except (OSError, ValueError):
            bad.append(f"{o.artifact.path} (spec {o.spec!r}): missing or unreadable in the root")
            continue
        digests = hasher.files([p for _, p in listed])
        files: list[tuple[str, str, int | None]] = []
        for (rel, _), d in zip(listed, digests, strict=True):
            if isinstance(d, BaseException):
                break
            files.append((rel, d.sha256, d.size))
        if len(files) != len(listed) or directory_digest([(rel, sha) for rel, sha, _ in files]) != (
            o.pin.sha256
        ):
            bad.append(f"{o.artifact.path} (spec {o.spec!r}): not the pinned directory digest")
            continue
        size = sum(s or 0 for _, _, s in files)
        planned.append(_Planned(o.spec, o.artifact, o.pin, size, files))
    return planned, bad


def _entry(item: _Planned, files: Sequence[_File], catalog: Catalog) -> LockEntry:
    """The lock entry of a pushed artifact: its ``files`` as they were pushed (a spec pin
    without a size gets the verified file's), with the site lock's source and revision."""
    site = catalog.lock.artifacts.get(item.artifact.path)
    keep = site is not None and site.sha256 == item.pin.sha256
    manifest = None
    if item.artifact.kind == "dir":
        prefix = item.artifact.path + "/"
        manifest = {f.path[len(prefix) :]: ManifestFile(f.sha256, f.size) for f in files}
    return LockEntry(
        item.artifact.kind,
        item.pin.sha256,
        sum(f.size for f in files),
        manifest,
        source=site.source if keep and site is not None else None,
        revision=site.revision if keep and site is not None else None,
    )


def push(
    names: Iterable[str] | None = None,
    *,
    to: str | Destination,
    root: str | os.PathLike[str] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    users: str | None = None,
    all: bool = False,
    dry_run: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: bool | None = None,
    settings: Settings | None = None,
) -> PushReport:
    """Publish the verified artifacts of ``names`` (and what they require; or the specs
    ``users`` names, or ``all`` of them) from ``root`` to the store ``to`` (module docs),
    ``jobs`` files at a time. Returns a :class:`PushReport`; with ``dry_run`` nothing is
    sent and the report says which files the store lacks."""
    if jobs < 1:
        raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
    settings, cat = _settings_and_catalog(root, catalog, lock, settings)
    base = settings.require_root()
    specs = _select(cat, names, users, all, verb="push")
    dest = make_destination(to, settings) if isinstance(to, str) else to
    try:
        opened: list[_Open] = []
        try:
            planned = _plan(cat, specs, opened, verb="push")
        except NotPullableError as exc:
            raise NotPushableError(
                str(exc),
                destination=dest.shown,
                paths=exc.paths,
            ) from None
        hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
        bad = [
            f"{i.artifact.path} (spec {i.spec!r}): missing or not the pinned bytes"
            for i in planned
            if not _verifies(base, i, hasher)
        ]
        listed, unlisted = _complete(base, opened, hasher)
        planned += listed
        bad += unlisted
        if bad:
            raise NotPushableError(
                f"cannot push {len(bad)} artifact(s) from {base}:\n"
                + "\n".join(f"  - {b}" for b in bad)
                + "\npush publishes only what verifies against the pins: provision the root "
                "first (`dp-models pull`), and check it with `dp-models doctor`.",
                destination=dest.shown,
                paths=[b.split(" ", 1)[0] for b in bad],
            )
        return _Pusher(base, dest, hasher, jobs, progress).run(planned, cat, dry_run)
    finally:
        dest.close()


class _Pusher:
    def __init__(
        self, root: Path, dest: Destination, hasher: Hasher, jobs: int, progress: bool | None
    ) -> None:
        self.root, self.dest, self.hasher = root, dest, hasher
        self.jobs, self.progress = jobs, progress
        self.cancel = threading.Event()

    def _files(self, planned: Sequence[_Planned]) -> list[_File]:
        files = []
        for n, item in enumerate(planned):
            for rel, sha256, size in item.files:
                path = f"{item.artifact.path}/{rel}" if rel else item.artifact.path
                if size is None:  # a spec pin without a size: the verified file's own
                    size = os.stat(resolve_artifact_path(self.root, path, spec=item.spec)).st_size
                files.append(_File(n, path, sha256, size))
        return files

    def run(self, planned: list[_Planned], catalog: Catalog, dry_run: bool) -> PushReport:
        files = self._files(planned)
        report = PushReport(self.dest.shown, self.root, None, dry_run)
        missing = self._map(files, self._lacks)
        todo = [f for f, lacking in zip(files, missing, strict=True) if lacking]
        sent = [0] * len(planned)
        for f in todo:
            sent[f.item] += f.size
        if not dry_run and todo:
            bars = _Progress(self.progress, sum(f.size for f in todo))
            try:
                self._map(todo, lambda f: self._put(f, bars))
            finally:
                bars.close()
        for n, item in enumerate(planned):
            status = "planned" if dry_run and sent[n] else "pushed" if sent[n] else "present"
            report.artifacts.append(
                {
                    "spec": item.spec,
                    "path": item.artifact.path,
                    "kind": item.artifact.kind,
                    "sha256": item.pin.sha256,
                    "size": sum(f.size for f in files if f.item == n),
                    "sent": sent[n],
                    "status": status,
                }
            )
        if not dry_run:
            entries = {
                item.artifact.path: _entry(item, [f for f in files if f.item == n], catalog)
                for n, item in enumerate(planned)
            }
            manifest = Lock(Path("catalog.lock.json"), entries, exists=True).dumps().encode()
            report.reference = self._destination_call(None, lambda: self.dest.commit(manifest))
        return report

    def _map(self, files: Sequence[_File], fn: Callable[[_File], Any]) -> list[Any]:
        if not files:
            return []
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="dp-models-push") as pool:
            futures: list[Future[Any]] = [pool.submit(fn, f) for f in files]
            try:
                return _wait(futures, self.cancel)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _lacks(self, f: _File) -> bool:
        return not self._destination_call(f.path, lambda: self.dest.has(f.path, f.size, f.sha256))

    def _put(self, f: _File, bars: _Progress) -> None:
        if self.cancel.is_set():
            return
        path = self.root / f.path
        fd = open_regular(path)
        try:
            unchanged: Callable[[], bool] | None = None
            if self.hasher.policy != "always":
                # what was verified, through the digest cache, is this open file as long as
                # its identity (inode, size, mtime, ctime) does not move: the destination
                # need not hash it again, only ask before it makes the file visible
                found = self.hasher.file_fd(path, fd)
                if (found.sha256, found.size) != (f.sha256, f.size):
                    raise _PutMismatchError(found.sha256, found.size)
                identity = found.identity
                unchanged = lambda: stat_key(os.fstat(fd)) == identity  # noqa: E731
            with bars.file(f.path, f.size) as shown:

                def advance(n: int) -> None:  # where a destination's upload learns to stop
                    if self.cancel.is_set():
                        raise _CancelledError
                    shown(n)

                self._destination_call(
                    f.path,
                    lambda: self.dest.put(
                        f.path, fd, f.size, f.sha256, advance, unchanged=unchanged
                    ),
                )
        except _PutMismatchError as exc:
            what = (
                f"it has sha256 {exc.actual} ({exc.size} bytes)"
                if exc.actual is not None
                else "it changed (its size, times or inode moved)"
            )
            raise PushedFileMismatchError(
                f"{f.path}: read while it was pushed to {self.dest.shown}, {what}, but it "
                f"verified as {f.sha256} ({f.size} bytes) just before: it changed under the "
                "push. Nothing of it was made visible there. Find what writes into the root, "
                "then push again.",
                destination=self.dest.shown,
                path=f.path,
                expected=f.sha256,
                actual=exc.actual or "(changed)",
            ) from None
        finally:
            os.close(fd)

    def _destination_call(self, path: str | None, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SourceUnavailableError as exc:
            raise DestinationUnavailableError(
                str(exc), destination=self.dest.shown, path=path
            ) from None
