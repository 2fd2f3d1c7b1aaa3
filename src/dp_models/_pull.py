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

import base64
import contextlib
import hashlib
import http.client
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol
from urllib.parse import quote, urljoin, urlsplit

from ._catalog import Catalog, Pin
from ._digest import DigestCache, Hasher, directory_digest, directory_files
from ._errors import (
    ConfigurationError,
    NotPullableError,
    NotRegularFileError,
    PulledFileMismatchError,
    PullError,
    RedirectLoopError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from ._io import atomic_write, fsync_directory, open_regular
from ._lock import ManifestFile
from ._paths import resolve_artifact_path
from ._settings import Settings
from ._spec import Artifact, Spec
from ._urls import EndpointURL, parse_endpoint, redact, redact_url
from ._version import __version__

try:  # POSIX only; elsewhere concurrent pulls of one root may fetch a file twice
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_DIR",
    "DirectoryMirror",
    "HttpMirror",
    "Mirror",
    "PullFile",
    "PullReport",
    "PulledArtifact",
    "make_mirror",
    "pull",
]

CHUNK_SIZE = 1 << 20
#: Where the inter-process locks of concurrent pulls live, inside the root.
LOCK_DIR = ".dp-models-pull"
DEFAULT_JOBS = 4
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class _NotThereError(Exception):
    """The mirror does not have the file (the next mirror is asked)."""


class _CancelledError(Exception):
    """Another task failed or Ctrl-C: stop, clean up."""


def _write_chunk(f: BinaryIO, data: bytes | memoryview) -> None:
    """Write one chunk to the temporary file (one place, so tests can fill the disk)."""
    f.write(data)


class _Sink:
    """The temporary file a download streams into, hashed as it is written."""

    def __init__(
        self,
        f: BinaryIO,
        size: int | None,
        cancel: threading.Event,
        advance: Callable[[int], None],
    ) -> None:
        self.f, self.size, self.cancel, self.advance = f, size, cancel, advance
        self.hash = hashlib.sha256()
        self.received = 0

    def reset(self) -> None:
        self.f.seek(0)
        self.f.truncate()
        self.hash = hashlib.sha256()
        self.received = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.cancel.is_set():
            raise _CancelledError
        if self.size is not None and self.received + len(data) > self.size:
            raise _TooLongError
        try:
            _write_chunk(self.f, data)
        except OSError as exc:  # the destination (disk full...), not the mirror: no retry
            raise _DestinationError(exc) from exc
        self.hash.update(data)
        self.received += len(data)
        self.advance(len(data))


class _TooLongError(Exception):
    """More bytes than the pinned size."""


class _DestinationError(Exception):
    """Writing the temporary file failed; ``error`` is the OSError, raised as it is."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class Mirror(Protocol):
    """Where files are fetched from. ``shown`` names it in messages (credentials masked)."""

    shown: str

    def fetch(self, rel: str, sink: _Sink) -> None:
        """Stream the file at ``rel`` (relative to the mirror's root) into ``sink``, whole;
        raise ``_NotThereError`` when the mirror does not have it."""
        ...

    def probe(self, rel: str) -> int | None:
        """The size of the file at ``rel``, or None when the mirror does not have it."""
        ...


class DirectoryMirror:
    """A directory laid out as a MODELS_ROOT."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.shown = str(self.path)

    def _open(self, rel: str) -> int:
        try:
            return open_regular(self.path / rel)
        except (FileNotFoundError, NotADirectoryError):
            raise _NotThereError from None
        except (NotRegularFileError, OSError) as exc:
            raise SourceUnavailableError(
                f"mirror {self.shown}: {rel} cannot be read ({exc})", source=self.shown, path=rel
            ) from None

    def fetch(self, rel: str, sink: _Sink) -> None:
        fd = self._open(rel)
        try:
            if sink.size is None:  # no size pinned: the file's own (the sha256 decides)
                sink.size = os.fstat(fd).st_size
            while chunk := os.read(fd, CHUNK_SIZE):
                sink.write(chunk)
        finally:
            os.close(fd)

    def probe(self, rel: str) -> int | None:
        try:
            fd = self._open(rel)
        except _NotThereError:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)


