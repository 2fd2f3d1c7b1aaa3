"""Moving bytes from where they are kept into a file being written, for ``dp-models
pull``: a directory or an http(s) server (a mirror, or an upstream URL), streamed into a
:class:`Sink` that hashes as it writes and stops at the size it was promised.

Over HTTP a dropped connection is resumed with a range request, an error status is
retried a few times, a redirect loop, an answer longer or shorter than announced are typed
errors. Credentials in a URL are sent (Basic authentication) to that server only, never to
one it redirects to, and never shown. A digest the server publishes for the file (the
``X-Linked-Etag`` sha256 a Hugging Face-style server sends with an LFS file) is kept on the
sink, so the caller can compare it with what arrived.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from ._digest import directory_files
from ._errors import (
    ConfigurationError,
    NotRegularFileError,
    PulledFileMismatchError,
    RedirectLoopError,
    SourceUnavailableError,
)
from ._io import flush_data, open_regular
from ._urls import EndpointURL, parse_endpoint, redact, redact_url
from ._version import __version__

__all__ = [
    "CHUNK_SIZE",
    "Destination",
    "DirectoryMirror",
    "HttpMirror",
    "Listing",
    "Mirror",
    "Sink",
    "make_mirror",
]

CHUNK_SIZE = 1 << 20
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
T = TypeVar("T")
_SHA256 = re.compile(r'^(?:W/)?"?([0-9a-f]{64})"?$')


class _NotThereError(Exception):
    """The mirror does not have the file (the next mirror is asked)."""


class _CancelledError(Exception):
    """Another task failed or Ctrl-C: stop, clean up."""


def _write_chunk(f: BinaryIO, data: bytes | memoryview) -> None:
    """Write one chunk to the temporary file (one place, so tests can fill the disk)."""
    f.write(data)


#: Bytes written between two background flushes to disk (:class:`Sink`, ``sync=True``).
SYNC_EVERY = 32 << 20
_fdatasync = flush_data


class Sink:
    """The temporary file a download streams into, hashed as it is written. ``size``: the
    bytes it may take (None: not known yet; the source's own size is then taken).
    ``published``: a sha256 the source publishes for the file, when it sends one.

    With ``sync``, what was written is flushed to disk on a helper thread every
    :data:`SYNC_EVERY` bytes while the download goes on (one flush at a time; a flush still
    running when the next is due is not queued), so the fsync that must come before the
    file is renamed into place has only the tail left, instead of stalling on the whole
    file. :meth:`finish` waits for the flush in flight; call it before the file is closed."""

    def __init__(
        self,
        f: BinaryIO,
        size: int | None,
        cancel: threading.Event,
        advance: Callable[[int], None],
        *,
        sync: bool = False,
    ) -> None:
        self.f, self.size, self.cancel, self.advance = f, size, cancel, advance
        self.hash = hashlib.sha256()
        self.received = 0
        self.published: str | None = None
        self._sync = sync
        self._synced_at = 0
        self._flusher: threading.Thread | None = None

    def finish(self) -> None:
        """Wait for a background flush still running."""
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None

    def _flush_in_background(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        self.f.flush()
        fd = self.f.fileno()

        def flush() -> None:
            with contextlib.suppress(OSError):  # the fsync before the rename reports errors
                _fdatasync(fd)

        self._flusher = threading.Thread(target=flush, name="dp-models-pull-sync", daemon=True)
        self._flusher.start()

    def reset(self) -> None:
        self.finish()
        self._synced_at = 0
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
        if self._sync and self.received - self._synced_at >= SYNC_EVERY:
            self._synced_at = self.received
            self._flush_in_background()


class _TooLongError(Exception):
    """More bytes than the pinned size."""


class _DestinationError(Exception):
    """Writing the temporary file failed; ``error`` is the OSError, raised as it is."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Listing:
    """One file of a directory as its source lists it: its size, and the sha256 the source
    publishes for it (None: none published)."""

    size: int | None
    published: str | None = None


class Mirror(Protocol):
    """Where files are fetched from. ``shown`` names it in messages (credentials masked);
    ``role`` says what it is ("mirror", "upstream"); ``lists``: whether :meth:`list` can
    list any directory it holds (a pull of a directory with no manifest in the lock needs
    one that can)."""

    shown: str
    role: str
    lists: bool

    def fetch(self, rel: str, sink: Sink) -> None:
        """Stream the file at ``rel`` (relative to the mirror's root) into ``sink``, whole;
        raise ``_NotThereError`` when the mirror does not have it."""
        ...

    def probe(self, rel: str) -> int | None:
        """The size of the file at ``rel``, or None when the mirror does not have it."""
        ...

    def where(self, rel: str) -> str:
        """Where ``rel`` comes from, for reports and the lock (credentials masked)."""
        ...

    def list(self, rel: str) -> dict[str, Listing] | None:
        """The files (relative path -> :class:`Listing`) of the directory at ``rel``, or
        None when the mirror cannot list a directory, or does not have it."""
        ...


class _PutMismatchError(Exception):
    """The bytes a :class:`Destination` read to publish are not the pinned ones; nothing was
    made visible. ``actual``: their sha256 (None: not hashed, the file changed while it was
    read), ``size``: how many were read."""

    def __init__(self, actual: str | None, size: int) -> None:
        super().__init__(actual)
        self.actual, self.size = actual, size


class Destination(Protocol):
    """Where ``dp-models push`` publishes a root's files (an object store, an OCI
    registry), laid out as a MODELS_ROOT. Files are put first, each whole, the manifest
    (the lock's JSON for what was pushed) last, so a reader that finds the manifest finds
    every file it lists. ``shown`` names it in messages (credentials masked)."""

    shown: str

    def has(self, rel: str, size: int, sha256: str) -> bool:
        """Whether the destination already holds exactly these bytes at ``rel`` (then the
        push skips the file)."""
        ...

    def put(
        self,
        rel: str,
        fd: int,
        size: int,
        sha256: str,
        advance: Callable[[int], None],
        *,
        unchanged: Callable[[], bool] | None = None,
    ) -> None:
        """Publish the ``size`` bytes of the open regular file ``fd`` (read from offset 0)
        at ``rel``, calling ``advance(n)`` as they go. The bytes are hashed as they are
        read, unless ``unchanged`` is given: the file was verified just before (through the
        digest cache), and ``unchanged()`` says whether it still is that file, untouched
        (called after the last byte is read, before anything becomes visible). When they
        are not ``sha256`` (or the file changed) nothing becomes visible and
        ``_PutMismatchError`` is raised; a failure of the destination raises
        ``SourceUnavailableError``."""
        ...

    def commit(self, manifest: bytes) -> str:
        """Publish the manifest, after every file; returns the reference a pull names
        (for a registry: by digest)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class DirectoryMirror:
    """A directory laid out as a MODELS_ROOT."""

    role = "mirror"
    lists = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.shown = str(self.path)

    def where(self, rel: str) -> str:
        return self.shown

    def list(self, rel: str) -> dict[str, Listing] | None:
        top = self.path / rel
        if top.is_symlink() or not top.is_dir():
            return None
        try:
            return {name: Listing(os.stat(path).st_size) for name, path in directory_files(top)}
        except (OSError, ValueError) as exc:
            raise SourceUnavailableError(
                f"mirror {self.shown}: {rel} cannot be listed ({exc})", source=self.shown, path=rel
            ) from None

    def _open(self, rel: str) -> int:
        try:
            return open_regular(self.path / rel)
        except (FileNotFoundError, NotADirectoryError):
            raise _NotThereError from None
        except (NotRegularFileError, OSError) as exc:
            raise SourceUnavailableError(
                f"{self.role} {self.shown}: {rel} cannot be read ({exc})",
                source=self.shown,
                path=rel,
            ) from None

    def fetch(self, rel: str, sink: Sink) -> None:
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

    lists = False

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        role: str = "mirror",
    ) -> None:
        self.role = role
        self.url: EndpointURL = parse_endpoint(url, source=role)
        self.shown = self.url.redacted
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._auth: str | None = None
        if self.url.username is not None:
            token = f"{self.url.username}:{self.url.password or ''}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode("ascii")

    def where(self, rel: str) -> str:
        return self.shown

    def list(self, rel: str) -> dict[str, Listing] | None:
        return None  # a static file server has no listing the pull could trust

    def _origin(self) -> tuple[str, str, int]:
        return (self.url.scheme, self.url.host, self.url.effective_port)

    def _request(
        self, method: str, rel: str, offset: int, *, query: str = ""
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str | None]:
        """Send the request, following redirects; the final answer, not yet read, and the
        sha256 a server on the way published for the file (``X-Linked-Etag``), if any."""
        host = f"[{self.url.host}]" if ":" in self.url.host else self.url.host
        url = f"{self.url.scheme}://{host}:{self.url.effective_port}{self.url.path}"
        if rel:
            url = url.rstrip("/") + "/" + quote(rel)
        if query:
            url += "?" + query
        published: str | None = None
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
            published = _published_sha256(resp) or published
            if resp.status not in _REDIRECT_STATUSES:
                return conn, resp, published
            location = resp.getheader("Location")
            resp.close()
            conn.close()
            seen.add(url)
            if not location:
                raise SourceUnavailableError(
                    f"{self.role} {self.shown}: {rel}: a redirect ({resp.status}) without a "
                    "Location",
                    source=self.shown,
                    path=rel,
                )
            url = urljoin(url, location)
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise SourceUnavailableError(
                    f"{self.role} {self.shown}: {rel}: redirected to a URL that is not http(s)",
                    source=self.shown,
                    path=rel,
                )
            if url in seen:
                break
        raise RedirectLoopError(
            f"{self.role} {self.shown}: {rel}: the redirects loop or go on for more than "
            f"{_MAX_REDIRECTS} hops; fix the server's configuration",
            source=self.shown,
            path=rel,
        )

    def _unavailable(self, rel: str, why: str) -> SourceUnavailableError:
        return SourceUnavailableError(
            f"{self.role} {self.shown}: {rel}: {redact(why)}", source=self.shown, path=rel
        )

    def _retrying(self, rel: str, attempt: Callable[[], T], progress: Callable[[], int]) -> T:
        """``attempt()`` until it succeeds: a refused, reset or timed-out connection, an
        answer cut short or an error status is tried again after a backoff, up to
        ``retries`` times in a row without ``progress`` (bytes received); then a
        :class:`SourceUnavailableError`. Other typed errors pass at once."""
        failures = 0
        while True:
            start = progress()
            try:
                return attempt()
            except SourceUnavailableError:
                raise
            except (OSError, http.client.HTTPException, _RetryError) as exc:
                failures = 0 if progress() > start else failures + 1
                if failures > self.retries:
                    why = (
                        str(exc) if isinstance(exc, _RetryError) else f"{type(exc).__name__}: {exc}"
                    )
                    raise self._unavailable(
                        rel, f"{why} (after {self.retries} retries, {progress()} bytes in)"
                    ) from None
                if failures:
                    time.sleep(self.backoff_s * 2 ** (failures - 1))

    def fetch(self, rel: str, sink: Sink) -> None:
        # each attempt resumes where the last one stopped (a range request)
        self._retrying(rel, lambda: self._fetch_once(rel, sink), lambda: sink.received)

    def _fetch_once(self, rel: str, sink: Sink) -> None:
        offset = sink.received
        conn, resp, published = self._request("GET", rel, offset)
        sink.published = published or sink.published
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
                        f"{self.role} {self.shown}: {rel}: the server announces {length[:24]} "
                        "bytes, "
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
        conn, resp, _ = self._request("HEAD", rel, 0)
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

    def get_small(self, rel: str, max_bytes: int, *, query: str = "") -> bytes | None:
        """The whole (small) file at ``rel``, or None when the server does not have it:
        for a digest published beside a file, or a listing. Retried like :meth:`fetch`."""
        data = self._retrying(rel, lambda: self._get_once(rel, max_bytes, query), lambda: 0)
        if data is not None and len(data) > max_bytes:
            raise self._unavailable(rel, f"larger than the {max_bytes} bytes expected")
        return data

    def _get_once(self, rel: str, max_bytes: int, query: str) -> bytes | None:
        conn, resp, _ = self._request("GET", rel, 0, query=query)
        try:
            if resp.status in (404, 410):
                return None
            if resp.status >= 500 or resp.status == 429:
                raise _RetryError(f"HTTP {resp.status} {resp.reason}")
            if resp.status != 200:
                raise self._unavailable(rel, f"HTTP {resp.status} {resp.reason}")
            return resp.read(max_bytes + 1)
        finally:
            resp.close()
            conn.close()


def _published_sha256(resp: http.client.HTTPResponse) -> str | None:
    """The sha256 a Hugging Face-style server publishes for an LFS file (``X-Linked-Etag``,
    sent with the redirect to the file's storage), or None."""
    value = (resp.getheader("X-Linked-Etag") or "").strip().lower()
    found = _SHA256.match(value)
    return found.group(1) if found else None


class _RetryError(Exception):
    """A failure worth another try (an error status, an answer cut short)."""


def make_mirror(value: str) -> Mirror:
    """The mirror a ``--from`` value names: an http(s) URL, else a directory (``file://``
    allowed). :func:`dp_models._pull.make_mirror` adds the stores."""
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
