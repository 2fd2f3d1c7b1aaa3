"""Health checks of Triton deployments: what ``dp-models doctor`` and
:meth:`ModelManager.check <dp_models._manager.ModelManager.check>` run.

>>> from dp_models.triton.health import Deployment, check_deployments   # doctest: +SKIP
>>> check_deployments([Deployment(spec, "http://127.0.0.1:8000", expected)])  # doctest: +SKIP
[HealthReport(spec='midas_dpt_hybrid_triton', runtime='triton', status=<HealthStatus.SERVED...>]

Each deployment gets :meth:`TritonClient.check <dp_models.triton.client.TritonClient.check>`:
live, ready, metadata and served digest, as one :class:`~dp_models._health.HealthReport`
that never raises for the deployment's problems. Only the given endpoint URLs are
contacted, inside a network guard that blocks everything else. Once an endpoint has not
answered as live, the other specs served there are checked without waiting for readiness
again, so a dead server costs one ``ready_timeout_s``, not one per model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._guard import network_guard
from .._health import HealthReport, HealthStatus
from .._settings import triton_url_variable
from .._spec import Spec
from .._urls import redact_url
from .client import TritonClient
from .transport import Transport

__all__ = ["Deployment", "check_deployments", "unconfigured_report"]


@dataclass(frozen=True)
class Deployment:
    """A Triton spec, the URL of its endpoint (None: not configured) and the expected
    digest, the weights digest it must serve
    (:meth:`~dp_models._catalog.Catalog.served_digest`); ``on_verified`` as for
    :class:`~dp_models.triton.client.TritonClient`."""

    spec: Spec
    url: str | None = field(repr=False)  # may hold credentials: repr() masks them
    expected_digest: str | None
    on_verified: Callable[[bool | None], None] | None = None

    def __repr__(self) -> str:
        url = redact_url(self.url) if self.url is not None else None
        return (
            f"Deployment(spec={self.spec.name!r}, url={url!r}, "
            f"expected_digest={self.expected_digest!r})"
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
    transport (default: ``tritonclient.http`` at the deployment's URL)."""
    wanted = list(deployments)
    urls = sorted({d.url for d in wanted if d.url is not None})
    dead: set[str] = set()
    reports: list[HealthReport] = []
    with network_guard([d.spec.name for d in wanted], allow=urls):
        for d in wanted:
            if d.url is None:
                reports.append(unconfigured_report(d.spec))
                continue
            fast = d.url in dead
            client = TritonClient(
                d.spec,
                d.url,
                expected_digest=d.expected_digest,
                ready_timeout_s=0.0 if fast else ready_timeout_s,
                connection_timeout_s=connection_timeout_s,
                network_timeout_s=network_timeout_s,
                retries=0 if fast else retries,
                backoff_s=0.1,
                on_verified=d.on_verified,
                transport=transport(d) if transport is not None else None,
            )
            with client:
                report = client.check()
            if not report.live:
                dead.add(d.url)
            reports.append(report)
    return reports
