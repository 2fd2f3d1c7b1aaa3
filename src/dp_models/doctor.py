"""``dp-models doctor``: every spec of a catalog against a root, one verdict each.

A spec is ``ok`` when every artifact is present, inside the root, pinned, and of the
pinned size and digest. Otherwise its status is the first problem found (``missing``,
``unpinned``, ``size_mismatch``, ``digest_mismatch``, ``unsafe_path``, ``unreadable``,
``changed``) and it *fails*, with two exceptions that are reported, never hidden:

- ``absent``: an ``optional: true`` spec none of whose artifacts is provisioned;
- ``remote``: a Triton spec none of whose artifacts is provisioned here and whose
  endpoint is not checked (no URL configured, or ``--no-triton``): the model is served by
  Triton, and its artifacts are needed only to export a model repository.

A Triton spec whose endpoint has a URL is checked against it
(:mod:`dp_models.triton.health`): ``served`` when the server is live, the pinned version
ready, the metadata as the spec says and the served weights digest verified;
``unverified`` (reported, not failing) when the server publishes no digest and the spec
does not require one; otherwise it fails as ``unavailable``, ``metadata_mismatch`` or
``served_digest_mismatch``. Its local artifacts, where present, are verified first.

A spec whose artifacts are present but wrong fails even when it is optional.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog
from .spec import Spec
from .verify import ArtifactReport, Verifier

__all__ = ["SpecHealth", "diagnose", "report_json"]

_FIX = {
    "missing": "provision the artifact (dp_models never downloads), then rerun `dp-models doctor`",
    "unpinned": "pin it from a provisioned root: `dp-models lock --root ROOT`",
    "size_mismatch": "re-provision the artifact from its source; it is not the pinned file",
    "digest_mismatch": "re-provision the artifact from its source; it is not the pinned file",
    "unsafe_path": "replace the symlink that leaves MODELS_ROOT with the file itself",
    "unreadable": "fix the artifact's permissions so this user can read it",
    "changed": "let whatever writes the artifact finish, then rerun `dp-models doctor`",
    "unavailable": "start the Triton server (or point the endpoint's URL at it) and deploy "
    "the model version: `dp-models triton export` writes its repository",
    "metadata_mismatch": "deploy the model the catalog describes (`dp-models triton export`), "
    "or fix the spec",
    "served_digest_mismatch": "redeploy the verified artifacts (`dp-models triton export`), or "
    "update the catalog if the new weights are intended",
}

#: TritonClient.check() error types -> doctor status.
_SERVED_STATUS = {
    "TritonUnavailableError": "unavailable",
    "TritonMetadataMismatchError": "metadata_mismatch",
    "TritonDigestMismatchError": "served_digest_mismatch",
}


@dataclass(frozen=True)
class SpecHealth:
    """The verdict for one spec."""

    spec: Spec
    status: str
    failing: bool
    artifacts: tuple[ArtifactReport, ...]
    #: The endpoint check of a Triton spec (TritonClient.check()); None when not checked.
    served: Mapping[str, Any] | None = None

    @property
    def message(self) -> str:
        """The first error of a failing spec; empty otherwise."""
        if not self.failing:
            return ""
        for r in self.artifacts:
            if r.error is not None:
                return str(r.error)
        if self.served is not None and self.served.get("error"):
            return str(self.served["error"])
        return ""

    @property
    def fix(self) -> str:
        return _FIX.get(self.status, "") if self.failing else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "runtime": self.spec.runtime,
            "engine": self.spec.engine,
            "optional": self.spec.optional,
            "status": self.status,
            "ok": not self.failing,
            "message": self.message,
            "fix": self.fix,
            "artifacts": [_artifact_json(r) for r in self.artifacts],
            "triton": dict(self.served) if self.served is not None else None,
        }


def _artifact_json(r: ArtifactReport) -> dict[str, Any]:
    return {
        "path": r.artifact.path,
        "kind": r.artifact.kind,
        "status": r.status,
        "pinned_by": r.pin.source if r.pin else None,
        "expected_sha256": r.pin.sha256 if r.pin else None,
        "actual_sha256": r.sha256,
        "expected_size": r.pin.size if r.pin else None,
        "actual_size": r.size,
        "cached": r.cached,
        "message": str(r.error) if r.error else "",
    }


def diagnose(
    catalog: Catalog,
    verifier: Verifier,
    names: Sequence[str] = (),
    *,
    endpoints: Mapping[str, str] | None = None,
    ready_timeout_s: float = 10.0,
) -> list[SpecHealth]:
    """Check ``names`` (all specs when empty) and return one :class:`SpecHealth` each.

    ``endpoints`` (endpoint name -> URL): check each Triton spec whose endpoint has a URL
    against it, waiting at most ``ready_timeout_s`` for readiness per endpoint; no other
    address is contacted. None: no endpoint is contacted."""
    from .triton.health import Deployment, check_deployments

    specs = [catalog[n] for n in names] if names else list(catalog.values())
    reports = verifier.check(specs)
    by_spec: dict[str, list[ArtifactReport]] = {s.name: [] for s in specs}
    for r in reports:
        by_spec[r.spec].append(r)
    served: dict[str, Mapping[str, Any]] = {}
    if endpoints:
        deployments = []
        for spec in specs:
            if spec.triton is None or spec.triton.endpoint not in endpoints:
                continue
            pin = catalog.served_digest(spec)
            url = endpoints[spec.triton.endpoint]
            deployments.append(Deployment(spec, url, pin.sha256 if pin else None))
        checked = check_deployments(deployments, ready_timeout_s=ready_timeout_s)
        served = {d.spec.name: r for d, r in zip(deployments, checked, strict=True)}
    return [_verdict(spec, tuple(by_spec[spec.name]), served.get(spec.name)) for spec in specs]


def _verdict(
    spec: Spec, reports: tuple[ArtifactReport, ...], served: Mapping[str, Any] | None = None
) -> SpecHealth:
    bad = [r for r in reports if not r.ok]
    nothing_here = all(r.status == "missing" and not r.path.exists() for r in reports)
    if bad and not (nothing_here and (spec.runtime == "triton" or spec.optional)):
        return SpecHealth(spec, bad[0].status, True, reports, served)
    if served is not None:
        if not served["ok"]:
            status = _SERVED_STATUS.get(str(served.get("error_type")), "unavailable")
            return SpecHealth(spec, status, True, reports, served)
        status = "served" if served["served_digest_verified"] else "unverified"
        return SpecHealth(spec, status, False, reports, served)
    if spec.runtime == "triton" and nothing_here:  # also a spec without artifacts
        return SpecHealth(spec, "remote", False, reports)
    if not bad:
        return SpecHealth(spec, "ok", False, reports)
    return SpecHealth(spec, "absent", False, reports)


def report_json(health: Sequence[SpecHealth], **context: Any) -> dict[str, Any]:
    """The machine-readable doctor report (``dp-models doctor --json``)."""
    return {
        **context,
        "ok": not any(h.failing for h in health),
        "summary": dict(sorted(Counter(h.status for h in health).items())),
        "specs": [h.to_json() for h in health],
    }
