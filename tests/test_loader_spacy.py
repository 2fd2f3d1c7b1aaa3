"""The ``spacy`` loader (dp_models.loaders.spacy), through the ModelManager on a fake root:
blank English and Russian pipelines (plus a sentencizer) saved with ``to_disk`` under the
specs' names and versions, loaded with ``spacy.load(<directory>)``. The specs are the
packaged ones given a pipeline directory under the root (the packaged ones name installed
distributions: tests/test_installed.py)."""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import spacy

from dp_models._errors import LoaderError
from dp_models.testing import fake_models_root

from .fakeroots import SPACY_DIRS as DIRS
from .fakeroots import catalog_problem, edit_spec, manager, repin, spacy_dir_catalog

EN, RU = "spacy_en_core_web_sm", "spacy_ru_core_news_sm"
TEXTS = {
    EN: "Dr. Smith paid $3.50 for it. It's fine!",
    RU: "Привет, мир! Это стоит 3,5 рубля. Всё хорошо.",
}
TOKENS = {
    EN: ["Dr.", "Smith", "paid", "$", "3.50", "for", "it", ".", "It", "'s", "fine", "!"],
    RU: ["Привет", ",", "мир", "!", "Это", "стоит", "3,5", "рубля", ".", "Всё", "хорошо", "."],
}


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("spacy")
    catalog = spacy_dir_catalog(base / "catalog")
    return fake_models_root(base / "root", names=[EN, RU], catalog=catalog)


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_root, tmp_path / "root"))


def edit_meta(root: Path, spec: str, fields: dict[str, Any]) -> None:
    path = root / DIRS[spec] / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(fields)
    path.write_text(json.dumps(meta), encoding="utf-8")
    repin(root)


@pytest.mark.no_network
@pytest.mark.parametrize("name", [EN, RU])
def test_pipelines_load_from_their_directories_and_tokenise(
    root: Path, tmp_path: Path, name: str
) -> None:
    nlp = manager(root, tmp_path).load(name)
    lang = name.split("_")[1]
    assert isinstance(nlp, spacy.language.Language) and nlp.lang == lang
    assert nlp.path == root / DIRS[name]  # the artifact, by path
    assert nlp.meta["version"] == "3.8.0" and nlp.pipe_names == ["sentencizer"]
    doc = nlp(TEXTS[name])
    assert [t.text for t in doc] == TOKENS[name]
    assert len(list(doc.sents)) == (2 if name == EN else 3)
    # the same tokens as spaCy's own blank pipeline for the language
    assert [t.text for t in spacy.blank(lang)(TEXTS[name])] == TOKENS[name]


