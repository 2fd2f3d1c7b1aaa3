"""Installed distributions as an artifact's home (``installed: name==version``,
dp_models._homes.installed_distribution): the packaged spaCy specs name the pip-installed
pipeline packages. A real one is built once per session with spaCy's own packaging command
(``spacy package --build wheel``: a blank English pipeline with a sentencizer, named and
versioned en_core_web_sm 3.8.0) and pip-installed offline into a site directory of its own,
put on ``sys.path`` only by the tests that want it found. Every file is held to the wheel's
RECORD and the lock pins the RECORD; a missing, other-version, tampered or grown
installation is a typed error before anything loads. Also: the spec's wheel URL in the pip
line, fake roots, and pull, push and bundles leaving installed artifacts to pip."""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import spacy
import yaml
from pydantic import ValidationError

import dp_models
from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main as dp_models_cli
from dp_models._errors import (
    ArtifactMissingError,
    ArtifactUnreadableError,
    DigestMismatchError,
    DistributionVersionError,
    SizeMismatchError,
)
from dp_models._homes import pip_line
from dp_models._lock import Lock, LockEntry
from dp_models._spec import Artifact
from dp_models.loaders.spacy import SpacyLoader
from dp_models.testing import fake_catalog_dir, fake_models_root, packaged_catalog_dir

EN = "spacy_en_core_web_sm"
DIST, VERSION = "en_core_web_sm", "3.8.0"
#: The artifact's lock key: an installed artifact without a ``path``.
KEY = "installed/en_core_web_sm"
#: The pipeline's data directory inside the installation (what spaCy loads).
DATA = f"{DIST}/{DIST}-{VERSION}"
RELEASES = "https://github.com/explosion/spacy-models/releases/download"
WHEEL_URL = f"{RELEASES}/{DIST}-{VERSION}/{DIST}-{VERSION}-py3-none-any.whl"
TEXT = "Dr. Smith paid $3.50 for it. It's fine!"


# -- the package, built and installed once ------------------------------------------------


def _run(argv: list[str], cwd: Path) -> None:
    # offline: no index for pip (spaCy's packaging then builds the wheel without an
    # isolated build environment, with the setuptools installed here)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en_core_web_sm-3.8.0-py3-none-any.whl, made by ``python -m spacy package``."""
    base = tmp_path_factory.mktemp("spacy-package")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.meta["name"], nlp.meta["version"] = "core_web_sm", VERSION
    nlp.to_disk(base / "pipeline")
    (base / "out").mkdir()
    argv = [sys.executable, "-m", "spacy", "package", "pipeline", "out"]
    _run([*argv, "--build", "wheel", "--force"], base)
    [built] = (base / "out").rglob("*.whl")
    assert built.name == f"{DIST}-{VERSION}-py3-none-any.whl"
    return built


@pytest.fixture(scope="session")
def installed_site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding the package as pip installs it (RECORD included)."""
    site = tmp_path_factory.mktemp("spacy-site") / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
    _run([*pip, "--target", str(site), str(wheel)], wheel.parent)
    assert (site / DATA / "meta.json").is_file()
    return site


@pytest.fixture
def site(installed_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own copy of the installation, on ``sys.path`` (so importlib.metadata
    finds en_core_web_sm) until the test ends."""
    own = Path(shutil.copytree(installed_site, tmp_path / "site"))
    monkeypatch.syspath_prepend(str(own))
    importlib.invalidate_caches()
    return own


def record_of(site: Path) -> Path:
    [record] = site.glob(f"{DIST}-{VERSION}.dist-info/RECORD")
    return record


def record_pin(site: Path) -> LockEntry:
    """The pin, worked out here from the RECORD alone: its sha256, and the size of the
    files it hashes plus its own."""
    record = record_of(site)
    with record.open(newline="") as f:
        sizes = [int(size) for _, digest, size in csv.reader(f) if digest]
    digest = hashlib.sha256(record.read_bytes()).hexdigest()
    return LockEntry("dir", digest, sum(sizes) + record.stat().st_size)


def site_lock(path: Path, pin: LockEntry) -> Path:
    Lock(path, {KEY: pin}).write()
    return path


def make_manager(tmp_path: Path, lock: Path, catalog: Path | None = None) -> ModelManager:
    """A manager on an empty root: the installed package is the only place to look."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return ModelManager(models_root=root, catalog=catalog, lock=lock, cache_dir=tmp_path / "c")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories the spaCy loader was asked to load (none, when a check refused)."""
    seen: list[Path] = []
    real: Callable[..., Any] = SpacyLoader.load

    def load(self: SpacyLoader, ctx: Any) -> Any:
        seen.append(ctx.artifact("spacy_pipeline"))
        return real(self, ctx)

    monkeypatch.setattr(SpacyLoader, "load", load)
    return seen


