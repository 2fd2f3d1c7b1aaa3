"""A loopback TCP proxy that misbehaves on demand, to put faults between a client and a
real server (a Triton server in dp_models' own tests; any TCP server in a processor's).

>>> with FaultProxy(server.address) as proxy:                   # doctest: +SKIP
...     client = TritonClient(spec, proxy.url, network_timeout_s=2.0)
...     proxy.delay(5.0)          # every answer arrives 5 s late: the client times out
...     proxy.cut_after(100)      # each connection is reset after 100 more answer bytes
...     proxy.cut_after(100, graceful=True)  # ... closed (FIN), the 100 bytes delivered
...     proxy.stall()             # answers are held back for as long as the mode lasts
...     proxy.refuse()            # new connections are reset at once
...     proxy.heal()              # plain forwarding again

The proxy listens on ``127.0.0.1`` at a free port and forwards every connection to
``target`` (a loopback ``host:port`` only). Requests always go through untouched (the
server sees and runs them); the modes act on what comes back, so "the server ran the
request but the answer never arrived" can be staged. A mode applies to every open and new
connection from the moment it is set; :meth:`drop_connections` closes the open ones, as a
network failure would. When the server closes its side of a connection, the proxy
forwards whatever the mode lets through, then closes the client's side.

Bounded: at most ``max_connections`` connections at once (more are reset), at most
``max_pending`` answer bytes held per connection (the server is not read beyond that).
:meth:`stop` closes every socket and joins every thread, or raises
:class:`FaultProxyError` naming the threads that did not end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from .._errors import FaultProxyError

__all__ = ["FaultProxy"]

#: How often the threads look at the stop flag and the mode, in seconds.
_TICK_S = 0.02


@dataclass(frozen=True)
class _Mode:
    name: str  # "pass", "delay", "stall", "cut", "refuse"
    delay_s: float = 0.0
    cut_after: int = 0
    generation: int = 0
    graceful: bool = False


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0), as a refused or broken connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Connection:
    """One client connection and its upstream, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        #: End with a TCP reset rather than a plain close.
        self.reset_requested = False
        self.thread = threading.Thread(
            target=self._run, name=f"fault-proxy-conn-{id(self):x}", daemon=True
        )

    def close(self, *, reset: bool = False, unblock: bool = False) -> None:
        """Ask the thread to end the connection (with a reset when ``reset``); ``unblock``
        also shuts the sockets down, so that a thread blocked sending returns at once."""
        self.reset_requested = self.reset_requested or reset
        self.closed.set()
        if unblock:
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        try:
            self._pump()
        except OSError:
            pass  # a socket error ends this connection, as it would a real one
        finally:
            self._shutdown()
            self.proxy._forget(self)

    def _shutdown(self) -> None:
        reset = self.proxy._stopping.is_set() or self.reset_requested
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def _send(self, data: bytes) -> None:
        self.client.sendall(data)
        with self.proxy._lock:
            self.proxy.answered += len(data)

    def _pump(self) -> None:
        proxy = self.proxy
        try:
            self.upstream = socket.create_connection(proxy.target, timeout=proxy.connect_timeout_s)
        except OSError:
            self.reset_requested = True  # nobody behind the proxy: the client sees a reset
            return
        self.upstream.settimeout(proxy.send_timeout_s)
        self.client.settimeout(proxy.send_timeout_s)
        pending: deque[tuple[float, bytes]] = deque()  # answer bytes held: (arrival, data)
        held = 0
        upstream_open = True
        generation = -1
        budget = 0
        with selectors.DefaultSelector() as sel:
            sel.register(self.client, selectors.EVENT_READ, "client")
            sel.register(self.upstream, selectors.EVENT_READ, "upstream")
            watching_upstream = True
            while not (self.closed.is_set() or proxy._stopping.is_set()):
                mode = proxy._mode
                if mode.generation != generation:
                    generation, budget = mode.generation, mode.cut_after
                want_upstream = upstream_open and held < proxy.max_pending
                if want_upstream != watching_upstream:
                    if want_upstream:
                        sel.register(self.upstream, selectors.EVENT_READ, "upstream")
                    else:
                        sel.unregister(self.upstream)
                    watching_upstream = want_upstream
                for key, _ in sel.select(_TICK_S):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if key.data == "client":
                        if not data:
                            return  # the client closed its side
                        self.upstream.sendall(data)
                    elif not data:
                        upstream_open = False
                    else:
                        pending.append((time.monotonic(), data))
                        held += len(data)
                # forward what the mode lets through
                if mode.name == "stall":
                    pass
                elif mode.name == "cut":
                    while pending and budget > 0:
                        arrival, data = pending.popleft()
                        part, rest = data[:budget], data[budget:]
                        self._send(part)
                        budget -= len(part)
                        held -= len(part)
                        if rest:
                            pending.appendleft((arrival, rest))
                    if budget <= 0 and (pending or upstream_open):
                        self.reset_requested = not mode.graceful
                        return  # the rest of the answer never comes
                else:
                    wait = mode.delay_s if mode.name == "delay" else 0.0
                    now = time.monotonic()
                    while pending and pending[0][0] + wait <= now:
                        _, data = pending.popleft()
                        self._send(data)
                        held -= len(data)
                if not upstream_open and not pending:
                    return  # the server closed its side and everything was forwarded
                if not upstream_open and mode.name == "stall":
                    return  # a stalled answer from a server that went away never comes


