"""sha256 of files and directories, streamed, cached and hashed in parallel.

File digest
    The sha256 of the file's bytes, read in 1 MiB chunks into one reused buffer, so
    memory stays bounded whatever the file size.

Directory digest
    Every regular file below the directory is listed by its path relative to the
    directory, with ``/`` separators, sorted by the UTF-8 bytes of that path. Symlinks are
    followed (a symlink may never lead outside MODELS_ROOT, which the caller checks): a
    linked file counts as a file at the link's path, a linked directory is walked under
    the link's path, a link back to a directory above it (a loop) and a broken link are
    skipped. The digest is the sha256 of the lines ``<file sha256>  <relative path>\\n``,
    one per file, in that order: exactly what ``sha256sum`` prints for those files, so it
    can be checked with standard tools (for names without a backslash or newline, which
    ``sha256sum`` escapes)::

        cd DIR && find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z \\
            | xargs -0 sha256sum | sha256sum

    It depends on file names and contents only: not on timestamps, permissions, the
    order the file system lists entries in, or the machine. Empty directories do not
    count.

Digest cache
    A large weight file is hashed once, not at every process start. An entry is keyed by the
    file's identity (device, inode) and stores size, mtime and ctime in nanoseconds; it is
    trusted only while all of them still match. Restoring a file's mtime after a change
    (``touch -r``) does not fool it: the kernel sets ctime on every change and no user can
    set it back. Writes through a shared memory map (``mmap(MAP_SHARED)``) change the bytes
    without touching any of these fields: the cache cannot see them, which is what
    ``verify="always"`` is for (docs/MODEL_SYSTEM_RULES.md, section 6). An entry is not
    written when the file changed while it was hashed, nor when it changed too recently for
    the file system's clock to tell a later change apart (git's "racy" rule). Entries live
    one small JSON file each in a per-user cache directory, written atomically (temporary
    file, then rename), so several processes can share it; a corrupt entry is ignored and
    rewritten, an unwritable directory only costs speed. An entry is read only when it is a
    regular file (checked on the descriptor, opened without blocking) of at most 64 KiB
    holding shallow JSON: a FIFO, a link to ``/dev/zero``, a directory, a huge or deeply
    nested file is never trusted, never fatal and never waited on; the file is hashed and
    the entry replaced (the rename replaces a link, it never writes through one). The
    ``.lock`` file beside an entry is opened the same way, without following a link; one
    that is not a regular file is not used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ._errors import (
    ConfigurationError,
    DirectoryTooLargeError,
    FileChangedError,
    FileTooLargeError,
    NotRegularFileError,
    OutsideRootError,
)
from ._io import atomic_write, open_regular, read_regular
from ._json import load_json

try:  # POSIX only; elsewhere processes may hash the same file twice, which is harmless
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHUNK_SIZE",
    "MAX_DIRECTORY_FILES",
    "DigestCache",
    "FileDigest",
    "Hasher",
    "Progress",
    "directory_digest",
    "directory_files",
    "is_sha256",
    "sha256_fd",
    "sha256_file",
    "stat_key",
    "weights_digest",
]

log = logging.getLogger("dp_models")

CHUNK_SIZE = 1 << 20
_KEEP_CHUNK = 16 << 20  # reads that keep their bytes: fewer, larger chunks
_HEX = frozenset("0123456789abcdef")
_CACHE_FORMAT = 1
_MAX_ENTRY_BYTES = 64 * 1024  # an entry is a few hundred bytes
_LOCK_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_NOT_A_FILE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


def is_sha256(value: object) -> bool:
    """True for a lowercase 64-character hex string."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def sha256_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """The sha256 hex digest of a regular file, streamed with a fixed 1 MiB buffer.
    Anything but a regular file (a FIFO, a device) is a
    :class:`~dp_models._errors.NotRegularFileError`, raised before a byte is read.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    fd = open_regular(path)
    try:
        return sha256_fd(fd, progress)
    finally:
        os.close(fd)