class HttpMirror:
    """An http(s) server with a MODELS_ROOT's layout below its URL. Credentials in the URL
    are sent (Basic authentication) to that server only, never to one it redirects to,
    and never shown."""

    def __init__(
        self, url: str, *, timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 0.2
    ) -> None:
        self.url: EndpointURL = parse_endpoint(url, source="mirror")
        self.shown = self.url.redacted
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._auth: str | None = None
        if self.url.username is not None:
            token = f"{self.url.username}:{self.url.password or ''}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode("ascii")

    def _origin(self) -> tuple[str, str, int]:
        return (self.url.scheme, self.url.host, self.url.effective_port)

    def _request(
        self, method: str, rel: str, offset: int
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the request, following redirects; the final answer, not yet read."""
        host = f"[{self.url.host}]" if ":" in self.url.host else self.url.host
        url = f"{self.url.scheme}://{host}:{self.url.effective_port}{self.url.path}/" + quote(rel)
        seen: set[str] = set()
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            port = parts.port or (443 if scheme == "https" else 80)
            conn: http.client.HTTPConnection
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.hostname or "", port, timeout=self.timeout_s
                )
            else:
                conn = http.client.HTTPConnection(
                    parts.hostname or "", port, timeout=self.timeout_s
                )
            headers = {"User-Agent": f"dp-models/{__version__}", "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            if self._auth is not None and (scheme, parts.hostname, port) == self._origin():
                headers["Authorization"] = self._auth
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            try:
                conn.request(method, target, headers=headers)
                resp = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            if resp.status not in _REDIRECT_STATUSES:
                return conn, resp
            location = resp.getheader("Location")
            resp.close()
            conn.close()
            seen.add(url)
            if not location:
                raise SourceUnavailableError(
                    f"mirror {self.shown}: {rel}: a redirect ({resp.status}) without a Location",
                    source=self.shown,
                    path=rel,
                )
            url = urljoin(url, location)
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise SourceUnavailableError(
                    f"mirror {self.shown}: {rel}: redirected to a URL that is not http(s)",
                    source=self.shown,
                    path=rel,
                )
            if url in seen:
                break
        raise RedirectLoopError(
            f"mirror {self.shown}: {rel}: the redirects loop or go on for more than "
            f"{_MAX_REDIRECTS} hops; fix the server's configuration",
            source=self.shown,
            path=rel,
        )

    def _unavailable(self, rel: str, why: str) -> SourceUnavailableError:
        return SourceUnavailableError(
            f"mirror {self.shown}: {rel}: {redact(why)}", source=self.shown, path=rel
        )

    def fetch(self, rel: str, sink: _Sink) -> None:
        failures = 0
        while True:
            start = sink.received
            try:
                self._fetch_once(rel, sink)
            except SourceUnavailableError:
                raise
            except (OSError, http.client.HTTPException, _RetryError) as exc:
                # refused, reset, timed out, cut short, or an error status: retried, resumed
                # where it stopped; tries without progress are bounded
                failures = 0 if sink.received > start else failures + 1
                if failures > self.retries:
                    why = (
                        str(exc) if isinstance(exc, _RetryError) else f"{type(exc).__name__}: {exc}"
                    )
                    raise self._unavailable(
                        rel, f"{why} (after {self.retries} retries, {sink.received} bytes in)"
                    ) from None
                if failures:
                    time.sleep(self.backoff_s * 2 ** (failures - 1))
                continue
            if sink.size is None or sink.received == sink.size:
                return

    def _fetch_once(self, rel: str, sink: _Sink) -> None:
        offset = sink.received
        conn, resp = self._request("GET", rel, offset)
        try:
            if resp.status in (404, 410):
                raise _NotThereError
            if resp.status >= 500 or resp.status == 429:
                raise _RetryError(f"HTTP {resp.status} {resp.reason}")
            if resp.status == 200 and offset:
                sink.reset()  # the server ignored the range: start over
            elif resp.status == 206 and offset:
                content_range = resp.getheader("Content-Range") or ""
                if not content_range.startswith(f"bytes {offset}-"):
                    raise self._unavailable(
                        rel, f"asked for bytes from {offset}, got range {content_range!r}"
                    )
            elif resp.status != 200:
                raise self._unavailable(rel, f"HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            if sink.size is None and length is not None and length.isascii() and length.isdigit():
                sink.size = int(length)  # no size pinned: the announced one (sha256 decides)
            if sink.size is None:  # no size known at all: the answer's end is the file's
                while chunk := resp.read(CHUNK_SIZE):
                    sink.write(chunk)
                return
            remaining = sink.size - sink.received
            if length is not None:
                if not (length.isascii() and length.isdigit()) or int(length) != remaining:
                    raise PulledFileMismatchError(
                        f"mirror {self.shown}: {rel}: the server announces {length[:24]} bytes, "
                        f"the pin {remaining} (of {sink.size}); it holds another file",
                        source=self.shown,
                        path=rel,
                        expected=f"{remaining} bytes",
                        actual=f"{length[:24]} bytes",
                    )
            while True:
                chunk = resp.read(CHUNK_SIZE)
                if not chunk:
                    break
                sink.write(chunk)
            if length is None and sink.received < sink.size:
                raise _RetryError(f"the answer ended after {sink.received} of {sink.size} bytes")
            if sink.received < sink.size:
                raise _RetryError(
                    f"the answer ended after {sink.received - offset} of {remaining} announced "
                    "bytes"
                )
        finally:
            resp.close()
            conn.close()

    def probe(self, rel: str) -> int | None:
        conn, resp = self._request("HEAD", rel, 0)
        try:
            if resp.status in (404, 410):
                return None
            if resp.status != 200:
                raise self._unavailable(rel, f"HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            return int(length) if length and length.isascii() and length.isdigit() else None
        finally:
            resp.close()
            conn.close()


class _RetryError(Exception):
    """A failure worth another try (an error status, an answer cut short)."""


def make_mirror(value: str) -> Mirror:
    """The mirror a ``--from`` value names: an http(s) URL, else a directory (``file://``
    allowed)."""
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        return HttpMirror(value)
    if lowered.startswith("file://"):
        value = value[len("file://") :]
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigurationError(
            f"mirror {redact_url(value)!r} is neither an http(s) URL nor a directory"
        )
    return DirectoryMirror(path.resolve())


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class PullFile:
    """One file to fetch: ``path`` relative to the root, where it comes from (a mirror,
    masked; None: no mirror has it, in a dry run). ``size`` is None only in a dry run,
    for a file pinned without a size that no mirror has."""

    path: str
    sha256: str
    size: int | None
    source: str | None = None


@dataclass
class PulledArtifact:
    """One artifact of a pull: ``present`` (it verified, nothing fetched), ``fetched``, or,
    in a dry run, ``planned``."""

    spec: str
    path: str
    kind: Literal["file", "dir"]
    sha256: str
    #: None: pinned without a size (a spec's upstream sha256) and not fetched
    size: int | None
    status: Literal["present", "fetched", "planned"]
    files: list[PullFile] = field(default_factory=list)


@dataclass
class PullReport:
    """What a pull did (or, with ``dry_run``, would do)."""

    root: Path
    mirrors: list[str]
    dry_run: bool
    artifacts: list[PulledArtifact]

    @property
    def bytes(self) -> int:
        """Bytes fetched (a dry run: to fetch)."""
        return sum(a.size or 0 for a in self.artifacts if a.status != "present")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "root": str(self.root),
            "mirrors": self.mirrors,
            "dry_run": self.dry_run,
            "bytes": self.bytes,
            "artifacts": [
                {
                    "spec": a.spec,
                    "path": a.path,
                    "kind": a.kind,
                    "sha256": a.sha256,
                    "size": a.size,
                    "status": a.status,
                    "files": [
                        {"path": f.path, "size": f.size, "source": f.source} for f in a.files
                    ],
                }
                for a in self.artifacts
            ],
        }


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


def _select(
    catalog: Catalog, names: Iterable[str] | None, users: str | None, everything: bool
) -> list[Spec]:
    wanted: list[str] = list(names or [])
    if users is not None:
        wanted += [n for n, s in catalog.items() if users in s.users]
    if everything:
        wanted += list(catalog)
    if not wanted and not everything and users is None:
        raise ConfigurationError(
            "pull needs spec names, users=PROCESSOR (--users) or all=True (--all)"
        )
    specs: dict[str, Spec] = {}
    for name in wanted:
        for spec in catalog.closure(name):
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def _plan(catalog: Catalog, specs: Sequence[Spec]) -> list[_Planned]:
    planned: dict[str, _Planned] = {}
    unpinned: list[str] = []
    no_manifest: list[str] = []
    for spec in specs:
        for art in spec.artifacts:
            if art.path in planned:
                continue
            pin = catalog.pin(art)
            if pin is None:
                unpinned.append(f"{art.path} (spec {spec.name!r})")
                continue
            if art.kind == "file":
                planned[art.path] = _Planned(
                    spec.name, art, pin, pin.size, [("", pin.sha256, pin.size)]
                )
                continue
            entry = catalog.lock.artifacts.get(art.path)
            files: dict[str, ManifestFile] | None = None
            if entry is not None and entry.sha256 == pin.sha256 and entry.files is not None:
                files = dict(entry.files)
            if files is None:
                no_manifest.append(f"{art.path} (spec {spec.name!r}: no manifest in the lock)")
                continue
            listed: list[tuple[str, str, int | None]] = [
                (rel, f.sha256, f.size) for rel, f in sorted(files.items())
            ]
            total = sum(f.size for f in files.values())
            planned[art.path] = _Planned(spec.name, art, pin, total, listed)
    # a file inside a directory artifact being pulled comes with that directory (its
    # manifest names it): fetched once, as part of the directory
    for item in [i for i in planned.values() if i.artifact.kind == "dir"]:
        prefix = item.artifact.path + "/"
        manifest = {rel: sha256 for rel, sha256, _ in item.files}
        for path in [p for p in planned if p.startswith(prefix)]:
            inner = planned.pop(path)
            found = manifest.get(path[len(prefix) :])
            if inner.artifact.kind != "file" or found != inner.pin.sha256:
                why = "does not list it" if found is None else "lists another digest"
                no_manifest.append(
                    f"{path} (spec {inner.spec!r}: inside the directory artifact "
                    f"{item.artifact.path}, whose manifest {why})"
                )
    if unpinned or no_manifest:
        lines = [f"  - {p}: not pinned" for p in unpinned]
        lines += [f"  - {p}" for p in no_manifest]
        raise NotPullableError(
            f"cannot pull {len(lines)} artifact(s) of the lock {catalog.lock.path}:\n"
            + "\n".join(lines)
            + "\npull fetches pinned artifacts only (fetching and pinning a first copy, "
            "`--pin`, is for a later version). Provision them on a mirror, run "
            "`dp-models lock --root MIRROR` there (it pins each artifact and records each "
            "directory's manifest), then pull with that lock.",
            paths=[p.split(" ", 1)[0] for p in unpinned + no_manifest],
        )
    return list(planned.values())


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
        digests = hasher.files([p for _, p in listed])
        pairs = []
        for (rel, _), d in zip(listed, digests, strict=True):
            if isinstance(d, BaseException):
                return False
            pairs.append((rel, d.sha256))
        return directory_digest(pairs) == item.pin.sha256
    except (OSError, ValueError):
        return False


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
        advance: Callable[[int], None],
    ) -> None:
        self.root, self.mirrors, self.hasher, self.jobs = root, mirrors, hasher, jobs
        self.advance = advance
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
                result.files = self.directory(item, dest)
        return result

    def directory(self, item: _Planned, dest: Path) -> list[PullFile]:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
        try:
            futures: list[Future[PullFile]] = []
            for rel, sha256, size in item.files:
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                futures.append(
                    self.files.submit(
                        self.file, f"{item.artifact.path}/{rel}", target, sha256, size
                    )
                )
            fetched = _wait(futures, self.cancel)
            # each file was verified as it streamed; what the directory holds is exactly
            # the manifest's files, so their digests make the directory digest
            listed = [rel for rel, _ in directory_files(tmp)]
            if sorted(listed) != sorted(rel for rel, _, _ in item.files):  # pragma: no cover
                raise RuntimeError(f"{tmp} holds other files than the manifest")
            digest = directory_digest([(rel, sha256) for rel, sha256, _ in item.files])
            if digest != item.pin.sha256:  # a manifest that disagrees with the pin
                raise PulledFileMismatchError(
                    f"{item.artifact.path}: the files fetched make the directory digest "
                    f"{digest}, expected {item.pin.sha256} (pinned in the {item.pin.source})",
                    source=", ".join(sorted({f.source or "" for f in fetched})),
                    path=item.artifact.path,
                    expected=item.pin.sha256,
                    actual=digest,
                )
            for directory, _, _ in os.walk(tmp):
                os.chmod(directory, 0o755)
            _place(tmp, dest)
            return fetched
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def file(
        self, rel: str, dest: Path, sha256: str, size: int | None, *, final: bool = False
    ) -> PullFile:
        """Fetch ``rel`` into ``dest`` from the first mirror that has it, verified before
        the temporary file is renamed to ``dest`` (:func:`~dp_models._io.atomic_write`)."""
        if final and os.path.isdir(dest) and not os.path.islink(dest):
            raise PullError(
                f"{rel}: {dest} is a directory where the spec wants a file; remove it, then "
                "pull again",
                path=rel,
            )
        got: list[tuple[str, int]] = []

        def write(f: BinaryIO) -> None:
            got.append(self._stream(rel, f, sha256, size))

        atomic_write(dest, write, mode=0o644)
        source, fetched = got[0]
        return PullFile(rel, sha256, fetched, source)

    def _stream(self, rel: str, f: BinaryIO, sha256: str, size: int | None) -> tuple[str, int]:
        """Stream ``rel`` from the first mirror that has it into ``f``, verified: the
        mirror (masked) and the size."""
        failures: list[SourceUnavailableError] = []
        for mirror in self.mirrors:
            sink = _Sink(f, size, self.cancel, self.advance)
            sink.reset()
            try:
                mirror.fetch(rel, sink)
            except _NotThereError:
                continue
            except _DestinationError as exc:
                raise exc.error from None
            except SourceUnavailableError as exc:
                failures.append(exc)
                continue
            except _TooLongError:
                raise PulledFileMismatchError(
                    f"mirror {mirror.shown}: {rel} is longer than the pinned {size} bytes; "
                    "it holds another file. Nothing was written.",
                    source=mirror.shown,
                    path=rel,
                    expected=f"{size} bytes",
                    actual=f"more than {size} bytes",
                ) from None
            actual = sink.hash.hexdigest()
            if (size is not None and sink.received != size) or actual != sha256:
                raise PulledFileMismatchError(
                    f"mirror {mirror.shown}: {rel} has sha256 {actual} ({sink.received} "
                    f"bytes), expected {sha256} ({size or 'any'} bytes). The mirror holds other "
                    "bytes "
                    "than the lock pins; nothing was written. Re-provision the mirror, or "
                    "update the pin if the new file is intended.",
                    source=mirror.shown,
                    path=rel,
                    expected=sha256,
                    actual=actual,
                )
            return mirror.shown, sink.received
        if failures:
            raise failures[0]
        shown = [m.shown for m in self.mirrors]
        raise SourceNotFoundError(
            f"{rel}: no mirror has it (asked: {', '.join(shown)}). Copy it to the mirror "
            "from a provisioned root.",
            path=rel,
            sources=shown,
        )


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


def _progress_bar(enabled: bool | None, total: int) -> Any:
    """A tqdm bar of bytes on a terminal (or when asked), else None."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="pull")


def pull(
    names: Iterable[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str | Mirror] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    users: str | None = None,
    all: bool = False,
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
    exist; ``mirrors``
    (else ``$DP_MODELS_MIRRORS``) are tried in order. ``catalog`` is a loaded
    :class:`~dp_models._catalog.Catalog` or a catalog directory (with ``lock``).
    ``progress``: a tqdm bar (None: on a terminal, when tqdm is installed).
    """
    if jobs < 1:
        raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
    if root is not None:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    given_mirrors = None if mirrors is None else [m for m in mirrors if isinstance(m, str)]
    if settings is None:
        settings = Settings.resolve(
            models_root=root,
            catalog=None if isinstance(catalog, Catalog) else catalog,
            lock=lock,
            mirrors=given_mirrors,
        )
    base = settings.require_root()
    if isinstance(catalog, Catalog):
        cat = catalog
    else:
        cat = Catalog.load(settings=settings)
    sources: list[Mirror] = []
    for m in mirrors if mirrors is not None else settings.mirrors:
        sources.append(make_mirror(m) if isinstance(m, str) else m)
    if not sources:
        raise ConfigurationError(
            "no mirror to pull from: pass --from MIRROR (a directory laid out as a "
            "MODELS_ROOT, or an http(s) URL of one), or set $DP_MODELS_MIRRORS"
        )
    planned = _plan(cat, _select(cat, names, users, all))
    hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
    report = PullReport(base, [m.shown for m in sources], dry_run, [])
    todo: list[_Planned] = []
    for item in planned:
        if _verifies(base, item, hasher):
            report.artifacts.append(
                PulledArtifact(
                    item.spec,
                    item.artifact.path,
                    item.artifact.kind,
                    item.pin.sha256,
                    item.size,
                    "present",
                )
            )
        else:
            todo.append(item)
    if dry_run:
        for item in todo:
            files = []
            for rel, sha256, size in item.files:
                path = f"{item.artifact.path}/{rel}" if rel else item.artifact.path
                where = None
                for m in sources:
                    if (found := m.probe(path)) is not None:
                        where, size = m.shown, size if size is not None else found
                        break
                files.append(PullFile(path, sha256, size, where))
            known = [f.size for f in files]
            report.artifacts.append(
                PulledArtifact(
                    item.spec,
                    item.artifact.path,
                    item.artifact.kind,
                    item.pin.sha256,
                    None if None in known else sum(s or 0 for s in known),
                    "planned",
                    files,
                )
            )
        return report
    bar = _progress_bar(progress, sum(i.size or 0 for i in todo))
    lock_ = threading.Lock()

    def advance(n: int) -> None:
        if bar is not None:
            with lock_:
                bar.update(n)

    puller = _Puller(base, sources, hasher, jobs, advance)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dp-models-pull-artifact")
    try:
        futures = [pool.submit(puller.artifact, item) for item in todo]
        try:
            report.artifacts += _wait(futures, puller.cancel)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            puller.files.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return report
