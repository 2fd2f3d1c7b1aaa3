"""`dp-models import-hf-cache`: hub cache snapshots copied into the writable root through
pull's verified path; pull and doctor treat the hub cache as a home of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dp_models import ArtifactMissingError, ConfigurationError, PulledFileMismatchError
from dp_models._cli import main
from dp_models._lock import Lock
from dp_models._pull import import_hf_cache
from dp_models.testing import make_hub_snapshot

from .conftest import sha256

REPO = "org/tiny-encoder"
REVISION = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"dim": 4}', "sub/weights.bin": b"weights", "README.md": b"# card"}
SELECTED = ["config.json", "sub/weights.bin"]


def _spec(name: str = "tiny_encoder", extra: str = "") -> str:
    files = ", ".join(SELECTED)
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [TextProcessor/test]\n'
        "runtime: inprocess\nengine: sentence_transformers\nloader: sentence_transformers\n"
        "artifacts:\n"
        f"  - path: text/{name}\n    kind: dir\n    format: model_dir\n"
        f"    huggingface: {{repo: {REPO}, revision: {REVISION}, files: [{files}]}}\n{extra}"
    )


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, REVISION, FILES)
    monkeypatch.setenv("DP_MODELS_HF_CACHE", str(cache))
    return cache


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    directory = tmp_path / "catalog" / "text"
    directory.mkdir(parents=True)
    (directory / "tiny_encoder.yaml").write_text(_spec())
    (directory / "plain.yaml").write_text(
        'name: plain\nversion: "1"\nfamily: test\nrole: test\nusers: [TextProcessor/test]\n'
        "runtime: inprocess\nengine: sentence_transformers\nloader: sentence_transformers\n"
        f"artifacts:\n  - path: text/plain.bin\n    format: txt\n    sha256: {sha256(b'x')}\n"
    )
    return directory.parent


def _argv(catalog: Path, root: Path, lock: Path, *more: str) -> list[str]:
    return [*more, "--catalog", str(catalog), "--root", str(root), "--lock", str(lock)]


def test_import_pins_then_copies_only_the_selected_files_and_they_verify(
    hub: Path, catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, lock = tmp_path / "root", tmp_path / "deploy" / "models.lock.json"
    argv = _argv(catalog, root, lock, "import-hf-cache", "tiny_encoder", "--pin", "--json")
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (art,) = report["artifacts"]
    assert art["status"] == "fetched" and art["pinned"] is True
    copied = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".dp-models-pull" not in p.parts
    )
    assert copied == [f"text/tiny_encoder/{name}" for name in SELECTED]
    entry = Lock.read(lock).artifacts["text/tiny_encoder"]
    assert entry.files is not None and sorted(entry.files) == SELECTED
    assert entry.files["sub/weights.bin"].sha256 == sha256(FILES["sub/weights.bin"])
    # the root copy has the snapshot's digest: doctor finds it in the root now, ok
    assert main(_argv(catalog, root, lock, "doctor", "tiny_encoder", "--json")) == 0
    doctor = json.loads(capsys.readouterr().out)
    found = doctor["specs"][0]["artifacts"][0]
    assert found["home"] == "root" and found["actual_sha256"] == entry.sha256
    # a second import copies nothing
    assert main(_argv(catalog, root, lock, "import-hf-cache", "tiny_encoder", "--json")) == 0
    again = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in again["artifacts"]] == ["present"]


def test_pull_counts_the_hub_cache_as_present(
    hub: Path, catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a pin in the lock, pull finds the snapshot in the cache and fetches nothing."""
    root, lock = tmp_path / "root", tmp_path / "models.lock.json"
    assert main(_argv(catalog, root, lock, "import-hf-cache", "tiny_encoder", "--pin")) == 0
    capsys.readouterr()
    other, empty_mirror = tmp_path / "node2", tmp_path / "mirror"
    empty_mirror.mkdir()
    argv = _argv(catalog, other, lock, "pull", "tiny_encoder", "--from", str(empty_mirror))
    assert main([*argv, "--json"]) == 0
    (art,) = json.loads(capsys.readouterr().out)["artifacts"]
    assert art["status"] == "present" and art["source"] == f"hub cache {hub}"
    assert not (other / "text").exists()


@pytest.mark.adversarial
def test_a_snapshot_missing_from_the_cache_is_its_typed_error_before_anything_is_copied(
    hub: Path, catalog: Path, tmp_path: Path
) -> None:
    (catalog / "text" / "tiny_encoder.yaml").write_text(_spec().replace(REVISION, "f" * 40))
    root = tmp_path / "root"
    with pytest.raises(ArtifactMissingError) as caught:
        import_hf_cache(
            ["tiny_encoder"], root=root, catalog=catalog, pin=True, lock=tmp_path / "l.json"
        )
    assert REVISION in str(caught.value)  # the revision the cache does hold
    assert not (root / "text").exists()


@pytest.mark.adversarial
def test_a_blob_that_is_not_the_pinned_bytes_is_never_copied(
    hub: Path, catalog: Path, tmp_path: Path
) -> None:
    root, lock = tmp_path / "root", tmp_path / "models.lock.json"
    import_hf_cache(["tiny_encoder"], root=root, catalog=catalog, lock=lock, pin=True)
    blob = hub / "models--org--tiny-encoder" / "blobs" / sha256(FILES["sub/weights.bin"])
    blob.write_bytes(b"WEIGHTS")  # same size, other bytes
    other = tmp_path / "node2"
    with pytest.raises(PulledFileMismatchError):
        import_hf_cache(["tiny_encoder"], root=other, catalog=catalog, lock=lock)
    assert not (other / "text" / "tiny_encoder").exists()


@pytest.mark.adversarial
def test_specs_without_a_hub_snapshot_are_refused(hub: Path, catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="none of the selected specs"):
        import_hf_cache(["plain"], root=tmp_path / "root", catalog=catalog)


def test_the_other_artifacts_of_a_spec_are_not_touched(
    hub: Path, catalog: Path, tmp_path: Path
) -> None:
    """A spec with a hub artifact and a plain one: import copies the hub one only."""
    (catalog / "text" / "tiny_encoder.yaml").write_text(
        _spec(extra=f"  - path: text/extra.txt\n    format: txt\n    sha256: {sha256(b'e')}\n")
    )
    root, lock = tmp_path / "root", tmp_path / "models.lock.json"
    report = import_hf_cache(["tiny_encoder"], root=root, catalog=catalog, lock=lock, pin=True)
    assert [a.path for a in report.artifacts] == ["text/tiny_encoder"]
    assert not (root / "text" / "extra.txt").exists()
    assert os.listdir(root / "text") == ["tiny_encoder"]
