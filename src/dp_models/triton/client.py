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

URL credentials (``http://user:secret@host:8000``) are sent as HTTP basic auth and never
appear in messages, logs, reprs or ``models_used`` (:mod:`dp_models._urls` parses the URL
and masks them).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from .._errors import (
    ConfigurationError,
    TritonDigestMismatchError,
    TritonInferenceError,
    TritonInputError,
    TritonMetadataMismatchError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from .._health import HealthReport, HealthStatus
from .._settings import check_triton_option, triton_timeout_variable
from .._spec import Spec, TritonSection
from .._urls import parse_endpoint, redact
from .checks import (
    DigestVerdict,
    input_problems,
    metadata_differences,
    served_digest_of,
    served_digest_verdict,
)
from .repository import WEIGHTS_DIGEST_PARAMETER
from .transport import (
    DeadlineError,
    HTTPTransport,
    InferTensor,
    NewConnectionError,
    ServerAnswerError,
    Transport,
)

__all__ = ["TritonClient"]

log = logging.getLogger("dp_models.triton")

_T = TypeVar("_T")


class TritonClient:
    """A Triton client for one spec at one endpoint URL.

    ``expected_digest``: the weights digest the deployment must serve (what
    :meth:`~dp_models._catalog.Catalog.served_digest` gives; :meth:`ModelHandle.client
    <dp_models._manager.ModelHandle.client>` passes it). ``connection_timeout_s`` bounds
    connecting, ``network_timeout_s`` each request's whole answer, ``ready_timeout_s`` the
    readiness wait; ``retries`` and ``backoff_s`` the retries on lost connections (checked
    by :func:`~dp_models._settings.check_triton_option`). ``on_verified`` is called with the
    served digest's verification status (True, or None when unverified) each time the
    deployment passes its checks, and with False when the served digest does not match.
    ``tokenizer`` makes the tokenizer that decodes the model's token ids
    (:mod:`dp_models.triton.whisper`), called once, on first use. ``transport`` carries
    the calls (:class:`~dp_models.triton.transport.Transport`); by default
    ``tritonclient.http`` at ``url``.
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
        transport: Transport | None = None,
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
        self.expected_digest = expected_digest
        self.connection_timeout_s = connection_timeout_s
        self.network_timeout_s = network_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._on_verified = on_verified
        self._tokenizer_factory = tokenizer
        self._tokenizer: Any = None
        if transport is None:
            headers: dict[str, str] = {}
            if parts.username is not None:
                token = f"{parts.username}:{parts.password or ''}"
                headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
            transport = HTTPTransport(
                parts.address,
                ssl=parts.scheme == "https",
                headers=headers,
                connection_timeout_s=connection_timeout_s,
                # a call's own deadline ends a request first; this bounds each read too
                read_timeout_s=network_timeout_s + 1.0,
            )
        self.transport: Transport = transport
        self._lock = threading.RLock()
        self._verified = False
        #: True from a passed check until the next request that depends on it: that request
        #: may open a new connection; later ones may not.
        self._fresh = False
        #: True: the served digest is the expected one; None: not published and not required.
        self.served_digest_verified: bool | None = None
        #: The digest the server publishes, once read.
        self.served_digest: str | None = None
        #: Whether the server answered as live at the last readiness wait.
        self.server_live = False

    @property
    def model_name(self) -> str:
        return self.triton.model_name

    @property
    def model_version(self) -> int:
        return self.triton.model_version

    # -- connection ----------------------------------------------------------------------

    def _drop(self) -> None:
        """Forget the connection and the checks: the next call reconnects and checks again."""
        self._verified = False
        self.transport.close()

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
        if isinstance(exc, DeadlineError):
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

    def _call(self, what: str, fn: Callable[[], _T], *, recheck: bool = False) -> _T:
        """``fn()`` (a call of the transport). A lost connection is retried ``retries``
        times with backoff; a timeout is not (:class:`TritonTimeoutError`).

        With ``recheck`` (a request whose answer depends on the served weights), the
        deployment is checked (again) before each attempt, and ``fn`` must refuse to go
        over a connection opened since the last check unless :attr:`_fresh`
        (:class:`~dp_models.triton.transport.NewConnectionError`): it is then checked first.
        A server restarted with other weights is never used unchecked, however the restart
        happened; where the transport cannot see new connections, every such request is
        checked first."""
        attempt = rechecks = 0
        while True:
            if recheck:
                self._ensure_verified()
            try:
                return fn()
            except NewConnectionError:
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
            except OSError as exc:
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
                if recheck:
                    self._fresh = False
                    if not self.transport.watches_connections:
                        self._verified = False  # nothing sees new connections: check each time

    # -- checks --------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        name, version = self.model_name, str(self.model_version)
        transport = self.transport
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer yet"
        delay = min(0.05, self.ready_timeout_s) if self.ready_timeout_s else 0.0
        self.server_live = False

        def probe(seconds: float) -> str | None:
            ends = time.monotonic() + seconds
            self.server_live = transport.is_server_live(timeout_s=seconds)
            if not self.server_live:
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
                self._drop()
                self.server_live = False
                if isinstance(exc, DeadlineError):
                    last = f"no answer within {seconds:g} s"
                else:  # the socket's timeout: connecting took connection_timeout_s
                    last = f"no connection within {self.connection_timeout_s:g} s"
            except OSError as exc:
                self._drop()
                self.server_live = False
                last = f"no connection ({type(exc).__name__}: {redact(str(exc))})"
            except ServerAnswerError as exc:
                last = f"the server answered: {redact(str(exc))}"
            if time.monotonic() + delay > deadline:
                raise self._unavailable(f"not ready within {self.ready_timeout_s:g} s: {last}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _server_call(self, what: str, fn: Callable[[], _T]) -> _T:
        """``_call``, with the server's own error answers turned into unavailability."""
        try:
            return self._call(what, fn)
        except ServerAnswerError as exc:
            raise self._unavailable(f"{what}: the server answered {redact(str(exc))}") from exc

    def _ensure_verified(self) -> None:
        with self._lock:
            if self._verified:
                return
            self._wait_ready()
            name, version = self.model_name, str(self.model_version)
            timeout = self.network_timeout_s
            metadata = self._server_call(
                "reading the model metadata",
                lambda: self.transport.get_model_metadata(name, version, timeout_s=timeout),
            )
            config = self._server_call(
                "reading the model config",
                lambda: self.transport.get_model_config(name, version, timeout_s=timeout),
            )
            differences = metadata_differences(self.triton, metadata, config)
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
                self.served_digest_verified = self._check_served_digest(config)
            except TritonDigestMismatchError:
                self.served_digest_verified = False
                if self._on_verified is not None:
                    self._on_verified(False)
                raise
            self._verified = True
            self._fresh = True
        if self._on_verified is not None:
            self._on_verified(self.served_digest_verified)

    def _check_served_digest(self, config: Mapping[str, Any]) -> bool | None:
        served = self.served_digest = served_digest_of(config)
        expected = self.expected_digest
        verdict = served_digest_verdict(
            expected, served, required=self.triton.require_weights_digest
        )
        where = (
            f"Triton model {self.model_name!r} version {self.model_version} at {self.endpoint} "
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
            message = (
                f"{where} {why}, and the spec sets require_weights_digest. Deploy the "
                "repository `dp-models triton export` writes (it carries the digest), or set "
                "require_weights_digest: false to accept an unverified deployment."
            )
        raise TritonDigestMismatchError(
            message,
            spec=self.spec.name,
            endpoint=self.endpoint,
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
        tensors = [InferTensor(t.name, t.datatype, inputs[t.name]) for t in self.triton.inputs]
        names = [t.name for t in self.triton.outputs]
        try:
            result = self._call(
                "inference",
                lambda: self.transport.infer(
                    self.model_name,
                    str(self.model_version),
                    tensors,
                    names,
                    timeout_s=self.network_timeout_s,
                    new_connection_ok=self._fresh,
                ),
                recheck=True,
            )
        except ServerAnswerError as exc:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} version {self.model_version} at "
                f"{self.endpoint} (spec {self.spec.name!r}) failed the request: "
                f"{redact(str(exc))}",
                spec=self.spec.name,
                endpoint=self.endpoint,
            ) from exc
        missing = [n for n in names if result.get(n) is None]
        if missing:
            raise TritonInferenceError(
                f"Triton model {self.model_name!r} version {self.model_version} at "
                f"{self.endpoint} (spec {self.spec.name!r}) answered without the outputs "
                f"{', '.join(map(repr, missing))} the spec lists",
                spec=self.spec.name,
                endpoint=self.endpoint,
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

    # -- health --------------------------------------------------------------------------

    def check(self) -> HealthReport:
        """The deployment's :class:`~dp_models._health.HealthReport`, for a processor's
        health endpoint: ``served`` or ``unverified`` (ok), else ``unavailable``,
        ``metadata_mismatch`` or ``served_digest_mismatch`` with the error. Re-checks the
        deployment; never raises for its problems."""
        with self._lock:
            self._verified = False
            try:
                self._ensure_verified()
            except TritonUnavailableError as exc:
                return self._report(HealthStatus.UNAVAILABLE, exc, live=self.server_live)
            except TritonMetadataMismatchError as exc:
                return self._report(HealthStatus.METADATA_MISMATCH, exc)
            except TritonDigestMismatchError as exc:
                return self._report(HealthStatus.SERVED_DIGEST_MISMATCH, exc, served=exc.actual)
            verified, served = self.served_digest_verified, self.served_digest
        status = HealthStatus.SERVED if verified else HealthStatus.UNVERIFIED
        return self._report(status, served=served)

    def _report(
        self,
        status: HealthStatus,
        error: Exception | None = None,
        *,
        live: bool = True,
        served: str | None = None,
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
            served_digest=served,
        )

    def __repr__(self) -> str:
        return (
            f"<TritonClient {self.spec.name!r}: {self.model_name!r} v{self.model_version} "
            f"at {self.endpoint}>"
        )
