"""Derived artifacts (dp_models._export, ``dp-models export onnx``): a Triton spec's ONNX
model exported from the verified weights of the in-process spec it is ``derived_from``,
on fake roots: written deterministically, pinned with its lineage, named in the Triton
spec's ``models_used`` entry and signature; a lineage that no longer holds, an export
that does not fit the spec, and a pair that is not one, refused."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dp_models import (
    Catalog,
    CatalogError,
    DerivedExportError,
    LineageError,
    check_stamps,
)
from dp_models._export import export_onnx
from dp_models._lock import Lock
from dp_models.testing import fake_catalog_dir, fake_models_root

from .fakeroots import catalog_problem, clip_embeds_in, edit_spec, manager, repin, spec_file

PLACES, PLACES_TRITON = "places365_resnet50", "places365_resnet50_224_triton"
CLIP, CLIP_TRITON = "clip_vit_b32", "clip_vit_b32_triton"
ONNX = "triton/places365_resnet50_224/model.onnx"


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logging.disable(logging.WARNING)  # open_clip's notice that it initialised randomly
    try:
        names = [PLACES, PLACES_TRITON, CLIP, CLIP_TRITON]
        return fake_models_root(tmp_path_factory.mktemp("export") / "root", names=names)
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture
def root(shared_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shared_root, tmp_path / "root"))


def _lock(root: Path) -> Lock:
    return Catalog.load(fake_catalog_dir(root)).lock


def test_an_export_is_written_pinned_with_its_lineage_and_deterministic(
    root: Path, tmp_path: Path
) -> None:
    mm = manager(root, tmp_path)
    source = mm.get(PLACES, device="cpu")
    result = export_onnx(mm, PLACES, PLACES_TRITON)
    assert result.path == root / ONNX and result.path.is_file()
    entry = _lock(root).artifacts[ONNX]
    assert (entry.sha256, entry.size) == (result.sha256, result.size)
    assert entry.derived is not None
    assert (entry.derived.source, entry.derived.weights_digest) == (PLACES, source.weights_digest)
    assert "opset 17" in entry.derived.exporter
    assert entry.derived.frameworks["torch"] == torch.__version__.split("+")[0]
    first = result.path.read_bytes()
    again = export_onnx(manager(root, tmp_path / "again"), PLACES, PLACES_TRITON)
    assert again.sha256 == result.sha256 and result.path.read_bytes() == first


def test_the_export_computes_what_the_in_process_model_computes(root: Path, tmp_path: Path) -> None:
    import onnxruntime

    mm = manager(root, tmp_path)
    export_onnx(mm, PLACES, PLACES_TRITON)
    model = mm.load(PLACES, device="cpu")
    frames = np.random.default_rng(0).random((3, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(frames)).numpy()
    session = onnxruntime.InferenceSession(str(root / ONNX), providers=["CPUExecutionProvider"])
    [logits] = session.run(["logits"], {"image": frames})
    assert logits.shape == (3, 365)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert np.array_equal(top5, np.argsort(-expected, axis=1)[:, :5])


def test_the_triton_spec_names_the_source_weights_in_its_stamps(root: Path, tmp_path: Path) -> None:
    before = manager(root, tmp_path / "before").get(PLACES_TRITON)
    assert before.derived_from == {"name": PLACES, "weights_digest": None}
    mm = manager(root, tmp_path)
    source = mm.get(PLACES, device="cpu")
    export_onnx(mm, PLACES, PLACES_TRITON)
    mm = manager(root, tmp_path / "after")
    handle = mm.get(PLACES_TRITON)
    assert handle.derived_from == {"name": PLACES, "weights_digest": source.weights_digest}
    assert handle.model_signature != before.model_signature
    stamps = mm.stamp({"scenes": []})
    labels, entry = stamps["models_used"]  # the labels it requires, then the model
    assert (labels["name"], entry["name"]) == ("places365_categories", PLACES_TRITON)
    assert entry["derived_from"] == {"name": PLACES, "weights_digest": source.weights_digest}
    report = check_stamps(stamps, mm.catalog)
    assert report.ok, report
    # a stamp that names other source weights is caught
    entry["derived_from"] = {"name": PLACES, "weights_digest": "0" * 64}
    assert not check_stamps(stamps, mm.catalog).ok


def test_a_lineage_that_no_longer_holds_is_refused_at_get(root: Path, tmp_path: Path) -> None:
    export_onnx(manager(root, tmp_path), PLACES, PLACES_TRITON)
    weights = next(p for p in (root / "visual/places365").iterdir() if ".pth" in p.name)
    recorded = _lock(root).artifacts[ONNX].derived
    state = torch.load(weights, weights_only=True)
    state["state_dict"]["module.classifier.3.bias"] = state["state_dict"][
        "module.classifier.3.bias"
    ].add(1.0)
    torch.save(state, weights)
    repin(root)  # the site pins the new source weights; the export stays as it was
    assert _lock(root).artifacts[ONNX].derived == recorded  # relocking keeps the lineage
    with pytest.raises(LineageError, match="Export it again") as info:
        manager(root, tmp_path / "after").get(PLACES_TRITON)
    assert recorded is not None
    assert (info.value.source, info.value.recorded) == (PLACES, recorded.weights_digest)
    assert info.value.current != recorded.weights_digest


def test_an_export_that_does_not_fit_the_spec_is_refused_and_nothing_is_written(
    root: Path, tmp_path: Path
) -> None:
    """The fake CLIP embeds in 16 dimensions; the Triton spec declares 512."""
    lock_before = _lock(root).dumps()
    with pytest.raises(DerivedExportError, match="nothing was written") as info:
        export_onnx(manager(root, tmp_path), CLIP, CLIP_TRITON)
    assert any("'embedding'" in d and "512" in d for d in info.value.differences)
    assert not (root / "triton/clip_vit_b32/model.onnx").exists()
    assert _lock(root).dumps() == lock_before


def test_clip_exports_its_normalised_image_tower(root: Path, tmp_path: Path) -> None:
    import onnxruntime

    clip_embeds_in(root)
    mm = manager(root, tmp_path)
    result = export_onnx(mm, CLIP, CLIP_TRITON)
    clip = mm.load(CLIP, device="cpu")
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    expected = clip.image_embeddings(pixels).numpy()
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {"image": pixels.numpy()})
    cosine = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.9999


def _spec_data(root: Path, name: str) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(spec_file(root, name).read_text(encoding="utf-8"))
    return data


def test_a_target_that_does_not_name_the_source_is_refused(root: Path, tmp_path: Path) -> None:
    import yaml

    data = _spec_data(root, PLACES_TRITON)
    del data["derived_from"]
    spec_file(root, PLACES_TRITON).write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    with pytest.raises(DerivedExportError, match="declares no derived_from") as info:
        export_onnx(manager(root, tmp_path), PLACES, PLACES_TRITON)
    assert (info.value.spec, info.value.source) == (PLACES_TRITON, PLACES)
    assert not (root / ONNX).exists()


@pytest.mark.parametrize(
    ("source", "match"),
    [(CLIP_TRITON, "a triton spec"), ("places365_resnet", "names no spec in the catalog")],
)
def test_derived_from_must_name_an_in_process_spec(
    root: Path, tmp_path: Path, source: str, match: str
) -> None:
    edit_spec(root, PLACES_TRITON, derived_from=source)
    with pytest.raises(CatalogError, match=match):
        manager(root, tmp_path)


def test_a_derived_pair_keeps_one_calling_convention(root: Path, tmp_path: Path) -> None:
    """The in-process spec's interface and its twin's triton section name and type their
    tensors alike and shape their outputs alike (input sizes may differ: 336 px twins)."""
    triton = _spec_data(root, PLACES_TRITON)["triton"]
    triton["inputs"][0]["shape"] = [3, 336, 336]
    edit_spec(root, PLACES_TRITON, triton=triton)
    assert manager(root, tmp_path).catalog[PLACES_TRITON].derived_from == PLACES
    triton["outputs"] = [{"name": "scores", "datatype": "FP32", "shape": [365]}]
    edit_spec(root, PLACES_TRITON, triton=triton)
    problem = catalog_problem(root, tmp_path)
    assert problem.field == "derived_from"
    assert "[logits FP32]" in problem.message and "[scores FP32]" in problem.message
    triton["outputs"] = [{"name": "logits", "datatype": "FP32", "shape": [1000]}]
    edit_spec(root, PLACES_TRITON, triton=triton)
    problem = catalog_problem(root, tmp_path)
    assert "output 'logits' has shape [365]" in problem.message and "[1000]" in problem.message


def test_the_command_exports_and_reports_json(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dp_models._cli import main

    argv = ["export", "onnx", PLACES, "--for", PLACES_TRITON, "--root", str(root)]
    argv += ["--catalog", str(fake_catalog_dir(root)), "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["spec"] == PLACES_TRITON and out["pinned"]
    assert out["derived"]["from"] == PLACES
    assert _lock(root).artifacts[ONNX].sha256 == out["sha256"]


def test_the_in_process_model_onnx_runtime_and_a_real_triton_agree(
    root: Path, tmp_path: Path
) -> None:
    """The same frames through the in-process model, through ONNX Runtime in this process
    on the exported file, and through a real tritonserver serving that file: identical
    top-5 for the classifier, cosine >= 0.9999 for the embeddings."""
    import onnxruntime

    from dp_models.testing.triton import TritonServer, write_onnx_repository

    clip_embeds_in(root)
    mm = manager(root, tmp_path)
    for source, target in ((PLACES, PLACES_TRITON), (CLIP, CLIP_TRITON)):
        export_onnx(mm, source, target)
    catalog = Catalog.load(fake_catalog_dir(root))
    write_onnx_repository(catalog, root, tmp_path / "repo", [PLACES_TRITON, CLIP_TRITON])
    frames = np.random.default_rng(3).random((4, 3, 224, 224), dtype=np.float32)
    with TritonServer() as server:
        server.start(tmp_path / "repo")
        mm = manager(root, tmp_path / "served", triton_endpoints={"default": server.url})
        with mm.get(PLACES_TRITON).client() as client:
            served = client.infer({"image": frames})["logits"]
            assert client.served_digest_verified is True
        with mm.get(CLIP_TRITON).client() as client:
            served_embeddings = client.infer({"image": frames})["embedding"]
    places = mm.load(PLACES, device="cpu")
    clip = mm.load(CLIP, device="cpu")
    with torch.no_grad():
        logits = places(torch.from_numpy(frames)).numpy()
    embeddings = clip.image_embeddings(torch.from_numpy(frames)).numpy()
    session = onnxruntime.InferenceSession(str(root / ONNX), providers=["CPUExecutionProvider"])
    [local] = session.run(None, {"image": frames})
    for other in (served, local):
        assert np.array_equal(np.argsort(-other, axis=1)[:, :5], np.argsort(-logits, axis=1)[:, :5])
    cosine = (served_embeddings * embeddings).sum(axis=1) / (
        np.linalg.norm(served_embeddings, axis=1) * np.linalg.norm(embeddings, axis=1)
    )
    assert cosine.min() >= 0.9999


def test_doctor_says_which_lineage_no_longer_holds(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dp_models._cli import main

    export_onnx(manager(root, tmp_path), PLACES, PLACES_TRITON)
    argv = ["doctor", PLACES_TRITON, "--root", str(root), "--json", "--no-triton"]
    argv += ["--catalog", str(fake_catalog_dir(root)), "--cache-dir", str(tmp_path / "c")]
    main(argv)
    [before] = [
        s for s in json.loads(capsys.readouterr().out)["specs"] if s["name"] == PLACES_TRITON
    ]
    assert before["status"] != "lineage_mismatch"
    weights = next(p for p in (root / "visual/places365").iterdir() if ".pth" in p.name)
    state = torch.load(weights, weights_only=True)
    key = "module.classifier.3.bias"
    state["state_dict"][key] = state["state_dict"][key].add(1.0)
    torch.save(state, weights)
    repin(root)
    capsys.readouterr()
    assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    [entry] = [s for s in report["specs"] if s["name"] == PLACES_TRITON]
    assert entry["status"] == "lineage_mismatch" and not entry["ok"]
    assert PLACES in entry["message"] and "Export it again" in entry["message"]
    assert "dp-models export onnx" in entry["fix"]
