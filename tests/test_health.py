"""The one health report (dp_models._health): statuses, what follows from them, and the one
JSON form that ModelManager.check and dp-models doctor --json show."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from dp_models._health import HealthReport, HealthStatus, ReplicaHealth, worst_replica
from dp_models._verify import Status

NOT_FAILING = {"ok", "absent", "remote", "served", "unverified"}


def test_every_artifact_status_is_a_health_status_and_fails() -> None:
    for status in get_args(Status):
        assert HealthStatus(status).failing is (status != "ok")


@pytest.mark.parametrize("status", list(HealthStatus))
def test_failing_statuses(status: HealthStatus) -> None:
    assert status.failing is (status.value not in NOT_FAILING)
    assert str(status) == status.value and f"{status}" == status.value


TRITON_KEYS = [
    "spec",
    "runtime",
    "status",
    "ok",
    "model_name",
    "model_version",
    "endpoint",
    "live",
    "ready",
    "metadata_ok",
    "served_digest",
    "served_digest_verified",
    "replicas",
    "error",
    "error_type",
]


@pytest.mark.parametrize(
    ("status", "ready", "metadata_ok", "verified"),
    [
        (HealthStatus.SERVED, True, True, True),
        (HealthStatus.UNVERIFIED, True, True, None),
        (HealthStatus.SERVED_DIGEST_MISMATCH, True, True, False),
        (HealthStatus.METADATA_MISMATCH, True, False, None),
        (HealthStatus.UNAVAILABLE, False, None, None),
        (HealthStatus.UNCONFIGURED, False, None, None),
    ],
)
def test_a_triton_report_as_json(
    status: HealthStatus, ready: bool, metadata_ok: bool | None, verified: bool | None
) -> None:
    report = HealthReport(
        "midas", "triton", status, model_name="midas", model_version=1, endpoint="http://h:1"
    )
    data = report.as_dict()
    assert list(data) == TRITON_KEYS
    assert data["status"] == status.value and data["ok"] is (not status.failing)
    assert (data["ready"], data["metadata_ok"], data["served_digest_verified"]) == (
        ready,
        metadata_ok,
        verified,
    )
    assert json.loads(json.dumps(data)) == data


def test_a_report_with_replicas_as_json() -> None:
    good = ReplicaHealth("http://a:1", HealthStatus.SERVED, live=True, served_digest="d")
    bad = ReplicaHealth(
        "http://b:1",
        HealthStatus.SERVED_DIGEST_MISMATCH,
        error="other weights",
        error_type="TritonDigestMismatchError",
        live=True,
        served_digest="e",
    )
    down = ReplicaHealth("http://c:1", HealthStatus.UNAVAILABLE, error="down")
    assert (good.ok, bad.ok, down.ok) == (True, False, False)
    assert (bad.ready, bad.metadata_ok, bad.served_digest_verified) == (True, True, False)
    assert (down.ready, down.metadata_ok, down.served_digest_verified) == (False, None, None)
    assert worst_replica([good, down, bad]) is bad  # other weights say more than down
    assert worst_replica([good, down]) is down
    unverified = ReplicaHealth("http://d:1", HealthStatus.UNVERIFIED, live=True)
    assert worst_replica([good, unverified]) is unverified
    report = HealthReport("midas", "triton", bad.status, replicas=(good, bad))
    data = report.as_dict()
    assert [r["endpoint"] for r in data["replicas"]] == ["http://a:1", "http://b:1"]
    assert data["replicas"][1] == {
        "endpoint": "http://b:1",
        "status": "served_digest_mismatch",
        "ok": False,
        "live": True,
        "ready": True,
        "metadata_ok": True,
        "served_digest": "e",
        "served_digest_verified": False,
        "error": "other weights",
        "error_type": "TritonDigestMismatchError",
        "shared_memory": None,
    }
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    ("status", "ok", "absent", "artifacts_ok"),
    [
        (HealthStatus.OK, True, False, True),
        (HealthStatus.ABSENT, True, True, False),
        (HealthStatus.DIGEST_MISMATCH, False, False, False),
        (HealthStatus.MISSING, False, False, False),
    ],
)
def test_an_inprocess_report_as_json(
    status: HealthStatus, ok: bool, absent: bool, artifacts_ok: bool
) -> None:
    data = HealthReport("emonet", "inprocess", status, loaded=True).as_dict()
    assert data == {
        "spec": "emonet",
        "runtime": "inprocess",
        "status": status.value,
        "ok": ok,
        "absent": absent,
        "loaded": True,
        "artifacts_ok": artifacts_ok,
        "error": None,
        "error_type": None,
    }
