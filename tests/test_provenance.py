"""Provenance: signatures that follow exactly what changes outputs, stamps in files,
and `dp-models verify-artifact`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dp_models import Catalog, ModelManager, ProvenanceError
from dp_models.cli import main
from dp_models.lock import Lock, LockEntry
from dp_models.provenance import (
    NPZ_KEY,
    check_stamps,
    load_npz,
    read_stamps,
    save_npz,
    write_json,
)

from .conftest import make_file, sha256
from .test_manager import EchoLoader

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
EXAMPLE_ROOT = REPO / "MODELS_ROOT.example"

BASE = f"""
name: net
version: "1"
family: test
role: test
users: [VisualProcessor/test]
runtime: inprocess
engine: torch
loader: {EchoLoader.name}
loader_args: {{layers: 2}}
preprocess: imagenet_224
allow_half_on_cpu: true
artifacts:
  - {{path: net/w.pt, format: pt}}
"""


def build(tmp: Path, *, weights: bytes = b"w1", spec: str = BASE, name: str = "x") -> ModelManager:
    """A catalog + lock + root under ``tmp/name`` for one spec."""
    catalog, root = tmp / name / "catalog", tmp / name / "root"
    make_file(catalog / "visual" / "net.yaml", spec.encode())
    make_file(root / "net" / "w.pt", weights)
    Lock(
        catalog / "catalog.lock.json",
        {"net/w.pt": LockEntry("file", sha256(weights), len(weights))},
    ).write()
    return ModelManager(models_root=root, catalog=catalog)


def signature(mm: ModelManager, **kw: str) -> str:
    return mm.get("net", **kw).model_signature


def test_signature_is_stable_across_machines_and_paths(tmp_path: Path) -> None:
    a, b = build(tmp_path, name="a"), build(tmp_path, name="b")
    assert a.root != b.root
    assert signature(a) == signature(b)
    assert a.stamp({}) == b.stamp({})


def test_signature_ignores_the_device(tmp_path: Path) -> None:
    mm = build(tmp_path)
    assert signature(mm, device="cpu") == signature(mm, device="auto")


@pytest.mark.parametrize(
    ("change", "kwargs"),
    [
        ({"weights": b"w2"}, {}),
        ({"spec": BASE.replace("layers: 2", "layers: 3")}, {}),
        ({"spec": BASE.replace("imagenet_224", "places365_224")}, {}),
        ({"spec": BASE.replace('version: "1"', 'version: "2"')}, {}),
        ({}, {"precision": "fp16"}),
    ],
    ids=["weights", "loader_args", "preprocess", "version", "precision"],
)
def test_signature_changes_with_what_changes_outputs(
    tmp_path: Path, change: dict[str, object], kwargs: dict[str, str]
) -> None:
    base = signature(build(tmp_path, name="base"))
    other = build(tmp_path, name="other", **change)  # type: ignore[arg-type]
    assert signature(other, **kwargs) != base


def test_weights_digest_changes_only_with_weights(tmp_path: Path) -> None:
    base = build(tmp_path, name="base").get("net").weights_digest
    assert (
        build(tmp_path, name="args", spec=BASE.replace("layers: 2", "layers: 5"))
        .get("net")
        .weights_digest
        == base
    )
    assert build(tmp_path, name="w", weights=b"w2").get("net").weights_digest == sha256(b"w2")


def test_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    mm = build(tmp_path)
    mm.get("net")
    stamps = mm.stamp({"video_id": "v"})
    path = save_npz(tmp_path / "out.npz", {"emb": np.arange(6.0).reshape(2, 3)}, stamps)
    arrays, read = load_npz(path)
    assert np.array_equal(arrays["emb"], np.arange(6.0).reshape(2, 3))
    assert read == json.loads(json.dumps(stamps))
    with np.load(path, allow_pickle=False) as raw:
        assert raw[NPZ_KEY].dtype.kind == "U"
    assert read_stamps(path)["model_signature"] == stamps["model_signature"]


def test_npz_rejects_reserved_names_and_unstamped_meta(tmp_path: Path) -> None:
    with pytest.raises(ProvenanceError, match=r"reserved"):
        save_npz(tmp_path / "a.npz", {NPZ_KEY: np.zeros(1)}, {})
    with pytest.raises(ProvenanceError, match=r"stamps lack models_used"):
        save_npz(tmp_path / "a.npz", {"x": np.zeros(1)}, {"video_id": "v"})
    assert list(tmp_path.iterdir()) == []


def test_json_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    write_json(target, {"a": 1})
    with pytest.raises(ValueError, match=r"Out of range float values"):
        write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]  # no temp file left


def test_read_stamps_of_an_unstamped_file(tmp_path: Path) -> None:
    (tmp_path / "plain.json").write_text('{"a": 1}')
    with pytest.raises(ProvenanceError, match=r"carries no dp_models stamps"):
        read_stamps(tmp_path / "plain.json")
    np.savez(tmp_path / "plain.npz", x=np.zeros(1))
    with pytest.raises(ProvenanceError, match=r"carries no dp_models stamps"):
        read_stamps(tmp_path / "plain.npz")


def stamped_example(tmp_path: Path) -> tuple[Path, Path, Path]:
    catalog = tmp_path / "catalog"
    root = tmp_path / "root"
    shutil.copytree(EXAMPLE_CATALOG, catalog)
    shutil.copytree(EXAMPLE_ROOT, root)
    mm = ModelManager(models_root=root, catalog=catalog)
    mm.get("tiny_color_classifier")
    out = write_json(tmp_path / "out.json", mm.stamp({"video_id": "v"}))
    return catalog, root, out


def test_check_stamps_unchanged(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    (check,) = check_stamps(read_stamps(out), Catalog.load(catalog))
    assert (check.name, check.status, check.ok) == ("tiny_color_classifier", "unchanged", True)


def test_check_stamps_says_which_model_changed_and_how(tmp_path: Path) -> None:
    catalog, root, out = stamped_example(tmp_path)
    labels = root / "demo/tiny_color_classifier/labels.txt"
    labels.write_text("rouge\nvert\nbleu\n")
    assert main(["lock", "--catalog", str(catalog), "--root", str(root)]) == 0
    (check,) = check_stamps(read_stamps(out), Catalog.load(catalog))
    assert check.status == "changed" and not check.ok
    assert any(c.startswith("artifacts: ") for c in check.changes)
    assert any(c.startswith("weights_digest: ") for c in check.changes)


def test_check_stamps_removed_and_absent(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    stamps = read_stamps(out)
    stamps["models_used"].append({"name": "gone", "status": "ok", "precision": "fp32"})
    stamps["models_used"].append({"name": "opt", "status": "absent"})
    checks = {c.name: c for c in check_stamps(stamps, Catalog.load(catalog))}
    assert checks["gone"].status == "removed" and not checks["gone"].ok
    assert checks["opt"].status == "absent" and checks["opt"].ok


def test_verify_artifact_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog, _, out = stamped_example(tmp_path)
    assert main(["verify-artifact", str(out), "--catalog", str(catalog)]) == 0
    assert "tiny_color_classifier            unchanged" in capsys.readouterr().out
    spec = catalog / "demo" / "tiny_color_classifier.yaml"
    spec.write_text(spec.read_text().replace('version: "1.0"', 'version: "1.1"'))
    assert main(["verify-artifact", str(out), "--catalog", str(catalog), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    (model,) = report["models"]
    assert model["status"] == "changed"
    assert model["changes"] == ["version: '1.0' then, '1.1' now"]
    assert main(["verify-artifact", str(tmp_path / "missing.json"), "--catalog", str(catalog)]) == 1
    assert "cannot read stamps" in capsys.readouterr().err
