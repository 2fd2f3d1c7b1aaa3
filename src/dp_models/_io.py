"""Opening files the safe way: regular files only, checked on the opened descriptor, with
bounded reads.

A path can name a FIFO (``open`` blocks until a writer appears), a character device
(``/dev/zero`` never ends) or a socket; a check by path before ``open`` can be raced by a
rename. So files are opened with ``O_NONBLOCK`` (opening a FIFO returns at once), the
*descriptor* is checked with ``fstat``, and anything but a regular file is refused with
:class:`~dp_models._errors.NotRegularFileError` before a byte is read. Reads of small files
(specs, locks, cache entries, stamps) are bounded: a file larger than its limit is refused,
never read into memory whole.

Files are written the one way too (:func:`atomic_write`): whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ._errors import FileTooLargeError, NotRegularFileError

__all__ = [
    "atomic_write",
    "describe_mode",
    "flush_data",
    "fsync_directory",
    "open_regular",
    "read_regular",
]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def describe_mode(mode: int) -> str:
    """What kind of file ``mode`` (an ``st_mode``) says, for messages: ``"a FIFO"``, ..."""
    for test, kind in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> int:
    """Open ``path`` for reading and return the descriptor, or raise
    :class:`~dp_models._errors.NotRegularFileError` (after closing it) when what was opened is
    not a regular file. Never blocks on a FIFO. OSErrors of ``open`` itself propagate."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        # a socket cannot be opened at all (ENXIO): say what it is, not "no such device"
        if exc.errno == errno.ENXIO:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                raise exc from None
            if not stat.S_ISREG(mode):
                raise NotRegularFileError(
                    f"{os.fspath(path)} is {describe_mode(mode)}, not a regular file",
                    path=Path(os.fspath(path)),
                    kind=describe_mode(mode),
                ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(
                f"{os.fspath(path)} is {describe_mode(st.st_mode)}, not a regular file",
                path=Path(os.fspath(path)),
                kind=describe_mode(st.st_mode),
            )
        if _FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # a regular file: ordinary reads from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them: a larger file
    raises :class:`~dp_models._errors.FileTooLargeError` without being read whole."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(
            f"{os.fspath(path)} is larger than {max_bytes} bytes, the most this file may hold",
            path=Path(os.fspath(path)),
            limit=max_bytes,
        )
    return data


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[BinaryIO], object],
    *,
    mode: int | None = None,
    durable: bool = True,
) -> Path:
    """Write ``path`` whole or not at all; returns it.

    ``data`` is bytes, text (written as UTF-8) or a function that writes into the binary
    file it is given. It goes to a temporary file in ``path``'s directory, which is flushed
    to disk and then renamed over ``path``: a reader sees the old file or the new one, never
    a partial one. On any failure, Ctrl-C included, the temporary file is removed and
    ``path`` is left as it was. The new file has the permission bits ``mode`` (default
    0o600, private to its owner). ``durable=False`` skips the two fsyncs, for a file whose
    loss in a power cut costs nothing but work done again (a digest cache entry).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(path.parent)
    return path


def flush_data(fd: int) -> None:
    """Flush the data written to ``fd`` to disk (``fdatasync``, else ``fsync``), so a later
    fsync of the same file has less left to do."""
    getattr(os, "fdatasync", os.fsync)(fd)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename into ``directory`` durable, where the OS allows it (best effort: a
    file system that cannot fsync a directory is not an error)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
