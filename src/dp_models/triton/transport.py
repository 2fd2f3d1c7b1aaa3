"""What :class:`~dp_models.triton.client.TritonClient` needs from a connection to a
Triton server, as a small protocol (the way httpx takes a transport), and the default
transport over ``tritonclient.http``.

>>> client = TritonClient(spec, url, transport=FakeTransport.serving(spec))  # doctest: +SKIP

The client keeps every decision (when to check the deployment, what to retry, which error
to raise); a transport only carries calls and reports how each ended, in these terms:

- a lost, refused or reset connection (nothing answered): :class:`ConnectionError` (any
  :class:`OSError` that is not a :class:`TimeoutError`); the client retries it;
- connecting took longer than the connection timeout: a plain :class:`TimeoutError`;
- no complete answer within the call's ``timeout_s``: :class:`DeadlineError`; not retried,
  the server may still be working on it;
- the server answered with an error: :class:`ServerAnswerError`;
- a call with ``new_connection_ok=False`` that would go over a connection opened since the
  last one (a restarted server may be behind it): :class:`NewConnectionError`, raised
  before anything is sent. A transport that cannot tell sets ``watches_connections``
  False, and the client checks the deployment before every such call instead.

:func:`resolve_addresses` is how an endpoint in DNS mode finds its replicas (every address
its host name resolves to); tests replace it to resolve a name to loopback addresses.

These exceptions (defined in :mod:`dp_models._errors`, re-exported here for transports)
are signals between a transport and the client; the client turns each
into a :class:`~dp_models._errors.TritonError`, and none of them leaves it. The in-memory
transport for tests is :class:`dp_models.testing.triton_transport.FakeTransport`.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from .._errors import DeadlineError, MissingExtraError, NewConnectionError, ServerAnswerError
from .._urls import redact

__all__ = [
    "DeadlineError",
    "HTTPTransport",
    "InferTensor",
    "NewConnectionError",
    "ServerAnswerError",
    "Transport",
    "resolve_addresses",
]

log = logging.getLogger("dp_models.triton")

_T = TypeVar("_T")


class InferTensor(NamedTuple):
    """One input of an inference request: its name, Triton datatype and data."""

    name: str
    datatype: str
    data: np.ndarray[Any, Any]


class Transport(Protocol):
    """The calls :class:`~dp_models.triton.client.TritonClient` makes, each bounded by
    ``timeout_s`` (seconds for its whole answer). A transport connects on its first call
    and again after :meth:`close`."""

    @property
    def watches_connections(self) -> bool:
        """Whether :meth:`infer` can refuse a new connection (``new_connection_ok``)."""
        ...

    def is_server_live(self, *, timeout_s: float) -> bool: ...

    def is_model_ready(self, model: str, version: str, *, timeout_s: float) -> bool: ...

    def get_model_metadata(
        self, model: str, version: str, *, timeout_s: float
    ) -> Mapping[str, Any]: ...

    def get_model_config(self, model: str, version: str, *, timeout_s: float) -> Mapping[str, Any]:
        """The model config as Triton's JSON answer (``max_batch_size``, ``parameters``)."""
        ...

    def infer(
        self,
        model: str,
        version: str,
        inputs: Sequence[InferTensor],
        outputs: Sequence[str],
        *,
        timeout_s: float,
        new_connection_ok: bool,
    ) -> Mapping[str, np.ndarray[Any, Any]]:
        """The ``outputs`` by name, as numpy arrays."""
        ...

    def close(self) -> None:
        """Drop the connection (a broken one too); the next call connects again."""
        ...


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection to ``port``, in the
    resolver's order, each once: the replicas of an endpoint in DNS mode. Raises
    :class:`OSError` (:class:`socket.gaierror`) when the name does not resolve. The client
    calls it through this module, so a test may replace it (``monkeypatch.setattr``) to
    resolve a name to loopback addresses."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _httpclient() -> Any:
    try:
        import tritonclient.http as httpclient  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError("tritonclient[http]", extra="triton") from exc
    return httpclient


def _server_exception() -> type[Exception]:
    try:
        from tritonclient.utils import (  # type: ignore[import-untyped]
            InferenceServerException,
        )
    except ImportError as exc:
        raise MissingExtraError("tritonclient[http]", extra="triton") from exc
    return InferenceServerException  # type: ignore[no-any-return]


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # a broken connection may fail to close; it is dropped anyway
        log.debug("closing the Triton connection failed", exc_info=True)


