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
  False, and the client checks the deployment before every such call instead;
- a transport required to move tensors through shared memory that cannot:
  :class:`SharedMemoryRefusedError`, nothing sent.

**Shared memory.** :class:`HTTPTransport` with ``shared_memory="auto"`` or ``"on"`` (the
client decides which, per endpoint: docs/triton.md, "Shared memory on the same host")
places a request's numeric tensors in a POSIX shared-memory region of this host
(:mod:`dp_models.triton.shm`) registered with the server once and reused, so only a small
JSON request and answer cross HTTP; BYTES tensors, BF16 and outputs whose size is not known
before the answer (``output_nbytes`` lists those that are) travel as binary data in the
same request. Each request has a region to itself (threads never share one); a request
larger than every free region gets a new one (the smaller one unregistered and removed);
a region is removed at once when its registration fails, and retired (removed, never
reused) when its request may still be running on the server (a timeout, a lost
connection). A server that answers a request with an error and no longer has the region
(it restarted) gets it registered again and the request once more. With ``"auto"`` a
server that does not offer system shared memory, or cannot open this host's region
(another container, another ``/dev/shm``), or a host that cannot make one, turns the
transport to HTTP binary data (logged once per server); with ``"on"`` that is a
:class:`SharedMemoryRefusedError`. :meth:`HTTPTransport.release` (``TritonClient.close()``)
unregisters and removes every region; see :mod:`dp_models.triton.shm` for exit and
garbage collection.

:func:`resolve_addresses` is how an endpoint in DNS mode finds its replicas (every address
its host name resolves to); tests replace it to resolve a name to loopback addresses.