def other_version_catalog(directory: Path, version: str) -> Path:
    """A catalog of one spec: the packaged en_core_web_sm spec at ``version``."""
    data = yaml.safe_load(Catalog.load().files[EN].read_text(encoding="utf-8"))
    data["version"] = version
    [art] = data["artifacts"]
    art["installed"] = f"{DIST}=={version}"
    art["source"] = art["source"].replace(VERSION, version)
    directory.mkdir()
    (directory / f"{EN}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


# -- the packaged spec, loaded from the installation ----------------------------------------


@pytest.mark.no_network
def test_the_packaged_spec_loads_the_installed_pipeline_and_records_both_versions(
    site: Path, tmp_path: Path, loads: list[Path]
) -> None:
    mm = make_manager(tmp_path, site_lock(tmp_path / "site.lock.json", record_pin(site)))
    nlp = mm.load(EN)
    assert isinstance(nlp, spacy.language.Language) and nlp.lang == "en"
    assert [s.text for s in nlp(TEXT).sents] == ["Dr. Smith paid $3.50 for it.", "It's fine!"]
    assert loads == [site / DATA]  # the data directory inside the installation
    assert not any((tmp_path / "root").iterdir())  # nothing under the root was needed
    [entry] = [e for e in mm.models_used() if e["name"] == EN]
    [art] = entry["artifacts"]
    assert art["path"] == KEY and art["home"] == "installed"
    assert art["location"] == str(site)
    assert art["sha256"] == record_pin(site).sha256 == entry["weights_digest"]
    assert art["distribution"] == {"name": DIST, "version": VERSION}  # importlib.metadata
    assert entry["model_info"]["version"] == VERSION  # the pipeline's meta.json
    assert entry["model_info"]["name"] == DIST and entry["status"] == "ok"


def test_doctor_shows_the_artifact_installed_and_ok(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = site_lock(tmp_path / "site.lock.json", record_pin(site))
    (tmp_path / "root").mkdir()
    argv = ["doctor", EN, "--root", str(tmp_path / "root"), "--lock", str(lock)]
    assert dp_models_cli([*argv, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["specs"]
    assert row["name"] == EN and row["status"] == "ok"
    [art] = row["artifacts"]
    assert art["status"] == "ok" and art["home"] == "installed" and art["pinned_by"] == "lock"
    assert art["distribution"] == {"name": DIST, "version": VERSION}
    assert art["location"] == str(site)
    assert dp_models_cli(argv) == 0
    assert f"installed {DIST} {VERSION}" in capsys.readouterr().out


def test_dp_models_lock_pins_the_record(site: Path, tmp_path: Path) -> None:
    lock = tmp_path / "site.lock.json"
    (tmp_path / "root").mkdir()
    argv = ["lock", "--root", str(tmp_path / "root"), "--lock", str(lock), "--no-cache"]
    assert dp_models_cli(argv) == 0
    assert Lock.read(lock).artifacts[KEY] == record_pin(site)


# -- missing, another version -----------------------------------------------------------------


@pytest.mark.adversarial
def test_a_missing_distribution_names_the_pip_line_with_the_wheel_url(tmp_path: Path) -> None:
    fake_pin = LockEntry("dir", "1" * 64, 1)
    mm = make_manager(tmp_path, site_lock(tmp_path / "site.lock.json", fake_pin))
    with pytest.raises(
        ArtifactMissingError, match=r"en_core_web_sm==3\.8\.0 is not installed"
    ) as e:
        mm.get(EN)
    assert not isinstance(e.value, DistributionVersionError)
    assert f"`pip install {WHEEL_URL}`" in str(e.value)
    assert e.value.spec == EN
    assert mm.get_optional(EN) is None  # optional: absent, and recorded so
    [entry] = [e for e in mm.models_used() if e["name"] == EN]
    assert entry["status"] == "absent"


@pytest.mark.adversarial
def test_another_installed_version_is_a_typed_error(site: Path, tmp_path: Path) -> None:
    catalog = other_version_catalog(tmp_path / "catalog", "3.9.0")
    mm = make_manager(tmp_path, site_lock(tmp_path / "site.lock.json", record_pin(site)), catalog)
    with pytest.raises(DistributionVersionError, match=r"installed at version 3\.8\.0") as e:
        mm.get(EN)
    assert e.value.installed == "3.8.0" and e.value.required == "3.9.0"
    assert WHEEL_URL.replace(VERSION, "3.9.0") in str(e.value)  # the pip line installs 3.9.0
    with pytest.raises(DistributionVersionError):
        mm.get_optional(EN)  # installed, so not absent: the wrong version is an error


# -- tampered, grown, not the pinned install ----------------------------------------------------


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("name", "old", "new"),
    [("config.cfg", b"sentencizer", b"sentencizeR"), ("meta.json", b'"3.8.0"', b'"3.8.1"')],
)
def test_a_file_changed_after_the_install_is_refused_before_loading(
    site: Path, tmp_path: Path, loads: list[Path], name: str, old: bytes, new: bytes
) -> None:
    """Same size (only the digest tells): the file, its RECORD hash and the fix named."""
    lock = site_lock(tmp_path / "site.lock.json", record_pin(site))
    target = site / DATA / name
    data = target.read_bytes()
    changed = data.replace(old, new, 1)
    assert changed != data and len(changed) == len(data)
    target.write_bytes(changed)
    with pytest.raises(DigestMismatchError, match=r"wheel's RECORD says") as e:
        make_manager(tmp_path, lock).load(EN)
    assert e.value.path == site / DATA / name
    assert e.value.actual == hashlib.sha256(changed).hexdigest()
    assert e.value.expected == hashlib.sha256(data).hexdigest()
    assert "--force-reinstall" in str(e.value)
    assert loads == []  # nothing was loaded


@pytest.mark.adversarial
def test_a_file_that_changed_size_is_refused_before_loading(
    site: Path, tmp_path: Path, loads: list[Path]
) -> None:
    lock = site_lock(tmp_path / "site.lock.json", record_pin(site))
    meta = site / DATA / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_bytes()), "description": "edited"}))
    # each file's RECORD size tells first, naming the file
    with pytest.raises(SizeMismatchError) as e:
        make_manager(tmp_path, lock).load(EN)
    assert e.value.spec == EN and e.value.path == (site / DATA / "meta.json").resolve()
    assert f"{DATA}/meta.json" in str(e.value) and "RECORD says" in str(e.value)
    assert f"pip install --force-reinstall {WHEEL_URL}" in str(e.value)
    assert loads == []


