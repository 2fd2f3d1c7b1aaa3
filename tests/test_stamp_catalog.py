"""dp_models.testing.assert_stamps_verify: a file a processor wrote in a test, checked
against the catalog and lock of the (fake-root) manager the test gave it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from dp_models import ModelManager, ProvenanceError, read_stamps, save_npz, write_json
from dp_models._provenance import CATALOG_KEY
from dp_models.testing import assert_stamps_verify, fake_catalog_dir, fake_models_root

NAMES = ["places365_resnet50"]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("stamp-catalog") / "root", NAMES)


def manager(root: Path, catalog: Path | None = None) -> ModelManager:
    mm = ModelManager(models_root=root, catalog=catalog or fake_catalog_dir(root))
    for name in NAMES:
        mm.get(name)
    return mm


def test_a_file_written_with_the_manager_verifies(fake_root: Path, tmp_path: Path) -> None:
    mm = manager(fake_root)
    out = write_json(tmp_path / "out.json", mm.stamp({"video_id": "v"}))
    report = assert_stamps_verify(out, mm)
    assert report.ok and [c.status for c in report] == ["unchanged", "unchanged"]
    assert report.catalog is not None and report.catalog.same
    assert report.catalog.stamped.path == str(fake_catalog_dir(fake_root))
    npz = save_npz(tmp_path / "out.npz", {"emb": np.ones(2)}, mm.stamp({}))
    assert assert_stamps_verify(npz, mm).ok
    # the plain verify-artifact (no --catalog) would check against the packaged catalog:
    # the stamp says which one it was made with
    assert read_stamps(out)[CATALOG_KEY]["path"] == str(fake_catalog_dir(fake_root))


def test_a_tampered_file_fails_naming_the_field(fake_root: Path, tmp_path: Path) -> None:
    mm = manager(fake_root)
    data = mm.stamp({"video_id": "v"})
    data["models_used"][1]["version"] = "0.9"
    out = write_json(tmp_path / "out.json", data)
    with pytest.raises(AssertionError) as info:
        assert_stamps_verify(out, mm)
    text = str(info.value)
    assert "the stamps do not verify against the manager's catalog" in text
    assert "models_used[1].version: stamp says 0.9" in text
    assert "places365_resnet50" in text and "edited" in text


def test_a_file_stamped_by_another_manager_fails(fake_root: Path, tmp_path: Path) -> None:
    """A processor that makes its own manager on another catalog, instead of the one the
    test gave it: its models may verify, its catalog is not the test's."""
    other = Path(shutil.copytree(fake_catalog_dir(fake_root), tmp_path / "other"))
    (spec,) = other.rglob("places365_resnet50.yaml")
    data = yaml.safe_load(spec.read_text())
    data["description"] = "Changed: no checked field, another catalog all the same."
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    out = write_json(tmp_path / "out.json", manager(fake_root, other).stamp({}))
    mm = manager(fake_root)
    with pytest.raises(AssertionError, match=r"stamped by a manager on another catalog") as info:
        assert_stamps_verify(out, mm)
    assert f"stamped against another catalog ({other}, digest" in str(info.value)
    assert f"pass --catalog {other}" in str(info.value)
    assert "does the processor make its own ModelManager" in str(info.value)
    # the same catalog in another directory is the same catalog
    same = Path(shutil.copytree(fake_catalog_dir(fake_root), tmp_path / "same"))
    out = write_json(tmp_path / "same.json", manager(fake_root, same).stamp({}))
    assert assert_stamps_verify(out, mm).ok


def test_a_file_without_stamps_fails(fake_root: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"video_id": "v"}))
    with pytest.raises(AssertionError, match=r"carries no dp_models stamps") as info:
        assert_stamps_verify(plain, manager(fake_root))
    assert isinstance(info.value.__cause__, ProvenanceError)
