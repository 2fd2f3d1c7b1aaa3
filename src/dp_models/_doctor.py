"""``dp-models doctor``: every spec of a catalog against a root, one verdict each.

A spec is ``ok`` when every artifact is present, inside the root, pinned, and of the
pinned size and digest. Otherwise its status is the first problem found (``missing``,
``unpinned``, ``size_mismatch``, ``digest_mismatch``, ``unsafe_path``, ``unreadable``,
``changed``) and it *fails*, with two exceptions that are reported, never hidden:

- ``absent``: an ``optional: true`` spec none of whose artifacts is provisioned (nothing
  at any artifact path, not even a dangling symlink: :meth:`Verifier.absent
  <dp_models._verify.Verifier.absent>`, the rule ``get_optional`` and ``check`` follow too);
- ``remote``: a Triton spec none of whose artifacts is provisioned here and whose
  endpoint is not checked (no URL configured, or ``--no-triton``): the model is served by
  Triton, and its artifacts are needed only to export a model repository.

A Triton spec whose endpoint has a URL is checked against it
(:mod:`dp_models.triton.health`): ``served`` when the server is live, the pinned version
ready, the metadata as the spec says and the served weights digest verified;
``unverified`` (reported, not failing) when the server publishes no digest and the spec
does not require one; otherwise it fails as ``unavailable``, ``metadata_mismatch`` or
``served_digest_mismatch``. Its local artifacts, where present, are verified first. An
endpoint with several replicas (URLs separated by commas, or a name resolved to several
addresses in DNS mode) has each replica checked: the spec's status is the worst replica's,
and the table has one line per replica under the spec's.

A spec whose artifacts are present but wrong fails even when it is optional.

A failing spec's ``message`` is what its check found (for a Triton spec failing at its
endpoint, the endpoint's error, never its artifacts that need not be here) and its ``fix``
what to do about it: start the server or point the endpoint's variable at one, deploy the
pinned weights, or pin the digest a deployment must serve when nothing pins it yet.

The statuses are :class:`~dp_models._health.HealthStatus`; a Triton spec's endpoint check is
the :class:`~dp_models._health.HealthReport` the client made, taken as it is.
:func:`report_json` is ``dp-models doctor --json``, :func:`render_table` the table.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _html
from ._catalog import Catalog, lineage_message
from ._digest import DigestCache, Hasher
from ._health import HealthReport, HealthStatus
from ._manager import ModelManager
from ._settings import Settings, triton_url_variable
from ._spec import Spec
from ._urls import redact
from ._verify import ArtifactReport, Verifier

__all__ = ["DoctorReport", "SpecHealth", "diagnose", "doctor", "render_table", "report_json"]

_FIX: dict[str, str] = {
    "missing": "provision the artifact (`dp-models pull --from MIRROR`, or by hand), then rerun "
    "`dp-models doctor`",
    "unpinned": "pin it from a provisioned root: `dp-models lock --root ROOT`",
    "size_mismatch": "re-provision the artifact from its source; it is not the pinned file",
    "digest_mismatch": "re-provision the artifact from its source; it is not the pinned file",
    "unsafe_path": "replace the symlink that leaves MODELS_ROOT with the file itself",
    "unreadable": "fix the artifact's permissions so this user can read it",
    "changed": "let whatever writes the artifact finish, then rerun `dp-models doctor`",
    "metadata_mismatch": "deploy the model the catalog describes (`dp-models triton export`), "
    "or fix the spec",
    "lineage_mismatch": "export the model again from its source (`dp-models export onnx SOURCE "
    "--for SPEC`) and deploy it, or pin the source's weights back",
}


@dataclass(frozen=True)
class SpecHealth:
    """The verdict for one spec."""

    spec: Spec
    status: HealthStatus
    artifacts: tuple[ArtifactReport, ...]
    #: The endpoint check of a Triton spec (TritonClient.check()); None when not checked.
    served: HealthReport | None = None
    #: Why a derived spec's lineage no longer holds (status ``lineage_mismatch``).
    lineage: str = ""
    #: A Triton spec: the weights digest its deployment must serve, as the catalog pins it
    #: (None: nothing pins one).
    expected_digest: str | None = None

    @property
    def failing(self) -> bool:
        return self.status.failing

    @property
    def message(self) -> str:
        """The first error of a failing spec; empty otherwise. A Triton spec failing its
        endpoint's check says what the check found (its artifacts need not be here)."""
        if not self.failing:
            return ""
        if self.lineage:
            return self.lineage
        if self.served is not None and self.status is self.served.status:
            return self.served.error or ""
        for r in self.artifacts:
            if r.error is not None:
                return str(r.error)
        if self.served is not None and self.served.error:
            return self.served.error
        return ""

    @property
    def fix(self) -> str:
        if not self.failing:
            return ""
        triton = self.spec.triton
        if triton is not None and self.status is HealthStatus.UNAVAILABLE:
            where = self.served.endpoint if self.served is not None else None
            return (
                f"start the Triton server{f' at {where}' if where else ''}, or point "
                f"${triton_url_variable(triton.endpoint)} (or --triton-url) at the one that "
                f"serves {triton.model_name} v{triton.model_version}; a server without that "
                "model version needs it deployed (`dp-models triton export` writes its "
                "repository)"
            )
        if triton is not None and self.status is HealthStatus.SERVED_DIGEST_MISMATCH:
            if self.expected_digest is None:
                return (
                    "pin the digest the deployment must serve: `dp-models lock --root ROOT "
                    "--lock LOCK` on a root holding the spec's artifacts (or the spec's "
                    "triton.weights_digest), then rerun `dp-models doctor`"
                )
            return (
                f"deploy the pinned weights ({self.expected_digest[:12]}...): `dp-models "
                "triton export` from a verified root writes the repository, with its digest; "
                "if the served weights are the intended ones, pin them instead (the lock, or "
                "the spec's triton.weights_digest)"
            )
        return _FIX.get(self.status, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "runtime": self.spec.runtime,
            "engine": self.spec.engine,
            "optional": self.spec.optional,
            "status": self.status.value,
            "ok": not self.failing,
            "message": self.message,
            "fix": self.fix,
            "artifacts": [_artifact_json(r) for r in self.artifacts],
            "triton": self.served.as_dict() if self.served is not None else None,
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
        **r.where(),
    }


