"""ModelManager: resolution, verification at get(), optional specs, models_used, stamps."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from dp_models import (
    ArtifactMissingError,
    DigestMismatchError,
    ModelManager,
    ModelsRootError,
    ProvenanceError,
    SpecNotFoundError,
    UnpinnedArtifactError,
)
from dp_models._settings import ENV_CATALOG, ENV_ROOT, ENV_TRITON_URL
from dp_models.loaders import LoadContext, Loader, NoArgs

from .conftest import SpecWriter, make_file, sha256

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
EXAMPLE_ROOT = REPO / "MODELS_ROOT.example"


class EchoLoader(Loader[NoArgs]):
    """Returns what it was given; no framework."""

    name = "echo_manager_tests"
    framework = "pyyaml"
    extra = "test"

    def load(self, ctx: LoadContext) -> Any:
        return {
            "paths": dict(ctx.paths),
            "content": {key: path.read_bytes() for key, path in ctx.paths.items()},
            "device": ctx.device,
            "precision": ctx.precision,
        }


#: The loaders the tests' managers are given, beside the built-in ones.
LOADERS = {EchoLoader.name: EchoLoader}


def spec_yaml(name: str, files: dict[str, bytes], extra: str = "") -> str:
    arts = "\n".join(
        f"  - {{path: {path}, format: pt, sha256: {sha256(data)}}}" for path, data in files.items()
    )
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        f"runtime: inprocess\nengine: torch\nloader: {EchoLoader.name}\n"
        f"artifacts:\n{arts}\n{extra}"
    )


TRITON = """
name: {name}
version: "2"
family: test
role: test
users: [AudioProcessor/test]
runtime: triton
engine: onnx
{requires}
triton:
  model_name: {name}
  model_version: 3
  platform: onnxruntime_onnx
  endpoint: {endpoint}
  max_batch_size: 4
  weights_digest: {digest}
  inputs: [{{name: x, datatype: FP32, shape: [-1]}}]
  outputs: [{{name: y, datatype: FP32, shape: [2]}}]