class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of ``target`` (``"host:port"`` or a tuple, on
    loopback), whose answers can be delayed, stalled or cut, and which can refuse or drop
    connections. Start it with :meth:`start` or ``with``; :meth:`stop` ends it for sure."""

    def __init__(
        self,
        target: str | tuple[str, int],
        *,
        max_connections: int = 64,
        max_pending: int = 16 * 1024 * 1024,
        connect_timeout_s: float = 2.0,
        send_timeout_s: float = 5.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if isinstance(target, str):
            host, _, port = target.rpartition(":")
            if "://" in target or not host or not port.isdigit():
                raise ValueError(f"target must be 'host:port' (no scheme), not {target!r}")
            target = (host, int(port))
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise ValueError(f"the fault proxy forwards to loopback only, not {target[0]!r}")
        self.target: tuple[str, int] = (target[0], int(target[1]))
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.host = "127.0.0.1"
        self.port = 0
        #: Connections accepted so far (refused ones included).
        self.accepted = 0
        #: Answer bytes passed on to clients so far.
        self.answered = 0
        self._mode = _Mode("pass")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the proxy (what ``tritonclient.http`` takes)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://{self.address}"

    @property
    def mode(self) -> str:
        """The current mode: ``pass``, ``delay``, ``stall``, ``cut`` or ``refuse``."""
        return self._mode.name

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    # -- modes -------------------------------------------------------------------------------

    def _set(
        self, name: str, *, delay_s: float = 0.0, cut_after: int = 0, graceful: bool = False
    ) -> None:
        with self._lock:
            self._mode = _Mode(name, delay_s, cut_after, self._mode.generation + 1, graceful)

    def heal(self) -> None:
        """Forward everything at once again (answers held by :meth:`stall` or :meth:`delay`
        go out now)."""
        self._set("pass")

    def delay(self, seconds: float) -> None:
        """Hold every answer byte ``seconds`` after it arrives from the server."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, not {seconds!r}")
        self._set("delay", delay_s=seconds)

    def stall(self) -> None:
        """Hold every answer until the mode changes (the connections stay open)."""
        self._set("stall")

    def cut_after(self, nbytes: int, *, graceful: bool = False) -> None:
        """Let ``nbytes`` more answer bytes through on each connection, then reset it (with
        ``graceful``, close it instead: the client gets every byte let through, then the
        end of the stream, as from a server that went away mid-answer)."""
        if nbytes < 0:
            raise ValueError(f"cut_after needs a byte count >= 0, not {nbytes!r}")
        self._set("cut", cut_after=nbytes, graceful=graceful)

    def refuse(self) -> None:
        """Reset every new connection at once (open ones are kept)."""
        self._set("refuse")

    def drop_connections(self) -> None:
        """Reset every open connection, as a network failure would."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close(reset=True)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen on a free loopback port and start forwarding. Returns ``self``."""
        if self._listener is not None:
            raise FaultProxyError(f"the fault proxy on {self.address} is already running")
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(self.max_connections)
            listener.settimeout(_TICK_S)
        except OSError as exc:
            listener.close()
            raise FaultProxyError(f"the fault proxy could not listen: {exc}") from exc
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed by stop()
            self.accepted += 1
            with self._lock:
                full = len(self._connections) >= self.max_connections
                refused = self._mode.name == "refuse" or full or self._stopping.is_set()
                conn = None if refused else _Connection(self, client)
                if conn is not None:
                    self._connections.add(conn)
            if conn is None:
                _reset(client)
                continue
            conn.thread.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def stop(self) -> None:
        """Close the listener and every connection, and join every thread (within
        ``stop_timeout_s``, else :class:`FaultProxyError`). Safe to call twice."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        deadline = time.monotonic() + self.stop_timeout_s
        threads: list[threading.Thread] = []
        if self._acceptor is not None:
            threads.append(self._acceptor)
            self._acceptor = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close(reset=True, unblock=True)
        threads += [c.thread for c in connections]
        alive = []
        for thread in threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                alive.append(thread.name)
        if alive:
            raise FaultProxyError(f"fault proxy threads did not end: {', '.join(alive)}")

    def __enter__(self) -> FaultProxy:
        return self if self._listener is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"on {self.address}" if self._listener is not None else "stopped"
        return f"<FaultProxy {state} -> {self.target[0]}:{self.target[1]}, {self.mode}>"
