"""``dp-models doctor``: every spec of a catalog against a root, one verdict each.

A spec is ``ok`` when every artifact is present, inside the root, pinned, and of the
pinned size and digest. Otherwise its status is the first problem found (``missing``,
``unpinned``, ``size_mismatch``, ``digest_mismatch``, ``unsafe_path``, ``unreadable``,
``changed``) and it *fails*, with two exceptions that are reported, never hidden:

- ``absent``: an ``optional: true`` spec none of whose artifacts is provisioned;
- ``remote``: a Triton spec none of whose artifacts is provisioned here: the model is
  served by Triton, and its artifacts are needed only to export a model repository.

A spec whose artifacts are present but wrong fails even when it is optional.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
}


@dataclass(frozen=True)
class SpecHealth:
    """The verdict for one spec."""

    spec: Spec
    status: str
    failing: bool
    artifacts: tuple[ArtifactReport, ...]

    @property
    def message(self) -> str:
        """The first artifact error of a failing spec; empty otherwise."""
        if not self.failing:
            return ""
        for r in self.artifacts:
            if r.error is not None:
                return str(r.error)
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


def diagnose(catalog: Catalog, verifier: Verifier, names: Sequence[str] = ()) -> list[SpecHealth]:
    """Check ``names`` (all specs when empty) and return one :class:`SpecHealth` each."""
    specs = [catalog[n] for n in names] if names else list(catalog.values())
    reports = verifier.check(specs)
    by_spec: dict[str, list[ArtifactReport]] = {s.name: [] for s in specs}
    for r in reports:
        by_spec[r.spec].append(r)
    return [_verdict(spec, tuple(by_spec[spec.name])) for spec in specs]


def _verdict(spec: Spec, reports: tuple[ArtifactReport, ...]) -> SpecHealth:
    bad = [r for r in reports if not r.ok]
    if not bad:
        return SpecHealth(spec, "ok", False, reports)
    nothing_here = all(r.status == "missing" and not r.path.exists() for r in reports)
    if nothing_here and spec.runtime == "triton":
        return SpecHealth(spec, "remote", False, reports)
    if nothing_here and spec.optional:
        return SpecHealth(spec, "absent", False, reports)
    return SpecHealth(spec, bad[0].status, True, reports)


def report_json(health: Sequence[SpecHealth], **context: Any) -> dict[str, Any]:
    """The machine-readable doctor report (``dp-models doctor --json``)."""
    return {
        **context,
        "ok": not any(h.failing for h in health),
        "summary": dict(sorted(Counter(h.status for h in health).items())),
        "specs": [h.to_json() for h in health],
    }