"""


@pytest.fixture
def setup(catalog_dir: Path, models_root: Path, write_spec: SpecWriter) -> ModelManager:
    files = {"tok/tokenizer.json": b'{"v": 1}'}
    write_spec("tokenizer", spec_yaml("tokenizer", files), area="text")
    write_spec("encoder", spec_yaml("encoder", {"enc/w.pt": b"encoder"}, "requires: [tokenizer]\n"))
    write_spec("extra", spec_yaml("extra", {"extra/w.pt": b"extra"}, "optional: true\n"))
    write_spec(
        "asr_triton",
        TRITON.format(
            name="asr_triton", requires="requires: [tokenizer]", endpoint="asr", digest="d" * 64
        ),
        area="audio",
    )
    make_file(models_root / "tok/tokenizer.json", b'{"v": 1}')
    make_file(models_root / "enc/w.pt", b"encoder")
    return ModelManager(
        models_root=models_root,
        catalog=catalog_dir,
        triton_endpoints={"asr": "http://user:secret@127.0.0.1:8000"},
        loaders=LOADERS,
    )


def test_get_resolves_and_verifies_with_requirements(
    setup: ModelManager, models_root: Path
) -> None:
    handle = setup.get("encoder")
    assert handle.paths == {"enc/w.pt": models_root / "enc/w.pt"}
    assert handle.path == models_root / "enc/w.pt"
    assert handle.weights_digest == sha256(b"encoder")
    assert [r.name for r in handle.requires] == ["tokenizer"]
    assert handle.device == "cpu" and handle.precision == "fp32"
    assert [e["name"] for e in setup.models_used()] == ["tokenizer", "encoder"]
    loaded = handle.load()
    # the loader is given a path to the verified, open file, named like the artifact
    assert [(k, p.name) for k, p in loaded["paths"].items()] == [("enc/w.pt", "w.pt")]
    assert loaded["content"] == {"enc/w.pt": b"encoder"}


def test_get_fails_on_a_required_spec_problem(setup: ModelManager, models_root: Path) -> None:
    (models_root / "tok/tokenizer.json").write_bytes(b'{"v": 2}')
    with pytest.raises(DigestMismatchError) as exc:
        setup.get("encoder")
    assert exc.value.spec == "tokenizer"
    assert setup.models_used() == []


def test_unknown_name_suggests(setup: ModelManager) -> None:
    with pytest.raises(SpecNotFoundError, match=r"did you mean 'encoder'"):
        setup.get("encodr")


def test_optional_absent_is_recorded_not_hidden(
    setup: ModelManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dp_models"):
        assert setup.get_optional("extra") is None
    assert "optional model 'extra' is not provisioned" in caplog.text
    (entry,) = setup.models_used()
    assert entry["name"] == "extra" and entry["status"] == "absent" and entry["optional"] is True
    assert "extra/w.pt" in entry["reason"]
    with pytest.raises(ArtifactMissingError):
        setup.get("extra")  # get() never hides it


def test_optional_present_is_returned(setup: ModelManager, models_root: Path) -> None:
    make_file(models_root / "extra/w.pt", b"extra")
    handle = setup.get_optional("extra")
    assert handle is not None and handle.weights_digest == sha256(b"extra")


def test_get_optional_on_a_required_spec_raises(setup: ModelManager, models_root: Path) -> None:
    (models_root / "enc/w.pt").unlink()
    with pytest.raises(ArtifactMissingError):
        setup.get_optional("encoder")


def test_optional_but_corrupt_raises(setup: ModelManager, models_root: Path) -> None:
    make_file(models_root / "extra/w.pt", b"other")
    with pytest.raises(DigestMismatchError):
        setup.get_optional("extra")


def test_unpinned_artifact_fails_get(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    write_spec("loose", spec_yaml("loose", {"l.pt": b"l"}).replace(f", sha256: {sha256(b'l')}", ""))
    make_file(models_root / "l.pt", b"l")
    mm = ModelManager(models_root=models_root, catalog=catalog_dir, loaders=LOADERS)
    with pytest.raises(UnpinnedArtifactError, match=r"dp-models lock --root"):
        mm.get("loose")


def test_triton_spec_needs_no_local_artifacts(setup: ModelManager) -> None:
    handle = setup.get("asr_triton")
    assert handle.device == "triton" and handle.paths == {}
    assert handle.weights_digest == "d" * 64
    entry = handle.models_used_entry
    assert entry["triton"] == {
        "model_name": "asr_triton",
        "model_version": 3,
        "endpoint_name": "asr",
        "endpoint": "http://***@127.0.0.1:8000",
    }
    assert "secret" not in repr(setup.models_used())
    assert [e["name"] for e in setup.models_used()] == ["tokenizer", "asr_triton"]
    with pytest.raises(RuntimeError, match=r"is served by Triton \(runtime: triton\)"):
        handle.load()


def test_models_used_lists_each_model_once_in_order(setup: ModelManager) -> None:
    setup.get("encoder")
    setup.get("tokenizer")
    setup.get("encoder")
    assert [e["name"] for e in setup.models_used()] == ["tokenizer", "encoder"]


def test_entry_fields(setup: ModelManager) -> None:
    entry = setup.get("encoder").models_used_entry
    assert entry == {
        "name": "encoder",
        "version": "1",
        "status": "ok",
        "optional": False,
        "runtime": "inprocess",
        "engine": "torch",
        "loader": EchoLoader.name,
        "loader_args": {},
        "preprocess": None,
        "precision": "fp32",
        "device": "cpu",
        "weights_digest": sha256(b"encoder"),
        "artifacts": [
            {
                "path": "enc/w.pt",
                "sha256": sha256(b"encoder"),
                "home": "root",
                "location": str(setup.root),
            }
        ],
        "model_signature": entry["model_signature"],
        "framework": {"name": "pyyaml", "version": entry["framework"]["version"]},
        "requires": ["tokenizer"],
        "model_info": None,
        "triton": None,
    }
    assert len(entry["model_signature"]) == 64 and entry["framework"]["version"]


def test_stamp_adds_keys_and_refuses_to_overwrite(setup: ModelManager) -> None:
    setup.get("encoder")
    meta = {"video_id": "abc"}
    stamped = setup.stamp(meta)
    assert meta == {"video_id": "abc"}  # a copy
    assert set(stamped) == {
        "video_id",
        "models_used",
        "model_signature",
        "weights_digest",
        "catalog_used",
    }
    assert setup.stamp(stamped) == stamped  # same stamps again: fine
    setup.get("asr_triton")
    with pytest.raises(ProvenanceError, match=r"already carries a different 'models_used'") as exc:
        setup.stamp(stamped)
    assert exc.value.key == "models_used"


def test_resolution_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelsRootError, match=r"MODELS_ROOT is not set"):
        ModelManager()
    root = tmp_path / "root"
    shutil.copytree(EXAMPLE_ROOT, root)
    monkeypatch.setenv(ENV_ROOT, str(root))
    monkeypatch.setenv(ENV_CATALOG, str(EXAMPLE_CATALOG))
    monkeypatch.setenv(ENV_TRITON_URL, "http://127.0.0.1:9")
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", "http://127.0.0.1:10")
    mm = ModelManager()
    assert mm.root == root.resolve()
    assert mm.catalog.directory == EXAMPLE_CATALOG
    assert mm.triton_endpoints == {"default": "http://127.0.0.1:9", "asr": "http://127.0.0.1:10"}
    assert mm.get("tiny_color_classifier").weights_digest is not None


def test_manager_device_override_is_validated(setup: ModelManager, models_root: Path) -> None:
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda"):
        ModelManager(models_root=models_root, catalog=setup.catalog, device="tpu", loaders=LOADERS)


def test_optional_partly_provisioned_raises(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    files = {"two/a.pt": b"a", "two/b.pt": b"b"}
    write_spec("two", spec_yaml("two", files, "optional: true\n"))
    make_file(models_root / "two/a.pt", b"a")
    mm = ModelManager(models_root=models_root, catalog=catalog_dir, loaders=LOADERS)
    with pytest.raises(ArtifactMissingError, match=r"'two/b.pt' is missing"):
        mm.get_optional("two")
    assert mm.models_used() == []


def test_optional_absent_needs_no_loader_and_records_no_machine_path(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    body = spec_yaml("later", {"later/w.pt": b"w"}, "optional: true\n")
    write_spec("later", body.replace(f"loader: {EchoLoader.name}", "loader: not_built_yet"))
    mm = ModelManager(models_root=models_root, catalog=catalog_dir, loaders=LOADERS)
    assert mm.get_optional("later") is None
    (entry,) = mm.models_used()
    assert entry["reason"] == "not provisioned: later/w.pt"
    assert str(models_root) not in json.dumps(mm.models_used())


def test_check_reports_inprocess_models_and_keeps_absent_optional_ones_ok(
    setup: ModelManager, models_root: Path
) -> None:
    setup.get("encoder")
    assert setup.get_optional("extra") is None
    health = setup.check()
    assert health["ok"] is True
    by_name = {r["spec"]: r for r in health["models"]}
    assert list(by_name) == ["tokenizer", "encoder", "extra"]  # handed out, in order
    assert by_name["extra"] == {
        "spec": "extra",
        "runtime": "inprocess",
        "status": "absent",
        "ok": True,
        "absent": True,
        "loaded": False,
        "artifacts_ok": False,
        "error": None,
        "error_type": None,
    }
    assert by_name["encoder"]["artifacts_ok"] and not by_name["encoder"]["absent"]
    (models_root / "enc/w.pt").write_bytes(b"tampered")
    health = setup.check(["encoder"])
    assert health["ok"] is False
    [report] = health["models"]
    assert report["error_type"] == "DigestMismatchError" and "enc/w.pt" in report["error"]
    assert report["status"] == "digest_mismatch"
    make_file(models_root / "extra/w.pt", b"wrong")  # partly provisioned: no longer absent
    [report] = setup.check(["extra"])["models"]
    assert not report["ok"] and not report["absent"]
    with pytest.raises(SpecNotFoundError):
        setup.check(["nope"])


# -- notebooks: reprs --------------------------------------------------------------------


def test_handle_repr_is_one_short_line(setup: ModelManager) -> None:
    encoder = setup.get("encoder")
    assert repr(encoder) == f"<ModelHandle encoder inprocess cpu fp32 {sha256(b'encoder')[:8]}…>"
    served = setup.get("asr_triton")
    assert repr(served) == f"<ModelHandle asr_triton triton triton fp32 {'d' * 8}…>"
    assert repr(setup).startswith(f"<ModelManager root={setup.root} catalog=")
    assert repr(setup).endswith("(4 specs, 0 loaded, offline)>")
    encoder.load()
    assert "1 loaded" in repr(setup)


def test_handle_html_shows_digests_and_masks_the_endpoint(setup: ModelManager) -> None:
    shown = setup.get("encoder")._repr_html_()
    assert "<code>encoder</code>" in shown and "requires" in shown and "tokenizer" in shown
    assert f'title="{sha256(b"encoder")}"' in shown  # the whole digest on hover
    served = setup.get("asr_triton")._repr_html_()
    assert "http://***@127.0.0.1:8000" in served and "asr_triton v3 at asr" in served
    assert "secret" not in served and "user" not in served
    derived = {"name": "encoder", "weights_digest": None}
    lineage = dataclasses.replace(setup.get("asr_triton"), derived_from=derived)._repr_html_()
    assert "derived from</th>" in lineage and "no export recorded" in lineage


def test_handle_html_escapes_the_spec(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    files = {"a/<b>.pt": b"x"}
    write_spec("hostile", spec_yaml("hostile", files).replace('"1"', '"<script>1</script>"'))
    make_file(models_root / "a/<b>.pt", b"x")
    mm = ModelManager(models_root=models_root, catalog=catalog_dir, loaders=LOADERS)
    shown = mm.get("hostile")._repr_html_()
    assert "<script>" not in shown and "<b>" not in shown
    assert "&lt;script&gt;1&lt;/script&gt;" in shown and "a/&lt;b&gt;.pt" in shown
