"""An in-memory Triton server behind the client's transport seam, to test the client's
logic (readiness, metadata and digest checks, retries, batching, restarts) without a
server: the way httpx tests its client with ``MockTransport``.

>>> from dp_models.testing.triton_transport import FakeTransport
>>> fake = FakeTransport.serving(spec, served_digest=digest)                # doctest: +SKIP
>>> client = TritonClient(spec, "http://127.0.0.1:8000", expected_digest=digest,
...                       transport=fake)                                  # doctest: +SKIP
>>> client.infer(inputs)                # answered as the stand-in of spec would answer
>>> fake.fail("infer", ConnectionError("reset"))   # the next inference loses its connection
>>> fake.restart(served_digest=other)   # a restart with other weights: connections dropped
>>> [c.name for c in fake.calls]         # what the client asked, in order

It keeps the :class:`~dp_models.triton.transport.Transport` contract: calls on a dead
server or a lost connection raise :class:`ConnectionError`, an unknown model or a batch
beyond ``max_batch_size`` is a :class:`~dp_models.triton.transport.ServerAnswerError`, and
an inference with ``new_connection_ok=False`` that would need a new connection is refused
with :class:`~dp_models.triton.transport.NewConnectionError` before it is answered (unless
``watches_connections=False``, as for a connection pool without a hook), and an output
larger than the ``output_nbytes`` the client gave for it is an error answer (as Triton
answers an output region too small). It moves no shared memory (``shared_memory`` is
``off``); :meth:`~FakeTransport.release` counts in ``releases`` and closes. Answers are
those of the real stand-ins (:func:`~dp_models.testing.triton.expected_standin_outputs`),
so a test can move between this and the real server. The real server
(:class:`~dp_models.testing.triton.TritonServer`) stays the test of the real transport.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._spec import Spec
from ..triton.checks import served_digest_of
from ..triton.repository import WEIGHTS_DIGEST_PARAMETER
from ..triton.transport import InferTensor, NewConnectionError, ServerAnswerError
from .triton import expected_standin_outputs

__all__ = ["Call", "FakeModel", "FakeTransport"]

#: The calls of the Transport protocol, by name (what :meth:`FakeTransport.fail` takes).
CALLS = (
    "is_server_live",
    "is_model_ready",
    "get_model_metadata",
    "get_model_config",
    "infer",
)


class _Keep:
    """The served digest stays as it is (:meth:`FakeTransport.restart`)."""


KEEP = _Keep()

Answer = Callable[[Mapping[str, np.ndarray[Any, Any]]], Mapping[str, np.ndarray[Any, Any]]]


@dataclass
class FakeModel:
    """One model version a :class:`FakeTransport` serves: Triton's JSON answers for its
    metadata and config, whether it is ready, and how it answers an inference."""

    name: str
    version: int
    metadata: dict[str, Any]
    config: dict[str, Any]
    answer: Answer
    ready: bool = True

    @classmethod
    def of(cls, spec: Spec, *, served_digest: str | None, version: int | None = None) -> FakeModel:
        """The stand-in of ``spec`` (as :func:`~dp_models.testing.triton.write_standin_repository`
        writes it) at ``version`` (the pinned one by default), publishing ``served_digest``
        (None: no ``weights_digest`` parameter)."""
        triton = spec.triton
        if triton is None:
            raise ValueError(f"spec {spec.name!r} is not a Triton spec")
        served_version = triton.model_version if version is None else version
        batched = triton.max_batch_size > 0

        def tensors(items: Sequence[Any]) -> list[dict[str, Any]]:
            return [
                {
                    "name": t.name,
                    "datatype": t.datatype,
                    "shape": [-1, *t.shape] if batched else list(t.shape),
                }
                for t in items
            ]

        config: dict[str, Any] = {
            "name": triton.model_name,
            "max_batch_size": triton.max_batch_size,
        }
        if served_digest is not None:
            config["parameters"] = {WEIGHTS_DIGEST_PARAMETER: {"string_value": served_digest}}
        return cls(
            name=triton.model_name,
            version=served_version,
            metadata={
                "name": triton.model_name,
                "versions": [str(served_version)],
                "platform": triton.platform,
                "inputs": tensors(triton.inputs),
                "outputs": tensors(triton.outputs),
            },
            config=config,
            answer=lambda inputs: expected_standin_outputs(spec, inputs, version=served_version),
        )

    @property
    def served_digest(self) -> str | None:
        return served_digest_of(self.config)


@dataclass(frozen=True)
class Call:
    """One call the fake received: its name, the model and version it named, the batch
    size of an inference (None otherwise), and the digest served when it was answered
    (None: not answered, or none published)."""

    name: str
    model: str | None = None
    version: str | None = None
    batch: int | None = None
    answered: bool = False
    served_digest: str | None = field(default=None, compare=False)


class FakeTransport:
    """An in-memory Triton server with one connection, for
    :class:`~dp_models.triton.client.TritonClient` (``transport=``)."""

    def __init__(
        self,
        models: Sequence[FakeModel] = (),
        *,
        up: bool = True,
        live: bool = True,
        watches_connections: bool = True,
    ) -> None:
        self.models: dict[tuple[str, str], FakeModel] = {
            (m.name, str(m.version)): m for m in models
        }
        #: Whether the server accepts connections (False: refused, as a stopped server).
        self.up = up
        #: What the server answers to is_server_live.
        self.live = live
        self.watches_connections = watches_connections
        self.calls: list[Call] = []
        #: Connections opened, and closed by the client; release() calls.
        self.connections = 0
        self.closes = 0
        self.releases = 0
        self._connected = False
        self._faults: dict[str, deque[BaseException]] = {}
        self._lock = threading.Lock()

    @classmethod
    def serving(
        cls,
        spec: Spec,
        *,
        served_digest: str | None,
        versions: Sequence[int] | None = None,
        **options: Any,
    ) -> FakeTransport:
        """A fake serving the stand-in of ``spec`` (at ``versions``, default: the pinned
        one), publishing ``served_digest``."""
        models = [
            FakeModel.of(spec, served_digest=served_digest, version=v)
            for v in (versions if versions else [None])
        ]
        fake = cls(models, **options)
        if versions:
            listed = [str(v) for v in versions]
            for m in models:
                m.metadata["versions"] = listed
        return fake

    # -- staging ---------------------------------------------------------------------------

    def fail(self, call: str, error: BaseException, *, times: int = 1) -> None:
        """The next ``times`` calls named ``call`` (one of :data:`CALLS`) raise ``error``
        instead of being answered; a :class:`ConnectionError` or :class:`TimeoutError` also
        drops the connection, as a real one would."""
        if call not in CALLS:
            raise ValueError(f"unknown call {call!r}; the calls: {', '.join(CALLS)}")
        with self._lock:
            self._faults.setdefault(call, deque()).extend([error] * times)

    def stop(self) -> None:
        """The server stops: connections are refused until :meth:`restart`."""
        with self._lock:
            self._connected = False
            self.up = False

    def restart(self, *, served_digest: str | _Keep | None = KEEP) -> None:
        """The server (re)started: every connection is gone; with ``served_digest``, every
        model now publishes that digest (other weights, or None for none)."""
        with self._lock:
            self._connected = False
            self.up = True
            if not isinstance(served_digest, _Keep):
                for model in self.models.values():
                    parameters = model.config.setdefault("parameters", {})
                    if served_digest is None:
                        parameters.pop(WEIGHTS_DIGEST_PARAMETER, None)
                    else:
                        parameters[WEIGHTS_DIGEST_PARAMETER] = {"string_value": served_digest}

    def drop_connection(self) -> None:
        """The connection is lost (a load balancer, a network blip): the next call opens one."""
        with self._lock:
            self._connected = False

    def answered(self, name: str = "infer") -> list[Call]:
        """The calls named ``name`` that were answered."""
        return [c for c in self.calls if c.name == name and c.answered]

    # -- the Transport protocol --------------------------------------------------------------

    def _enter(
        self,
        name: str,
        model: str | None = None,
        version: str | None = None,
        *,
        batch: int | None = None,
        new_connection_ok: bool = True,
    ) -> FakeModel | None:
        """Record the call, raise a staged fault, open the connection: the model named."""
        with self._lock:
            self.calls.append(Call(name, model, version, batch))
            faults = self._faults.get(name)
            if faults:
                error = faults.popleft()
                if isinstance(error, OSError):  # ConnectionError, TimeoutError
                    self._connected = False
                raise error
            if not self.up:
                self._connected = False
                raise ConnectionRefusedError(111, "Connection refused")
            if not self._connected:
                if not new_connection_ok and self.watches_connections:
                    raise NewConnectionError
                self._connected = True
                self.connections += 1
            if model is None or version is None:
                return None
            return self.models.get((model, version))

    def _answered(self, found: FakeModel | None) -> None:
        with self._lock:
            last = self.calls[-1]
            digest = found.served_digest if found is not None else None
            self.calls[-1] = Call(
                last.name, last.model, last.version, last.batch, True, served_digest=digest
            )

    def _model(self, found: FakeModel | None, model: str, version: str) -> FakeModel:
        if found is None or not found.ready:
            raise ServerAnswerError(
                f"Request for unknown model: '{model}' version {version} is not found"
            )
        return found

    def is_server_live(self, *, timeout_s: float) -> bool:
        self._enter("is_server_live")
        self._answered(None)
        return self.live

    def is_model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        found = self._enter("is_model_ready", model, version)
        self._answered(found)
        return found is not None and found.ready

    def get_model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        found = self._model(self._enter("get_model_metadata", model, version), model, version)
        self._answered(found)
        return copy.deepcopy(found.metadata)

    def get_model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        found = self._model(self._enter("get_model_config", model, version), model, version)
        self._answered(found)
        return copy.deepcopy(found.config)

    @property
    def shared_memory(self) -> str:
        return "off"

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
        arrays = {t.name: np.asarray(t.data) for t in inputs}
        found = self._enter(
            "infer",
            model,
            version,
            batch=next((len(a) for a in arrays.values() if a.ndim), None),
            new_connection_ok=new_connection_ok,
        )
        served = self._model(found, model, version)
        limit = int(served.config.get("max_batch_size", 0))
        batch = self.calls[-1].batch
        if limit > 0 and batch is not None and batch > limit:
            raise ServerAnswerError(
                f"inference request batch-size must be <= {limit} for '{model}', got {batch}"
            )
        answer = served.answer(arrays)
        for name, nbytes in (output_nbytes or {}).items():
            if name in answer and np.asarray(answer[name]).nbytes > nbytes:
                raise ServerAnswerError(
                    f"shared memory size specified with the request for output {name!r} "
                    f"({nbytes} bytes) should be at least {answer[name].nbytes} bytes"
                )
        self._answered(served)
        return {n: answer[n] for n in outputs if n in answer}

    def close(self) -> None:
        with self._lock:
            self._connected = False
            self.closes += 1

    def release(self) -> None:
        with self._lock:
            self.releases += 1
        self.close()
