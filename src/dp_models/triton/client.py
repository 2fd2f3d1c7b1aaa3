"""A Triton client bound to one Triton spec, that fails fast when the deployment is not
what the catalog says.

>>> client = ModelManager().get("midas_dpt_hybrid_triton").client()   # doctest: +SKIP
>>> depth = client.infer({"image": batch})["depth"]                    # doctest: +SKIP
>>> client.check().status                                              # doctest: +SKIP
<HealthStatus.SERVED: 'served'>

On first use, and again before any request that would go over a connection opened since
(a lost connection, a retry, a server restarted while the client was idle), the client
checks, in order (the checks themselves are :mod:`dp_models.triton.checks`):

1. the server is live and the pinned model version is ready, within ``ready_timeout_s``
   (else :class:`~dp_models._errors.TritonUnavailableError`);
2. the served metadata against the spec: input and output names, datatypes, shapes
   (``-1`` on either side matches any length), the pinned version among the served
   ones, and ``max_batch_size`` (every difference in one
   :class:`~dp_models._errors.TritonMetadataMismatchError`);
3. the served digest (the ``weights_digest`` parameter of the served model config)
   against the expected digest (:meth:`~dp_models._catalog.Catalog.served_digest`):
   :class:`~dp_models._errors.TritonDigestMismatchError` when it differs, or when it is
   missing and the spec sets ``require_weights_digest``; otherwise recorded as unverified
   (``served_digest_verified: None``).

``infer`` checks input names, dtypes and shapes before anything is sent
(:class:`~dp_models._errors.TritonInputError`), sends binary tensors, and splits a batch
larger than the spec's ``max_batch_size`` into requests that fit, concatenating the
outputs. Each request gets ``network_timeout_s`` for its whole answer, else
:class:`~dp_models._errors.TritonTimeoutError` (not retried: the server may still be
working on it). A lost connection (never a server answer) is retried ``retries`` times
with exponential backoff, each retry after the checks pass again, then raises
:class:`~dp_models._errors.TritonUnavailableError`; a restarted server is picked up, and
one serving other weights is a :class:`~dp_models._errors.TritonDigestMismatchError`
before it answers anything. The defaults and the per-endpoint settings
(``$DP_MODELS_TRITON_TIMEOUT[_<NAME>]``) are in docs/triton.md.

The network is behind a transport (:mod:`dp_models.triton.transport`): by default
``tritonclient.http``, imported on first use (the ``triton`` extra); tests give an
in-memory one (:class:`dp_models.testing.triton_transport.FakeTransport`).

An endpoint may have several **replicas** (servers of one deployment): its value lists
their URLs separated by commas, or, with ``replicas="dns"``, its one URL's host name
resolves to each replica's address (looked up on first use and at each :meth:`check`).
Each replica is checked as above before its first request, and again after a new
connection to it, so that what was verified is what answers. Requests go to one replica
(the first, at first) until it is unavailable (:class:`~dp_models._errors.TritonUnavailableError`,
after its retries), then to the next that passes its checks; when none does, one
``TritonUnavailableError`` names every replica and why. A replica that answers with other
metadata or weights is an error, never skipped: the deployment is not what the catalog
says. :meth:`TritonClient.check` checks every replica and reports each
(:class:`~dp_models._health.ReplicaHealth`).

URL credentials (``http://user:secret@host:8000``) are sent as HTTP basic auth and never
appear in messages, logs, reprs or ``models_used`` (:mod:`dp_models._urls` parses the URL
and masks them).

**Shared memory.** With ``shared_memory="auto"`` (the default; per endpoint
``$DP_MODELS_TRITON_SHM[_<NAME>]``) and every replica URL on loopback, tensors travel
through the server's system shared memory (regions of this host registered once and
reused: :mod:`dp_models.triton.shm`) while the server takes them, else as HTTP binary
data; ``"on"`` declares that the server shares this host (a refusal is a
:class:`~dp_models._errors.TritonSharedMemoryError`), ``"off"`` keeps to HTTP. The answers
are the same either way. :meth:`TritonClient.close` unregisters and removes the regions.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .._errors import (
    ConfigurationError,
    SharedMemoryRefusedError,
    TritonDigestMismatchError,
    TritonInferenceError,
    TritonInputError,
    TritonMetadataMismatchError,
    TritonSharedMemoryError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from .._health import HealthReport, HealthStatus, ReplicaHealth, worst_replica
from .._settings import (
    REPLICA_MODES,
    check_shared_memory_mode,
    check_triton_option,
    triton_replicas_variable,
    triton_shm_variable,
    triton_timeout_variable,
)
from .._spec import Spec, TritonSection
from .._urls import EndpointURL, is_loopback_host, parse_endpoints, redact
from . import transport as _transport
from .checks import (
    DigestVerdict,
    input_problems,
    metadata_differences,
    served_digest_of,
    served_digest_verdict,
)
from .repository import WEIGHTS_DIGEST_PARAMETER
from .shm import ITEM_SIZES
from .transport import (
    DeadlineError,
    HTTPTransport,
    InferTensor,
    NewConnectionError,
    ServerAnswerError,
    Transport,
)

if TYPE_CHECKING:
    from ..loaders.labels import Labels

__all__ = ["TritonClient"]

log = logging.getLogger("dp_models.triton")

_T = TypeVar("_T")


class _Replica:
    """One replica of a client's endpoint: where it is, the transport that reaches it, and
    what its checks found. Each replica is checked on its own."""

    def __init__(self, url: EndpointURL, transport: Transport) -> None:
        #: Where the requests go (credentials included: never shown).
        self.url = url
        #: The URL to show: credentials masked.
        self.endpoint = url.redacted
        self.transport = transport
        self.verified = False
        #: True from a passed check until the next request that depends on it: that request
        #: may open a new connection; later ones may not.
        self.fresh = False
        self.served_digest_verified: bool | None = None
        self.served_digest: str | None = None
        self.server_live = False
        #: False: known not to answer (:func:`~dp_models.triton.health.check_deployments`
        #: saw it down for another spec): one readiness probe, no retries.
        self.wait = True
        #: Why it was last found unavailable, for the message naming every replica.
        self.problem = ""
        #: Held while this replica is checked, never while another is: a replica slow to
        #: answer its checks (down, waited for up to ``ready_timeout_s``) holds up no request
        #: to the others.
        self.lock = threading.Lock()


class TritonClient:
    """A Triton client for one spec at one endpoint URL.

    ``expected_digest``: the weights digest the deployment must serve (what
    :meth:`~dp_models._catalog.Catalog.served_digest` gives; :meth:`ModelHandle.client
    <dp_models._manager.ModelHandle.client>` passes it). ``connection_timeout_s`` bounds
    connecting, ``network_timeout_s`` each request's whole answer, ``ready_timeout_s`` the
    readiness wait; ``retries`` and ``backoff_s`` the retries on lost connections (checked
    by :func:`~dp_models._settings.check_triton_option`). ``on_verified`` is called with the
    served digest's verification status (True, or None when unverified) each time the
    deployment passes its checks, and with False when the served digest does not match,
    and again while a replica last found serving other weights has not been found good
    since (another replica passing does not overwrite it).
    ``tokenizer`` makes the tokenizer that decodes the model's token ids
    (:mod:`dp_models.triton.whisper`), called once, on first use; ``labels`` likewise makes
    the class names of its outputs (:meth:`labels`). ``transport`` carries
    the calls (:class:`~dp_models.triton.transport.Transport`); by default
    ``tritonclient.http`` at ``url``.

    ``url`` may list several replicas separated by commas; ``replicas="dns"`` takes every
    address its one URL's host name resolves to as a replica (the ``Host`` header and the
    TLS server name stay the name's). With several replicas, ``transports`` makes each
    one's transport from its URL (``transport`` carries one replica's calls only).

    ``shared_memory`` (:data:`~dp_models._settings.SHARED_MEMORY_MODES`): ``auto`` moves
    tensors through the server's system shared memory when every replica URL is loopback
    and the server takes this host's regions (else HTTP binary data, logged once); ``on``
    when the server shares this host whatever its URL (a refusal is a
    :class:`~dp_models._errors.TritonSharedMemoryError`); ``off``, HTTP only. It sets up
    the default transports; a ``transport`` or ``transports`` given carries as it was made.
    """

    def __init__(
        self,
        spec: Spec,
        url: str,
        *,
        expected_digest: str | None = None,
        connection_timeout_s: float = 5.0,
        network_timeout_s: float = 60.0,
        ready_timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        on_verified: Callable[[bool | None], None] | None = None,
        tokenizer: Callable[[], Any] | None = None,
        labels: Callable[[], Labels] | None = None,
        transport: Transport | None = None,
        replicas: str = "urls",
        transports: Callable[[EndpointURL], Transport] | None = None,
        shared_memory: str = "auto",
    ) -> None:
        if spec.triton is None:
            raise ConfigurationError(
                f"spec {spec.name!r} is not served by Triton (runtime: {spec.runtime}); "
                "load it in process with ModelManager.load"
            )
        source = f"the Triton client of spec {spec.name!r}"
        connection_timeout_s, network_timeout_s, ready_timeout_s, backoff_s = (
            check_triton_option(name, value, source=source)
            for name, value in (
                ("connection_timeout_s", connection_timeout_s),
                ("network_timeout_s", network_timeout_s),
                ("ready_timeout_s", ready_timeout_s),
                ("backoff_s", backoff_s),
            )
        )
        retries = int(check_triton_option("retries", retries, source=source))
        #: ``auto``, ``on`` or ``off``: how the default transports move tensors.
        self.shared_memory = check_shared_memory_mode(shared_memory, source=source)
        urls = parse_endpoints(url, source=f"the Triton endpoint of spec {spec.name!r}")
        if replicas not in REPLICA_MODES:
            raise ConfigurationError(
                f"{source}: replicas must be one of {', '.join(REPLICA_MODES)}, not {replicas!r}"
            )
        if replicas == "dns" and len(urls) > 1:
            raise ConfigurationError(
                f"{source}: replicas='dns' resolves the host name of one URL, but "
                f"{len(urls)} are listed; give one, or list the replicas without dns "
                f"(${triton_replicas_variable(spec.triton.endpoint)})"
            )
        if transport is not None and (len(urls) > 1 or replicas == "dns"):
            raise ConfigurationError(
                f"{source}: transport= carries the calls of one replica; with several, "
                "give transports= (a function of each replica's URL)"
            )
        self.spec = spec
        self.triton: TritonSection = spec.triton
        #: The URL to show, credentials masked (several replicas: their URLs, with ", ").
        self.endpoint = ", ".join(u.redacted for u in urls)
        self.expected_digest = expected_digest
        self.connection_timeout_s = connection_timeout_s
        self.network_timeout_s = network_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._on_verified = on_verified
        self._tokenizer_factory = tokenizer
        self._tokenizer: Any = None
        self._labels_factory = labels
        self._labels: Labels | None = None
        self._transport = transport
        self._transports = transports
        self._dns = replicas == "dns"
        #: The URL whose host name is resolved (DNS mode).
        self._name = urls[0]
        #: Whether every replica is on loopback (auto shared memory); DNS: each time resolved.
        self._local = all(u.is_loopback for u in urls)
        #: Bytes per batch item of each output whose size is known before the answer.
        self._output_item_nbytes = {
            t.name: math.prod(t.shape) * ITEM_SIZES[t.datatype]
            for t in self.triton.outputs
            if t.datatype in ITEM_SIZES and all(d >= 0 for d in t.shape)
        }
        #: Guards the replica list and what the client records; never held while a replica
        #: is contacted (each replica's checks hold its own lock).
        self._lock = threading.RLock()
        #: The replicas; in DNS mode None until the name is first resolved.
        self._replicas: list[_Replica] | None = (
            None if self._dns else [self._new_replica(u) for u in urls]
        )
        #: The replica requests go to, once one has answered.
        self._current: _Replica | None = None

    @property
    def model_name(self) -> str:
        return self.triton.model_name

    @property
    def model_version(self) -> int:
        return self.triton.model_version

    # -- replicas ------------------------------------------------------------------------

    def _new_replica(self, url: EndpointURL, name: EndpointURL | None = None) -> _Replica:
        """A replica at ``url``; ``name``: the URL whose host name resolved to it (DNS)."""
        if self._transport is not None:
            return _Replica(url, self._transport)
        if self._transports is not None:
            return _Replica(url, self._transports(url))
        headers: dict[str, str] = {}
        if url.username is not None:
            token = f"{url.username}:{url.password or ''}"
            headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        if name is not None:
            host = f"[{name.host}]" if ":" in name.host else name.host
            headers["Host"] = host + (f":{name.port}" if name.port is not None else "")
        mode = self.shared_memory
        if mode == "auto" and not self._local:
            mode = "off"  # auto: for a server on this host's loopback only
        transport = HTTPTransport(
            url.address,
            ssl=url.scheme == "https",
            headers=headers,
            connection_timeout_s=self.connection_timeout_s,
            # a call's own deadline ends a request first; this bounds each read too
            read_timeout_s=self.network_timeout_s + 1.0,
            server_name=name.host if name is not None else None,
            shared_memory=mode,
        )
        return _Replica(url, transport)

    def _replica_list(self) -> list[_Replica]:
        """The replicas (DNS mode: the name resolved on first use)."""
        with self._lock:
            replicas = self._replicas
        if replicas is None:
            return self._resolve()
        return list(replicas)

    def _resolve(self) -> list[_Replica]:
        """DNS mode: look the name up again. A replica whose address is still listed keeps
        its connection and checks; a new address is a new replica (checked before its first
        request); one no longer listed is closed and forgotten."""
        if not self._dns:
            return self._replica_list()
        name = self._name
        try:  # outside the lock: a slow resolver holds up no request
            addresses = _transport.resolve_addresses(name.host, name.effective_port)
        except OSError as exc:
            raise self._unavailable(
                None, f"the host name {name.host!r} does not resolve ({type(exc).__name__})"
            ) from exc
        if not addresses:
            raise self._unavailable(None, f"the host name {name.host!r} resolves to nothing")
        with self._lock:
            self._local = all(is_loopback_host(a) for a in addresses)
            known: dict[str, _Replica] = {r.url.host: r for r in self._replicas or []}
            found = [
                known.pop(a.lower())
                if a.lower() in known
                else self._new_replica(dataclasses.replace(name, host=a.lower()), name)
                for a in addresses
            ]
            for gone in known.values():
                if self._current is gone:
                    self._current = None
            self._replicas = found
        for gone in known.values():  # outside the lock: a server that does not answer
            gone.transport.release()  # holds up no request
        return list(found)

    @property
    def replica_mode(self) -> str:
        """How the replicas are found: ``urls`` (the URLs given) or ``dns`` (every address
        of the one URL's host name)."""
        return "dns" if self._dns else "urls"

    @property
    def replicas(self) -> tuple[str, ...]:
        """The replicas' URLs, credentials masked (DNS mode: the addresses the name resolved
        to, looked up on first use; :meth:`resolve` looks again)."""
        return tuple(r.endpoint for r in self._replica_list())

    def resolve(self) -> tuple[str, ...]:
        """DNS mode: look the endpoint's host name up again (what :meth:`check` does first):
        new addresses become replicas, checked before their first request; addresses gone
        are dropped. Returns :attr:`replicas`. Raises
        :class:`~dp_models._errors.TritonUnavailableError` when the name does not resolve.
        With listed URLs, nothing to look up."""
        return tuple(r.endpoint for r in self._resolve())

    @property
    def transport(self) -> Transport:
        """The transport of the replica in use (the first one before any request)."""
        current = self._current
        return current.transport if current is not None else self._replica_list()[0].transport

    @property
    def server_live(self) -> bool:
        """Whether every replica answered as live at its last readiness wait."""
        replicas = self._replicas or []
        return bool(replicas) and all(r.server_live for r in replicas)

    def _assume_down(self, endpoints: Collection[str]) -> None:
        """The replicas at ``endpoints`` (masked URLs) are known not to answer: check them
        with one readiness probe and no retries
        (:func:`~dp_models.triton.health.check_deployments`: a dead server costs one wait)."""
        for r in self._replicas or []:
            if r.endpoint in endpoints:
                r.wait = False

    # -- connection ----------------------------------------------------------------------

    def _drop(self, r: _Replica) -> None:
        """Forget the replica's connection and checks: its next call reconnects and checks
        again."""
        r.verified = False
        r.transport.close()

    def close(self) -> None:
        """Close every connection and release what is held at the servers and on this host
        (shared-memory regions: unregistered, removed); the client starts over on its next
        use."""
        with self._lock:
            replicas = list(self._replicas or [])
        for r in replicas:  # outside the lock: a server that does not answer holds up nothing
            r.verified = False
            r.transport.release()

    @property
    def shared_memory_status(self) -> str:
        """How tensors travel to the replica in use (the first before any request): ``off``,
        or the mode and what became of it (``auto, in use``, ``auto, not used (why)``,
        ``auto, not used yet``)."""
        return self.transport.shared_memory

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unavailable(self, r: _Replica | None, why: str) -> TritonUnavailableError:
        """Replica ``r`` (None: the whole endpoint) is unavailable, for ``why``."""
        endpoint = r.endpoint if r is not None else self.endpoint
        if r is not None:
            r.problem = why
        return TritonUnavailableError(
            f"Triton model {self.model_name!r} version {self.model_version} (spec "
            f"{self.spec.name!r}) at {endpoint}: {why}. Check that the server is up and "
            "serves this model version (GET /v2/health/ready and "
            "/v2/models/<name>/versions/<version>/ready).",
            spec=self.spec.name,
            endpoint=endpoint,
            model=self.model_name,
            version=self.model_version,
        )

    def _none_available(self, what: str, tried: list[_Replica]) -> TritonUnavailableError:
        """No replica answered ``what``: one error naming each replica and why."""
        reasons = "\n".join(f"  - {r.endpoint}: {r.problem}" for r in tried)
        return TritonUnavailableError(
            f"Triton model {self.model_name!r} version {self.model_version} (spec "
            f"{self.spec.name!r}): no replica of {self.endpoint} is available for {what} "
            f"({len(tried)} tried):\n{reasons}\nCheck that the servers are up and serve this "
            "model version (GET /v2/health/ready and "
            "/v2/models/<name>/versions/<version>/ready).",
            spec=self.spec.name,
            endpoint=self.endpoint,
            model=self.model_name,
            version=self.model_version,
        )

    def _timed_out(self, r: _Replica, what: str, exc: TimeoutError) -> TritonTimeoutError:
        if isinstance(exc, DeadlineError):
            option, seconds = "network_timeout_s", self.network_timeout_s
        else:  # the socket's own timeout: only connecting can outlast the deadline's
            option, seconds = "connection_timeout_s", self.connection_timeout_s
        key = "network" if option == "network_timeout_s" else "connect"
        variable = triton_timeout_variable(self.triton.endpoint)
        return TritonTimeoutError(
            f"Triton model {self.model_name!r} version {self.model_version} (spec "
            f"{self.spec.name!r}) at {r.endpoint}: {what} got no answer within {seconds:g} s "
            f"({option}). It was not sent again: the server may still be working on it, or be "
            f"stuck. If this endpoint's answers take longer, raise the timeout "
            f"(${variable}={key}=SECONDS, or {option}= of the client).",
            spec=self.spec.name,
            endpoint=r.endpoint,
            model=self.model_name,
            version=self.model_version,
            timeout_s=seconds,
            option=option,
        )

    def _call(
        self, r: _Replica, what: str, fn: Callable[[_Replica], _T], *, recheck: bool = False
    ) -> _T:
        """``fn(r)`` (a call of replica ``r``'s transport). A lost connection is retried
        ``retries`` times with backoff; a timeout is not (:class:`TritonTimeoutError`).

        With ``recheck`` (a request whose answer depends on the served weights), the
        replica is checked (again) before each attempt, and ``fn`` must refuse to go
        over a connection opened since the last check unless ``r.fresh``
        (:class:`~dp_models.triton.transport.NewConnectionError`): it is then checked first.
        A server restarted with other weights is never used unchecked, however the restart
        happened; where the transport cannot see new connections, every such request is
        checked first."""
        attempt = rechecks = 0
        retries = self.retries if r.wait else 0
        while True:
            if recheck:
                self._ensure_verified(r)
            try:
                return fn(r)
            except NewConnectionError:
                self._drop(r)
                rechecks += 1
                if rechecks > retries + 1:
                    raise self._unavailable(
                        r,
                        f"{what}: the connection was replaced {rechecks} times between the "
                        "deployment's check and the request",
                    ) from None
                log.debug("Triton %s at %s: new connection, checking again", what, r.endpoint)
                continue
            except TimeoutError as exc:
                self._drop(r)  # a half-read answer leaves the connection unusable
                raise self._timed_out(r, what, exc) from exc
            except OSError as exc:
                self._drop(r)
                if attempt == retries:
                    raise self._unavailable(
                        r,
                        f"{what} failed after {attempt + 1} attempt(s): "
                        f"{type(exc).__name__}: {redact(str(exc))}",
                    ) from exc
                delay = self.backoff_s * 2**attempt
                log.debug(
                    "Triton %s at %s: %s; retrying in %.2fs",
                    what,
                    r.endpoint,
                    redact(str(exc)),
                    delay,
                )
                time.sleep(delay)
                attempt += 1
            finally:
                if recheck:
                    r.fresh = False
                    if not r.transport.watches_connections:
                        r.verified = False  # nothing sees new connections: check each time

    def _on_a_replica(self, what: str, fn: Callable[[_Replica], _T]) -> tuple[_T, _Replica]:
        """``fn`` on the replica in use, checked first (:meth:`_call` with ``recheck``); when
        it is unavailable, on the next replica that passes its checks (DNS mode: the name is
        looked up again once every known replica failed). Returns the answer and the replica
        that gave it. A replica that does not answer its checks in time is unavailable
        (nothing was sent to it); a request that was sent and timed out, or any other error,
        is raised as it is."""
        tried: list[_Replica] = []
        failures: list[TritonUnavailableError] = []
        looked_again = False
        while True:
            replicas = self._replica_list()
            current = self._current
            start = replicas.index(current) if current in replicas else 0
            todo = [r for r in replicas[start:] + replicas[:start] if r not in tried]
            if not todo:
                if self._dns and not looked_again:
                    looked_again = True
                    self._resolve()
                    continue
                if len(failures) == 1:
                    raise failures[0]
                raise self._none_available(what, tried) from failures[-1]
            r = todo[0]
            tried.append(r)
            try:
                answer = self._call(r, what, fn, recheck=True)
            except TritonTimeoutError:
                # the request was sent (a check that times out is unavailability, see
                # _server_call), perhaps being worked on: not sent again, nor elsewhere
                raise
            except TritonUnavailableError as exc:
                failures.append(exc)
                if len(replicas) > 1 or self._dns:
                    log.warning(
                        "Triton %s of %r at %s: unavailable (%s); trying another replica",
                        what,
                        self.model_name,
                        r.endpoint,
                        r.problem,
                    )
                continue
            self._current = r
            return answer, r

    # -- checks --------------------------------------------------------------------------

    def _wait_ready(self, r: _Replica) -> None:
        name, version = self.model_name, str(self.model_version)
        transport = r.transport
        ready_timeout_s = self.ready_timeout_s if r.wait else 0.0
        deadline = time.monotonic() + ready_timeout_s
        last = "no answer yet"
        delay = min(0.05, ready_timeout_s) if ready_timeout_s else 0.0
        r.server_live = False

        def probe(seconds: float) -> str | None:
            ends = time.monotonic() + seconds
            r.server_live = transport.is_server_live(timeout_s=seconds)
            if not r.server_live:
                return "the server is not live"
            left = ends - time.monotonic()
            if left <= 0:
                raise DeadlineError(f"no complete answer within {seconds:g} s")
            if not transport.is_model_ready(name, version, timeout_s=left):
                return "the model version is not ready (not loaded, or not served)"
            return None

        while True:
            # a probe may use the time left, but at least connection_timeout_s
            left = max(deadline - time.monotonic(), self.connection_timeout_s)
            seconds = min(left, self.network_timeout_s)
            try:
                found = probe(seconds)
                if found is None:
                    return
                last = found
            except TimeoutError as exc:
                self._drop(r)
                r.server_live = False
                if isinstance(exc, DeadlineError):
                    last = f"no answer within {seconds:g} s"
                else:  # the socket's timeout: connecting took connection_timeout_s
                    last = f"no connection within {self.connection_timeout_s:g} s"
            except OSError as exc:
                self._drop(r)
                r.server_live = False
                last = f"no connection ({type(exc).__name__}: {redact(str(exc))})"
            except ServerAnswerError as exc:
                last = f"the server answered: {redact(str(exc))}"
            if time.monotonic() + delay > deadline:
                raise self._unavailable(r, f"not ready within {ready_timeout_s:g} s: {last}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _server_call(self, r: _Replica, what: str, fn: Callable[[_Replica], _T]) -> _T:
        """``_call`` for a replica's checks: the server's own error answers and a read with
        no answer in time make the replica unavailable (nothing was sent to it yet, so a
        request may go to another replica)."""
        try:
            return self._call(r, what, fn)
        except TritonTimeoutError as exc:
            raise self._unavailable(
                r, f"{what}: no answer within {exc.timeout_s:g} s ({exc.option})"
            ) from exc
        except ServerAnswerError as exc:
            raise self._unavailable(r, f"{what}: the server answered {redact(str(exc))}") from exc

    def _ensure_verified(self, r: _Replica, *, notify: bool = True, again: bool = False) -> None:
        """Check replica ``r`` unless it passed since its last new connection (``again``:
        whether or not); ``notify``: tell ``on_verified`` what the client records. Holds
        ``r``'s lock only, so requests to the other replicas go on meanwhile."""
        with r.lock:
            if again:
                r.verified = False
            if r.verified:
                return
            self._wait_ready(r)
            name, version = self.model_name, str(self.model_version)
            timeout = self.network_timeout_s
            metadata = self._server_call(
                r,
                "reading the model metadata",
                lambda r: r.transport.get_model_metadata(name, version, timeout_s=timeout),
            )
            config = self._server_call(
                r,
                "reading the model config",
                lambda r: r.transport.get_model_config(name, version, timeout_s=timeout),
            )
            differences = metadata_differences(self.triton, metadata, config)
            if differences:
                count = len(differences)
                raise TritonMetadataMismatchError(
                    f"Triton model {name!r} version {version} at {r.endpoint} does not match "
                    f"spec {self.spec.name!r} ({count} difference{'s' if count != 1 else ''}):\n"
                    + "\n".join(f"  - {d}" for d in differences)
                    + "\nDeploy the model the catalog describes (`dp-models triton export` "
                    "writes its repository), or fix the spec.",
                    spec=self.spec.name,
                    endpoint=r.endpoint,
                    differences=differences,
                )
            mismatch: TritonDigestMismatchError | None = None
            try:
                r.served_digest_verified = self._check_served_digest(r, config)
            except TritonDigestMismatchError as exc:
                r.served_digest_verified, mismatch = False, exc
            else:
                r.verified = True
                r.fresh = True
            # a replica found serving other weights stays the record (False) until it is
            # found good again: another replica passing does not overwrite it
            verified = self.served_digest_verified
        if notify and self._on_verified is not None:
            self._on_verified(verified)
        if mismatch is not None:
            raise mismatch

    @property
    def served_digest_verified(self) -> bool | None:
        """False while a replica was found serving other weights (and has not been found
        good since); else True when every replica checked so far serves the expected digest;
        else None (not published and not required, or nothing checked yet). The verdict
        :meth:`check` gives, from what the checks found."""
        with self._lock:
            if self._other_weights() is not None:
                return False
            found = [r.served_digest_verified for r in self._replicas or [] if r.verified]
        return True if found and all(found) else None

    @property
    def served_digest(self) -> str | None:
        """The digest the server publishes: the replica's serving other weights, else the
        replica in use's, else the first checked one's (None: none read yet)."""
        with self._lock:
            candidates = [self._other_weights(), self._current, *(self._replicas or [])]
        return next(
            (r.served_digest for r in candidates if r is not None and r.served_digest is not None),
            None,
        )

    def _other_weights(self) -> _Replica | None:
        """A replica whose last digest check found other weights (None: none). Call with
        the client's lock held."""
        return next((x for x in self._replicas or [] if x.served_digest_verified is False), None)

    def _check_served_digest(self, r: _Replica, config: Mapping[str, Any]) -> bool | None:
        served = r.served_digest = served_digest_of(config)
        expected = self.expected_digest
        verdict = served_digest_verdict(
            expected, served, required=self.triton.require_weights_digest
        )
        where = (
            f"Triton model {self.model_name!r} version {self.model_version} at {r.endpoint} "
            f"(spec {self.spec.name!r})"
        )
        if verdict is DigestVerdict.VERIFIED:
            return True
        if verdict is DigestVerdict.UNVERIFIED:
            log.warning("%s: served weights digest not verified", where)
            return None
        if verdict is DigestVerdict.MISMATCH:
            message = (
                f"{where} serves weights with digest {served}, but the catalog expects "
                f"{expected}. The deployment serves other weights: redeploy the verified "
                "artifacts (`dp-models triton export`) or update the catalog."
            )
        else:
            why = (
                f"does not publish a '{WEIGHTS_DIGEST_PARAMETER}' parameter in its config"
                if verdict is DigestVerdict.NOT_PUBLISHED
                else "serves a digest, but the catalog has none to check it against (pin the "
                "spec's artifacts or set triton.weights_digest)"
            )
            fix = (
                "Deploy the repository `dp-models triton export` writes (it carries the digest)"
                if verdict is DigestVerdict.NOT_PUBLISHED
                else "Pin the digest it must serve (`dp-models lock --lock LOCK` on a root "
                "holding its artifacts, or triton.weights_digest in the spec)"
            )
            message = (
                f"{where} {why}, and the spec sets require_weights_digest. {fix}, or set "
                "require_weights_digest: false to accept an unverified deployment."
            )
        raise TritonDigestMismatchError(
            message,
            spec=self.spec.name,
            endpoint=r.endpoint,
            expected=expected,
            actual=served,
        )

    # -- inference -----------------------------------------------------------------------

    def validate_inputs(self, inputs: Mapping[str, Any]) -> int:
        """Check ``inputs`` against the spec without sending anything; returns the batch size
        (1 for a model without a batch dimension). Raises :class:`TritonInputError`."""
        problems, batch = input_problems(self.triton, inputs)
        if problems:
            count = len(problems)
            raise TritonInputError(
                f"inputs for Triton model {self.model_name!r} (spec {self.spec.name!r}) do not "
                f"fit the spec ({count} problem{'s' if count != 1 else ''}); nothing was sent:\n"
                + "\n".join(f"  - {p}" for p in problems),
                spec=self.spec.name,
                endpoint=self.endpoint,
                problems=problems,
            )
        return batch

    def infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run the model on ``inputs`` (arrays by input name, with the batch dimension when
        the spec has one); returns the outputs by name. A batch larger than the spec's
        ``max_batch_size`` is sent in parts, and the outputs concatenated."""
        batch = self.validate_inputs(inputs)
        limit = self.triton.max_batch_size
        if limit <= 0 or batch <= limit:
            return self._infer_once(inputs)
        parts = [
            self._infer_once({n: a[start : start + limit] for n, a in inputs.items()})
            for start in range(0, batch, limit)
        ]
        try:
            return {
                t.name: np.concatenate([p[t.name] for p in parts], axis=0)
                for t in self.triton.outputs
            }
        except ValueError as exc:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} (spec {self.spec.name!r}) answered the parts "
                f"of a batch of {batch} (max_batch_size {limit}) with outputs whose variable "
                f"dimensions differ; send at most {limit} items per call: {exc}",
                spec=self.spec.name,
                endpoint=self.endpoint,
            ) from exc

    def _output_nbytes(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, int]:
        """The size of each output known before the answer: fixed shape (no ``-1`` but the
        batch) and a fixed-size datatype; what a transport may place ahead (shared memory)."""
        if self.triton.max_batch_size <= 0:
            return dict(self._output_item_nbytes)
        batch = int(inputs[self.triton.inputs[0].name].shape[0])
        return {name: batch * nbytes for name, nbytes in self._output_item_nbytes.items()}

    def _infer_once(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        tensors = [InferTensor(t.name, t.datatype, inputs[t.name]) for t in self.triton.inputs]
        names = [t.name for t in self.triton.outputs]
        output_nbytes = self._output_nbytes(inputs)

        def send(r: _Replica) -> Mapping[str, np.ndarray[Any, Any]]:
            try:
                return r.transport.infer(
                    self.model_name,
                    str(self.model_version),
                    tensors,
                    names,
                    timeout_s=self.network_timeout_s,
                    new_connection_ok=r.fresh,
                    output_nbytes=output_nbytes,
                )
            except SharedMemoryRefusedError as exc:
                variable = triton_shm_variable(self.triton.endpoint)
                raise TritonSharedMemoryError(
                    f"Triton model {self.model_name!r} version {self.model_version} at "
                    f"{r.endpoint} (spec {self.spec.name!r}): the endpoint's shared-memory "
                    f"mode is 'on' (the server shares this host's /dev/shm), but {exc.reason}. "
                    "Nothing was sent. Run the server where it sees this host's /dev/shm (the "
                    "same host, or a container with --ipc=host and the same user), or set the "
                    f"mode to auto (shared memory when it works, else HTTP) or off (HTTP only): "
                    f"${variable}=auto, triton_shared_memory={{{self.triton.endpoint!r}: "
                    "'auto'} or shared_memory='auto' of the client.",
                    spec=self.spec.name,
                    endpoint=r.endpoint,
                    reason=exc.reason,
                ) from exc
            except ServerAnswerError as exc:
                raise TritonInferenceError(
                    f"Triton model {self.model_name!r} version {self.model_version} at "
                    f"{r.endpoint} (spec {self.spec.name!r}) failed the request: "
                    f"{redact(str(exc))}",
                    spec=self.spec.name,
                    endpoint=r.endpoint,
                ) from exc

        result, r = self._on_a_replica("inference", send)
        missing = [n for n in names if result.get(n) is None]
        if missing:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} version {self.model_version} at "
                f"{r.endpoint} (spec {self.spec.name!r}) answered without the outputs "
                f"{', '.join(map(repr, missing))} the spec lists",
                spec=self.spec.name,
                endpoint=r.endpoint,
            )
        return {n: result[n] for n in names}

    def preprocess(self, *data: Any, **options: Any) -> Any:
        """``data`` through the spec's ``preprocess`` preset (:mod:`dp_models.preprocess`):
        one image, two frames for ``raft_frames``, or a waveform and ``sample_rate=``.
        Returns what the preset makes (without a batch dimension: stack items for
        :meth:`infer`)."""
        from ..preprocess import preprocess

        if self.spec.preprocess is None:
            raise ConfigurationError(
                f"spec {self.spec.name!r} names no preprocess preset: prepare its inputs "
                "yourself, or set preprocess in the spec"
            )
        return preprocess(self.spec.preprocess, *data, **options)

    def tokenizer(self) -> Any:
        """The tokenizer the spec requires (``shared_tokenizer_v1`` for Whisper), loaded on
        first use; what :func:`dp_models.triton.whisper.decode` decodes with."""
        with self._lock:
            if self._tokenizer is None:
                if self._tokenizer_factory is None:
                    raise ConfigurationError(
                        f"spec {self.spec.name!r} requires no tokenizer, so its client cannot "
                        "decode token ids (a spec that returns token ids lists its tokenizer "
                        "spec under requires, as the Whisper specs list shared_tokenizer_v1)"
                    )
                self._tokenizer = self._tokenizer_factory()
            return self._tokenizer

    def labels(self) -> Labels:
        """The class names of the model's outputs, by class index: the labels spec the spec
        requires (``places365_categories`` for the Places365 specs), loaded on first use, a
        :class:`~dp_models.loaders.labels.Labels` tuple. Their count must be the last
        dimension of the spec's first output (365 for ``logits [365]``), else a
        :class:`~dp_models._errors.LabelsError`; a spec that requires no labels is a
        :class:`~dp_models._errors.ConfigurationError`.

        >>> client = mm.get("places365_resnet50_224_triton").client()   # doctest: +SKIP
        >>> logits = client.infer({"image": batch})["logits"]           # doctest: +SKIP
        >>> [client.labels()[i] for i in logits.argmax(axis=1)]          # doctest: +SKIP
        ['airfield', 'arena/hockey']
        """
        with self._lock:
            if self._labels is None:
                if self._labels_factory is None:
                    raise ConfigurationError(
                        f"spec {self.spec.name!r} requires no labels, so its client has no "
                        "class names (a classifier's spec lists its labels spec under "
                        "requires, as the Places365 specs list places365_categories)"
                    )
                labels = self._labels_factory()
                output = self.triton.outputs[0]
                if output.shape and output.shape[-1] > 0:
                    from ..loaders.labels import check_count

                    labels = check_count(
                        labels,
                        output.shape[-1],
                        spec=self.spec.name,
                        loader="labels",
                        what=f"the last dimension of its output {output.name!r}",
                    )
                self._labels = labels
            return self._labels

    # -- health --------------------------------------------------------------------------

    def check(self, *, resolve: bool = True) -> HealthReport:
        """The deployment's :class:`~dp_models._health.HealthReport`, for a processor's
        health endpoint: ``served`` or ``unverified`` (ok), else ``unavailable``,
        ``metadata_mismatch`` or ``served_digest_mismatch`` with the error. Re-checks every
        replica, and reports each (``replicas``); with several, the report is ok only when
        every replica is, and its message names the replicas that are not. DNS mode: the
        name is looked up again first (unless ``resolve`` is False and it was looked up
        already). Never raises for the deployment's problems.

        Holds no client-wide lock while the replicas are checked: each replica's check
        holds that replica's lock, so requests to the replicas that answer go on while a
        replica that does not is waited for. ``on_verified`` gets False while a replica
        serves other weights (or was last found serving them, and has not answered since),
        else True when every replica's digest is verified, else None."""
        try:
            replicas = self._resolve() if resolve else self._replica_list()
        except TritonUnavailableError as exc:  # DNS: the name does not resolve
            return self._report(HealthStatus.UNAVAILABLE, exc, live=False)
        found = [self._check_replica(r) for r in replicas]
        verdict = self.served_digest_verified
        if self._on_verified is not None and (verdict is False or any(f.ok for f in found)):
            self._on_verified(verdict)
        worst = worst_replica(found)
        bad = [f for f in found if not f.ok]
        error = worst.error
        if len(found) > 1 and bad:
            named = ", ".join(f"{f.endpoint} ({f.status})" for f in bad)
            error = (
                f"{len(bad)} of {len(found)} replicas of Triton model {self.model_name!r} "
                f"version {self.model_version} (spec {self.spec.name!r}) not ok: {named}\n"
                + "\n".join(f.error or str(f.status) for f in bad)
            )
        return HealthReport(
            spec=self.spec.name,
            runtime="triton",
            status=worst.status,
            error=error,
            error_type=worst.error_type,
            model_name=self.model_name,
            model_version=self.model_version,
            endpoint=self.endpoint,
            live=all(f.live for f in found),
            served_digest=worst.served_digest,
            replicas=tuple(found),
        )

    def _check_replica(self, r: _Replica) -> ReplicaHealth:
        """Replica ``r`` checked again, as one :class:`~dp_models._health.ReplicaHealth`."""
        status, served = HealthStatus.SERVED, None
        error: Exception | None = None
        try:
            self._ensure_verified(r, notify=False, again=True)
        except TritonUnavailableError as exc:
            status, error = HealthStatus.UNAVAILABLE, exc
        except TritonMetadataMismatchError as exc:
            status, error = HealthStatus.METADATA_MISMATCH, exc
        except TritonDigestMismatchError as exc:
            status, error, served = HealthStatus.SERVED_DIGEST_MISMATCH, exc, exc.actual
        else:
            served = r.served_digest
            if not r.served_digest_verified:
                status = HealthStatus.UNVERIFIED
        return ReplicaHealth(
            endpoint=r.endpoint,
            status=status,
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            live=r.server_live if status is HealthStatus.UNAVAILABLE else True,
            served_digest=served,
            shared_memory=r.transport.shared_memory,
        )

    def _report(
        self, status: HealthStatus, error: Exception | None = None, *, live: bool = True
    ) -> HealthReport:
        return HealthReport(
            spec=self.spec.name,
            runtime="triton",
            status=status,
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            model_name=self.model_name,
            model_version=self.model_version,
            endpoint=self.endpoint,
            live=live,
        )

    def __repr__(self) -> str:
        with self._lock:
            current = self._current or next(iter(self._replicas or []), None)
        shown = current.transport.shared_memory if current is not None else self.shared_memory
        return (
            f"<TritonClient {self.spec.name!r}: {self.model_name!r} v{self.model_version} "
            f"at {self.endpoint} (shared memory {shown})>"
        )