These exceptions (defined in :mod:`dp_models._errors`, re-exported here for transports)
are signals between a transport and the client; the client turns each
into a :class:`~dp_models._errors.TritonError`, and none of them leaves it. The in-memory
transport for tests is :class:`dp_models.testing.triton_transport.FakeTransport`.
"""

from __future__ import annotations

import functools
import http.client
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from .._errors import (
    DeadlineError,
    MissingExtraError,
    NewConnectionError,
    ServerAnswerError,
    SharedMemoryRefusedError,
)
from .._settings import check_shared_memory_mode
from .._urls import redact
from .shm import ITEM_SIZES, SHM_DIR, Region, Regions, aligned, orphan, take_orphans

__all__ = [
    "SHM_MIN_BYTES",
    "DeadlineError",
    "HTTPTransport",
    "InferTensor",
    "NewConnectionError",
    "ServerAnswerError",
    "SharedMemoryRefusedError",
    "Transport",
    "resolve_addresses",
]

log = logging.getLogger("dp_models.triton")

_T = TypeVar("_T")

#: A request whose tensors that can travel in shared memory total fewer bytes than this
#: goes over HTTP alone (see docs/triton.md: for such sizes the two ways take the same time).
SHM_MIN_BYTES = 0
#: How long unregistering the regions a transport leaves at interpreter exit may take in all.
EXIT_UNREGISTER_TIMEOUT_S = 2.0


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

    @property
    def shared_memory(self) -> str:
        """How tensors travel, for people: ``off`` (HTTP binary data), or the shared-memory
        mode and what became of it (``auto, in use``, ``auto, not used (why)``,
        ``auto, not used yet``)."""
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
        output_nbytes: Mapping[str, int] | None = None,
    ) -> Mapping[str, np.ndarray[Any, Any]]:
        """The ``outputs`` by name, as numpy arrays the caller owns. ``output_nbytes``:
        the size of each output that is known before the answer (fixed shape and
        datatype), for a transport that places outputs ahead (shared memory)."""
        ...

    def close(self) -> None:
        """Drop the connection (a broken one too); the next call connects again. Keeps
        what is registered with the server (a lost connection is not a new server)."""
        ...

    def release(self) -> None:
        """Release everything held at the server and on this host (shared-memory regions:
        unregistered, best effort within the connection timeout, and removed for sure),
        then :meth:`close`. What ``TritonClient.close()`` calls; the next call starts over."""
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
    :attr:`watches_connections` is False.

    ``shared_memory``: ``off`` (the default: HTTP binary data), ``auto`` (system shared
    memory while the server takes this host's regions, else HTTP) or ``on`` (shared memory
    or :class:`SharedMemoryRefusedError`); see the module's documentation. The client
    chooses it (``auto`` only for a loopback server)."""

    def __init__(
        self,
        address: str,
        *,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        connection_timeout_s: float = 5.0,
        read_timeout_s: float = 61.0,
        server_name: str | None = None,
        shared_memory: str = "off",
    ) -> None:
        self._shm_mode = check_shared_memory_mode(shared_memory, source="HTTPTransport")
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
        #: Who the server is, for the regions left registered there (same for every
        #: transport to it).
        self._server = _Server(
            address,
            ssl,
            server_name,
            tuple(sorted(self._headers.items())),
            connection_timeout_s,
        )
        #: The shared-memory regions (made on first use, kept across release()).
        self._regions: Regions | None = None
        #: Whether the server was found to offer shared memory since the last release().
        self._shm_ready = False
        #: Why shared memory is not used (auto mode; None: it is, or not tried yet).
        self._shm_problem: str | None = None
        #: Auto mode: no segment this large or larger is made again (this host could not
        #: make one; its requests go over HTTP unless a free region fits), and why.
        self._shm_limit: int | None = None
        self._shm_limit_problem = ""
        self._shm_lock = threading.Lock()

    def __repr__(self) -> str:
        shown = "" if self._shm_mode == "off" else f" (shared memory {self.shared_memory})"
        return f"<HTTPTransport {redact(self._address)}{shown}>"

    @property
    def shared_memory_regions(self) -> tuple[str, ...]:
        """The names of the shared-memory regions held now, sorted: each is a segment in
        ``/dev/shm`` and a region registered at the server under the same name."""
        regions = self._regions
        return regions.names if regions is not None else ()

    @property
    def shared_memory(self) -> str:
        mode = self._shm_mode
        if mode == "off":
            return "off"
        if self._shm_problem is not None:
            return f"{mode}, not used ({self._shm_problem})"
        regions = self._regions
        limit = ""
        if self._shm_limit is not None:
            limit = (
                f"; requests of {self._shm_limit} bytes or more over HTTP "
                f"({self._shm_limit_problem})"
            )
        if self._shm_ready and regions is not None and regions.names:
            return f"{mode}, in use{limit}"
        return f"{mode}, not used yet{limit}"

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
        output_nbytes: Mapping[str, int] | None = None,
    ) -> dict[str, np.ndarray[Any, Any]]:
        layout = self._layout(inputs, outputs, output_nbytes or {})
        if layout is not None:
            try:
                return self._infer_shm(
                    model, version, inputs, outputs, layout, timeout_s, new_connection_ok
                )
            except SharedMemoryRefusedError as exc:
                if self._shm_mode == "on":
                    raise
                self._fall_back(exc.reason)
        return self._infer_http(model, version, inputs, outputs, timeout_s, new_connection_ok)

    def _infer_http(
        self,
        model: str,
        version: str,
        inputs: Sequence[InferTensor],
        outputs: Sequence[str],
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
                model,
                requests,
                model_version=version,
                outputs=wanted,
                headers=dict(self._headers),  # tritonclient adds its own to the dict
            ),
            new_connection_ok=new_connection_ok,
        )
        return {n: result.as_numpy(n) for n in outputs}

    # -- shared memory -----------------------------------------------------------------------

    def _layout(
        self,
        inputs: Sequence[InferTensor],
        outputs: Sequence[str],
        output_nbytes: Mapping[str, int],
    ) -> _Layout | None:
        """Where each tensor that can travel in shared memory goes in a region (None: the
        request goes over HTTP alone: mode off, fallen back, or nothing worth placing)."""
        if self._shm_mode == "off" or self._shm_problem is not None:
            return None
        offset = 0
        placed_in: dict[str, int] = {}
        for t in inputs:
            if t.datatype in ITEM_SIZES:
                placed_in[t.name] = offset
                offset += aligned(t.data.nbytes)
        placed_out: dict[str, tuple[int, int]] = {}
        for name in outputs:
            nbytes = output_nbytes.get(name)
            if nbytes is not None and nbytes > 0:
                placed_out[name] = (offset, nbytes)
                offset += aligned(nbytes)
        if offset == 0 or offset < SHM_MIN_BYTES:
            return None
        return _Layout(placed_in, placed_out, offset)

    def _fall_back(self, reason: str) -> None:
        """Auto mode: shared memory cannot be used with this server; HTTP from now on (until
        release()). Logged once per server; the regions made so far are released."""
        with self._shm_lock:
            if self._shm_problem is not None:
                return
            self._shm_problem = reason
            regions = self._regions
        shown = redact(self._address)
        level = logging.DEBUG if shown in _FELL_BACK else logging.WARNING
        _FELL_BACK.add(shown)
        log.log(
            level,
            "Triton at %s: system shared memory not used (%s); tensors go over HTTP. Run the "
            "server where it sees this host's /dev/shm (the same host, or a container with "
            "--ipc=host), or set the endpoint's shared-memory mode to off "
            "($DP_MODELS_TRITON_SHM[_<NAME>]=off) to go over HTTP without trying.",
            shown,
            reason,
        )
        if regions is not None:
            orphan(self._server, self._unregister_elsewhere, regions.close())

    def _limit(self, nbytes: int, why: str) -> None:
        """Auto mode: this host could not make a segment of ``nbytes`` (a /dev/shm too
        small): requests that large go over HTTP unless a free region fits, until
        release(); the smaller ones keep to shared memory. Logged as a warning the first
        time per transport."""
        with self._shm_lock:
            first = self._shm_limit is None
            if first or nbytes < (self._shm_limit or 0):
                self._shm_limit, self._shm_limit_problem = nbytes, why
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "Triton at %s: %s; requests of that size or more go over HTTP. Give /dev/shm more "
            "room (a container's --shm-size), or set the endpoint's shared-memory mode to off "
            "($DP_MODELS_TRITON_SHM[_<NAME>]=off).",
            redact(self._address),
            why,
        )

    @property
    def _unregister_elsewhere(self) -> Callable[[Collection[str]], None]:
        """Unregisters names over a connection of its own, holding nothing of this
        transport (for the regions left at exit)."""
        return functools.partial(_unregister_at, self._server)

    def _shm_regions(self, left: Callable[[], float], new_connection_ok: bool) -> Regions:
        """The regions, once the server was found to offer system shared memory (asked on
        first use after each release()). Raises :class:`SharedMemoryRefusedError`."""
        if self._shm_ready and self._regions is not None:
            return self._regions
        with self._shm_lock:
            if not self._shm_ready:
                try:
                    metadata = self._run(
                        left(),
                        lambda c: c.get_server_metadata(headers=self._headers),
                        new_connection_ok=new_connection_ok,
                    )
                except ServerAnswerError as exc:
                    raise SharedMemoryRefusedError(
                        f"the server did not say whether it offers shared memory: {exc}"
                    ) from None
                extensions = metadata.get("extensions") if isinstance(metadata, dict) else None
                if not isinstance(extensions, list) or "system_shared_memory" not in extensions:
                    raise SharedMemoryRefusedError(
                        "the server does not offer system shared memory (its metadata does "
                        "not list the system_shared_memory extension)"
                    )
                if not SHM_DIR.is_dir():
                    raise SharedMemoryRefusedError(f"this host has no {SHM_DIR}")
                if self._regions is None:
                    self._regions = Regions(self._server, self._unregister_elsewhere)
                self._shm_ready = True
            assert self._regions is not None
            return self._regions

    def _infer_shm(
        self,
        model: str,
        version: str,
        inputs: Sequence[InferTensor],
        outputs: Sequence[str],
        layout: _Layout,
        timeout_s: float,
        new_connection_ok: bool,
    ) -> dict[str, np.ndarray[Any, Any]]:
        """One request with its tensors placed in a region of this request's own, within
        ``timeout_s`` in all (its registration, and once more after a server restart,
        included)."""
        httpclient = _httpclient()
        ends = time.monotonic() + timeout_s

        def left() -> float:
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise DeadlineError(f"no complete answer within {timeout_s:g} s")
            return remaining

        regions = self._shm_regions(left, new_connection_ok)
        limit = self._shm_limit
        try:
            found = regions.take(layout.nbytes, make=limit is None or layout.nbytes < limit)
        except OSError as exc:
            why = (
                f"this host could not make a shared-memory segment of {layout.nbytes} bytes in "
                f"{SHM_DIR} ({exc.strerror or exc})"
            )
            if self._shm_mode == "on":
                raise SharedMemoryRefusedError(why) from None
            self._limit(layout.nbytes, why)
            found = None
        if found is None:  # auto, and too large for this host's /dev/shm: this one over HTTP
            return self._infer_http(model, version, inputs, outputs, left(), new_connection_ok)
        region = found
        segment = region.segment
        keep = False  # whether the region may serve the next request: nothing in flight
        gone = False  # refused by the server, and removed
        try:
            if not region.registered:
                gone = True  # until registered: a refusal removes it
                self._register(regions, region, left, new_connection_ok)
                gone = False
            requests = []
            for t in inputs:
                offset = layout.inputs.get(t.name)
                if offset is None:
                    array = np.ascontiguousarray(t.data)
                    tensor = httpclient.InferInput(t.name, list(array.shape), t.datatype)
                    tensor.set_data_from_numpy(array, binary_data=True)
                else:
                    segment.write(offset, t.data)
                    tensor = httpclient.InferInput(t.name, list(t.data.shape), t.datatype)
                    tensor.set_shared_memory(segment.name, t.data.nbytes, offset=offset)
                requests.append(tensor)
            wanted = []
            for name in outputs:
                output = httpclient.InferRequestedOutput(name, binary_data=True)
                if name in layout.outputs:
                    offset, nbytes = layout.outputs[name]
                    output.set_shared_memory(segment.name, nbytes, offset=offset)
                wanted.append(output)

            def send(c: Any) -> Any:
                return c.infer(
                    model,
                    requests,
                    model_version=version,
                    outputs=wanted,
                    headers=dict(self._headers),  # tritonclient adds its own to the dict
                )

            try:
                result = self._run(left(), send, new_connection_ok=new_connection_ok)
            except ServerAnswerError:
                keep = True  # answered: the request is over
                if self._has(region, left):
                    raise
                # the server does not have the region: it restarted since it was registered
                log.info(
                    "Triton at %s: shared-memory region %s not registered (a restarted "
                    "server?); registering it again",
                    redact(self._address),
                    segment.name,
                )
                regions.unregistered()
                region.registered = False
                keep, gone = False, True
                self._register(regions, region, left, False)
                gone = False
                result = self._run(left(), send, new_connection_ok=False)
            answer = self._read_outputs(result, outputs, layout, segment)
            keep = True
        except NewConnectionError:
            keep, gone = True, False  # refused before anything was sent
            raise
        except SharedMemoryRefusedError:
            raise  # the region is removed already
        except BaseException:
            gone = False  # a registration whose answer was lost: perhaps the server's
            raise
        finally:
            if keep:
                regions.give(region)
            elif not gone:  # the server may still be working on it: never reused
                regions.retire(region)
        self._unregister_pending(regions, timeout_s)
        return answer

    def _read_outputs(
        self, result: Any, outputs: Sequence[str], layout: _Layout, segment: Any
    ) -> dict[str, np.ndarray[Any, Any]]:
        """The outputs, each a copy the caller owns (the region serves the next request)."""
        from tritonclient.utils import triton_to_np_dtype

        answer: dict[str, np.ndarray[Any, Any]] = {}
        for name in outputs:
            placed = layout.outputs.get(name)
            if placed is None:
                answer[name] = result.as_numpy(name)
                continue
            found = result.get_output(name)
            if found is None:
                continue  # missing: the client names it
            dtype = np.dtype(triton_to_np_dtype(found["datatype"]))
            shape = tuple(int(d) for d in found["shape"])
            offset, nbytes = placed
            if math.prod(shape) * dtype.itemsize > nbytes:
                raise ServerAnswerError(
                    f"output {name!r} of shape {list(shape)} ({found['datatype']}) is larger "
                    f"than the {nbytes} bytes its spec leaves for it"
                )
            answer[name] = segment.read(offset, dtype, shape)
        return answer

    def _register(
        self,
        regions: Regions,
        region: Region,
        left: Callable[[], float],
        new_connection_ok: bool,
    ) -> None:
        """Register ``region`` with the server. Refused: the region is removed at once and
        :class:`SharedMemoryRefusedError` raised."""
        segment = region.segment
        try:
            self._run(
                left(),
                lambda c: c.register_system_shared_memory(
                    segment.name, segment.key, segment.size, headers=self._headers
                ),
                new_connection_ok=new_connection_ok,
            )
        except ServerAnswerError as exc:
            if self._has(region, left):  # the server had it after all
                regions.registered(region)
                return
            regions.discard(region)
            raise SharedMemoryRefusedError(
                f"the server did not register this host's shared-memory region {segment.key} "
                f"({exc})"
            ) from None
        regions.registered(region)
        log.debug("Triton at %s: registered %r", redact(self._address), region)

    def _has(self, region: Region, left: Callable[[], float]) -> bool:
        """Whether the server has ``region`` registered, as this transport registered it."""
        name = region.segment.name
        try:
            status = self._run(
                left(),
                lambda c: c.get_system_shared_memory_status(
                    region_name=name, headers=self._headers
                ),
                new_connection_ok=False,
            )
        except ServerAnswerError:  # 404: not registered
            return False
        if isinstance(status, dict):
            status = status.get("regions", [status])
        return any(
            isinstance(s, dict) and s.get("name") == name and s.get("key") == region.segment.key
            for s in status or []
        )

    def _unregister_pending(self, regions: Regions, timeout_s: float) -> None:
        """Unregister the regions retired meanwhile, and those other transports to this
        server left when they were dropped without release(); best effort, after a request
        that went through (what fails is tried again after the next one)."""
        names = regions.pending() | take_orphans(self._server)
        if not names:
            return
        try:
            self._run(
                min(timeout_s, self._connection_timeout_s),
                lambda c: [
                    c.unregister_system_shared_memory(n, headers=self._headers) for n in names
                ],
                new_connection_ok=False,
            )
        except Exception as exc:
            regions.still_pending(names)
            if not isinstance(exc, (ServerAnswerError, NewConnectionError)):
                self.close()  # a half-read answer would spoil the connection's next one
            log.debug("unregistering %s failed: %s", sorted(names), exc)
        else:
            regions.done(names)

    def release(self) -> None:
        """Unregister and remove every shared-memory region, then :meth:`close`: the
        segments are removed for sure; the server is asked within the connection timeout
        (a server that does not answer keeps them until the next request of another
        transport to it, or until exit). Shared memory starts over on the next call."""
        with self._shm_lock:
            regions = self._regions
            self._shm_ready = False
            self._shm_problem = None
            self._shm_limit, self._shm_limit_problem = None, ""
        if regions is not None:
            names = regions.close() | take_orphans(self._server)
            if names:
                try:
                    self._run(
                        self._connection_timeout_s,
                        lambda c: [
                            c.unregister_system_shared_memory(n, headers=self._headers)
                            for n in names
                        ],
                    )
                except Exception as exc:  # down, or gone: tried again at exit
                    orphan(self._server, self._unregister_elsewhere, names)
                    log.debug("unregistering %s failed: %s", sorted(names), exc)
        self.close()

    def close(self) -> None:
        """Drop this thread's connection now and every other thread's at its next call
        (a gevent client is closed by the thread that owns it)."""
        with self._lock:
            self._generation += 1
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            _close_quietly(client)