@pytest.mark.adversarial
def test_a_file_added_to_the_pipeline_is_refused_before_loading(
    site: Path, tmp_path: Path, loads: list[Path]
) -> None:
    lock = site_lock(tmp_path / "site.lock.json", record_pin(site))
    (site / DATA / "vocab" / "extra.bin").write_bytes(b"never verified")
    with pytest.raises(ArtifactUnreadableError, match=r"RECORD does not list") as e:
        make_manager(tmp_path, lock).load(EN)
    assert f"{DATA}/vocab/extra.bin" in str(e.value) and e.value.spec == EN
    assert f"pip install --force-reinstall {WHEEL_URL}" in str(e.value)
    assert loads == []


@pytest.mark.adversarial
def test_an_install_whose_record_is_not_the_pinned_one_is_refused(
    site: Path, tmp_path: Path, loads: list[Path]
) -> None:
    pin = record_pin(site)
    other = LockEntry("dir", "2" * 64, pin.size)  # e.g. another build of en_core_web_sm 3.8.0
    with pytest.raises(DigestMismatchError) as e:
        make_manager(tmp_path, site_lock(tmp_path / "site.lock.json", other)).load(EN)
    assert e.value.expected == "2" * 64 and e.value.actual == pin.sha256
    assert loads == []


@pytest.mark.adversarial
def test_a_record_rewritten_between_its_reading_and_its_hashing_is_refused(
    site: Path, tmp_path: Path, loads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RECORD whose entries are checked is the RECORD whose digest is pinned: bytes
    parsed that are not the bytes hashed (a reinstall racing the load) are refused."""
    from dp_models import ArtifactChangedError, _homes

    lock = site_lock(tmp_path / "site.lock.json", record_pin(site))
    real = _homes.read_regular

    def racing(path: Any, **kwargs: Any) -> bytes:
        data = real(path, **kwargs)
        return data + b"\n" if str(path).endswith("/RECORD") else data

    monkeypatch.setattr(_homes, "read_regular", racing)
    with pytest.raises(ArtifactChangedError, match=r"RECORD of the installed .* changed"):
        make_manager(tmp_path, lock).load(EN)
    assert loads == []


# -- the spec: its wheel URL, what it may not have ----------------------------------------------


def installed_artifact(**fields: Any) -> Artifact:
    base = {"installed": f"{DIST}=={VERSION}", "kind": "dir", "format": "spacy_pipeline"}
    return Artifact.model_validate({**base, **fields})


def test_the_wheel_url_is_the_pip_line() -> None:
    with_url = installed_artifact(source=WHEEL_URL)
    assert with_url.path == KEY
    assert pip_line(with_url) == f"pip install {WHEEL_URL}"
    assert pip_line(with_url, reinstall=True) == f"pip install --force-reinstall {WHEEL_URL}"
    assert pip_line(installed_artifact()) == f"pip install {DIST}=={VERSION}"
    packaged = Catalog.load(packaged_catalog_dir())
    for name, dist in ((EN, DIST), ("spacy_ru_core_news_sm", "ru_core_news_sm")):
        [art] = packaged[name].artifacts
        assert art.installed == f"{dist}==3.8.0" and art.kind == "dir"
        assert art.source == f"{RELEASES}/{dist}-3.8.0/{dist}-3.8.0-py3-none-any.whl"
        assert packaged[name].optional


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"source": "in-house"}, "only be the http\\(s\\) URL of its wheel"),
        (
            {"source": {"url": WHEEL_URL, "member": DATA}},
            "not an archive member or 'in-house'",
        ),
        (
            {"huggingface": {"repo": "a/b", "revision": "0" * 40, "patterns": ["*"]}},
            "remove its 'huggingface' section",
        ),
        ({"source": WHEEL_URL.replace("3.8.0", "3.9.0")}, "the URL of its wheel"),
        ({"source": f"{RELEASES}/{DIST}-{VERSION}.tar.gz"}, "the URL of its wheel"),
        ({"source": "ftp://example.org/x.whl"}, "http\\(s\\) URL"),
        ({"kind": "file"}, "kind 'dir'"),
    ],
    ids=["in-house", "archive", "huggingface", "other-version", "not-a-wheel", "ftp", "file"],
)
def test_what_an_installed_artifact_may_not_have(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        installed_artifact(**fields)


def test_the_json_schema_takes_installed_in_place_of_path() -> None:
    import jsonschema

    from dp_models._spec import spec_json_schema

    validator = jsonschema.Draft202012Validator(spec_json_schema())
    spec = yaml.safe_load(Catalog.load(packaged_catalog_dir()).files[EN].read_text())
    assert "path" not in spec["artifacts"][0]
    validator.validate(spec)
    del spec["artifacts"][0]["installed"]  # neither path nor installed
    assert not validator.is_valid(spec)


# -- fake roots; pull, push and bundles ---------------------------------------------------------


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake root of the packaged catalog's en_core_web_sm spec and a file spec."""
    return fake_models_root(
        tmp_path_factory.mktemp("installed") / "root", [EN, "emonet_8"], substitute=["emonet_8"]
    )


def test_a_fake_root_leaves_the_installed_artifact_to_pip(fake_root: Path, tmp_path: Path) -> None:
    assert not (fake_root / "installed").exists() and not (fake_root / "text").exists()
    lock = Lock.read(fake_catalog_dir(fake_root) / "catalog.lock.json")
    assert set(lock.artifacts) == {"visual/emonet/emonet_8.pth"}  # the distribution unpinned
    mm = ModelManager(
        models_root=fake_root, catalog=fake_catalog_dir(fake_root), cache_dir=tmp_path / "c"
    )
    assert mm.get_optional(EN) is None  # not installed here: absent
    assert mm.load("emonet_8") is not None
    assert {e["name"]: e["status"] for e in mm.models_used()} == {EN: "absent", "emonet_8": "ok"}


class Recording:
    """A push destination that takes everything and records what it was given."""

    shown = "recording://"

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.manifest: dict[str, Any] = {}

    def has(self, rel: str, size: int, sha256: str) -> bool:
        self.paths.append(rel)
        return False

    def put(self, rel: str, fd: int, size: int, sha256: str, advance: Any, **_: Any) -> None:
        self.paths.append(rel)
        advance(size)

    def commit(self, manifest: bytes) -> str:
        self.manifest = json.loads(manifest)
        return self.shown

    def close(self) -> None:
        pass


def test_pull_push_and_bundles_leave_installed_artifacts_to_pip(
    fake_root: Path, tmp_path: Path
) -> None:
    catalog, names = fake_catalog_dir(fake_root), [EN, "emonet_8"]
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    report = dp_models.pull([EN], root=tmp_path / "node", mirrors=[str(empty)], catalog=catalog)
    assert [(a.path, a.status) for a in report.artifacts] == [(KEY, "installed")]
    assert not [p for p in (tmp_path / "node").rglob("*") if p.is_file()]  # nothing fetched
    report = dp_models.pull(
        names, root=tmp_path / "node", mirrors=[str(fake_root)], catalog=catalog
    )
    assert {a.path: a.status for a in report.artifacts} == {
        KEY: "installed",
        "visual/emonet/emonet_8.pth": "fetched",
    }
    store = Recording()
    dp_models.push(names, to=store, root=fake_root, catalog=catalog)  # type: ignore[arg-type]
    assert store.paths and not [p for p in store.paths if p.startswith("installed")]
    assert set(store.manifest["artifacts"]) == {"visual/emonet/emonet_8.pth"}
    bundle = tmp_path / "models.tar"
    made = dp_models.bundle_create(names, output=bundle, root=fake_root, catalog=catalog)
    assert [a["path"] for a in made.artifacts] == ["visual/emonet/emonet_8.pth"]
