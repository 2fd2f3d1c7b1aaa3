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