def _found_in(r: ArtifactReport) -> str:
    """Where an artifact was found, for the table."""
    if r.home == "installed":
        name = " ".join(r.distribution) if r.distribution else r.artifact.installed
        return f"installed {name} ({r.location})"
    if r.home == "huggingface":
        hub = r.artifact.huggingface
        assert hub is not None
        return f"hub cache {r.location} ({hub.repo}@{hub.revision[:12]})"
    return f"root {r.location}"


def diagnose(
    catalog: Catalog,
    verifier: Verifier,
    names: Sequence[str] = (),
    *,
    endpoints: Mapping[str, str] | None = None,
    ready_timeout_s: float = 10.0,
    replicas: Mapping[str, str] | None = None,
    shared_memory: Mapping[str, str] | None = None,
) -> list[SpecHealth]:
    """Check ``names`` (all specs when empty) and return one :class:`SpecHealth` each.

    ``endpoints`` (endpoint name -> URL, or replicas' URLs separated by commas): check each
    Triton spec whose endpoint has a URL against it (every replica), waiting at most
    ``ready_timeout_s`` for readiness per replica; no other address is contacted. None: no
    endpoint is contacted. ``replicas`` (endpoint name -> ``urls`` or ``dns``): how each
    endpoint's replicas are found (default ``urls``); ``shared_memory`` (endpoint name ->
    ``auto``, ``on`` or ``off``, default ``auto``): each endpoint's mode, for the reports."""
    from .triton.health import Deployment, check_deployments

    specs = [catalog[n] for n in names] if names else list(catalog.values())
    reports = verifier.check(specs)
    by_spec: dict[str, list[ArtifactReport]] = {s.name: [] for s in specs}
    for r in reports:
        by_spec[r.spec].append(r)
    served: dict[str, HealthReport] = {}
    if endpoints:
        deployments = []
        for spec in specs:
            if spec.triton is None or spec.triton.endpoint not in endpoints:
                continue
            expected = catalog.expected_digest(spec)
            url = endpoints[spec.triton.endpoint]
            deployments.append(
                Deployment(
                    spec,
                    url,
                    expected.sha256 if expected else None,
                    replicas=(replicas or {}).get(spec.triton.endpoint, "urls"),
                    shared_memory=(shared_memory or {}).get(spec.triton.endpoint, "auto"),
                )
            )
        checked = check_deployments(deployments, ready_timeout_s=ready_timeout_s)
        served = {d.spec.name: r for d, r in zip(deployments, checked, strict=True)}
    verdicts = [
        _verdict(
            spec,
            tuple(by_spec[spec.name]),
            served.get(spec.name),
            verifier.absent(spec),
            expected_digest=_expected_digest(catalog, spec),
        )
        for spec in specs
    ]
    return [_with_lineage(catalog, h) for h in verdicts]


