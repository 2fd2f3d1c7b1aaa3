"""One health report for one spec: what :meth:`TritonClient.check
<dp_models.triton.client.TritonClient.check>` returns, what :meth:`ModelManager.check
<dp_models._manager.ModelManager.check>` serialises and what ``dp-models doctor`` shows.

>>> report = HealthReport("emonet_8", "inprocess", HealthStatus.MISSING, error="...")
>>> report.ok, report.status.failing, report.as_dict()["status"]
(False, True, 'missing')

A Triton deployment may have several replicas (one endpoint, several servers): the report
then carries one :class:`ReplicaHealth` per replica, and is ok only when every replica is.

The status is decided where the check runs (the client knows which check failed, the
verifier which artifact), never recovered afterwards from an exception's class name;
:meth:`HealthReport.as_dict` is the report's one JSON form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

__all__ = ["HealthReport", "HealthStatus", "ReplicaHealth", "Runtime", "worst_replica"]

Runtime = Literal["inprocess", "triton"]


class HealthStatus(str, Enum):
    """What a check found for one spec. :attr:`failing` says whether it is a problem."""

    #: In process: every artifact present, pinned and of the pinned digest.
    OK = "ok"
    #: An ``optional: true`` spec none of whose artifacts is provisioned.
    ABSENT = "absent"
    #: A Triton spec whose endpoint is not checked here (doctor: no URL, or --no-triton).
    REMOTE = "remote"
    #: Live, ready, metadata as the spec says, served digest verified.
    SERVED = "served"
    #: As SERVED, but the server publishes no digest and the spec does not require one.
    UNVERIFIED = "unverified"
    #: A Triton spec whose endpoint has no URL (not checked, and not ok).
    UNCONFIGURED = "unconfigured"
    #: No answer, not live, or the pinned model version not ready.
    UNAVAILABLE = "unavailable"
    #: Served tensors, versions or max_batch_size differ from the spec.
    METADATA_MISMATCH = "metadata_mismatch"
    #: Other weights served, or none published while the spec requires a digest.
    SERVED_DIGEST_MISMATCH = "served_digest_mismatch"
    #: A derived spec (``derived_from``) whose recorded export was made from other weights
    #: than its source spec pins now (``get`` raises LineageError).
    LINEAGE_MISMATCH = "lineage_mismatch"
    # an artifact's problem (dp_models._verify.Status)
    MISSING = "missing"
    UNPINNED = "unpinned"
    SIZE_MISMATCH = "size_mismatch"
    DIGEST_MISMATCH = "digest_mismatch"
    UNSAFE_PATH = "unsafe_path"
    UNREADABLE = "unreadable"
    CHANGED = "changed"

    def __str__(self) -> str:
        return self.value

    @property
    def failing(self) -> bool:
        """True for a problem; absent, remote and unverified are reported, not failing."""
        return self not in _NOT_FAILING


_NOT_FAILING = frozenset(
    {
        HealthStatus.OK,
        HealthStatus.ABSENT,
        HealthStatus.REMOTE,
        HealthStatus.SERVED,
        HealthStatus.UNVERIFIED,
    }
)
#: Triton statuses reached once the model version answered as ready.
_READY = frozenset(
    {
        HealthStatus.SERVED,
        HealthStatus.UNVERIFIED,
        HealthStatus.METADATA_MISMATCH,
        HealthStatus.SERVED_DIGEST_MISMATCH,
    }
)

#: The order in which a replica's status decides a deployment's (worst first): a replica
#: serving other weights says more than one that is down.
_WORST_FIRST = (
    HealthStatus.SERVED_DIGEST_MISMATCH,
    HealthStatus.METADATA_MISMATCH,
    HealthStatus.UNAVAILABLE,
    HealthStatus.UNVERIFIED,
    HealthStatus.SERVED,
)


class _TritonVerdict:
    """What follows from a Triton check's status (for a deployment and for one replica)."""

    status: HealthStatus

    @property
    def ok(self) -> bool:
        return not self.status.failing

    @property
    def ready(self) -> bool:
        """Triton: the pinned model version answered as ready."""
        return self.status in _READY

    @property
    def metadata_ok(self) -> bool | None:
        """Triton: the served metadata matches the spec (None: not read)."""
        if self.status is HealthStatus.METADATA_MISMATCH:
            return False
        return True if self.ready else None

    @property
    def served_digest_verified(self) -> bool | None:
        """Triton: True when the served digest is the expected one, False when it differs
        (or is missing and required), None when not checked or not published."""
        if self.status is HealthStatus.SERVED:
            return True
        return False if self.status is HealthStatus.SERVED_DIGEST_MISMATCH else None


