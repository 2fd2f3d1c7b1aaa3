"""The network guard: while a model loads, no connection and no DNS lookup leaves the process.

Python raises an *audit event* before every socket connect, ``sendto``/``sendmsg`` and
name lookup (PEP 578). One audit hook, installed on first use, turns those events into
:class:`~dp_models._errors.NetworkBlockedError` while any guard is active, in every thread
of the process, so a loader's worker threads are covered too. The error is raised before
the socket does anything: there is no timeout to wait for and no partial download.

Allowed: Unix-domain sockets (local IPC, not network), and the host/port pairs given to
the guard (the configured Triton endpoints). Everything else is blocked, loopback
included.

What it cannot see: native code that opens sockets without going through Python's
``socket`` module (a C++ library using libcurl, for instance). The offline flags set by
:func:`dp_models.enforce_offline` are what keep those frameworks from trying; see
``docs/offline.md``.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from ._errors import NetworkBlockedError
from ._urls import parse_endpoints

__all__ = ["active_guards", "endpoint_addresses", "network_guard"]

_lock = threading.Lock()
_active: Counter[str] = Counter()  # spec names being loaded, across threads
_allowed_hosts: Counter[str] = Counter()
_allowed_addrs: Counter[tuple[str, int]] = Counter()
_installed = False
_local = threading.local()  # .resolving: the allowed host this thread is looking up
_blocked: list[NetworkBlockedError] = []  # what guards blocked, for callers whose loader
# caught the error and raised another one
_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)


def endpoint_addresses(url: str) -> list[tuple[str, int]]:
    """``(host, port)`` of each replica an endpoint's value lists (``http://host:8000``, or
    several separated by commas; the scheme's port when none is given). Raises
    :class:`~dp_models._errors.ConfigurationError` for anything but http(s) URLs
    (:func:`~dp_models._urls.parse_endpoints`)."""
    replicas = parse_endpoints(url, source="the allowed endpoint")
    return [(r.host, r.effective_port) for r in replicas]


def active_guards() -> tuple[str, ...]:
    """The spec names whose loads are guarded right now (for diagnostics and tests)."""
    with _lock:
        return tuple(sorted(_active))


def _allowed() -> list[str]:
    return sorted(f"{h}:{p}" for h, p in _allowed_addrs)


def _is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IP address written out: resolving it sends nothing."""
    try:
        ipaddress.ip_address(host)  # strict: "127.1" or "0x7f000001" count as names
    except ValueError:
        return False
    return True


def _destination(event: str, args: tuple[Any, ...]) -> tuple[str, str | None, int | None] | None:
    """(shown, host, port) of the event, or None when it is not network traffic."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock = args[0]
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", object()):
            return None
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = str(address[0]), int(address[1])
            return f"{host}:{port}", host, port
        if address is None:  # sendmsg on a connected socket: the connect was checked
            return None
        return str(address), None, None
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        if host is None:
            return None  # a local bind, not a lookup
        host = host.decode() if isinstance(host, bytes) else str(host)
        if _is_ip_literal(host) or host == getattr(_local, "resolving", None):
            # No lookup leaves the process for an address literal: the connect that follows
            # is checked (and named by its address). The allowed endpoints' own host names
            # are resolved while another guard may be active.
            return None
        try:
            port_num = int(port) if port is not None else None
        except (TypeError, ValueError):
            port_num = None
        shown = f"{host}:{port}" if port is not None else host
        return f"DNS lookup of {shown}", host, port_num
    if event in ("socket.gethostbyname", "socket.gethostbyname_ex"):
        host = str(args[0])
        if _is_ip_literal(host):
            return None
        return f"DNS lookup of {host}", host, None
    if event == "socket.gethostbyaddr":
        host = str(args[0])
        return f"reverse DNS lookup of {host}", host, None
    if event == "socket.getnameinfo":
        sockaddr = args[0]
        host = str(sockaddr[0]) if isinstance(sockaddr, tuple) and sockaddr else str(sockaddr)
        return f"reverse DNS lookup of {host}", host, None
    return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or not _active:
        return
    found = _destination(event, args)
    if found is None:
        return
    shown, host, port = found
    with _lock:
        if not _active:
            return
        if host is not None and port is not None and (host, port) in _allowed_addrs:
            return
        if (
            host is not None
            and event != "socket.connect"
            and host in _allowed_hosts
            and (port is None or any(h == host and p == port for h, p in _allowed_addrs))
        ):
            return  # resolving an allowed endpoint's host name
        specs = sorted(_active)
        allowed = _allowed()
    error = NetworkBlockedError(shown, specs=specs, allowed=allowed)
    _blocked.append(error)
    if event == "socket.connect":
        # socket.create_connection closes its socket only on OSError, which this is not on
        # purpose: close the refused socket here, or every blocked attempt leaks a descriptor
        # until garbage collection (and a ResourceWarning with it).
        with contextlib.suppress(Exception):
            args[0].close()
    raise error


def _install() -> None:
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


def _resolve_allowed(endpoints: Iterable[str]) -> list[tuple[str, int]]:
    """Allowed (host, port) pairs: each endpoint as written, and the addresses its host
    name resolves to (looked up once per process and endpoint list, before this guard is
    active; another guard, in another thread, may be, so the hook lets this thread's lookup
    of that one host through)."""
    return list(_resolve_cached(tuple(sorted(endpoints))))


@functools.lru_cache(maxsize=64)
def _resolve_cached(endpoints: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    pairs: list[tuple[str, int]] = []
    for host, port in [a for url in endpoints for a in endpoint_addresses(url)]:
        pairs.append((host, port))
        _local.resolving = host
        try:
            with contextlib.suppress(OSError):
                for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                    pairs.append((str(info[4][0]), port))
        finally:
            _local.resolving = None
    return tuple(pairs)


@contextlib.contextmanager
def network_guard(
    specs: Iterable[str], allow: Iterable[str] = ()
) -> Iterator[list[NetworkBlockedError]]:
    """Block network access in this process while the block runs, except to ``allow``
    (endpoint URLs such as ``http://triton:8000``, or an endpoint's replicas separated by
    commas). Guards nest and may overlap across
    threads: traffic is blocked while any is active, allowed to the union of endpoints.

    Yields a list that receives every error raised while this guard was active, so that a
    caller can re-raise it when a library caught it and raised something else."""
    _install()
    names = list(specs) or ["(unnamed)"]
    pairs = _resolve_allowed(allow)
    hosts = [h for h, _ in pairs]
    with _lock:
        _active.update(names)
        _allowed_addrs.update(pairs)
        _allowed_hosts.update(hosts)
        start = len(_blocked)
    seen: list[NetworkBlockedError] = []
    try:
        yield seen
    finally:
        with _lock:
            _active.subtract(names)
            _allowed_addrs.subtract(pairs)
            _allowed_hosts.subtract(hosts)
            for counter in (_active, _allowed_addrs, _allowed_hosts):
                for key in [k for k, v in counter.items() if v <= 0]:
                    del counter[key]
            seen.extend(e for e in _blocked[start:] if set(e.specs) & set(names))
            if not _active:
                _blocked.clear()
