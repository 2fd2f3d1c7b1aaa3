"""Health checks of Triton deployments: what ``dp-models doctor`` and
:meth:`ModelManager.check <dp_models.manager.ModelManager.check>` run.

>>> from dp_models.triton.health import Deployment, check_deployments   # doctest: +SKIP
>>> check_deployments([Deployment(spec, "http://127.0.0.1:8000", digest)])  # doctest: +SKIP
[{'spec': 'midas_dpt_hybrid_triton', 'ok': True, 'live': True, 'ready': True, ...}]

Each deployment gets :meth:`TritonClient.check <dp_models.triton.client.TritonClient.check>`:
live, ready, metadata and served digest, as one report that never raises for the
deployment's problems. Only the given endpoint URLs are contacted, inside a network guard
that blocks everything else. Once an endpoint has not answered as live, the other specs
served there are checked without waiting for readiness again, so a dead server costs one
``ready_timeout_s``, not one per model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..guard import network_guard
from ..settings import triton_url_variable
from ..spec import Spec
from ..urls import redact_url
from .client import TritonClient, blank_report

__all__ = ["Deployment", "check_deployments", "unconfigured_report"]


@dataclass(frozen=True)
class Deployment:
    """A Triton spec, the URL of its endpoint (None: not configured) and the weights digest
    it must serve (:meth:`~dp_models.catalog.Catalog.served_digest`); ``on_verified`` as
    for :class:`~dp_models.triton.client.TritonClient`."""

    spec: Spec
    url: str | None = field(repr=False)  # may hold credentials: repr() masks them
    served_digest: str | None
    on_verified: Callable[[bool | None], None] | None = None

    def __repr__(self) -> str:
        url = redact_url(self.url) if self.url is not None else None
        return (
            f"Deployment(spec={self.spec.name!r}, url={url!r}, "
            f"served_digest={self.served_digest!r})"
        )


def unconfigured_report(spec: Spec) -> dict[str, Any]:
    """The report of a spec whose endpoint has no URL: not checked, and not ok."""
    assert spec.triton is not None
    name = spec.triton.endpoint
    env = triton_url_variable(name)
    report = blank_report(spec, None)
    report.update(
        error=f"the Triton endpoint named {name!r} is not configured (set ${env})",
        error_type="ConfigurationError",
    )
    return report


def check_deployments(
    deployments: Iterable[Deployment],
    *,
    ready_timeout_s: float = 10.0,
    connection_timeout_s: float = 5.0,
    network_timeout_s: float = 30.0,
    retries: int = 1,
) -> list[dict[str, Any]]:
    """One :meth:`TritonClient.check` report per deployment, in order; an unconfigured
    endpoint gets :func:`unconfigured_report`. The timeouts and ``retries`` are those of
    :class:`~dp_models.triton.client.TritonClient`."""
    wanted = list(deployments)
    urls = sorted({d.url for d in wanted if d.url is not None})
    dead: set[str] = set()
    reports: list[dict[str, Any]] = []
    with network_guard([d.spec.name for d in wanted], allow=urls):
        for d in wanted:
            if d.url is None:
                reports.append(unconfigured_report(d.spec))
                continue
            fast = d.url in dead
            client = TritonClient(
                d.spec,
                d.url,
                served_digest=d.served_digest,
                ready_timeout_s=0.0 if fast else ready_timeout_s,
                connection_timeout_s=connection_timeout_s,
                network_timeout_s=network_timeout_s,
                retries=0 if fast else retries,
                backoff_s=0.1,
                on_verified=d.on_verified,
            )
            with client:
                report = client.check()
            if not report["live"]:
                dead.add(d.url)
            reports.append(report)
    return reports