@dataclass(frozen=True)
class ReplicaHealth(_TritonVerdict):
    """The health of one replica of a Triton deployment: its masked URL (``endpoint``),
    the status its checks found (``served``, ``unverified``, ``unavailable``,
    ``metadata_mismatch`` or ``served_digest_mismatch``), the message of its problem,
    whether it answered as ``live``, the ``served_digest`` it publishes, and how the
    client's tensors travel to it (``shared_memory``: ``off``, or the mode and what became
    of it, e.g. ``auto, in use``; None: not known)."""

    endpoint: str
    status: HealthStatus
    error: str | None = None
    error_type: str | None = None
    live: bool = False
    served_digest: str | None = None
    shared_memory: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "status": self.status.value,
            "ok": self.ok,
            "live": self.live,
            "ready": self.ready,
            "metadata_ok": self.metadata_ok,
            "served_digest": self.served_digest,
            "served_digest_verified": self.served_digest_verified,
            "error": self.error,
            "error_type": self.error_type,
            "shared_memory": self.shared_memory,
        }


def worst_replica(replicas: Sequence[ReplicaHealth]) -> ReplicaHealth:
    """The replica whose status stands for the deployment: the first of the worst status
    (:data:`_WORST_FIRST`)."""
    rank = {s: i for i, s in enumerate(_WORST_FIRST)}
    return min(replicas, key=lambda r: rank.get(r.status, -1))


@dataclass(frozen=True)
class HealthReport(_TritonVerdict):
    """The health of one spec.

    ``error`` is the message of the problem (credentials masked), ``error_type`` the class
    name of the :class:`~dp_models._errors.DPModelsError` that says it (for the JSON's
    readers; nothing here maps it back to a status). Triton reports carry the model,
    the masked ``endpoint`` (None: not configured), whether the server answered as ``live``
    and the ``served_digest`` it publishes; in-process reports whether the model is
    ``loaded``. ``ready``, ``metadata_ok``, ``served_digest_verified``, ``absent`` and
    ``artifacts_ok`` follow from the status.

    A Triton report has one :class:`ReplicaHealth` per replica checked (``replicas``; one
    for an endpoint with one URL). With several, the report's status, ``error`` and
    ``served_digest`` are those of the worst replica (other weights, then other metadata,
    then unavailable, then unverified), ``live`` says whether every replica answered as
    live, and the report is ok only when every replica is.
    """

    spec: str
    runtime: Runtime
    status: HealthStatus
    error: str | None = None
    error_type: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    endpoint: str | None = None
    live: bool = False
    served_digest: str | None = None
    loaded: bool = False
    replicas: tuple[ReplicaHealth, ...] = ()

    @property
    def absent(self) -> bool:
        return self.status is HealthStatus.ABSENT

    @property
    def artifacts_ok(self) -> bool:
        """In process: every artifact present and verified."""
        return self.status is HealthStatus.OK

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data: the one place it is serialised."""
        data: dict[str, Any] = {
            "spec": self.spec,
            "runtime": self.runtime,
            "status": self.status.value,
            "ok": self.ok,
        }
        if self.runtime == "triton":
            data.update(
                model_name=self.model_name,
                model_version=self.model_version,
                endpoint=self.endpoint,
                live=self.live,
                ready=self.ready,
                metadata_ok=self.metadata_ok,
                served_digest=self.served_digest,
                served_digest_verified=self.served_digest_verified,
                replicas=[r.as_dict() for r in self.replicas],
            )
        else:
            data.update(absent=self.absent, loaded=self.loaded, artifacts_ok=self.artifacts_ok)
        data.update(error=self.error, error_type=self.error_type)
        return data