def sha256_fd(
    fd: int,
    progress: Callable[[int], None] | None = None,
    *,
    keep: list[bytes] | None = None,
) -> str:
    """The sha256 of what the open descriptor ``fd`` holds, read from offset 0 (``pread``:
    the descriptor's own offset is left alone). With ``keep``, the chunks read are also
    appended to it: one pass both verifies a file and hands its content to a loader."""
    h = hashlib.sha256()
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    offset = 0
    if keep is not None:
        while chunk := os.pread(fd, _KEEP_CHUNK, offset):
            h.update(chunk)
            keep.append(chunk)
            offset += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return h.hexdigest()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while n := os.preadv(fd, [buf], offset):
        h.update(view[:n])
        offset += n
        if progress is not None:
            progress(n)
    return h.hexdigest()


#: More files than this in one directory artifact is a mistake or a hostile tree.
MAX_DIRECTORY_FILES = 200_000


def directory_files(
    directory: str | os.PathLike[str], *, within: Path | None = None
) -> list[tuple[str, Path]]:
    """Every regular file below ``directory`` as ``(relative posix path, path)``, in digest order.

    Symlinks are followed (the caller checks where they lead), like ``find -L``: a link to a
    directory above it is a loop and is not entered; a broken link is not a file. Which
    directories are entered depends only on the tree, never on the order entries are
    listed in. Raises OSError when a directory cannot be listed.

    With ``within`` (an absolute, resolved directory), a symlinked directory that leads
    outside it raises :class:`~dp_models._errors.OutsideRootError` before it is entered, so
    a link such as ``evil -> /`` is never walked. More than :data:`MAX_DIRECTORY_FILES` files
    raise :class:`~dp_models._errors.DirectoryTooLargeError` (a symlink maze can multiply a
    small tree). Both are OSErrors.
    """
    top = Path(directory)
    found: list[tuple[str, Path]] = []
    st = os.stat(top)
    # (directory, identities of it and of every directory above it, up to ``top``)
    pending: list[tuple[Path, frozenset[tuple[int, int]]]] = [
        (top, frozenset({(st.st_dev, st.st_ino)}))
    ]
    while pending:
        here, ancestors = pending.pop()
        with os.scandir(here) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            p = here / name
            try:
                st = os.stat(p)
            except OSError as exc:  # a broken link, or a link that loops on itself: no file
                if exc.errno in _NOT_A_FILE:
                    continue
                raise
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if within is not None and p.is_symlink():
                    real = Path(os.path.realpath(p))
                    if real != within and not real.is_relative_to(within):
                        raise OutsideRootError(
                            f"{p} leads to {real}, outside {within}",
                            path=p,
                            target=real,
                            root=within,
                        )
                if ident not in ancestors:
                    pending.append((p, ancestors | {ident}))
            elif stat.S_ISREG(st.st_mode):
                found.append((p.relative_to(top).as_posix(), p))
                if len(found) > MAX_DIRECTORY_FILES:
                    raise DirectoryTooLargeError(
                        f"{top} holds more than {MAX_DIRECTORY_FILES} files (symlinks "
                        "followed); a directory artifact is not meant to be that large",
                        path=top,
                        limit=MAX_DIRECTORY_FILES,
                    )
    found.sort(key=lambda item: os.fsencode(item[0]))
    return found


def directory_digest(entries: Sequence[tuple[str, str]]) -> str:
    """The directory digest from ``(relative posix path, file sha256)`` pairs (any order)."""
    h = hashlib.sha256()
    # os.fsencode: a file name that is not UTF-8 counts as its raw bytes, as in sha256sum
    for rel, digest in sorted(entries, key=lambda item: os.fsencode(item[0])):
        h.update(f"{digest}  ".encode() + os.fsencode(rel) + b"\n")
    return h.hexdigest()


def weights_digest(digests: Sequence[str]) -> str | None:
    """One digest for a model's weights: the artifact's own sha256 when there is one, else
    the sha256 of the digests one per line (spec order); None without artifacts."""
    if not digests:
        return None
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(f"{d}\n" for d in digests).encode()).hexdigest()


