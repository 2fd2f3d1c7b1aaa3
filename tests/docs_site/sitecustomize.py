"""Imported at start-up by every interpreter that runs a block of the docs
(tests/test_docs_run.py puts this directory on PYTHONPATH): a connection or name lookup
beyond loopback raises at once, so that a doc's block that would reach the network fails
its test instead of reaching a mirror, a hub or a store. While a dp_models network guard
is active, it decides instead (it blocks more: all but the endpoints the block allowed),
so that a doc shows dp_models' own NetworkBlockedError."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return host is None
    if host == "" or host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # this host, or binding to all


def _address(host: Any) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    return True


def _hook(event: str, args: tuple[Any, ...]) -> None:
    guard = sys.modules.get("dp_models._guard")
    if guard is not None and getattr(guard, "_active", None):  # no lock: it may hold it
        return
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address and not _local(address[0]):
            raise RuntimeError(f"docs that run: no network beyond loopback ({address[0]})")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        if args and not _local(args[0]):
            if _address(args[0]):
                raise RuntimeError(f"docs that run: no network beyond loopback ({args[0]})")
            raise RuntimeError(f"docs that run: no name lookups beyond localhost ({args[0]})")


sys.addaudithook(_hook)