class _Layout(NamedTuple):
    """Where a request's tensors go in its region: each input's offset, each output's
    offset and size, by name, and the bytes needed in all."""

    inputs: dict[str, int]
    outputs: dict[str, tuple[int, int]]
    nbytes: int


@dataclass(frozen=True)
class _Server:
    """Who a transport talks to, as a hashable identity (equal for every transport to one
    server): what the regions left registered there are filed under, and how to reach it
    again at exit. Its headers hold the credentials: never shown."""

    address: str
    ssl: bool
    server_name: str | None
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    connection_timeout_s: float


#: The servers whose shared-memory fallback was logged as a warning (later ones: debug).
_FELL_BACK: set[str] = set()


def _unregister_at(server: _Server, names: Collection[str]) -> None:
    """Unregister ``names`` at ``server`` over a connection of its own, within
    :data:`EXIT_UNREGISTER_TIMEOUT_S` in all (what is left then stays registered)."""
    import gevent

    httpclient = _httpclient()
    ssl_options = (
        {"server_hostname": server.server_name} if server.ssl and server.server_name else None
    )
    client = httpclient.InferenceServerClient(
        server.address,
        connection_timeout=server.connection_timeout_s,
        network_timeout=EXIT_UNREGISTER_TIMEOUT_S,
        ssl=server.ssl,
        ssl_options=ssl_options,
    )
    try:
        with gevent.Timeout(EXIT_UNREGISTER_TIMEOUT_S, False):
            for name in names:
                client.unregister_system_shared_memory(name, headers=dict(server.headers))
    finally:
        _close_quietly(client)
