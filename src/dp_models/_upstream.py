"""Upstream sources for ``dp-models pull --upstream``: where each artifact's spec says its
bytes come from, as one more mirror tried after the site's own.

An artifact's ``source`` (:class:`~dp_models._spec.Artifact`) is

* an http(s) URL: the file itself, or, for a directory artifact, the folder its files are
  fetched below (``URL/<file>``). A Hugging Face-style ``.../resolve/<revision>/...`` URL
  names a full commit revision (the spec refuses a branch); the sha256 such a server
  publishes for an LFS file (``X-Linked-Etag``) is checked against the bytes, and its
  folder is listed through the hub's tree API (``/api/models/REPO/tree/REVISION/PATH``),
  whose LFS entries publish each file's sha256 too. Any other URL may have a ``.sha256``
  file beside it (``URL.sha256``, ``sha256sum`` style): when it does, it must agree;
* ``{url, member, sha256}``: a file or folder inside a wheel or zip archive. The archive is
  fetched once per pull into the root's pull directory (its ``sha256``, when given, and a
  published digest are checked before a member is read), members are read by their
  listed names only (no links, nothing outside the member);
* ``in-house``: built by the site; upstream has nothing, it comes from a mirror.

Nothing here decides what is trusted: pull compares every file with its pin (or, with
``--pin``, records what arrived, after any published digest agreed).
"""

from __future__ import annotations

import contextlib
import json
import stat
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

from ._digest import is_sha256
from ._errors import PulledFileMismatchError, SourceUnavailableError
from ._spec import HF_RESOLVE, IN_HOUSE, ArchiveSource, Artifact, check_relative_path
from ._transfer import CHUNK_SIZE, HttpMirror, Listing, Sink, _NotThereError

__all__ = ["Upstream", "can_list", "hf_revision", "source_url"]

#: Largest ``.sha256`` file or tree listing read.
_SMALL = 1 << 16
_MAX_LISTING = 16 << 20
_SHOWN = "upstream"


def source_url(art: Artifact) -> str | None:
    """The URL an artifact's source fetches (an archive's URL), None for none/in-house."""
    if isinstance(art.source, ArchiveSource):
        return art.source.url
    return None if art.source in (None, IN_HOUSE) else art.source


def hf_revision(art: Artifact) -> str | None:
    """The commit revision a Hugging Face-style source names, else None."""
    url = source_url(art)
    found = HF_RESOLVE.match(urlsplit(url).path) if url else None
    return found.group("ref") if found else None


def can_list(art: Artifact) -> bool:
    """Whether upstream can list the directory artifact ``art``'s files (a Hugging Face
    folder, an archive member); a plain URL folder cannot."""
    return isinstance(art.source, ArchiveSource) or hf_revision(art) is not None


def _join(url: str, inner: str) -> str:
    return url.rstrip("/") + "/" + quote(inner) if inner else url