class HTTPTransport:
    """The default transport: ``tritonclient.http.InferenceServerClient`` (on gevent) at
    ``address`` (``host:port[/path]``), with ``headers`` on every request (basic auth, and
    the ``Host`` of a replica found by DNS). ``server_name``: the name a TLS certificate must
    be valid for, when ``address`` is one of its addresses (DNS mode).

    ``connection_timeout_s`` bounds connecting; ``read_timeout_s`` each socket read (the
    ``timeout_s`` of each call bounds its whole answer). New connections are seen through
    the connection pool's ``after_connect`` hook; where the pool has none,
    :attr:`watches_connections` is False."""

    def __init__(
        self,
        address: str,
        *,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        connection_timeout_s: float = 5.0,
        read_timeout_s: float = 61.0,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._ssl = ssl
        self._ssl_options = {"server_hostname": server_name} if ssl and server_name else None
        self._headers = dict(headers or {})
        self._connection_timeout_s = connection_timeout_s
        self._read_timeout_s = read_timeout_s
        # tritonclient.http's client runs on gevent, whose sockets belong to the thread that
        # opened them: one client per thread, made on its first call there
        self._local = threading.local()
        self._generation = 0  # close() moves it on: every thread's client is then replaced
        self._guard = threading.local()
        self._lock = threading.Lock()
        self.watches_connections = False

    def __repr__(self) -> str:
        return f"<HTTPTransport {redact(self._address)}>"

    def _connect(self) -> Any:
        """This thread's client (a new one after :meth:`close`)."""
        local = self._local
        with self._lock:
            generation = self._generation
        client = getattr(local, "client", None)
        if client is not None and local.generation == generation:
            return client
        if client is not None:  # another thread closed the transport: this one's goes too
            local.client = None
            _close_quietly(client)
        client = _httpclient().InferenceServerClient(
            self._address,
            connection_timeout=self._connection_timeout_s,
            network_timeout=self._read_timeout_s,
            ssl=self._ssl,
            ssl_options=self._ssl_options,
        )
        self._watch(client)
        local.client, local.generation = client, generation
        return client

    def _watch(self, client: Any) -> None:
        """Have ``client``'s connection pool report each new connection (its
        ``after_connect`` hook), so that a call made with ``new_connection_ok=False`` never
        goes over a connection opened since the last call: a server restarted between two
        requests (with other weights, perhaps) is checked again before it answers one."""
        pool: Any = getattr(getattr(client, "_client_stub", None), "_connection_pool", None)
        after_connect: Callable[[Any], None] | None = getattr(pool, "after_connect", None)
        self.watches_connections = after_connect is not None
        if after_connect is None:
            log.debug("Triton transport to %s: the pool reports no new connections", self)
            return

        def hook(sock: Any) -> None:
            after_connect(sock)
            if getattr(self._guard, "refuse_new", False):
                raise NewConnectionError

        pool.after_connect = hook

    def _run(
        self, timeout_s: float, fn: Callable[[Any], _T], *, new_connection_ok: bool = True
    ) -> _T:
        """``fn(client)``, ended after ``timeout_s`` in all (tritonclient's own timeout
        bounds each socket read, not a whole answer), its failures in the protocol's terms."""
        import gevent  # type: ignore[import-untyped]  # tritonclient.http runs on gevent

        client = self._connect()
        server_exception = _server_exception()
        timer = gevent.Timeout(timeout_s)
        self._guard.refuse_new = not new_connection_ok
        timer.start()
        try:
            return fn(client)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise DeadlineError(f"no complete answer within {timeout_s:g} s") from None
        except http.client.HTTPException as exc:  # a connection closed mid-answer
            raise ConnectionError(f"{type(exc).__name__}: {redact(str(exc))}") from exc
        except server_exception as exc:
            raise ServerAnswerError(redact(str(exc))) from exc
        finally:
            timer.close()
            self._guard.refuse_new = False

    def is_server_live(self, *, timeout_s: float) -> bool:
        return bool(self._run(timeout_s, lambda c: c.is_server_live(headers=self._headers)))

    def is_model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return bool(
            self._run(timeout_s, lambda c: c.is_model_ready(model, version, headers=self._headers))
        )

    def get_model_metadata(self, model: str, version: str, *, timeout_s: float) -> Any:
        return self._run(
            timeout_s, lambda c: c.get_model_metadata(model, version, headers=self._headers)
        )

    def get_model_config(self, model: str, version: str, *, timeout_s: float) -> Any:
        return self._run(
            timeout_s, lambda c: c.get_model_config(model, version, headers=self._headers)
        )

    def infer(
        self,
        model: str,
        version: str,
        inputs: Sequence[InferTensor],
        outputs: Sequence[str],
        *,
        timeout_s: float,
        new_connection_ok: bool,
    ) -> dict[str, np.ndarray[Any, Any]]:
        httpclient = _httpclient()
        requests = []
        for t in inputs:
            array = np.ascontiguousarray(t.data)
            tensor = httpclient.InferInput(t.name, list(array.shape), t.datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            requests.append(tensor)
        wanted = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs]
        result = self._run(
            timeout_s,
            lambda c: c.infer(
                model, requests, model_version=version, outputs=wanted, headers=self._headers
            ),
            new_connection_ok=new_connection_ok,
        )
        return {n: result.as_numpy(n) for n in outputs}

    def close(self) -> None:
        """Drop this thread's connection now and every other thread's at its next call
        (a gevent client is closed by the thread that owns it)."""
        with self._lock:
            self._generation += 1
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            _close_quietly(client)
