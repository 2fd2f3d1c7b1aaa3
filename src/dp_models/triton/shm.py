"""System shared memory between a Triton client and a server on the same host: the
segments and their bookkeeping, nothing that talks to the server.

:class:`~dp_models.triton.transport.HTTPTransport` in a shared-memory mode places a
request's tensors in a POSIX shared-memory segment (``/dev/shm``) that it registered with
the server once, so that only a small JSON request and answer travel over HTTP; the server
reads the inputs from the segment and writes the outputs into it.

:class:`Segment`
    One segment: created here (``O_EXCL``, mode ``0600``: readable by this user only, and
    the server), its pages allocated at once (a ``/dev/shm`` too small is an
    :class:`OSError` now, never a ``SIGBUS`` on a later write), mapped. Named
    ``dp_models_tc_<pid>_<random>``: unique, and nothing secret in it.
:class:`Regions`
    The regions (registered segments) of one transport. A request :meth:`~Regions.take`\\ s
    one for itself alone (another thread's request takes another) and :meth:`~Regions.give`\\ s
    it back when its answer is read, or :meth:`~Regions.retire`\\ s it when the request may
    still be running on the server (a timeout, a lost connection): a retired segment is
    removed at once and never used again. A region whose registration the server refused
    is :meth:`~Regions.discard`\\ ed at once. A request larger than every free region gets a
    new one, and a free region too small for it is retired. Retired regions that were
    registered wait in :meth:`~Regions.pending` until the transport unregisters them.

What is never left behind: :meth:`Regions.close` removes every segment and hands back the
names to unregister (``TritonClient.close()``); a :class:`Regions` dropped without it
(garbage-collected, or alive at interpreter exit) removes its segments in a finalizer,
and its registered names are unregistered by the next request of another transport to the
same server, or at interpreter exit (its ``unregister`` function, bounded in time). A
forked child never touches its parent's segments. A process killed with ``SIGKILL``
leaves its segments behind (``/dev/shm/dp_models_tc_<pid>_*``, removable once that pid is
gone), as any process using shared memory does.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import mmap
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Collection, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from .checks import NUMPY_DTYPES

__all__ = [
    "ALIGNMENT",
    "ITEM_SIZES",
    "MIN_REGION_BYTES",
    "PREFIX",
    "SHM_DIR",
    "Region",
    "Regions",
    "Segment",
    "aligned",
    "orphan",
    "region_size",
    "take_orphans",
]

log = logging.getLogger("dp_models.triton")

#: Where POSIX shared memory lives (``shm_open``'s directory on Linux).
SHM_DIR = Path("/dev/shm")
#: The start of this module's segment names (then the process id and random hex).
PREFIX = "dp_models_tc_"
#: Each tensor starts in its region at a multiple of this many bytes.
ALIGNMENT = 64
#: The smallest region made.
MIN_REGION_BYTES = 64 << 10
#: Bytes per element of the Triton datatypes that may travel in shared memory: numpy's
#: layout is the wire's (BYTES is variable; BF16 travels as float32 arrays over HTTP).
ITEM_SIZES: dict[str, int] = {
    name: np.dtype(dtype).itemsize for name, dtype in NUMPY_DTYPES.items() if name != "BF16"
}


def aligned(nbytes: int) -> int:
    """``nbytes`` rounded up to a multiple of :data:`ALIGNMENT`."""
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def region_size(nbytes: int) -> int:
    """The size of a region made for ``nbytes``: at least :data:`MIN_REGION_BYTES`, else
    ``nbytes`` rounded up to an eighth of its power of two (at most 12.5% unused, and a
    batch that grows by one item rarely needs a new region).

    >>> region_size(1), region_size(19_660_800) / 2**20
    (65536, 20.0)
    """
    if nbytes <= MIN_REGION_BYTES:
        return MIN_REGION_BYTES
    step = 1 << max((nbytes - 1).bit_length() - 4, 0)
    return -(-nbytes // step) * step


class Segment:
    """One POSIX shared-memory segment of ``size`` bytes, made by this process: its pages
    allocated now (``posix_fallocate``), mapped read-write. Raises :class:`OSError` when
    this host cannot make it (no ``/dev/shm``, or not enough room in it); nothing is left
    behind then."""

    def __init__(self, size: int) -> None:
        self.name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(8)}"
        self.size = size
        self.path = SHM_DIR / self.name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            # the pages now: a /dev/shm too small fails here, not with a SIGBUS when a
            # tensor is written into a page tmpfs cannot give
            os.posix_fallocate(fd, 0, size)
            self._map: mmap.mmap | None = mmap.mmap(fd, size)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        self._unlinked = False

    @property
    def key(self) -> str:
        """The key the server opens it by (``shm_open``)."""
        return "/" + self.name

    def _view(self, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
        if self._map is None:
            raise ValueError(f"shared-memory segment {self.name} is closed")
        return np.ndarray(shape, dtype, buffer=self._map, offset=offset)

    def write(self, offset: int, array: np.ndarray[Any, Any]) -> None:
        """Copy ``array`` into the segment at ``offset`` (one copy, strides and all)."""
        np.copyto(self._view(offset, array.dtype, array.shape), array, casting="no")

    def read(self, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
        """A copy of the ``shape`` array of ``dtype`` at ``offset``: the caller's own (the
        segment is reused by the next request)."""
        return self._view(offset, dtype, shape).copy()

    def unlink(self) -> None:
        """Remove the name (the memory goes once no process maps it). Idempotent."""
        if not self._unlinked:
            self._unlinked = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def close(self) -> None:
        """Remove the name and unmap. Idempotent."""
        self.unlink()
        mapped, self._map = self._map, None
        if mapped is not None:
            with contextlib.suppress(BufferError):  # a view still alive: unmapped with it
                mapped.close()

    def __repr__(self) -> str:
        return f"<Segment {self.name} {self.size} bytes>"


class Region:
    """A segment as a region of a Triton server: its name there is the segment's, and
    ``registered`` says whether the server has it (as far as this process knows)."""

    def __init__(self, segment: Segment, generation: int) -> None:
        self.segment = segment
        self.registered = False
        #: The :class:`Regions` generation it was taken in (a close() since: retired on return).
        self.generation = generation

    @property
    def name(self) -> str:
        return self.segment.name

    @property
    def size(self) -> int:
        return self.segment.size

    def __repr__(self) -> str:
        state = "registered" if self.registered else "not registered"
        return f"<Region {self.name} {self.size} bytes, {state}>"


# -- what must be released even when nobody calls close() --------------------------------

Unregister = Callable[[Collection[str]], None]


class _Held:
    """What one :class:`Regions` holds that outlives it if it is never closed: every
    segment it made and the names the server has. Shared with its finalizer, which must not
    hold the :class:`Regions` itself."""

    def __init__(self, server: Hashable, unregister: Unregister) -> None:
        self.pid = os.getpid()
        self.server = server
        self.unregister = unregister
        self.segments: dict[str, Segment] = {}
        self.registered: set[str] = set()


#: Every _Held of a live Regions (its finalizer holds it; gone once that has run).
_HELD: weakref.WeakSet[_Held] = weakref.WeakSet()
#: Names registered by Regions dropped without close(), by server: unregistered by the next
#: request of a transport to that server, or at exit.
_ORPHANS: dict[Hashable, tuple[Unregister, set[str]]] = {}
_ORPHANS_LOCK = threading.Lock()
_EXIT_HOOK = threading.Lock()
_exit_hook_registered = False


def _abandon(held: _Held) -> None:
    """A Regions dropped without close() (garbage-collected, or alive at exit): remove its
    segments now and leave its registered names to be unregistered."""
    if held.pid != os.getpid():  # a forked child: the parent's segments, not ours
        return
    for segment in list(held.segments.values()):
        segment.close()
    held.segments.clear()
    orphan(held.server, held.unregister, held.registered)
    held.registered.clear()


def orphan(server: Hashable, unregister: Unregister, names: Collection[str]) -> None:
    """``names`` stay registered at ``server`` for now (it did not answer): unregistered by
    the next request of a transport to it, or at exit."""
    if names:
        with _ORPHANS_LOCK:
            _, found = _ORPHANS.setdefault(server, (unregister, set()))
            found.update(names)


def take_orphans(server: Hashable) -> set[str]:
    """The names left registered at ``server`` by regions dropped without close(), taken
    (the caller unregisters them)."""
    if not _ORPHANS:
        return set()
    with _ORPHANS_LOCK:
        found = _ORPHANS.pop(server, None)
    return found[1] if found is not None else set()


def _at_exit() -> None:
    """Interpreter exit: every live Regions' segments removed, every name left registered
    unregistered (each server's ``unregister`` bounds its own time; failures are logged)."""
    for held in list(_HELD):
        _abandon(held)
    with _ORPHANS_LOCK:
        orphans = list(_ORPHANS.values())
        _ORPHANS.clear()
    for unregister, names in orphans:
        try:
            unregister(names)
        except Exception:  # the server may be gone: nothing is left on this host anyway
            log.debug("unregistering shared memory at exit failed", exc_info=True)


def _register_exit_hook() -> None:
    """Register :func:`_at_exit` on first use: after tritonclient and gevent are imported,
    so that it runs before their own exit handlers (atexit runs the last registered first)."""
    global _exit_hook_registered
    with _EXIT_HOOK:
        if not _exit_hook_registered:
            atexit.register(_at_exit)
            _exit_hook_registered = True


def _forget_in_child() -> None:
    """A forked child holds nothing: its parent's segments and registrations stay the
    parent's (each Regions starts over in the child, see :meth:`Regions._ours`)."""
    global _ORPHANS_LOCK
    _ORPHANS_LOCK = threading.Lock()  # another thread of the parent may have held it
    _HELD.clear()
    _ORPHANS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class Regions:
    """The shared-memory regions of one transport to one server.

    ``server``: a hashable identity of the server (the same for every transport to it);
    ``unregister``: unregisters names at that server over a connection of its own, bounded
    in time, holding nothing of the transport (used at exit for regions never closed).
    Thread-safe: a region is taken by one request at a time."""

    def __init__(self, server: Hashable, unregister: Unregister) -> None:
        self.server = server
        self._unregister = unregister
        self._lock = threading.Lock()
        self._free: list[Region] = []
        self._pending: set[str] = set()
        self._generation = 0
        self._start()
        _register_exit_hook()

    def _start(self) -> None:
        self._held = _Held(self.server, self._unregister)
        self._finalizer = weakref.finalize(self, _abandon, self._held)
        self._finalizer.atexit = False  # _at_exit does it, before tritonclient's exit handlers
        _HELD.add(self._held)

    def _ours(self) -> None:
        """In a forked child, start over: the parent's regions are the parent's. Call with
        the lock held."""
        if self._held.pid != os.getpid():
            self._finalizer.detach()
            self._free.clear()
            self._pending.clear()
            self._generation += 1
            self._start()

    @property
    def names(self) -> tuple[str, ...]:
        """The names of every segment held now, sorted (free and in use)."""
        with self._lock:
            return tuple(sorted(self._held.segments))

    def take(self, nbytes: int, *, make: bool = True) -> Region | None:
        """A region of at least ``nbytes`` for one request alone: the smallest free one that
        fits, else a new segment (then the largest free one, too small, is retired); None
        when none fits and ``make`` is False. Raises :class:`OSError` when this host cannot
        make the segment."""
        with self._lock:
            self._ours()
            fits = [r for r in self._free if r.size >= nbytes]
            if fits:
                region = min(fits, key=lambda r: r.size)
                self._free.remove(region)
                return region
            if not make:
                return None
            generation = self._generation
        segment = Segment(region_size(nbytes))  # outside the lock: allocating takes time
        with self._lock:
            self._held.segments[segment.name] = segment
            if self._free:
                self._retire(max(self._free, key=lambda r: r.size))
            return Region(segment, generation)

    def registered(self, region: Region) -> None:
        """The server has ``region`` now."""
        with self._lock:
            region.registered = True
            self._held.registered.add(region.name)

    def unregistered(self) -> None:
        """The server has none of this transport's regions (it restarted): each is
        registered again before its next use."""
        with self._lock:
            for region in self._free:
                region.registered = False
            self._held.registered.difference_update(r.name for r in self._free)

    def give(self, region: Region) -> None:
        """``region`` back for the next request (retired if :meth:`close` came meanwhile)."""
        with self._lock:
            if region.generation == self._generation:
                self._free.append(region)
            else:
                self._retire(region)

    def discard(self, region: Region) -> None:
        """Remove ``region`` now, which the server does not have (its registration was
        refused): nothing to unregister."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._free.remove(region)
            region.segment.close()
            self._held.segments.pop(region.name, None)
            self._held.registered.discard(region.name)

    def retire(self, region: Region) -> None:
        """Never use ``region`` again: its segment removed now (the server keeps its mapping
        until it is unregistered); its name waits in :meth:`pending`."""
        with self._lock:
            self._retire(region)

    def _retire(self, region: Region) -> None:
        with contextlib.suppress(ValueError):
            self._free.remove(region)
        region.segment.close()
        self._held.segments.pop(region.name, None)
        # registered, or perhaps (a registration whose answer was lost): unregistering a
        # name the server does not have is harmless
        self._pending.add(region.name)
        self._held.registered.add(region.name)

    def pending(self) -> set[str]:
        """The names retired and not unregistered yet, taken: the caller unregisters them
        and reports with :meth:`done` (or hands them back with :meth:`still_pending`)."""
        if not self._pending:
            return set()
        with self._lock:
            names, self._pending = self._pending, set()
            return names

    def still_pending(self, names: Collection[str]) -> None:
        """``names`` could not be unregistered yet: try again later."""
        with self._lock:
            self._pending.update(names)

    def done(self, names: Collection[str]) -> None:
        """``names`` are unregistered."""
        with self._lock:
            self._held.registered.difference_update(names)

    def close(self) -> set[str]:
        """Remove every segment and start over; returns every name to unregister (the
        caller unregisters them, or hands them to :func:`orphan`). A region in use by a
        request is unlinked now, unmapped when it is given back. Idempotent."""
        with self._lock:
            self._ours()
            names = self._pending | self._held.registered
            free = {r.name for r in self._free}
            for name, segment in self._held.segments.items():
                if name in free:
                    segment.close()
                else:  # in use: the request's own writes and reads go on until it is back
                    segment.unlink()
            self._held.segments.clear()
            self._held.registered.clear()
            self._free.clear()
            self._pending.clear()
            self._generation += 1
            return names

    def __repr__(self) -> str:
        with self._lock:
            count, free = len(self._held.segments), len(self._free)
        return f"<Regions {count} segments, {free} free>"