@dataclass(frozen=True)
class FileDigest:
    """The digest of one file and how it was obtained."""

    path: Path
    sha256: str
    size: int
    cached: bool
    #: stat_key of the file that was hashed (or whose cache entry matched)
    identity: tuple[int, int, int, int, int] = field(
        default=(0, 0, 0, 0, 0), compare=False, repr=False
    )


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """Per-user cache of file digests keyed by file identity and stat (see module docs).

    ``directory=None`` disables caching. ``racy_window_s`` is how recent a change may be
    for its digest still to be stored; tests lower it.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, *, racy_window_s: float = 2.0):
        self.directory = (
            None if directory is None else Path(directory) / f"digests-v{_CACHE_FORMAT}"
        )
        self.racy_window_ns = int(racy_window_s * 1e9)
        self._warned = False
        self._warn_lock = threading.Lock()

    def _entry_path(self, st: os.stat_result) -> Path:
        assert self.directory is not None
        return self.directory / f"{st.st_dev:x}-{st.st_ino:x}.json"

    def _warn(self, what: str, exc: BaseException) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        log.warning(
            "dp_models digest cache %s is unusable (%s: %s); digests are kept in memory for "
            "this process only. Set DP_MODELS_CACHE_DIR to a writable directory to cache them.",
            self.directory,
            what,
            exc,
        )

    def is_racy(self, st: os.stat_result) -> bool:
        """True when the file changed so recently that a further change within the same
        clock tick could leave its stat unchanged: its digest must not be remembered."""
        return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self.racy_window_ns

    def get(self, st: os.stat_result) -> str | None:
        """The cached digest for a file with this stat, or None. Never raises."""
        if self.directory is None:
            return None
        path = self._entry_path(st)
        try:
            raw = read_regular(path, max_bytes=_MAX_ENTRY_BYTES)
        except FileNotFoundError:
            return None
        except (NotRegularFileError, FileTooLargeError) as exc:  # planted or broken: replaced
            log.debug("ignoring digest cache entry %s: %s", path, exc)
            return None
        except OSError as exc:
            self._warn("read", exc)
            return None
        try:
            entry = load_json(raw)
            stored = (
                entry["dev"],
                entry["ino"],
                entry["size"],
                entry["mtime_ns"],
                entry["ctime_ns"],
            )
            digest = entry["sha256"]
            valid = entry.get("format") == _CACHE_FORMAT
        except (ValueError, KeyError, TypeError):
            log.debug("ignoring corrupt digest cache entry %s", self._entry_path(st))
            return None
        if not valid or stored != stat_key(st) or not is_sha256(digest):
            return None
        return str(digest)

    def put(self, path: Path, st: os.stat_result, digest: str) -> None:
        """Store a digest computed for a file with stat ``st``. Never raises."""
        if self.directory is None or self.is_racy(st):
            return
        dev, ino, size, mtime_ns, ctime_ns = stat_key(st)
        entry = {
            "format": _CACHE_FORMAT,
            "dev": dev,
            "ino": ino,
            "size": size,
            "mtime_ns": mtime_ns,
            "ctime_ns": ctime_ns,
            "sha256": digest,
            "path": str(path),
        }
        target = self._entry_path(st)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # not durable: an entry lost in a power cut only means the file is hashed again
            atomic_write(target, json.dumps(entry), durable=False)
        except OSError as exc:
            self._warn("write", exc)

    @contextlib.contextmanager
    def hashing(self, st: os.stat_result) -> Iterator[None]:
        """Hold an inter-process lock for this file while it is hashed, so that processes
        verifying the same root at once hash each file once. Best effort, never raises."""
        if self.directory is None or fcntl is None:
            yield
            return
        fd = -1
        path = self._entry_path(st).with_suffix(".lock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _LOCK_FLAGS, 0o600)  # a FIFO opens at once, a link not at all
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFileError(
                    f"{path} is not a regular file", path=path, kind="not a regular file"
                )
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
                fd = -1
            if isinstance(exc, NotRegularFileError) or exc.errno == errno.ELOOP:
                log.debug("hashing without the lock %s: not a regular file", path)
            else:
                self._warn("lock", exc)
        try:
            yield
        finally:
            if fd >= 0:
                os.close(fd)  # closing releases the lock


class Progress(Protocol):
    """Receives hashing progress in bytes; called from worker threads."""

    def add_total(self, nbytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


class Hasher:
    """Computes file digests under a policy, through the cache, in parallel.

    ``policy="cached"`` trusts valid cache entries; ``"always"`` hashes every file (and
    refreshes the cache). Files are hashed on ``max_workers`` threads (hashlib releases the
    GIL). A path listed several times in one :meth:`files` call is hashed once, whatever the
    policy; with ``"cached"`` the same file (device, inode) is also hashed once per Hasher,
    unless it changed too recently for its digest to be remembered (see :class:`DigestCache`).
    """

    def __init__(
        self,
        cache: DigestCache | None = None,
        *,
        policy: str = "cached",
        max_workers: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        if policy not in ("cached", "always"):
            raise ConfigurationError(f"policy must be 'cached' or 'always', got {policy!r}")
        self.cache = cache or DigestCache(None)
        self.policy = policy
        self.max_workers = max_workers or min(32, os.cpu_count() or 1)
        self.progress = progress
        self._memo: dict[tuple[int, int, int, int, int], str] = {}
        self._inflight: dict[tuple[int, int, int, int, int], threading.Lock] = {}
        self._memo_lock = threading.Lock()

    def file(self, path: str | os.PathLike[str]) -> FileDigest:
        """The digest of one regular file. Raises OSError (FileNotFoundError,
        :class:`~dp_models._errors.NotRegularFileError`, ...), including
        :class:`~dp_models._errors.FileChangedError`."""
        fd = open_regular(path)
        try:
            return self.file_fd(Path(path), fd)
        finally:
            os.close(fd)

    def file_fd(
        self, path: Path, fd: int, *, keep: list[bytes] | None = None, force: bool = False
    ) -> FileDigest:
        """The digest of the regular file open at ``fd`` (``path`` names it in messages and
        cache entries): the file's identity comes from the descriptor, so what is hashed,
        cached and later loaded is one file, whatever happens to ``path`` meanwhile. ``keep``
        collects the bytes when the file is hashed (see :func:`sha256_fd`); ``force`` hashes
        even when the cache knows the digest."""
        st = os.fstat(fd)
        key = stat_key(st)
        with self._memo_lock:
            key_lock = self._inflight.setdefault(key, threading.Lock())
        with key_lock:  # one thread hashes a given file; the others wait and reuse its digest
            cached_ok = self.policy == "cached" and not force
            if cached_ok:
                with self._memo_lock:
                    memo = self._memo.get(key)
                if memo is not None:
                    return FileDigest(path, memo, st.st_size, cached=True, identity=key)
                if (hit := self.cache.get(st)) is not None:
                    return FileDigest(path, hit, st.st_size, cached=True, identity=key)
            with self.cache.hashing(st):
                if cached_ok and (hit := self.cache.get(st)) is not None:
                    return FileDigest(path, hit, st.st_size, cached=True, identity=key)  # another's
                if self.progress is not None:
                    self.progress.add_total(st.st_size)
                digest = sha256_fd(fd, self.progress.advance if self.progress else None, keep=keep)
                if stat_key(os.fstat(fd)) != key:
                    raise FileChangedError(f"{path} changed while it was being hashed", path=path)
                self.cache.put(path, st, digest)
            if not self.cache.is_racy(st):
                with self._memo_lock:
                    self._memo[key] = digest
        return FileDigest(path, digest, st.st_size, cached=False, identity=key)

    def files(self, paths: Sequence[str | os.PathLike[str]]) -> list[FileDigest | BaseException]:
        """Digests of many files in parallel, in the given order; failures are returned.
        A path given more than once is hashed once."""

        def one(p: str) -> FileDigest | BaseException:
            try:
                return self.file(p)
            except (OSError, ValueError) as exc:
                return exc

        unique = list(dict.fromkeys(os.fspath(p) for p in paths))
        if len(unique) <= 1 or self.max_workers == 1:
            results = [one(p) for p in unique]
        else:
            pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(unique)))
            try:
                results = list(pool.map(one, unique))
            except BaseException:
                # Ctrl-C: files not started yet are dropped instead of hashed to the end
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        by_path = dict(zip(unique, results, strict=True))
        return [by_path[os.fspath(p)] for p in paths]