@pytest.mark.no_network
def test_models_used_records_spacy_and_the_pipeline(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    mm.load(EN)
    handle = mm.get(RU)
    assert handle.device == "cpu"
    used = {e["name"]: e for e in mm.models_used()}
    for name, pipeline in ((EN, "en_core_web_sm"), (RU, "ru_core_news_sm")):
        entry = used[name]
        assert entry["framework"] == {"name": "spacy", "version": metadata.version("spacy")}
        assert entry["loader_args"] == {"pipeline": pipeline}
        info = entry["model_info"]
        assert info["name"] == pipeline and info["version"] == "3.8.0"
        assert info["lang"] == pipeline[:2] and info["pipeline"] == ["sentencizer"]
        assert spacy.util.is_compatible_version(spacy.about.__version__, info["spacy_version"])


@pytest.mark.parametrize(
    ("meta", "found"),
    [({"version": "3.7.1"}, "en_core_web_sm 3.7.1"), ({"name": "core_web_lg"}, "en_core_web_lg")],
    ids=["version", "name"],
)
def test_another_pipeline_than_the_spec_names_is_refused(
    root: Path, tmp_path: Path, meta: dict[str, str], found: str
) -> None:
    edit_meta(root, EN, meta)
    mm = manager(root, tmp_path)
    assert mm.get(EN).info is not None  # get() records what the directory holds
    message = rf"^spec '{EN}' expects en_core_web_sm 3\.8\.0, but .*meta\.json says {found}"
    with pytest.raises(LoaderError, match=message) as info:
        mm.load(EN)
    assert info.value.spec == EN and info.value.loader == "spacy"


def test_without_loader_args_the_name_is_not_checked(root: Path, tmp_path: Path) -> None:
    edit_meta(root, EN, {"name": "core_web_lg"})
    edit_spec(root, EN, loader_args={}, replace_loader_args=True)
    assert manager(root, tmp_path).load(EN).meta["name"] == "core_web_lg"


def test_a_pipeline_for_another_spacy_is_refused(root: Path, tmp_path: Path) -> None:
    edit_meta(root, RU, {"spacy_version": ">=2.0.0,<3.0.0"})
    message = r"pipeline ru_core_news_sm 3\.8\.0 needs spaCy >=2\.0\.0,<3\.0\.0, but spaCy "
    with pytest.raises(LoaderError, match=message) as info:
        manager(root, tmp_path).load(RU)
    assert info.value.spec == RU


def test_a_directory_without_meta_json_is_refused(root: Path, tmp_path: Path) -> None:
    (root / DIRS[EN] / "meta.json").unlink()
    repin(root)
    mm = manager(root, tmp_path)
    assert mm.get(EN).info is None
    with pytest.raises(LoaderError, match=r"is not a spaCy pipeline directory: cannot read"):
        mm.load(EN)


@pytest.mark.parametrize(
    ("content", "detail"),
    [(b"[1, 2]", "holds a list, not a mapping"), (b"{nope", "is not valid JSON")],
    ids=["list", "junk"],
)
def test_a_bad_meta_json_is_refused(
    root: Path, tmp_path: Path, content: bytes, detail: str
) -> None:
    (root / DIRS[EN] / "meta.json").write_bytes(content)
    repin(root)
    with pytest.raises(LoaderError, match=detail) as info:
        manager(root, tmp_path).load(EN)
    assert info.value.spec == EN


def test_a_corrupt_pipeline_is_a_loader_error(root: Path, tmp_path: Path) -> None:
    (root / DIRS[EN] / "config.cfg").write_text("[nlp\nlang = ", encoding="utf-8")
    repin(root)
    with pytest.raises(LoaderError, match=r"spaCy .* cannot load .*en_core_web_sm-3\.8\.0") as info:
        manager(root, tmp_path).load(EN)
    assert "passed its digest check" in str(info.value) and info.value.__cause__ is not None


def test_a_missing_component_dependency_is_named(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ru_core_news_sm lemmatizer runs on pymorphy3; spaCy imports it at load."""
    monkeypatch.setitem(sys.modules, "pymorphy3", None)  # as where it is not installed
    cfg = root / DIRS[RU] / "config.cfg"
    text = cfg.read_text(encoding="utf-8").replace(
        'pipeline = ["sentencizer"]', 'pipeline = ["sentencizer","lemmatizer"]'
    )
    text += '\n[components.lemmatizer]\nfactory = "lemmatizer"\nmode = "pymorphy3"\n'
    cfg.write_text(text, encoding="utf-8")
    repin(root)
    message = r"pipeline ru_core_news_sm 3\.8\.0 needs a package that is not installed: .*pymorphy3"
    with pytest.raises(LoaderError, match=message) as info:
        manager(root, tmp_path).load(RU)
    assert isinstance(info.value.__cause__, ImportError)


def test_a_pipeline_name_that_is_not_a_string_is_a_catalog_error(
    root: Path, tmp_path: Path
) -> None:
    edit_spec(root, EN, loader_args={"pipeline": 3}, replace_loader_args=True)
    problem = catalog_problem(root, tmp_path)
    assert problem.field == "loader_args.pipeline"
    assert "valid string (got 3)" in problem.message


def test_an_unprovisioned_optional_pipeline_is_recorded_as_absent(
    root: Path, tmp_path: Path
) -> None:
    shutil.rmtree(root / DIRS[RU])
    mm = manager(root, tmp_path)
    assert mm.get_optional(RU) is None
    assert mm.get_optional(EN) is not None
    (absent,) = [e for e in mm.models_used() if e["name"] == RU]
    assert absent["status"] == "absent" and absent["optional"] is True


def test_the_fake_is_small(base_root: Path) -> None:
    for rel in DIRS.values():
        files = [p for p in (base_root / rel).rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"meta.json", "config.cfg", "tokenizer"}
        assert sum(p.stat().st_size for p in files) < 500_000