class Upstream:
    """The upstream sources of ``artifacts`` (by artifact path), with the Mirror interface
    of :mod:`dp_models._transfer`: ``fetch(rel, sink)`` fetches the file at ``rel`` (an
    artifact's path, or a file inside a directory artifact) from its artifact's source.
    ``scratch`` is a directory on the root's file system for archives; :meth:`close`
    removes what was put there."""

    shown = _SHOWN
    role = "upstream"
    lists = False  # per artifact: can_list()

    def __init__(
        self,
        artifacts: Mapping[str, Artifact],
        scratch: Path,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        self.artifacts = dict(artifacts)
        self.scratch = scratch
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._archives: dict[str, zipfile.ZipFile] = {}
        self._archive_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # -- where ----------------------------------------------------------------------------

    def locate(self, rel: str) -> tuple[Artifact, str]:
        """The artifact ``rel`` belongs to and the path inside it ("" for the artifact)."""
        if rel in self.artifacts:
            return self.artifacts[rel], ""
        for path in sorted(self.artifacts, key=len, reverse=True):
            if rel.startswith(path + "/") and self.artifacts[path].kind == "dir":
                return self.artifacts[path], rel[len(path) + 1 :]
        raise _NotThereError

    def where(self, rel: str) -> str:
        """The URL ``rel`` comes from (an archive member as ``URL!/member``), for reports."""
        try:
            art, inner = self.locate(rel)
        except _NotThereError:
            return _SHOWN
        if isinstance(art.source, ArchiveSource):
            return f"{art.source.url}!/{_member(art.source, inner)}"
        url = source_url(art)
        return _join(url, inner) if url else _SHOWN

    def why_not(self, art: Artifact) -> str | None:
        """Why upstream cannot give ``art`` (None: it has a source to fetch)."""
        if art.source == IN_HOUSE:
            return (
                "built in-house (source: in-house): upstream has no copy; it must come from a "
                "mirror holding the site's build (--from)"
            )
        if art.source is None:
            return "its spec names no source to fetch it from"
        return None

    def _mirror(self, url: str) -> HttpMirror:
        return HttpMirror(
            url,
            role="upstream",
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
        )

    # -- the Mirror interface -------------------------------------------------------------

    def fetch(self, rel: str, sink: Sink) -> None:
        art, inner = self.locate(rel)
        if self.why_not(art) is not None:
            raise _NotThereError
        if isinstance(art.source, ArchiveSource):
            self._fetch_member(art.source, _member(art.source, inner), rel, sink)
            return
        url = _join(str(art.source), inner)
        published = None if hf_revision(art) else self._sidecar(url)
        self._mirror(url).fetch("", sink)
        if published is not None:
            if sink.published is not None and sink.published != published:
                raise PulledFileMismatchError(
                    f"upstream {url}: the server publishes two digests for {rel} "
                    f"({sink.published} and {published} in its .sha256 file)",
                    source=url,
                    path=rel,
                    expected=published,
                    actual=sink.published,
                )
            sink.published = published

    def probe(self, rel: str) -> int | None:
        try:
            art, inner = self.locate(rel)
        except _NotThereError:
            return None
        if self.why_not(art) is not None:
            return None
        if isinstance(art.source, ArchiveSource):
            info = self._member_info(art.source, _member(art.source, inner), rel)
            return None if info is None else info.file_size
        return self._mirror(_join(str(art.source), inner)).probe("")

    def list(self, rel: str) -> dict[str, Listing] | None:
        """The files of the directory artifact at ``rel`` as its source lists them
        (relative path -> :class:`Listing`), or None when the source cannot list (a plain
        URL folder: its manifest must come from a lock)."""
        art, _ = self.locate(rel)
        if self.why_not(art) is not None:
            return None
        if isinstance(art.source, ArchiveSource):
            return self._list_archive(art.source, rel)
        found = HF_RESOLVE.match(urlsplit(str(art.source)).path)
        if found is None:
            return None
        listed = self._list_hf(
            str(art.source),
            found.group("type"),
            found.group("repo"),
            found.group("ref"),
            found.group("path") or "",
            rel,
        )
        hub = art.huggingface
        if hub is not None:
            # the files the spec's hub snapshot selects, so that a copy under a root has the
            # digest of the same snapshot in a hub cache
            if hub.files is not None:
                wanted = set(hub.files)
            else:
                from huggingface_hub.utils._paths import filter_repo_objects

                wanted = set(filter_repo_objects(list(listed), allow_patterns=hub.patterns))
            listed = {name: item for name, item in listed.items() if name in wanted}
        return listed

    def close(self) -> None:
        with self._lock:
            archives, self._archives = list(self._archives.values()), {}
        for archive in archives:
            with contextlib.suppress(OSError):
                fp = archive.fp
                archive.close()
                if fp is not None:
                    fp.close()

    # -- published digests ----------------------------------------------------------------

    def _sidecar(self, url: str) -> str | None:
        """The sha256 in ``URL.sha256`` (``sha256sum`` style), None when there is none."""
        data = self._mirror(url + ".sha256").get_small("", _SMALL)
        if data is None:
            return None
        words = data.decode("ascii", "replace").split()
        if not words or not is_sha256(words[0].lower()):
            found = repr(words[0][:80]) if words else "nothing"
            raise SourceUnavailableError(
                f"upstream {url}.sha256 does not start with a sha256 (64 hex characters): it "
                f"starts with {found}. Fix or remove that file beside the source.",
                source=url + ".sha256",
            )
        return words[0].lower()

    def _list_hf(
        self, url: str, kind: str | None, repo: str, revision: str, folder: str, rel: str
    ) -> dict[str, Listing]:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}/api/{kind or 'models'}/{repo}/tree/{revision}"
        target = _join(base, folder.strip("/"))
        mirror = self._mirror(target)
        data = mirror.get_small("", _MAX_LISTING, query="recursive=true")
        if data is None:
            raise SourceUnavailableError(
                f"upstream {target}: the tree of {repo} at {revision} is not there (404)",
                source=target,
                path=rel,
            )
        try:
            entries = json.loads(data)
            if not isinstance(entries, list):
                raise ValueError("not a list")
            prefix = folder.strip("/") + "/" if folder.strip("/") else ""
            listed: dict[str, Listing] = {}
            for entry in entries:
                if entry.get("type") != "file":
                    continue
                path = str(entry["path"])
                inner = path[len(prefix) :]
                if not path.startswith(prefix) or check_relative_path(inner) is not None:
                    raise ValueError(
                        f"a file {path!r} that is not at a safe relative path inside "
                        f"{folder.strip('/') or 'the repository'}"
                    )
                lfs = entry.get("lfs") or {}
                oid = lfs.get("oid") if isinstance(lfs, dict) else None
                size = entry.get("size")
                listed[inner] = Listing(
                    size if isinstance(size, int) and size >= 0 else None,
                    oid.lower() if isinstance(oid, str) and is_sha256(oid.lower()) else None,
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceUnavailableError(
                f"upstream {target}: the tree listing cannot be read ({exc})",
                source=target,
                path=rel,
            ) from None
        return listed

    # -- archives -------------------------------------------------------------------------

    def _zip(self, source: ArchiveSource, rel: str) -> zipfile.ZipFile:
        """The archive, fetched once per pull into an unnamed temporary file in the scratch
        directory (nothing is left behind, even if the pull is killed) and checked against
        its published digests before a member is read."""
        with self._lock:
            if source.url in self._archives:
                return self._archives[source.url]
            guard = self._archive_locks.setdefault(source.url, threading.Lock())
        with guard:
            with self._lock:
                if source.url in self._archives:
                    return self._archives[source.url]
            self.scratch.mkdir(parents=True, exist_ok=True)
            f = tempfile.TemporaryFile(dir=self.scratch)
            try:
                sink = Sink(f, None, threading.Event(), lambda _n: None)
                published = self._sidecar(source.url)
                self._mirror(source.url).fetch("", sink)
                actual = sink.hash.hexdigest()
                for what, digest in (
                    ("its spec's sha256", source.sha256),
                    ("the published sha256", published or sink.published),
                ):
                    if digest is not None and digest != actual:
                        raise PulledFileMismatchError(
                            f"upstream {source.url}: the archive has sha256 {actual}, "
                            f"{what} is {digest}; nothing was written",
                            source=source.url,
                            path=rel,
                            expected=digest,
                            actual=actual,
                        )
                f.seek(0)
                archive = zipfile.ZipFile(f)
            except zipfile.BadZipFile as exc:
                f.close()
                raise SourceUnavailableError(
                    f"upstream {source.url}: not a readable wheel or zip archive ({exc})",
                    source=source.url,
                    path=rel,
                ) from None
            except BaseException:
                f.close()
                raise
            with self._lock:
                self._archives[source.url] = archive
            return archive

    def _member_info(self, source: ArchiveSource, member: str, rel: str) -> zipfile.ZipInfo | None:
        try:
            info = self._zip(source, rel).getinfo(member)
        except KeyError:
            return None
        if info.is_dir() or not _regular(info):
            raise SourceUnavailableError(
                f"upstream {source.url}: member {member} is not a regular file",
                source=source.url,
                path=rel,
            )
        return info

    def _fetch_member(self, source: ArchiveSource, member: str, rel: str, sink: Sink) -> None:
        info = self._member_info(source, member, rel)
        if info is None:
            raise _NotThereError
        if sink.size is None:
            sink.size = info.file_size
        with self._zip(source, rel).open(info) as f:
            try:
                while chunk := f.read(CHUNK_SIZE):
                    sink.write(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # CRC, truncation
                raise SourceUnavailableError(
                    f"upstream {source.url}: member {member} cannot be read ({exc})",
                    source=source.url,
                    path=rel,
                ) from None

    def _list_archive(self, source: ArchiveSource, rel: str) -> dict[str, Listing]:
        prefix = source.member.rstrip("/") + "/"
        listed: dict[str, Listing] = {}
        for info in self._zip(source, rel).infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            inner = info.filename[len(prefix) :]
            if check_relative_path(inner) is not None or not _regular(info):
                raise SourceUnavailableError(
                    f"upstream {source.url}: member {info.filename!r} is not a regular "
                    "file at a safe relative path",
                    source=source.url,
                    path=rel,
                )
            listed[inner] = Listing(info.file_size, None)
        if not listed:
            raise SourceUnavailableError(
                f"upstream {source.url}: the archive has no folder {source.member!r}",
                source=source.url,
                path=rel,
            )
        return listed


def _member(source: ArchiveSource, inner: str) -> str:
    return f"{source.member.rstrip('/')}/{inner}" if inner else source.member


def _regular(info: zipfile.ZipInfo) -> bool:
    """A zip member that is a plain file (no link, device...): unix mode bits, if any."""
    mode = info.external_attr >> 16
    return mode == 0 or stat.S_ISREG(mode)
