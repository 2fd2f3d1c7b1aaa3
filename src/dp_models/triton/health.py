"""Health checks of Triton deployments: what ``dp-models doctor`` and
:meth:`ModelManager.check <dp_models._manager.ModelManager.check>` run.

>>> from dp_models.triton.health import Deployment, check_deployments   # doctest: +SKIP
>>> check_deployments([Deployment(spec, "http://127.0.0.1:8000", expected)])  # doctest: +SKIP
[HealthReport(spec='midas_dpt_hybrid_triton', runtime='triton', status=<HealthStatus.SERVED...>]

Each deployment gets :meth:`TritonClient.check <dp_models.triton.client.TritonClient.check>`:
live, ready, metadata and served digest of every replica, as one
:class:`~dp_models._health.HealthReport` (one :class:`~dp_models._health.ReplicaHealth` per
replica) that never raises for the deployment's problems. Only the given endpoint URLs
(and, in DNS mode, the addresses their names resolve to, looked up first) are contacted,
inside a network guard that blocks everything else. Once a replica has not answered as
live, the other specs served there are checked without waiting for its readiness again, so
a dead server costs one ``ready_timeout_s``, not one per model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._errors import TritonUnavailableError
from .._guard import network_guard
from .._health import HealthReport, HealthStatus
from .._settings import triton_url_variable
from .._spec import Spec
from .._urls import redact_endpoints
from .client import TritonClient
from .transport import Transport

__all__ = ["Deployment", "check_deployments", "unconfigured_report"]


@dataclass(frozen=True)
class Deployment:
    """A Triton spec, the URL of its endpoint (None: not configured) and the expected
    digest, the weights digest it must serve
    (:meth:`~dp_models._catalog.Catalog.served_digest`); ``on_verified``, ``replicas``
    (how the endpoint's replicas are found: ``urls`` or ``dns``) and ``shared_memory`` (the
    endpoint's mode, shown in the report: a check sends no tensors) as for
    :class:`~dp_models.triton.client.TritonClient`."""

    spec: Spec
    url: str | None = field(repr=False)  # may hold credentials: repr() masks them
    expected_digest: str | None
    on_verified: Callable[[bool | None], None] | None = None
    replicas: str = "urls"
    shared_memory: str = "auto"

    def __repr__(self) -> str:
        url = redact_endpoints(self.url) if self.url is not None else None
        mode = f", replicas={self.replicas!r}" if self.replicas != "urls" else ""
        return (
            f"Deployment(spec={self.spec.name!r}, url={url!r}, "
            f"expected_digest={self.expected_digest!r}{mode})"
        )


def unconfigured_report(spec: Spec) -> HealthReport:
    """The report of a spec whose endpoint has no URL: not checked, and not ok."""
    assert spec.triton is not None
    name = spec.triton.endpoint
    env = triton_url_variable(name)
    return HealthReport(
        spec=spec.name,
        runtime="triton",
        status=HealthStatus.UNCONFIGURED,
        error=f"the Triton endpoint named {name!r} is not configured (set ${env})",
        error_type="ConfigurationError",
        model_name=spec.triton.model_name,
        model_version=spec.triton.model_version,
    )


def check_deployments(
    deployments: Iterable[Deployment],
    *,
    ready_timeout_s: float = 10.0,
    connection_timeout_s: float = 5.0,
    network_timeout_s: float = 30.0,
    retries: int = 1,
    transport: Callable[[Deployment], Transport] | None = None,
) -> list[HealthReport]:
    """One :meth:`TritonClient.check` report per deployment, in order; an unconfigured
    endpoint gets :func:`unconfigured_report`. The timeouts and ``retries`` are those of
    :class:`~dp_models.triton.client.TritonClient`; ``transport`` makes each client's
    transport (default: ``tritonclient.http`` at the deployment's URL; a deployment with one
    replica only)."""
    wanted = list(deployments)
    clients: list[TritonClient | None] = [
        None
        if d.url is None
        else TritonClient(
            d.spec,
            d.url,
            expected_digest=d.expected_digest,
            ready_timeout_s=ready_timeout_s,
            connection_timeout_s=connection_timeout_s,
            network_timeout_s=network_timeout_s,
            retries=retries,
            backoff_s=0.1,
            on_verified=d.on_verified,
            transport=transport(d) if transport is not None else None,
            replicas=d.replicas,
            shared_memory=d.shared_memory,
        )
        for d in wanted
    ]
    allow = {d.url for d in wanted if d.url is not None}
    for client in clients:
        if client is not None and client.replica_mode == "dns":
            # the addresses the names resolve to now: the guard's own lookups are cached
            with contextlib.suppress(TritonUnavailableError):  # reported by check()
                allow.update(client.resolve())
    dead: set[str] = set()  # replicas (masked URLs) that did not answer as live
    reports: list[HealthReport] = []
    with network_guard([d.spec.name for d in wanted], allow=sorted(allow)):
        for d, client in zip(wanted, clients, strict=True):
            if client is None:
                reports.append(unconfigured_report(d.spec))
                continue
            client._assume_down(dead)
            with client:
                report = client.check(resolve=False)
            dead.update(r.endpoint for r in report.replicas if not r.live)
            reports.append(report)
    return reports
