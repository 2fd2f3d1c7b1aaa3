"""dp_models.doctor(): the doctor report as an object, for notebooks (its table, its JSON,
its HTML). The verdicts themselves are tested through the command (tests/test_cli.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dp_models import DoctorReport, ModelManager, doctor
from dp_models._settings import ENV_CATALOG, ENV_ROOT

from .conftest import SpecWriter, inprocess_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
EXAMPLE_ROOT = REPO / "MODELS_ROOT.example"

SERVED = """
name: served
version: "1"
family: test
role: test
users: [VisualProcessor/test]
runtime: triton
engine: onnx
triton:
  model_name: served
  model_version: 1
  platform: onnxruntime_onnx
  endpoint: main
  max_batch_size: 1
  inputs: [{name: x, datatype: FP32, shape: [-1]}]
  outputs: [{name: y, datatype: FP32, shape: [2]}]
"""


def test_doctor_of_a_manager(tmp_path: Path) -> None:
    mm = ModelManager(EXAMPLE_ROOT, EXAMPLE_CATALOG, cache_dir=tmp_path / "cache")
    report = doctor(mm)
    assert isinstance(report, DoctorReport) and report.ok and report.failing == ()
    assert repr(report) == "<DoctorReport ok: 1 ok>"
    assert str(report).splitlines()[1].split()[:3] == ["tiny_color_classifier", "inprocess", "ok"]
    as_json = report.to_json(catalog=str(EXAMPLE_CATALOG))
    assert as_json["ok"] is True and as_json["roots"] == [str(EXAMPLE_ROOT.resolve())]
    assert as_json["specs"][0]["status"] == "ok"
    shown = report._repr_html_()
    assert "Doctor: ok" in shown and "<code>tiny_color_classifier</code>" in shown


def test_a_failing_report_says_what_and_how_to_fix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(EXAMPLE_ROOT, root)
    (root / "demo" / "tiny_color_classifier" / "model.onnx").unlink()
    report = doctor(ModelManager(root, EXAMPLE_CATALOG, cache_dir=tmp_path / "cache"))
    assert not report.ok and [h.spec.name for h in report.failing] == ["tiny_color_classifier"]
    assert repr(report) == "<DoctorReport FAILING: 1 missing>"
    shown = report._repr_html_()
    assert "<strong>MISSING</strong>" in shown and "1 required spec(s) not ok" in shown
    assert "dp-models pull" in shown  # the fix


def test_doctor_without_a_manager_reads_the_environment_and_switches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_ROOT, str(EXAMPLE_ROOT))
    monkeypatch.setenv(ENV_CATALOG, str(EXAMPLE_CATALOG))
    before = dict(os.environ)
    assert doctor(names=["tiny_color_classifier"]).ok
    assert dict(os.environ) == before


def test_the_html_masks_credentials_and_escapes(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    write_spec("served", SERVED)
    write_spec("local", inprocess_spec("local", "- {path: 'x/<b>.pt', format: pt}"))
    mm = ModelManager(
        models_root,
        catalog_dir,
        cache_dir=tmp_path / "cache",
        triton_endpoints={"main": "http://user:s3cret@127.0.0.1:9"},  # nothing listens there
    )
    remote = doctor(mm, ["served"], triton=False)
    assert remote.ok and "not checked (--no-triton)" in remote._repr_html_()
    local = doctor(mm, ["local"])._repr_html_()
    assert "<b>" not in local and "x/&lt;b&gt;.pt" in local
    checked = doctor(mm, ["served"], ready_timeout_s=0.0)
    assert not checked.ok
    shown = checked._repr_html_() + str(checked) + repr(checked)
    assert "s3cret" not in shown and "user:" not in shown
    assert "http://***@127.0.0.1:9" in shown


SERVED_FILES = SERVED.replace("\nname: served\n", "\nname: served_files\n").replace(
    "triton:\n", "artifacts:\n  - {path: triton/served/model.onnx, format: onnx}\ntriton:\n"
)


def test_an_unavailable_triton_spec_says_its_endpoint_is_down_not_that_files_are_missing(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    """Its artifacts are not here (needed only to export): the message is the endpoint's
    check, and the fix says to start the server or point the endpoint's variable at one."""
    write_spec("served_files", SERVED_FILES)
    mm = ModelManager(
        models_root,
        catalog_dir,
        cache_dir=tmp_path / "cache",
        triton_endpoints={"main": "http://127.0.0.1:9"},  # nothing listens there
    )
    report = doctor(mm, ["served_files"], ready_timeout_s=0.0)
    (h,) = report.failing
    assert h.status == "unavailable"
    assert h.message.startswith("Triton model 'served' version 1 (spec 'served_files')")
    assert "not ready" in h.message and "required artifact" not in h.message
    assert "start the Triton server at http://127.0.0.1:9" in h.fix
    assert "$DP_MODELS_TRITON_URL_MAIN" in h.fix and "provision" not in h.fix
    table = str(report)
    assert "required artifact" not in table and f"- {h.message}\n  fix: {h.fix}" in table


@pytest.mark.parametrize(
    ("expected", "says"),
    [
        (None, "pin the digest the deployment must serve: `dp-models lock --root ROOT"),
        ("ab" * 32, "deploy the pinned weights (abababababab...): `dp-models triton export`"),
    ],
)
def test_a_served_digest_mismatch_says_what_to_deploy_or_pin(
    expected: str | None, says: str
) -> None:
    from dp_models import Catalog, HealthReport, HealthStatus
    from dp_models._doctor import _verdict
    from dp_models._verify import ArtifactReport

    spec = Catalog.load()["whisper_small_triton"]
    served = HealthReport(
        "whisper_small_triton",
        "triton",
        HealthStatus.SERVED_DIGEST_MISMATCH,
        error="Triton model 'whisper_small' version 1 ... serves weights with digest cd..",
        endpoint="http://127.0.0.1:8000",
    )
    missing: tuple[ArtifactReport, ...] = ()  # not provisioned here: nothing to report
    h = _verdict(spec, missing, served, nothing_here=True, expected_digest=expected)
    assert h.status == "served_digest_mismatch" and h.failing
    assert h.message == served.error
    assert h.fix.startswith(says) and "provision" not in h.fix
