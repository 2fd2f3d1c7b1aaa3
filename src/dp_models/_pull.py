"""Provisioning a MODELS_ROOT from mirrors (``dp-models pull``): the one place dp_models
uses the network, at install time. Loads never come here: the network guard and the
offline flags of ``get`` / ``load`` are not touched.

A *mirror* holds the exact bytes a site's lock pins, laid out as a MODELS_ROOT: a
directory (an NFS share, a mounted disk) or an http(s) server serving that tree (each
file at ``BASE/<artifact path>``, a directory artifact's files at
``BASE/<artifact path>/<file>``). Mirrors are tried in order, file by file.

:func:`pull` plans first: the specs asked for and what they ``require``; every artifact
must be pinned (spec or lock) and every directory artifact needs its manifest in the
lock (``dp-models lock`` writes it), else nothing is fetched
(:class:`~dp_models._errors.NotPullableError`). Artifacts that already verify (through the
digest cache) are skipped. Then each missing or wrong artifact is fetched, on a small
thread pool:

* a file is streamed into a temporary file in its destination directory (same file
  system), hashed while it streams (no second read), and renamed into place only when
  its size and sha256 are the pinned ones; a mismatch leaves nothing behind and raises
  :class:`~dp_models._errors.PulledFileMismatchError` naming the mirror (masked), the
  expected and the actual digest;
* a directory is built file by file, each verified, in a temporary directory beside
  it, and renamed into place when complete and its directory digest is the pinned one;
* over HTTP, a dropped connection is resumed with a range request, an error status is
  retried a few times, a redirect loop, an answer longer or shorter than announced are
  typed errors;
* each artifact is fetched under an inter-process lock (``flock`` on a file in
  ``ROOT/.dp-models-pull/``), so several pulls of one root fetch it once: the second
  waits, then finds it verified;
* on any failure, disk full and Ctrl-C included, the temporary file or directory is
  removed and the root is as it was (artifacts completed before stay: each verified).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ._catalog import Catalog, Pin
from ._digest import DigestCache, Hasher, directory_digest, directory_files
from ._errors import (
    ArtifactError,
    ConfigurationError,
    LockError,
    NotPullableError,
    NotRegularFileError,
    PulledFileMismatchError,
    PullError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from ._homes import Located, hub_snapshot, hub_snapshot_present, pip_line
from ._io import atomic_write, fsync_directory
from ._lock import Lock, LockEntry, ManifestFile, unwritable
from ._paths import resolve_artifact_path
from ._settings import Settings
from ._spec import Artifact, Spec, check_relative_path
from ._transfer import (
    DirectoryMirror,
    HttpMirror,
    Listing,
    Mirror,
    Sink,
    _CancelledError,
    _DestinationError,
    _NotThereError,
    _TooLongError,
)
from ._transfer import make_mirror as _plain_mirror
from ._upstream import Upstream, can_list, hf_revision

try:  # POSIX only; elsewhere concurrent pulls of one root may fetch a file twice
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_DIR",
    "DirectoryMirror",
    "HttpMirror",
    "HubCacheMirror",
    "Mirror",
    "PullFile",
    "PullReport",
    "PulledArtifact",
    "import_hf_cache",
    "make_mirror",
    "make_writable_root",
    "pull",
]

LOCK_DIR = ".dp-models-pull"
DEFAULT_JOBS = 4
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class PullFile:
    """One file to fetch: ``path`` relative to the root, its sha256 (None: not pinned and
    not fetched yet, in a dry run), where it comes from (a mirror, masked, or an upstream
    URL; None: no source has it, in a dry run). ``size`` is None only in a dry run, for a
    file whose size nothing gives."""

    path: str
    sha256: str | None
    size: int | None
    source: str | None = None


@dataclass
class PulledArtifact:
    """One artifact of a pull: ``present`` (it verified, nothing fetched; ``source`` says
    where: a root, or the hub cache), ``fetched``, ``installed`` (an installed distribution:
    pip provisions it, never pull; ``source`` is the pip line), or, in a dry run,
    ``planned``. ``pinned``: fetched without a pin and pinned in the lock (``--pin``);
    ``source`` and ``revision``: what the lock records of where it came from."""

    spec: str
    path: str
    kind: Literal["file", "dir"]
    #: None: not pinned, in a dry run
    sha256: str | None
    #: None: pinned without a size (a spec's upstream sha256) and not fetched
    size: int | None
    status: Literal["present", "fetched", "planned", "installed"]
    files: list[PullFile] = field(default_factory=list)
    pinned: bool = False
    source: str | None = None
    revision: str | None = None


@dataclass
class PullReport:
    """What a pull did (or, with ``dry_run``, would do). ``lock``: the lock the new pins
    were written to (``--pin``), else None."""

    root: Path
    mirrors: list[str]
    dry_run: bool
    artifacts: list[PulledArtifact]
    upstream: bool = False
    lock: Path | None = None

    @property
    def bytes(self) -> int:
        """Bytes fetched (a dry run: to fetch)."""
        return sum(a.size or 0 for a in self.artifacts if a.status in ("fetched", "planned"))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "root": str(self.root),
            "mirrors": self.mirrors,
            "upstream": self.upstream,
            "dry_run": self.dry_run,
            "bytes": self.bytes,
            "lock": None if self.lock is None else str(self.lock),
            "artifacts": [
                {
                    "spec": a.spec,
                    "path": a.path,
                    "kind": a.kind,
                    "sha256": a.sha256,
                    "size": a.size,
                    "status": a.status,
                    "pinned": a.pinned,
                    "source": a.source,
                    "revision": a.revision,
                    "files": [
                        {"path": f.path, "sha256": f.sha256, "size": f.size, "source": f.source}
                        for f in a.files
                    ],
                }
                for a in self.artifacts
            ],
        }


class _Unreachable:
    """A mirror that did not answer when it was made (a registry resolving its tag): it
    has nothing, and fetching from it fails with why, so that the next mirror is asked
    and a root that already verifies never needs it."""

    role = "mirror"
    lists = False

    def __init__(self, error: SourceUnavailableError) -> None:
        self.error = error
        self.shown = error.source

    def fetch(self, rel: str, sink: Sink) -> None:
        raise self.error

    def probe(self, rel: str) -> int | None:
        return None

    def where(self, rel: str) -> str:
        return self.shown

    def list(self, rel: str) -> dict[str, Listing] | None:
        return None


def _settings_and_catalog(
    root: str | os.PathLike[str] | None,
    catalog: Catalog | str | os.PathLike[str] | None,
    lock: str | os.PathLike[str] | None,
    settings: Settings | None,
    *,
    mirrors: Sequence[str] | None = None,
) -> tuple[Settings, Catalog]:
    """The settings (``settings``, else resolved from the arguments) and the catalog (loaded
    unless given) that pull, push and bundles work with."""
    if settings is None:
        settings = Settings.resolve(
            models_root=root,
            catalog=None if isinstance(catalog, Catalog) else catalog,
            lock=lock,
            mirrors=mirrors,
        )
    cat = catalog if isinstance(catalog, Catalog) else Catalog.load(settings=settings)
    return settings, cat


def make_mirror(value: str, settings: Settings | None = None) -> Mirror:
    """The mirror a ``--from`` value names: an S3-compatible store (``s3://BUCKET/PREFIX``),
    an OCI registry (``oci://REGISTRY/REPO:TAG`` or ``@sha256:...``; ``settings`` give its
    plain-http hosts and Docker config), an http(s) URL, else a directory (``file://``
    allowed)."""
    lowered = value.lower()
    if lowered.startswith("s3://"):
        from ._s3 import S3Mirror

        return S3Mirror(value)
    if lowered.startswith("oci://"):
        from ._oci import OciMirror

        return OciMirror(value, settings=settings)
    return _plain_mirror(value)


# -- planning ----------------------------------------------------------------------------


@dataclass
class _Planned:
    spec: str
    artifact: Artifact
    pin: Pin
    #: None: a file pinned by its spec without a size (its sha256 alone decides)
    size: int | None
    #: (path relative to the artifact, sha256, size); a file artifact: one entry, ""
    files: list[tuple[str, str, int | None]]


@dataclass
class _Open:
    """An artifact whose file list or digest is learnt while it is fetched: unpinned
    (``--pin``: what arrives is pinned, after any digest its source publishes agreed), or
    a pinned directory without a manifest (listed by a source that can list: a directory
    mirror, a Hugging Face tree, an archive; its directory digest decides)."""

    spec: str
    artifact: Artifact
    pin: Pin | None
    #: a directory's files that other artifacts pin (path inside it -> sha256, size)
    inner: dict[str, tuple[str, int | None]] = field(default_factory=dict)


def _select(
    catalog: Catalog,
    names: Iterable[str] | None,
    users: str | None,
    everything: bool,
    *,
    verb: str = "pull",
) -> list[Spec]:
    """The specs ``names``, those ``users`` (a processor) uses, or ``everything``, each
    with what it requires."""
    wanted: list[str] = list(names or [])
    if users is not None:
        used = [n for n, s in catalog.items() if users in s.users]
        if not used:  # a misspelt processor selects nothing: say so rather than do nothing
            raise ConfigurationError(
                f"users {users!r}: no spec of the catalog {catalog.directory} lists it among "
                "its users (`dp-models list` shows who uses what)"
            )
        wanted += used
    if everything:
        wanted += list(catalog)
    if not wanted and not everything and users is None:
        raise ConfigurationError(
            f"{verb} needs spec names, users=PROCESSOR (--users) or all=True (--all)"
        )
    specs: dict[str, Spec] = {}
    for name in wanted:
        for spec in catalog.closure(name):
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def _plan(
    catalog: Catalog,
    specs: Sequence[Spec],
    opened: list[_Open] | None = None,
    *,
    pin: bool = False,
    verb: str = "pull",
) -> list[_Planned]:
    """The pinned artifacts of ``specs`` with their file lists. With ``opened``, pinned
    directories without a manifest, and (``pin``) unpinned artifacts, go there instead of
    being refused. Installed distributions are left out: pip installs them, and they are
    never under a root (neither fetched, published nor bundled)."""
    planned: dict[str, _Planned] = {}
    opens: dict[str, _Open] = {}
    unpinned: list[str] = []
    no_manifest: list[str] = []
    for spec in specs:
        for art in spec.artifacts:
            if art.installed is not None or art.path in planned or art.path in opens:
                continue
            found = catalog.pin(art)
            if found is None:
                if opened is not None and pin:
                    opens[art.path] = _Open(spec.name, art, None)
                else:
                    unpinned.append(f"{art.path} (spec {spec.name!r})")
                continue
            if art.kind == "file":
                planned[art.path] = _Planned(
                    spec.name, art, found, found.size, [("", found.sha256, found.size)]
                )
                continue
            entry = catalog.lock.artifacts.get(art.path)
            files: dict[str, ManifestFile] | None = None
            if entry is not None and entry.sha256 == found.sha256 and entry.files is not None:
                files = dict(entry.files)
            if files is None:
                if opened is not None:
                    opens[art.path] = _Open(spec.name, art, found)
                else:
                    no_manifest.append(f"{art.path} (spec {spec.name!r}: no manifest in the lock)")
                continue
            listed: list[tuple[str, str, int | None]] = [
                (rel, f.sha256, f.size) for rel, f in sorted(files.items())
            ]
            total = sum(f.size for f in files.values())
            planned[art.path] = _Planned(spec.name, art, found, total, listed)
    # a file inside a directory artifact being pulled comes with that directory (its
    # manifest names it): fetched once, as part of the directory
    for item in [i for i in planned.values() if i.artifact.kind == "dir"]:
        prefix = item.artifact.path + "/"
        manifest = {rel: sha256 for rel, sha256, _ in item.files}
        for path in [p for p in [*planned, *opens] if p.startswith(prefix)]:
            inner: _Planned | _Open = planned.pop(path, None) or opens.pop(path)
            sha = inner.pin.sha256 if inner.pin is not None else None
            got = manifest.get(path[len(prefix) :])
            if inner.artifact.kind != "file" or got != sha:
                why = "does not list it" if got is None else "lists another digest"
                no_manifest.append(
                    f"{path} (spec {inner.spec!r}: inside the directory artifact "
                    f"{item.artifact.path}, whose manifest {why})"
                )
    # a pinned file inside a directory learnt on the way: fetched with the directory, and
    # held to its pin there
    for outer in [i for i in opens.values() if i.artifact.kind == "dir"]:
        prefix = outer.artifact.path + "/"
        for path in [p for p in [*planned, *opens] if p.startswith(prefix)]:
            inner = planned.pop(path, None) or opens.pop(path)
            if inner.artifact.kind == "file" and inner.pin is not None:
                outer.inner[path[len(prefix) :]] = (inner.pin.sha256, inner.pin.size)
            elif inner.artifact.kind == "dir":
                no_manifest.append(
                    f"{path} (spec {inner.spec!r}: a directory inside the directory artifact "
                    f"{outer.artifact.path}, which has no manifest yet)"
                )
    if unpinned or no_manifest:
        lines = [f"  - {p}: not pinned" for p in unpinned]
        lines += [f"  - {p}" for p in no_manifest]
        hint = (
            "pull fetches pinned artifacts, each directory by its manifest. To fetch a "
            "first copy and record its digest in the site's lock, pull with --pin (from a "
            "mirror, or from upstream sources with --upstream); or provision them on a "
            "mirror and run `dp-models lock --root MIRROR` there."
        )
        if verb != "pull":
            hint = (
                f"{verb} takes pinned artifacts only: pin them in the site's lock first "
                "(`dp-models lock --root ROOT` on a provisioned root, or `dp-models pull "
                "--pin`)."
            )
        raise NotPullableError(
            f"cannot {verb} {len(lines)} artifact(s) of the lock {catalog.lock.path}:\n"
            + "\n".join(lines)
            + "\n"
            + hint,
            paths=[p.split(" ", 1)[0] for p in unpinned + no_manifest],
        )
    if opened is not None:
        opened.extend(opens.values())
    return list(planned.values())


def _present(
    roots: Sequence[Path], cache: Path | None, item: _Planned, hasher: Hasher
) -> str | None:
    """Where the pinned artifact already verifies: the first root holding it, or the hub
    cache for an artifact with a ``huggingface`` snapshot there; None when nowhere."""
    for root in roots:
        if _verifies(root, item, hasher):
            return str(root)
    art = item.artifact
    if art.huggingface is None or cache is None or not hub_snapshot_present(cache, art):
        return None
    try:
        located = hub_snapshot(cache, art, spec=item.spec)
    except ArtifactError:
        return None
    found = _directory_digest(located.files, hasher, one=art.kind == "file")
    return f"hub cache {cache}" if found == item.pin.sha256 else None


def _directory_digest(
    files: Sequence[tuple[str, Path]], hasher: Hasher, *, one: bool = False
) -> str | None:
    """The directory digest of ``files`` (with ``one``, the one file's sha256), hashed
    through the digest cache; None when one cannot be hashed."""
    digests = hasher.files([p for _, p in files])
    pairs = []
    for (rel, _), d in zip(files, digests, strict=True):
        if isinstance(d, BaseException):
            return None
        pairs.append((rel, d.sha256))
    return pairs[0][1] if one else directory_digest(pairs)


def _verifies(root: Path, item: _Planned, hasher: Hasher) -> bool:
    """Whether the root already holds the pinned artifact (digest cache first)."""
    path = resolve_artifact_path(root, item.artifact.path, spec=item.spec)
    try:
        if item.artifact.kind == "file":
            if not os.path.isfile(path):
                return False
            found = hasher.file(path)
            size_ok = item.size is None or found.size == item.size
            return size_ok and found.sha256 == item.pin.sha256
        if not os.path.isdir(path):
            return False
        listed = directory_files(path, within=root)
        return _directory_digest(listed, hasher) == item.pin.sha256
    except (OSError, ValueError):
        return False


def _first_listing(mirrors: Sequence[Mirror], rel: str) -> tuple[Mirror, dict[str, Listing]] | None:
    """The first source that lists the directory ``rel``, and its listing; None when none
    does. A source that fails to list, or lists a name that is not a safe relative path (an
    object store's keys are anything), is passed over for the next; when no other lists
    it, the first such failure is raised (``SourceUnavailableError``)."""
    failures: list[SourceUnavailableError] = []
    for mirror in mirrors:
        try:
            listing = mirror.list(rel)
        except SourceUnavailableError as exc:
            failures.append(exc)
            continue
        if listing is None:
            continue
        unsafe = sorted(n for n in listing if check_relative_path(n) is not None)
        if unsafe:
            failures.append(
                SourceUnavailableError(
                    f"{mirror.role} {mirror.where(rel)}: lists {unsafe[0][:200]!r} in "
                    f"{rel}, which is not a safe relative path "
                    f"({check_relative_path(unsafe[0])}); its listing is not used",
                    source=mirror.shown,
                    path=rel,
                )
            )
            continue
        return mirror, listing
    if failures:
        raise failures[0]
    return None


# -- fetching ----------------------------------------------------------------------------


@contextlib.contextmanager
def _artifact_lock(root: Path, rel: str) -> Any:
    """Hold an inter-process lock for the artifact at ``rel`` while it is fetched."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    directory = root / LOCK_DIR
    directory.mkdir(exist_ok=True)
    name = hashlib.sha256(rel.encode()).hexdigest()[:32] + ".lock"
    fd = os.open(directory / name, _LOCK_FLAGS, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(
                f"{directory / name} is not a regular file", path=directory / name, kind="other"
            )
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Puller:
    def __init__(
        self,
        root: Path,
        mirrors: Sequence[Mirror],
        hasher: Hasher,
        jobs: int,
        progress: _Progress,
    ) -> None:
        self.root, self.mirrors, self.hasher, self.jobs = root, mirrors, hasher, jobs
        self.progress = progress
        self.cancel = threading.Event()
        self.files = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dp-models-pull")

    def artifact(self, item: _Planned) -> PulledArtifact:
        art = item.artifact
        result = PulledArtifact(
            item.spec, art.path, art.kind, item.pin.sha256, item.size, "fetched"
        )
        with _artifact_lock(self.root, art.path):
            if _verifies(self.root, item, self.hasher):  # another pull fetched it meanwhile
                result.status = "present"
                return result
            dest = resolve_artifact_path(self.root, art.path, spec=item.spec)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if art.kind == "file":
                _, sha256, size = item.files[0]
                fetched = self.file(art.path, dest, sha256, size, final=True)
                result.files.append(fetched)
                result.size = fetched.size
            else:
                result.files, _ = self.directory(art.path, item.files, item.pin, dest)
        return result

    def opened(self, item: _Open) -> tuple[PulledArtifact, LockEntry | None]:
        """Fetch an artifact whose files or digest are learnt on the way (:class:`_Open`);
        the result and the lock entry that pins what arrived (None: nothing arrived,
        another pull fetched the pinned artifact meanwhile)."""
        art, pin = item.artifact, item.pin
        with _artifact_lock(self.root, art.path):
            if pin is not None and _verifies(
                self.root, _Planned(item.spec, art, pin, None, []), self.hasher
            ):
                return PulledArtifact(
                    item.spec, art.path, art.kind, pin.sha256, None, "present"
                ), None
            dest = resolve_artifact_path(self.root, art.path, spec=item.spec)
            dest.parent.mkdir(parents=True, exist_ok=True)
            manifest: dict[str, ManifestFile] | None = None
            if art.kind == "file":
                sha256, size = (pin.sha256, pin.size) if pin is not None else (None, None)
                got = self.file(art.path, dest, sha256, size, final=True)
                files, digest, total = [got], got.sha256, got.size
            else:
                listing = self._listing(art.path)
                wanted = _wanted(art.path, listing, item.inner)
                files, digest = self.directory(art.path, wanted, pin, dest)
                manifest = {
                    f.path[len(art.path) + 1 :]: ManifestFile(f.sha256 or "", f.size or 0)
                    for f in files
                }
                total = sum(f.size for f in manifest.values())
            assert digest is not None and total is not None
            upstream = [m for m in self.mirrors if isinstance(m, Upstream)]
            from_upstream = bool(upstream) and any(
                f.source is not None and f.source == upstream[0].where(f.path) for f in files
            )
            if from_upstream:
                source, revision = upstream[0].where(art.path), hf_revision(art)
            else:
                source, revision = ", ".join(sorted({f.source or "" for f in files})), None
            result = PulledArtifact(
                item.spec,
                art.path,
                art.kind,
                digest,
                total,
                "fetched",
                files,
                pinned=pin is None,
                source=source,
                revision=revision,
            )
            return result, LockEntry(art.kind, digest, total, manifest, source, revision)

    def _listing(self, rel: str) -> dict[str, Listing]:
        """The files of the directory ``rel`` from the first source that lists it
        (:func:`_first_listing`)."""
        found = _first_listing(self.mirrors, rel)
        if found is not None:
            return found[1]
        shown = [m.shown for m in self.mirrors]
        raise NotPullableError(
            f"{rel}: a directory without a manifest, and no source lists its files (asked: "
            f"{', '.join(shown)}). A directory mirror, a Hugging Face folder or an archive "
            "member can be listed; an http(s) mirror cannot: pin the directory on a "
            "directory mirror (`dp-models lock --root MIRROR`) and pull with that lock.",
            paths=[rel],
        )

    def directory(
        self,
        path: str,
        wanted: Sequence[tuple[str, str | None, int | None]],
        pin: Pin | None,
        dest: Path,
    ) -> tuple[list[PullFile], str]:
        """Fetch the ``wanted`` files (path in the directory, sha256 or None, size) into a
        temporary directory beside ``dest``, each verified as it streams; rename it to
        ``dest`` when complete and its directory digest is ``pin``'s (any, without one).
        The files fetched and the directory digest."""
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
        try:
            futures: list[Future[PullFile]] = []
            for rel, sha256, size in wanted:
                if (why := check_relative_path(rel)) is not None:  # listings were checked
                    raise PullError(f"{path}: a file named {rel[:200]!r} {why}", path=path)
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                futures.append(self.files.submit(self.file, f"{path}/{rel}", target, sha256, size))
            fetched = _wait(futures, self.cancel)
            # each file was verified as it streamed; what the directory holds is exactly
            # the listed files, so their digests make the directory digest
            listed = [rel for rel, _ in directory_files(tmp)]
            if sorted(listed) != sorted(rel for rel, _, _ in wanted):  # pragma: no cover
                raise RuntimeError(f"{tmp} holds other files than the manifest")
            digest = directory_digest(
                [(rel, f.sha256 or "") for (rel, _, _), f in zip(wanted, fetched, strict=True)]
            )
            if pin is not None and digest != pin.sha256:  # the files disagree with the pin
                raise PulledFileMismatchError(
                    f"{path}: the files fetched make the directory digest "
                    f"{digest}, expected {pin.sha256} (pinned in the {pin.source})",
                    source=", ".join(sorted({f.source or "" for f in fetched})),
                    path=path,
                    expected=pin.sha256,
                    actual=digest,
                )
            for directory, _, _ in os.walk(tmp):
                os.chmod(directory, 0o755)
            _place(tmp, dest)
            return fetched, digest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def file(
        self, rel: str, dest: Path, sha256: str | None, size: int | None, *, final: bool = False
    ) -> PullFile:
        """Fetch ``rel`` into ``dest`` from the first source that has it, verified before
        the temporary file is renamed to ``dest`` (:func:`~dp_models._io.atomic_write`).
        ``sha256`` None: not pinned; any digest the source publishes must agree."""
        if final and os.path.isdir(dest) and not os.path.islink(dest):
            raise PullError(
                f"{rel}: {dest} is a directory where the spec wants a file; remove it, then "
                "pull again",
                path=rel,
            )
        got: list[tuple[str, int, str]] = []
        with self.progress.file(rel, size) as advance:

            def write(f: BinaryIO) -> None:
                got.append(self._stream(rel, f, sha256, size, advance))

            atomic_write(dest, write, mode=0o644)
        source, fetched, actual = got[0]
        return PullFile(rel, actual, fetched, source)

    def _stream(
        self,
        rel: str,
        f: BinaryIO,
        sha256: str | None,
        size: int | None,
        advance: Callable[[int], None],
    ) -> tuple[str, int, str]:
        """Stream ``rel`` from the first source that has it into ``f``, verified: where it
        came from (masked), its size and sha256."""
        failures: list[SourceUnavailableError] = []
        for mirror in self.mirrors:
            sink = Sink(f, size, self.cancel, advance, sync=True)
            sink.reset()
            try:
                try:
                    mirror.fetch(rel, sink)
                finally:
                    sink.finish()
            except _NotThereError:
                continue
            except _DestinationError as exc:
                raise exc.error from None
            except SourceUnavailableError as exc:
                failures.append(exc)
                continue
            except _TooLongError:
                raise PulledFileMismatchError(
                    f"{mirror.role} {mirror.where(rel)}: {rel} is longer than the "
                    f"{'pinned' if sha256 else 'listed'} {size} bytes; it holds another file. "
                    "Nothing was written.",
                    source=mirror.where(rel),
                    path=rel,
                    expected=f"{size} bytes",
                    actual=f"more than {size} bytes",
                ) from None
            where = mirror.where(rel)
            actual = sink.hash.hexdigest()
            if sink.published is not None and sink.published != actual:
                raise PulledFileMismatchError(
                    f"{mirror.role} {where}: {rel} has sha256 {actual} ({sink.received} bytes), "
                    f"but the source publishes {sink.published} for it. Nothing was written: "
                    "the download was corrupted or the source serves other bytes than it "
                    "announces.",
                    source=where,
                    path=rel,
                    expected=sink.published,
                    actual=actual,
                )
            if sha256 is not None and (
                (size is not None and sink.received != size) or actual != sha256
            ):
                raise PulledFileMismatchError(
                    f"{mirror.role} {where}: {rel} has sha256 {actual} ({sink.received} "
                    f"bytes), expected {sha256} ({size or 'any'} bytes). The source holds other "
                    "bytes than the pin; nothing was written. Re-provision the mirror, or "
                    "update the pin if the new file is intended.",
                    source=where,
                    path=rel,
                    expected=sha256,
                    actual=actual,
                )
            return where, sink.received, actual
        if failures:
            raise failures[0]
        shown = [m.shown for m in self.mirrors]
        hint, what = "Copy it to the mirror from a provisioned root.", "no mirror"
        for top in (m for m in self.mirrors if isinstance(m, Upstream)):
            what = "no mirror and no upstream source"
            with contextlib.suppress(_NotThereError):
                art, _ = top.locate(rel)
                if (why := top.why_not(art)) is not None:
                    hint = f"Upstream cannot give it: {why}."
        raise SourceNotFoundError(
            f"{rel}: {what} has it (asked: {', '.join(shown)}). {hint}",
            path=rel,
            sources=shown,
        )


def _wanted(
    path: str, listing: Mapping[str, Listing], inner: Mapping[str, tuple[str, int | None]]
) -> list[tuple[str, str | None, int | None]]:
    """The files to fetch of a directory its source listed: each with the digest it must
    have (another artifact's pin, else the digest the source publishes, else None) and
    size. A pinned file the listing lacks is a :class:`NotPullableError`."""
    missing = sorted(set(inner) - set(listing))
    if missing:
        raise NotPullableError(
            f"{path}: its source lists no {', '.join(missing)}, which the catalog pins inside "
            "it: the source holds another version of the directory. Check the revision or URL "
            "of the spec's source, or pull the directory from a mirror holding the pinned "
            "version.",
            paths=[f"{path}/{m}" for m in missing],
        )
    wanted: list[tuple[str, str | None, int | None]] = []
    for rel, entry in sorted(listing.items()):
        sha256, size = inner.get(rel, (entry.published, entry.size))
        wanted.append((rel, sha256, size if size is not None else entry.size))
    return wanted


def _place(tmp: Path, dest: Path) -> None:
    """Rename the verified directory ``tmp`` to ``dest``, replacing what is there (a wrong
    directory is moved aside first, then removed): a reader sees the old artifact or the
    new one, never a partial one."""
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.path.islink(dest)):
        os.unlink(dest)  # a file or a link where the directory belongs
    if os.path.isdir(dest):
        aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
        os.rename(dest, aside / "old")
        try:
            os.rename(tmp, dest)
        except BaseException:
            os.rename(aside / "old", dest)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(tmp, dest)
    fsync_directory(dest.parent)


def _wait(futures: Sequence[Future[Any]], cancel: threading.Event) -> list[Any]:
    """The results in order; on the first failure (or Ctrl-C) the others are told to stop
    and waited for (each cleans up after itself), then the failure is raised: the one that
    caused the stop, not a task's answer to being stopped."""
    try:
        return [f.result() for f in futures]
    except BaseException as first:
        cancel.set()
        for f in futures:
            f.cancel()
        cause: BaseException | None = None
        for f in futures:
            try:
                f.result()
            except (_CancelledError, CancelledError):
                pass
            except BaseException as exc:
                cause = cause or exc
        if isinstance(first, _CancelledError) and cause is not None:
            raise cause from None
        raise


# -- the entry point ---------------------------------------------------------------------


class _Progress:
    """Progress bars on a terminal (tqdm): one per file being fetched and a total."""

    def __init__(self, enabled: bool | None, total: int | None) -> None:
        self._tqdm: Any = None
        self.total: Any = None
        self._lock = threading.Lock()
        if enabled is False or (enabled is None and not sys.stderr.isatty()):
            return
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            return
        self._tqdm = tqdm
        self.total = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="total", position=0
        )

    @contextlib.contextmanager
    def file(self, rel: str, size: int | None) -> Iterator[Callable[[int], None]]:
        """A bar for the file ``rel`` while it is fetched; yields the function that
        advances it (and the total) by a number of bytes."""
        if self._tqdm is None:
            yield lambda _n: None
            return
        name = rel if len(rel) <= 40 else "..." + rel[-37:]
        bar = self._tqdm(
            total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False
        )

        def advance(n: int) -> None:
            bar.update(n)
            with self._lock:
                self.total.update(n)

        try:
            yield advance
        finally:
            bar.close()

    def close(self) -> None:
        if self.total is not None:
            self.total.close()


def _record(lock_path: Path, root: Path, entries: Mapping[str, LockEntry]) -> None:
    """Add ``entries`` to the lock at ``lock_path`` (read again under an inter-process
    lock, so concurrent pulls that pin do not lose each other's pins). An artifact another
    pull pinned meanwhile to other bytes is a :class:`PullError`."""
    with _artifact_lock(root, f"lock:{os.path.abspath(lock_path)}"):
        current = Lock.read(lock_path)
        merged = dict(current.artifacts)
        for path, entry in entries.items():
            old = merged.get(path)
            if old is not None and old.sha256 != entry.sha256:
                raise PullError(
                    f"{path}: the lock {lock_path} now pins sha256 {old.sha256} (written by "
                    f"another pull meanwhile), this pull fetched {entry.sha256}; the lock was "
                    "not changed. Check which copy is right, then pull again.",
                    path=path,
                )
            merged[path] = entry
        Lock(lock_path, merged, exists=True).write()


def make_writable_root(root: str | os.PathLike[str] | None) -> None:
    """Create the root a pull provisions: ``root``, or of several (``os.pathsep`` between
    them) the last, the writable one; the others must exist already (they are only read)."""
    if root is None:
        return
    entries = [e for e in str(root).split(os.pathsep) if e.strip()]
    if entries:
        Path(entries[-1].strip()).expanduser().mkdir(parents=True, exist_ok=True)


def pull(
    names: Iterable[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str | Mirror] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    users: str | None = None,
    all: bool = False,
    upstream: bool = False,
    pin: bool = False,
    dry_run: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: bool | None = None,
    settings: Settings | None = None,
) -> PullReport:
    """Fetch what ``names`` (and what they require; or the specs ``users`` names, or
    ``all`` of them) need under ``root`` from ``mirrors``, every byte verified before it
    is visible (module docs). Returns a :class:`PullReport`; with ``dry_run`` nothing is
    fetched and the report says what would be, from where, and how many bytes.

    ``root`` (else ``$DP_MODELS_ROOT``, which must exist) is created when it does not
    exist; ``mirrors`` (else ``$DP_MODELS_MIRRORS``) are tried in order, then, with
    ``upstream``, each artifact's spec ``source``. ``pin``: artifacts pinned nowhere are
    fetched too, and what arrived (after any digest its source publishes agreed) is
    recorded in the lock, with where it came from; the lock must be the site's own file
    (``lock``, ``$DP_MODELS_LOCK``), never one inside the installed package.
    ``catalog`` is a loaded :class:`~dp_models._catalog.Catalog` or a catalog directory
    (with ``lock``). ``progress``: tqdm bars (None: on a terminal, when tqdm is installed).
    """
    if jobs < 1:
        raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
    make_writable_root(root)
    given_mirrors = None if mirrors is None else [m for m in mirrors if isinstance(m, str)]
    settings, cat = _settings_and_catalog(root, catalog, lock, settings, mirrors=given_mirrors)
    base = settings.require_root()
    sources: list[Mirror] = []
    owned: list[Mirror] = []  # made here from strings: closed here
    for m in mirrors if mirrors is not None else settings.mirrors:
        if isinstance(m, str):
            try:
                made: Mirror = make_mirror(m, settings)
            except SourceUnavailableError as exc:  # a registry that did not answer
                made = _Unreachable(exc)
            owned.append(made)
            sources.append(made)
        else:
            sources.append(m)
    try:
        return _pull(
            base, settings, cat, sources, names, users, all, upstream, pin, dry_run, jobs, progress
        )
    finally:
        for made in owned:
            close = getattr(made, "close", None)
            if callable(close):
                close()


def _pull(
    base: Path,
    settings: Settings,
    cat: Catalog,
    sources: list[Mirror],
    names: Iterable[str] | None,
    users: str | None,
    everything: bool,
    upstream: bool,
    pin: bool,
    dry_run: bool,
    jobs: int,
    progress: bool | None,
    *,
    only: set[str] | None = None,
    verb: str = "pull",
) -> PullReport:
    """The rest of :func:`pull`, its mirrors made. ``only``: pull just these artifact paths,
    checking only the writable root for what is there already (``import-hf-cache``)."""
    if not sources and not upstream:
        raise ConfigurationError(
            "no mirror to pull from: pass --from MIRROR (a directory laid out as a "
            "MODELS_ROOT, or an http(s) URL of one), set $DP_MODELS_MIRRORS, or fetch from "
            "the specs' upstream sources with --upstream"
        )
    opened: list[_Open] = []
    specs = _select(cat, names, users, everything, verb=verb)
    planned = _plan(cat, specs, opened, pin=pin)
    if only is not None:  # import-hf-cache: the hub cache's artifacts, nothing else
        planned = [i for i in planned if i.artifact.path in only]
        opened[:] = [o for o in opened if o.artifact.path in only]
    if pin and any(o.pin is None for o in opened):
        if (problem := unwritable(cat.lock.path)) is not None:
            raise LockError(problem, path=cat.lock.path)
    unlistable = [
        o
        for o in opened
        if o.artifact.kind == "dir"
        and not any(m.lists for m in sources)
        and not (upstream and can_list(o.artifact))
    ]
    if unlistable:
        raise NotPullableError(
            f"cannot pull {len(unlistable)} directory artifact(s):\n"
            + "\n".join(
                f"  - {o.artifact.path} (spec {o.spec!r}): no manifest in the lock, and no "
                "source that can list a directory"
                for o in unlistable
            )
            + "\nA directory is fetched file by file: its manifest comes from the lock "
            "(`dp-models lock --root MIRROR` on a directory mirror records it), or from a "
            "source that lists it: a directory mirror, or with --upstream a Hugging Face "
            "folder or an archive member; an http(s) mirror cannot list.",
            paths=[o.artifact.path for o in unlistable],
        )
    hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
    report = PullReport(base, [m.shown for m in sources], dry_run, [], upstream)
    if only is None:
        report.artifacts += _installed(cat, specs)
    # already there: in any root (the writable one last), or in the hub cache
    homes = settings.roots if only is None else (base,)
    cache = settings.hf_cache if only is None else None
    todo: list[_Planned] = []
    for item in planned:
        if (where := _present(homes, cache, item, hasher)) is not None:
            report.artifacts.append(
                PulledArtifact(
                    item.spec,
                    item.artifact.path,
                    item.artifact.kind,
                    item.pin.sha256,
                    item.size,
                    "present",
                    source=where,
                )
            )
        else:
            todo.append(item)
    todo_open: list[_Open] = []
    for o in opened:
        as_planned = _Planned(o.spec, o.artifact, o.pin, None, []) if o.pin is not None else None
        if (
            as_planned is not None
            and (where := _present(homes, cache, as_planned, hasher)) is not None
        ):
            assert o.pin is not None
            report.artifacts.append(
                PulledArtifact(
                    o.spec,
                    o.artifact.path,
                    o.artifact.kind,
                    o.pin.sha256,
                    None,
                    "present",
                    source=where,
                )
            )
        else:
            todo_open.append(o)
    top: Upstream | None = None
    if upstream:  # the specs' sources, after the mirrors
        artifacts = {a.path: a for s in specs for a in s.artifacts}
        top = Upstream(artifacts, base / LOCK_DIR / "upstream")
        sources.append(top)
    try:
        if dry_run:
            report.artifacts += [_dry(item, sources) for item in todo]
            report.artifacts += [_dry_open(o, sources) for o in todo_open]
            return report
        sizes = [i.size for i in todo]
        total = None if todo_open or None in sizes else sum(s or 0 for s in sizes)
        bars = _Progress(progress, total)
        puller = _Puller(base, sources, hasher, jobs, bars)
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dp-models-pull-artifact")
        try:
            futures: list[Future[Any]] = [pool.submit(puller.artifact, item) for item in todo]
            futures += [pool.submit(puller.opened, o) for o in todo_open]
            try:
                results = _wait(futures, puller.cancel)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                puller.files.shutdown(wait=True, cancel_futures=True)
        finally:
            bars.close()
        pins: dict[str, LockEntry] = {}
        for result in results:
            if isinstance(result, tuple):
                pulled, entry = result
                report.artifacts.append(pulled)
                if pin and entry is not None:  # the lock records it (a directory: its manifest)
                    pins[pulled.path] = entry
            else:
                report.artifacts.append(result)
        if pins:
            _record(cat.lock.path, base, pins)
            report.lock = cat.lock.path
        return report
    finally:
        if top is not None:
            top.close()


class HubCacheMirror(DirectoryMirror):
    """The files of hub cache snapshots, laid out as a MODELS_ROOT: each artifact with a
    ``huggingface`` section at its path (a directory's files below it), read from the
    blobs its snapshot links to. What ``dp-models import-hf-cache`` pulls from."""

    role = "hub cache"

    def __init__(self, cache: Path, located: Mapping[str, tuple[Artifact, Located]]) -> None:
        super().__init__(cache)
        self.shown = f"hub cache {cache}"
        self._files: dict[str, Path] = {}
        self._dirs: dict[str, dict[str, Path]] = {}
        for path, (art, found) in located.items():
            if art.kind == "file":
                self._files[path] = found.files[0][1]
                continue
            self._dirs[path] = dict(found.files)
            for name, real in found.files:
                self._files[f"{path}/{name}"] = real

    def list(self, rel: str) -> dict[str, Listing] | None:
        files = self._dirs.get(rel)
        if files is None:
            return None
        return {name: Listing(os.stat(real).st_size) for name, real in files.items()}

    def _open(self, rel: str) -> int:
        real = self._files.get(rel)
        if real is None:
            raise _NotThereError
        return super()._open(str(real))


def import_hf_cache(
    names: Iterable[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    users: str | None = None,
    all: bool = False,
    pin: bool = False,
    dry_run: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: bool | None = None,
    settings: Settings | None = None,
) -> PullReport:
    """Copy the ``huggingface`` artifacts of ``names`` (or ``users``, or ``all``) from the
    hub cache (``settings.hf_cache``) into the writable root, each verified against its pin
    before it is visible, exactly as :func:`pull` does from a mirror (``pin``: unpinned ones
    are pinned in the site's lock from what the cache holds). Artifacts already verified in
    the writable root are left alone; other artifacts of those specs are not touched. A
    snapshot missing from the cache, or unsafe, is its typed error before anything is
    copied."""
    if jobs < 1:
        raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
    make_writable_root(root)
    settings, cat = _settings_and_catalog(root, catalog, lock, settings)
    base = settings.require_root()
    specs = _select(cat, names, users, all, verb="import-hf-cache")
    wanted = {a.path: (s, a) for s in specs for a in s.artifacts if a.huggingface is not None}
    if not wanted:
        raise ConfigurationError(
            "import-hf-cache: none of the selected specs has an artifact with a 'huggingface' "
            f"snapshot ({', '.join(s.name for s in specs)}); `dp-models list` shows the specs"
        )
    cache = settings.hf_cache
    located = {
        path: (art, hub_snapshot(cache, art, spec=spec.name))
        for path, (spec, art) in wanted.items()
    }
    assert cache is not None  # hub_snapshot raised otherwise
    mirror = HubCacheMirror(cache, located)
    return _pull(
        base,
        settings,
        cat,
        [mirror],
        [s.name for s in specs],
        None,
        False,
        False,
        pin,
        dry_run,
        jobs,
        progress,
        only=set(wanted),
        verb="import-hf-cache",
    )


def _installed(catalog: Catalog, specs: Sequence[Spec]) -> list[PulledArtifact]:
    """The installed-distribution artifacts of ``specs``: pip provisions them, not pull."""
    rows = []
    for spec in specs:
        for art in spec.artifacts:
            if art.installed is None:
                continue
            pin = catalog.pin(art)
            line = pip_line(art)
            rows.append(
                PulledArtifact(
                    spec.name,
                    art.path,
                    art.kind,
                    pin.sha256 if pin is not None else None,
                    None,
                    "installed",
                    source=line,
                )
            )
    return rows


def _dry(item: _Planned, sources: Sequence[Mirror]) -> PulledArtifact:
    files = []
    for rel, sha256, size in item.files:
        path = f"{item.artifact.path}/{rel}" if rel else item.artifact.path
        where, size = _probe(path, size, sources)
        files.append(PullFile(path, sha256, size, where))
    known = [f.size for f in files]
    return PulledArtifact(
        item.spec,
        item.artifact.path,
        item.artifact.kind,
        item.pin.sha256,
        None if None in known else sum(s or 0 for s in known),
        "planned",
        files,
    )


def _dry_open(item: _Open, sources: Sequence[Mirror]) -> PulledArtifact:
    art = item.artifact
    sha256 = item.pin.sha256 if item.pin is not None else None
    files: list[PullFile] = []
    if art.kind == "file":
        where, size = _probe(art.path, item.pin.size if item.pin else None, sources)
        files.append(PullFile(art.path, sha256, size, where))
    else:
        try:
            found = _first_listing(sources, art.path)
        except SourceUnavailableError:
            found = None  # shown as listed by no source: the pull would stop there
        if found is not None:
            mirror, listing = found
            for rel, entry in sorted(listing.items()):
                path = f"{art.path}/{rel}"
                files.append(PullFile(path, entry.published, entry.size, mirror.where(path)))
    known = [f.size for f in files]
    return PulledArtifact(
        item.spec,
        art.path,
        art.kind,
        sha256,
        None if None in known or not files else sum(s or 0 for s in known),
        "planned",
        files,
        pinned=item.pin is None,
    )


def _probe(path: str, size: int | None, sources: Sequence[Mirror]) -> tuple[str | None, int | None]:
    """The first source that has ``path`` and the size (the pinned one, else the source's)."""
    for m in sources:
        if (found := m.probe(path)) is not None:
            return m.where(path), size if size is not None else found
    return None, size
