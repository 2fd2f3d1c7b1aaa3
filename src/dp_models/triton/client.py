"""A ``tritonclient.http`` client bound to one Triton spec, that fails fast when the
deployment is not what the catalog says.

>>> client = ModelManager().get("midas_dpt_hybrid_triton").client()   # doctest: +SKIP
>>> depth = client.infer({"image": batch})["depth"]                    # doctest: +SKIP
>>> client.check()["ok"]                                               # doctest: +SKIP
True

On first use, and again before any request that would go over a connection opened since
(a lost connection, a retry, a server restarted while the client was idle), the client
checks, in order:

1. the server is live and the pinned model version is ready, within ``ready_timeout_s``
   (else :class:`~dp_models.errors.TritonUnavailableError`);
2. the served metadata against the spec: input and output names, datatypes, shapes
   (``-1`` on either side matches any length), the pinned version among the served
   ones, and ``max_batch_size`` (every difference in one
   :class:`~dp_models.errors.TritonMetadataMismatchError`);
3. the ``weights_digest`` parameter of the served model config against the spec's served
   digest (:meth:`~dp_models.catalog.Catalog.served_digest`):
   :class:`~dp_models.errors.TritonDigestMismatchError` when it differs, or when it is
   missing and the spec sets ``require_weights_digest``; otherwise recorded as unverified
   (``served_digest_verified: None``).

``infer`` checks input names, dtypes and shapes before anything is sent
(:class:`~dp_models.errors.TritonInputError`), sends binary tensors, and splits a batch
larger than the spec's ``max_batch_size`` into requests that fit, concatenating the
outputs. Each request gets ``network_timeout_s`` for its whole answer, else
:class:`~dp_models.errors.TritonTimeoutError` (not retried: the server may still be
working on it). A lost connection (never a server answer) is retried ``retries`` times
with exponential backoff, each retry after the checks pass again, then raises
:class:`~dp_models.errors.TritonUnavailableError`; a restarted server is picked up, and
one serving other weights is a :class:`~dp_models.errors.TritonDigestMismatchError`
before it answers anything. The defaults and the per-endpoint settings
(``$DP_MODELS_TRITON_TIMEOUT[_<NAME>]``) are in docs/triton.md.

URL credentials (``http://user:secret@host:8000``) are sent as HTTP basic auth and never
appear in messages, logs, reprs or ``models_used`` (:mod:`dp_models.urls` parses the URL
and masks them).
``tritonclient`` is imported on first use (the ``triton`` extra).
"""

from __future__ import annotations

import base64
import http.client
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import (
    ConfigurationError,
    MissingExtraError,
    TritonDigestMismatchError,
    TritonInferenceError,
    TritonInputError,
    TritonMetadataMismatchError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from ..settings import check_triton_option, triton_timeout_variable, triton_url_variable
from ..spec import Spec, TritonSection
from ..urls import parse_endpoint, redact
from .repository import WEIGHTS_DIGEST_PARAMETER

if TYPE_CHECKING:
    from ..manager import ModelHandle

__all__ = ["TritonClient"]

log = logging.getLogger("dp_models.triton")

_T = TypeVar("_T")

#: What a lost or refused connection raises inside tritonclient.http (geventhttpclient):
#: socket errors and timeouts are OSError, a connection closed mid-answer an HTTPException.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)


class _ReconnectedError(Exception):
    """Raised by the connection hook when a request whose answer depends on the checked
    deployment would go over a new connection: behind it may be a restarted server, with
    other weights. The request is not sent; the deployment is checked again first."""


class _DeadlineError(TimeoutError):
    """A request got no complete answer within its deadline."""


#: Spec datatype -> numpy dtype the client accepts (BYTES: object or bytes arrays).
NUMPY_DTYPES: dict[str, npt.DTypeLike] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,  # tritonclient sends float32 arrays as BF16
}


def _httpclient() -> Any:
    try:
        import tritonclient.http as httpclient  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError("tritonclient[http]", extra="triton") from exc
    return httpclient


def _dtype_ok(datatype: str, dtype: np.dtype[Any]) -> bool:
    if datatype == "BYTES":
        return dtype.kind in ("O", "S")
    return dtype == np.dtype(NUMPY_DTYPES[datatype])