def _with_lineage(catalog: Catalog, h: SpecHealth) -> SpecHealth:
    """A derived spec whose recorded export no longer matches its source fails as
    ``lineage_mismatch`` (unless something worse was found), saying which."""
    broken = catalog.broken_lineage(h.spec)
    if broken is None or (h.failing and h.status is not HealthStatus.LINEAGE_MISMATCH):
        return h
    recorded, current = broken
    message = lineage_message(h.spec, recorded.weights_digest, current)
    return dataclasses.replace(h, status=HealthStatus.LINEAGE_MISMATCH, lineage=message)


def _expected_digest(catalog: Catalog, spec: Spec) -> str | None:
    """The digest a Triton spec's deployment must serve, as the catalog pins it."""
    if spec.triton is None:
        return None
    expected = catalog.expected_digest(spec)
    return expected.sha256 if expected else None


def _verdict(
    spec: Spec,
    reports: tuple[ArtifactReport, ...],
    served: HealthReport | None,
    nothing_here: bool,
    *,
    expected_digest: str | None = None,
) -> SpecHealth:
    """``nothing_here``: :meth:`Verifier.absent` (a dangling symlink is not absence)."""
    bad = [r for r in reports if not r.ok]
    status: HealthStatus
    if bad and not (nothing_here and (spec.runtime == "triton" or spec.optional)):
        status = HealthStatus(bad[0].status)
    elif served is not None:
        status = served.status
    elif spec.runtime == "triton" and nothing_here:  # also a spec without artifacts
        status = HealthStatus.REMOTE
    else:
        status = HealthStatus.OK if not bad else HealthStatus.ABSENT
    return SpecHealth(spec, status, reports, served, expected_digest=expected_digest)


def report_json(health: Sequence[SpecHealth], **context: Any) -> dict[str, Any]:
    """The machine-readable doctor report (``dp-models doctor --json``)."""
    return {
        **context,
        "ok": not any(h.failing for h in health),
        "summary": dict(sorted(Counter(h.status.value for h in health).items())),
        "specs": [h.to_json() for h in health],
    }


def _detail(h: SpecHealth, *, triton_checked: bool) -> str:
    """The table's DETAIL cell: where a Triton spec is served, or the artifact at fault."""
    triton = h.spec.triton
    if h.served is not None and not (h.failing and h.served.ok):
        assert triton is not None
        where = f"{triton.model_name} v{triton.model_version} at {h.served.endpoint}"
        if h.status is HealthStatus.SERVED:
            return f"{where}; served digest verified"
        if h.status is HealthStatus.UNVERIFIED:
            return f"{where}; the server publishes no weights digest"
        return f"{where}: {h.status.value.replace('_', ' ')}"
    if h.status is HealthStatus.REMOTE:
        assert triton is not None
        if not triton_checked:
            why = "not checked (--no-triton)"
        else:
            env = triton_url_variable(triton.endpoint)
            why = f"endpoint {triton.endpoint!r} not configured (${env})"
        return (
            f"served by Triton as {triton.model_name} v{triton.model_version}; {why}; "
            "artifacts not provisioned here"
        )
    if h.status is HealthStatus.ABSENT:
        return "optional; not provisioned"
    if h.failing:
        return next(r for r in h.artifacts if not r.ok).artifact.path
    if h.status is HealthStatus.OK:
        count = len(h.artifacts)
        return f"{count} artifact{'s' if count != 1 else ''}"
    return ""


_HEADER = ["NAME", "RUNTIME", "STATUS", "DETAIL"]


def _rows(
    health: Sequence[SpecHealth], roots: Sequence[Path], *, triton_checked: bool
) -> list[list[str]]:
    """The table's rows (:func:`render_table`, :meth:`DoctorReport._repr_html_`)."""
    rows = []
    for h in health:
        status = h.status.value.upper() if h.failing else h.status.value
        rows.append(
            [h.spec.name, h.spec.runtime, status, _detail(h, triton_checked=triton_checked)]
        )
        for a in h.artifacts:
            found = a.status not in ("missing", "unsafe_path")
            if found and (len(roots) > 1 or a.home != "root"):
                rows.append(["", "", "", f"{a.artifact.path}: {_found_in(a)}"])
        if h.served is not None and len(h.served.replicas) > 1:
            for r in h.served.replicas:  # one line per replica, under the spec's
                shown = r.status.value.upper() if r.status.failing else r.status.value
                rows.append(["", "", shown, f"replica {r.endpoint}"])
    return rows


def _summary(health: Sequence[SpecHealth], roots: Sequence[Path]) -> str:
    counts = Counter(h.status.value for h in health)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    against = ", ".join(str(r) for r in roots)
    return f"{len(health)} spec{'s' if len(health) != 1 else ''} against {against}: {summary}"