def _dims_match(expected: list[int], actual: list[int]) -> bool:
    return len(expected) == len(actual) and all(
        e == -1 or a == -1 or e == a for e, a in zip(expected, actual, strict=True)
    )


def _shape(dims: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class TritonClient:
    """A Triton HTTP client for one spec at one endpoint URL.

    ``served_digest``: the weights digest the deployment must serve (what
    :meth:`~dp_models.catalog.Catalog.served_digest` gives; :meth:`ModelHandle.client
    <dp_models.manager.ModelHandle.client>` passes it). ``connection_timeout_s`` bounds
    connecting, ``network_timeout_s`` each request's whole answer, ``ready_timeout_s`` the
    readiness wait; ``retries`` and ``backoff_s`` the retries on lost connections (checked
    by :func:`~dp_models.settings.check_triton_option`). ``on_verified`` is
    called with the digest verification status (True, or None when unverified) each time
    the deployment passes its checks.
    """

    def __init__(
        self,
        spec: Spec,
        url: str,
        *,
        served_digest: str | None = None,
        connection_timeout_s: float = 5.0,
        network_timeout_s: float = 60.0,
        ready_timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        on_verified: Callable[[bool | None], None] | None = None,
        tokenizer: Callable[[], Any] | None = None,
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
        parts = parse_endpoint(url, source=f"the Triton endpoint of spec {spec.name!r}")
        self.spec = spec
        self.triton: TritonSection = spec.triton
        #: The URL to show: credentials masked.
        self.endpoint = parts.redacted
        self.served_digest = served_digest
        self.connection_timeout_s = connection_timeout_s
        self.network_timeout_s = network_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._on_verified = on_verified
        self._tokenizer_factory = tokenizer
        self._tokenizer: Any = None
        self._marker_ids: frozenset[int] | None = None
        self._address = parts.address
        self._ssl = parts.scheme == "https"
        self._headers: dict[str, str] = {}
        if parts.username is not None:
            token = f"{parts.username}:{parts.password or ''}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        self._lock = threading.RLock()
        self._client: Any = None
        self._verified = False
        #: True from a passed check until the next request that depends on it: that request
        #: may open a new connection; later ones may not (see _watch).
        self._fresh = False
        #: Whether the connection pool reports new connections (see _watch).
        self._watching = False
        self._guard = threading.local()
        #: True: the served digest matches; None: not published and not required.
        self.digest_verified: bool | None = None
        #: The served weights digest, once read.
        self.served_weights_digest: str | None = None
        #: Whether the server answered as live at the last readiness wait.
        self.server_live = False

    @classmethod
    def from_handle(cls, handle: ModelHandle, **options: Any) -> TritonClient:
        """The client for a resolved handle: its endpoint and served digest."""
        spec = handle.spec
        if spec.triton is None:
            raise ConfigurationError(f"spec {spec.name!r} is not served by Triton")
        if handle.endpoint is None:
            env = triton_url_variable(spec.triton.endpoint)
            raise ConfigurationError(
                f"spec {spec.name!r} is served at the Triton endpoint named "
                f"{spec.triton.endpoint!r}, which is not configured: set ${env} or pass "
                f"triton_endpoints={{{spec.triton.endpoint!r}: URL}} to the ModelManager"
            )
        options.setdefault("served_digest", handle.weights_digest)
        tokenizer = next((r for r in handle.requires if r.spec.role == "tokenizer"), None)
        if tokenizer is not None:
            options.setdefault("tokenizer", tokenizer.load)
        return cls(spec, handle.endpoint, **options)

    # -- connection ----------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.triton.model_name

    @property
    def model_version(self) -> int:
        return self.triton.model_version

    def _connect(self) -> Any:
        if self._client is None:
            client = _httpclient().InferenceServerClient(
                self._address,
                connection_timeout=self.connection_timeout_s,
                # the deadline of _within ends a request first; this bounds each read too
                network_timeout=self.network_timeout_s + 1.0,
                ssl=self._ssl,
            )
            self._watch(client)
            self._client = client
        return self._client

    def _watch(self, client: Any) -> None:
        """Have ``client``'s connection pool report each new connection to this client (its
        ``after_connect`` hook), so that a request depending on the checked deployment never
        goes over a connection opened since the check: a server restarted between two
        requests (with other weights, perhaps) is checked again before it answers one.
        Where the pool has no such hook, the deployment is checked before every request."""
        pool: Any = getattr(getattr(client, "_client_stub", None), "_connection_pool", None)
        after_connect: Callable[[Any], None] | None = getattr(pool, "after_connect", None)
        self._watching = after_connect is not None
        if after_connect is None:
            log.debug("Triton client at %s: checking before every request", self.endpoint)
            return

        def hook(sock: Any) -> None:
            after_connect(sock)
            if getattr(self._guard, "active", False) and not self._fresh:
                raise _ReconnectedError

        pool.after_connect = hook

    def _within(self, seconds: float, fn: Callable[[Any], _T], client: Any) -> _T:
        """``fn(client)``, ended after ``seconds`` in all (tritonclient's own timeout bounds
        each socket read, not a whole answer): raises :class:`_DeadlineError`."""
        import gevent  # type: ignore[import-untyped]  # tritonclient.http runs on gevent

        timer = gevent.Timeout(seconds)
        timer.start()
        try:
            return fn(client)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise _DeadlineError(f"no complete answer within {seconds:g} s") from None
        finally:
            timer.close()

    def _drop(self) -> None:
        """Forget the connection and the checks: the next call reconnects and checks again."""
        client, self._client = self._client, None
        self._verified = False
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing the Triton client failed", exc_info=True)

    def close(self) -> None:
        """Close the connection (the client reconnects on its next use)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unavailable(self, why: str) -> TritonUnavailableError:
        return TritonUnavailableError(
            f"Triton model {self.model_name!r} version {self.model_version} (spec "
            f"{self.spec.name!r}) at {self.endpoint}: {why}. Check that the server is up and "
            "serves this model version (GET /v2/health/ready and "
            "/v2/models/<name>/versions/<version>/ready).",
            spec=self.spec.name,
            endpoint=self.endpoint,
            model=self.model_name,
            version=self.model_version,
        )

    def _timed_out(self, what: str, exc: TimeoutError) -> TritonTimeoutError:
        if isinstance(exc, _DeadlineError):
            option, seconds = "network_timeout_s", self.network_timeout_s
        else:  # the socket's own timeout: only connecting can outlast the deadline's
            option, seconds = "connection_timeout_s", self.connection_timeout_s
        key = "network" if option == "network_timeout_s" else "connect"
        variable = triton_timeout_variable(self.triton.endpoint)
        return TritonTimeoutError(
            f"Triton model {self.model_name!r} version {self.model_version} (spec "
            f"{self.spec.name!r}) at {self.endpoint}: {what} got no answer within {seconds:g} s "
            f"({option}). It was not sent again: the server may still be working on it, or be "
            f"stuck. If this endpoint's answers take longer, raise the timeout "
            f"(${variable}={key}=SECONDS, or {option}= of the client).",
            spec=self.spec.name,
            endpoint=self.endpoint,
            model=self.model_name,
            version=self.model_version,
            timeout_s=seconds,
            option=option,
        )

    def _call(self, what: str, fn: Callable[[Any], _T], *, recheck: bool = False) -> _T:
        """``fn(client)`` within ``network_timeout_s``. A lost connection is retried
        ``retries`` times with backoff; a timeout is not (:class:`TritonTimeoutError`).

        With ``recheck`` (a request whose answer depends on the served weights), the
        deployment is checked (again) before each attempt, and a request that would go over
        a connection opened since the last check is stopped before it is sent and checked
        first (:meth:`_watch`): a server restarted with other weights is never used
        unchecked, however the restart happened."""
        attempt = rechecks = 0
        while True:
            if recheck:
                self._ensure_verified()
            client = self._connect()
            self._guard.active = recheck
            try:
                return self._within(self.network_timeout_s, fn, client)
            except _ReconnectedError:
                self._drop()
                rechecks += 1
                if rechecks > self.retries + 1:
                    raise self._unavailable(
                        f"{what}: the connection was replaced {rechecks} times between the "
                        "deployment's check and the request"
                    ) from None
                log.debug("Triton %s at %s: new connection, checking again", what, self.endpoint)
                continue
            except TimeoutError as exc:
                self._drop()  # a half-read answer leaves the connection unusable
                raise self._timed_out(what, exc) from exc
            except _CONNECTION_ERRORS as exc:
                self._drop()
                if attempt == self.retries:
                    raise self._unavailable(
                        f"{what} failed after {attempt + 1} attempt(s): "
                        f"{type(exc).__name__}: {redact(str(exc))}"
                    ) from exc
                delay = self.backoff_s * 2**attempt
                log.debug(
                    "Triton %s at %s: %s; retrying in %.2fs",
                    what,
                    self.endpoint,
                    redact(str(exc)),
                    delay,
                )
                time.sleep(delay)
                attempt += 1
            finally:
                self._guard.active = False
                if recheck:
                    self._fresh = False
                    if not self._watching:
                        self._verified = False  # no hook: check before the next request

    # -- checks --------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        exception = _server_exception()
        name, version = self.model_name, str(self.model_version)
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer yet"
        delay = min(0.05, self.ready_timeout_s) if self.ready_timeout_s else 0.0
        self.server_live = False

        def probe(client: Any) -> str | None:
            self.server_live = bool(client.is_server_live(headers=self._headers))
            if not self.server_live:
                return "the server is not live"
            if not client.is_model_ready(name, version, headers=self._headers):
                return "the model version is not ready (not loaded, or not served)"
            return None

        while True:
            # a probe may use the time left, but at least connection_timeout_s
            left = max(deadline - time.monotonic(), self.connection_timeout_s)
            seconds = min(left, self.network_timeout_s)
            try:
                found = self._within(seconds, probe, self._connect())
                if found is None:
                    return
                last = found
            except TimeoutError as exc:
                self._drop()
                self.server_live = False
                if isinstance(exc, _DeadlineError):
                    last = f"no answer within {seconds:g} s"
                else:  # the socket's timeout: connecting took connection_timeout_s
                    last = f"no connection within {self.connection_timeout_s:g} s"
            except _CONNECTION_ERRORS as exc:
                self._drop()
                self.server_live = False
                last = f"no connection ({type(exc).__name__}: {redact(str(exc))})"
            except exception as exc:
                last = f"the server answered: {redact(str(exc))}"
            if time.monotonic() + delay > deadline:
                raise self._unavailable(f"not ready within {self.ready_timeout_s:g} s: {last}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _server_call(self, what: str, fn: Callable[[Any], _T]) -> _T:
        """``_call``, with the server's own error answers turned into unavailability."""
        try:
            return self._call(what, fn)
        except _server_exception() as exc:
            raise self._unavailable(f"{what}: the server answered {redact(str(exc))}") from exc

    def _ensure_verified(self) -> None:
        with self._lock:
            if self._verified:
                return
            self._wait_ready()
            name, version = self.model_name, str(self.model_version)
            metadata = self._server_call(
                "reading the model metadata",
                lambda c: c.get_model_metadata(name, version, headers=self._headers),
            )
            config = self._server_call(
                "reading the model config",
                lambda c: c.get_model_config(name, version, headers=self._headers),
            )
            differences = self._metadata_differences(metadata, config)
            if differences:
                count = len(differences)
                raise TritonMetadataMismatchError(
                    f"Triton model {name!r} version {version} at {self.endpoint} does not match "
                    f"spec {self.spec.name!r} ({count} difference{'s' if count != 1 else ''}):\n"
                    + "\n".join(f"  - {d}" for d in differences)
                    + "\nDeploy the model the catalog describes (`dp-models triton export` "
                    "writes its repository), or fix the spec.",
                    spec=self.spec.name,
                    endpoint=self.endpoint,
                    differences=differences,
                )
            try:
                self.digest_verified = self._check_digest(config)
            except TritonDigestMismatchError:
                self.digest_verified = False
                if self._on_verified is not None:
                    self._on_verified(False)
                raise
            self._verified = True
            self._fresh = True
        if self._on_verified is not None:
            self._on_verified(self.digest_verified)

    def _metadata_differences(
        self, metadata: Mapping[str, Any], config: Mapping[str, Any]
    ) -> list[str]:
        triton = self.triton
        differences: list[str] = []
        versions = [str(v) for v in metadata.get("versions", [])]
        if versions and str(triton.model_version) not in versions:
            differences.append(
                f"version: the spec pins {triton.model_version}, the server has "
                f"{', '.join(versions)}"
            )
        served_batch = int(config.get("max_batch_size", 0))
        if served_batch != triton.max_batch_size:
            differences.append(
                f"max_batch_size: the spec says {triton.max_batch_size}, the server {served_batch}"
            )
        batched = served_batch > 0
        for label, expected in (("inputs", triton.inputs), ("outputs", triton.outputs)):
            served = {str(t["name"]): t for t in metadata.get(label, [])}
            wanted = {t.name: t for t in expected}
            for tname in wanted.keys() - served.keys():
                differences.append(f"{label}: {tname!r} is in the spec but not served")
            for tname in served.keys() - wanted.keys():
                differences.append(f"{label}: {tname!r} is served but not in the spec")
            for tname in sorted(wanted.keys() & served.keys()):
                spec_t, got = wanted[tname], served[tname]
                if got.get("datatype") != spec_t.datatype:
                    differences.append(
                        f"{label}: {tname!r} datatype is {got.get('datatype')} on the server, "
                        f"{spec_t.datatype} in the spec"
                    )
                dims = [int(d) for d in got.get("shape", [])]
                if batched and dims:
                    dims = dims[1:]  # the batch dimension, which the spec leaves out
                if not _dims_match(spec_t.shape, dims):
                    differences.append(
                        f"{label}: {tname!r} shape is {_shape(dims)} on the server, "
                        f"{_shape(spec_t.shape)} in the spec (without the batch dimension)"
                    )
        return sorted(differences)

    def _check_digest(self, config: Mapping[str, Any]) -> bool | None:
        parameters = config.get("parameters") or {}
        entry = parameters.get(WEIGHTS_DIGEST_PARAMETER) or {}
        actual = entry.get("string_value") or None
        self.served_weights_digest = actual
        expected = self.served_digest
        where = (
            f"Triton model {self.model_name!r} version {self.model_version} at {self.endpoint} "
            f"(spec {self.spec.name!r})"
        )
        if actual is not None and expected is not None:
            if actual != expected:
                raise TritonDigestMismatchError(
                    f"{where} serves weights with digest {actual}, but the catalog expects "
                    f"{expected}. The deployment serves other weights: redeploy the verified "
                    "artifacts (`dp-models triton export`) or update the catalog.",
                    spec=self.spec.name,
                    endpoint=self.endpoint,
                    expected=expected,
                    actual=actual,
                )
            return True
        if not self.triton.require_weights_digest:
            log.warning("%s: served weights digest not verified", where)
            return None
        why = (
            f"does not publish a '{WEIGHTS_DIGEST_PARAMETER}' parameter in its config"
            if actual is None
            else "serves a digest, but the catalog has none to check it against (pin the "
            "spec's artifacts or set triton.weights_digest)"
        )
        raise TritonDigestMismatchError(
            f"{where} {why}, and the spec sets require_weights_digest. Deploy the repository "
            "`dp-models triton export` writes (it carries the digest), or set "
            "require_weights_digest: false to accept an unverified deployment.",
            spec=self.spec.name,
            endpoint=self.endpoint,
            expected=expected,
            actual=actual,
        )

    # -- inference -----------------------------------------------------------------------

    def _input_problems(self, inputs: Mapping[str, Any]) -> tuple[list[str], int]:
        triton = self.triton
        batched = triton.max_batch_size > 0
        wanted = {t.name: t for t in triton.inputs}
        problems = [f"missing input {n!r}" for n in wanted if n not in inputs]
        problems += [
            f"unexpected input {n!r} (the spec's inputs: {', '.join(wanted)})"
            for n in inputs
            if n not in wanted
        ]
        batch_sizes: dict[str, int] = {}
        for tname, t in wanted.items():
            if tname not in inputs:
                continue
            array = inputs[tname]
            if not isinstance(array, np.ndarray):
                problems.append(f"input {tname!r} is a {type(array).__name__}, not a numpy array")
                continue
            if not _dtype_ok(t.datatype, array.dtype):
                want = "object or bytes" if t.datatype == "BYTES" else _np_name(t.datatype)
                problems.append(
                    f"input {tname!r} has dtype {array.dtype}, the spec's {t.datatype} needs "
                    f"{want} (convert it explicitly; nothing is cast silently)"
                )
            dims = list(array.shape)
            if batched:
                if not dims or dims[0] < 1:
                    problems.append(
                        f"input {tname!r} has shape {_shape(dims)}: it needs a batch dimension "
                        f"of at least 1, then {_shape(t.shape)}"
                    )
                    continue
                batch_sizes[tname] = dims[0]
                dims = dims[1:]
            if not _dims_match(t.shape, dims) or any(d == 0 for d in dims):
                problems.append(
                    f"input {tname!r} has shape {_shape(list(array.shape))}, the spec's is "
                    + ("[batch, " + _shape(t.shape)[1:] if batched else _shape(t.shape))
                )
        if len(set(batch_sizes.values())) > 1:
            sizes = ", ".join(f"{n}: {b}" for n, b in batch_sizes.items())
            problems.append(f"inputs disagree on the batch size ({sizes})")
        batch = next(iter(batch_sizes.values()), 1)
        return problems, batch

    def validate_inputs(self, inputs: Mapping[str, Any]) -> int:
        """Check ``inputs`` against the spec without sending anything; returns the batch size
        (1 for a model without a batch dimension). Raises :class:`TritonInputError`."""
        problems, batch = self._input_problems(inputs)
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
        self._ensure_verified()
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

    def _infer_once(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        httpclient = _httpclient()
        requests = []
        for t in self.triton.inputs:
            array = np.ascontiguousarray(inputs[t.name])
            tensor = httpclient.InferInput(t.name, list(array.shape), t.datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            requests.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput(t.name, binary_data=True) for t in self.triton.outputs
        ]
        try:
            result = self._call(
                "inference",
                lambda c: c.infer(
                    self.model_name,
                    requests,
                    model_version=str(self.model_version),
                    outputs=outputs,
                    headers=self._headers,
                ),
                recheck=True,
            )
        except TritonUnavailableError:
            raise
        except _server_exception() as exc:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} version {self.model_version} at "
                f"{self.endpoint} (spec {self.spec.name!r}) failed the request: "
                f"{redact(str(exc))}",
                spec=self.spec.name,
                endpoint=self.endpoint,
            ) from exc
        return {t.name: result.as_numpy(t.name) for t in self.triton.outputs}

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

    # -- token ids to text ----------------------------------------------------------------

    def _get_tokenizer(self) -> Any:
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

    def decode(self, token_ids: Any) -> str:
        """The text of one sequence of token ids (1-D), with the tokenizer the spec requires
        (``shared_tokenizer_v1`` for Whisper). Negative ids (padding) are dropped, the
        sequence ends at the first ``<|endoftext|>``, and the ``<|...|>`` markers (task,
        language, timestamps) and other special tokens are left out. The tokenizer is
        loaded on first use.

        An id outside the tokenizer's vocabulary is a :class:`TritonInferenceError`: the
        served model and the tokenizer spec do not belong together."""
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or not (ids.dtype.kind in "iu" or ids.size == 0):
            raise self._ids_error(
                f"decode takes one 1-D integer sequence of token ids, not a {ids.dtype} array "
                f"of shape {list(ids.shape)} (decode_batch takes [batch, length])",
                ids,
            )
        tokenizer = self._get_tokenizer()
        values = [int(i) for i in ids if i >= 0]
        end = tokenizer.token_to_id("<|endoftext|>")
        if end is not None and end in values:
            values = values[: values.index(end)]
        markers = self._markers(tokenizer)
        values = [i for i in values if i not in markers]
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        outside = sorted({i for i in values if i >= size})
        if outside:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} (spec {self.spec.name!r}) returned token ids "
                f"{', '.join(map(str, outside[:5]))} outside the vocabulary of its tokenizer "
                f"({size} tokens): the served model and the tokenizer spec it requires do not "
                "belong together (e.g. a Whisper large-v3 deployment needs its own tokenizer)",
                spec=self.spec.name,
                endpoint=self.endpoint,
            )
        return str(tokenizer.decode(values, skip_special_tokens=True))

    def _markers(self, tokenizer: Any) -> frozenset[int]:
        """The ids of the tokenizer's ``<|...|>`` tokens (Whisper's task, language and
        timestamp markers), special or not: some tokenizer files add the timestamps as
        ordinary tokens, which ``skip_special_tokens`` would keep."""
        with self._lock:
            cached = self._marker_ids
            if cached is None:
                added = tokenizer.get_added_tokens_decoder()
                cached = frozenset(
                    int(i)
                    for i, token in added.items()
                    if token.content.startswith("<|") and token.content.endswith("|>")
                )
                self._marker_ids = cached
            return cached

    def decode_batch(self, token_ids: Any) -> list[str]:
        """:meth:`decode` for each row of a ``[batch, length]`` array (what :meth:`infer`
        returns for a batched spec)."""
        ids = np.asarray(token_ids)
        if ids.ndim != 2:
            raise self._ids_error(
                f"decode_batch takes a [batch, length] array of token ids, not shape "
                f"{list(ids.shape)} (decode takes one sequence)",
                ids,
            )
        return [self.decode(row) for row in ids]

    def _ids_error(self, message: str, ids: np.ndarray[Any, Any]) -> TritonInputError:
        return TritonInputError(
            message,
            spec=self.spec.name,
            endpoint=self.endpoint,
            problems=[f"token ids of shape {list(ids.shape)} and dtype {ids.dtype}"],
        )

    # -- health --------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """A health report for a processor's health endpoint; never raises for the
        deployment's problems (they are in ``error``). Re-checks the deployment."""
        report = blank_report(self.spec, self.endpoint)
        with self._lock:
            self._verified = False
            try:
                self._ensure_verified()
            except TritonUnavailableError as exc:
                report.update(live=self.server_live, error=str(exc), error_type=type(exc).__name__)
                return report
            except TritonMetadataMismatchError as exc:
                report.update(live=True, ready=True, metadata_ok=False)
                report.update(error=str(exc), error_type=type(exc).__name__)
                return report
            except TritonDigestMismatchError as exc:
                report.update(live=True, ready=True, metadata_ok=True, served_digest=exc.actual)
                report.update(served_digest_verified=False)
                report.update(error=str(exc), error_type=type(exc).__name__)
                return report
        report.update(
            ok=True,
            live=True,
            ready=True,
            metadata_ok=True,
            served_digest=self.served_weights_digest,
            served_digest_verified=self.digest_verified,
        )
        return report

    def __repr__(self) -> str:
        return (
            f"<TritonClient {self.spec.name!r}: {self.model_name!r} v{self.model_version} "
            f"at {self.endpoint}>"
        )


def blank_report(spec: Spec, endpoint: str | None) -> dict[str, Any]:
    """A :meth:`TritonClient.check` report before anything is known: nothing ok."""
    assert spec.triton is not None
    return {
        "spec": spec.name,
        "model_name": spec.triton.model_name,
        "model_version": spec.triton.model_version,
        "endpoint": endpoint,
        "ok": False,
        "live": False,
        "ready": False,
        "metadata_ok": None,
        "served_digest": None,
        "served_digest_verified": None,
        "error": None,
        "error_type": None,
    }


def _np_name(datatype: str) -> str:
    return str(np.dtype(NUMPY_DTYPES[datatype]).name)


def _server_exception() -> type[Exception]:
    try:
        from tritonclient.utils import (  # type: ignore[import-untyped]
            InferenceServerException,
        )
    except ImportError as exc:
        raise MissingExtraError("tritonclient[http]", extra="triton") from exc
    return InferenceServerException  # type: ignore[no-any-return]