def render_table(
    health: Sequence[SpecHealth],
    *,
    root: Path | Sequence[Path],
    triton_checked: bool,
) -> str:
    """``dp-models doctor`` for people: one row per spec (failing statuses in capitals),
    a summary against ``root`` (or the roots, in search order), then each failing spec's
    message and fix. With several roots, or an artifact found outside them (a hub cache,
    an installed distribution), each found artifact gets a row saying where it was found.
    ``triton_checked``: False when no endpoint was contacted on purpose (``--no-triton``)."""
    roots = [root] if isinstance(root, Path) else list(root)
    rows = [_HEADER, *_rows(health, roots, triton_checked=triton_checked)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += ["", _summary(health, roots)]
    failing = [h for h in health if h.failing]
    if failing:
        lines += ["", f"{len(failing)} required spec{'s' if len(failing) != 1 else ''} not ok:"]
        for h in failing:
            lines += [f"- {h.message}", f"  fix: {h.fix}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DoctorReport:
    """What :func:`doctor` found: ``dp-models doctor`` as an object. ``str()`` is the
    table, :meth:`to_json` the ``--json`` report, and notebooks show it as an HTML table
    (every value escaped, credentials in URLs masked)."""

    specs: tuple[SpecHealth, ...]
    #: The roots checked, in search order.
    roots: tuple[Path, ...]
    #: False when no Triton endpoint was contacted on purpose (``triton=False``).
    triton_checked: bool = True

    @property
    def ok(self) -> bool:
        """Whether no spec fails (``dp-models doctor`` exits 0)."""
        return not any(h.failing for h in self.specs)

    @property
    def failing(self) -> tuple[SpecHealth, ...]:
        """The specs that fail, in order (each with its ``message`` and ``fix``)."""
        return tuple(h for h in self.specs if h.failing)

    def to_json(self, **context: Any) -> dict[str, Any]:
        """:func:`report_json` of these specs, with the roots and ``context`` on top."""
        return report_json(self.specs, **{"roots": [str(r) for r in self.roots], **context})

    def __str__(self) -> str:
        return render_table(self.specs, root=self.roots, triton_checked=self.triton_checked)

    def __repr__(self) -> str:
        counts = Counter(h.status.value for h in self.specs)
        summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no specs"
        return f"<DoctorReport {'ok' if self.ok else 'FAILING'}: {summary}>"

    def _repr_html_(self) -> str:
        rows = _rows(self.specs, self.roots, triton_checked=self.triton_checked)
        cells = [
            [_html.code(r[0]) if r[0] else "", r[1], _status(r[2]), redact(r[3])] for r in rows
        ]
        notes = [redact(_summary(self.specs, self.roots))]
        notes += [redact(f"{h.spec.name}: {h.message} Fix: {h.fix}") for h in self.failing]
        title = "Doctor: ok" if self.ok else f"Doctor: {len(self.failing)} required spec(s) not ok"
        return _html.titled(title, _html.table([c.lower() for c in _HEADER], cells), notes=notes)


def _status(shown: str) -> object:
    """A status cell: a failing one (shown in capitals) in bold."""
    return _html.Markup(f"<strong>{_html.esc(shown)}</strong>") if shown.isupper() else shown


def doctor(
    manager: ModelManager | None = None,
    names: Sequence[str] = (),
    *,
    triton: bool = True,
    ready_timeout_s: float = 10.0,
) -> DoctorReport:
    """``dp-models doctor`` from Python: every spec of ``manager``'s catalog (``names``: only
    these) against its roots, and each Triton spec against its endpoint (unless
    ``triton=False``). Without a manager, the settings come from the environment as the
    command's do (:meth:`Settings.resolve <dp_models._settings.Settings.resolve>`), and
    nothing is switched offline. Never raises for what it finds: see
    :attr:`DoctorReport.ok`.

    >>> from dp_models import ModelManager, doctor
    >>> report = doctor(ModelManager("MODELS_ROOT.example", "examples/spec_catalog"))
    >>> report.ok, report
    (True, <DoctorReport ok: 1 ok>)
    """
    if manager is not None:
        settings, catalog = manager.settings, manager.catalog
    else:
        settings = Settings.resolve()
        catalog = Catalog.load(settings=settings)
    hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
    verifier = Verifier(catalog, settings.require_roots(), hasher, hf_cache=settings.hf_cache)
    health = diagnose(
        catalog,
        verifier,
        names,
        endpoints=dict(settings.triton_endpoints) if triton else None,
        ready_timeout_s=ready_timeout_s,
        replicas=settings.triton_replicas,
        shared_memory=settings.triton_shared_memory,
    )
    return DoctorReport(tuple(health), tuple(verifier.roots), triton_checked=triton)
