"""The ``tokenizer`` loader (dp_models.loaders.tokenizers), through the ModelManager on a fake
root: a small byte-level BPE ``tokenizer.json`` with Whisper's special tokens, decoded the
way asr_extractor decodes the token ids Whisper returns."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import pytest
import tokenizers

from dp_models._errors import LoaderError
from dp_models.testing import fake_models_root
from dp_models.testing.fakes.tokenizers import FAKE_SPECIAL_TOKENS

from .fakeroots import manager, repin

NAME = "shared_tokenizer_v1"
FILE = "text/shared_tokenizer_v1/tokenizer.json"
PREFIX = "<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"


@pytest.fixture(scope="module")
def base_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("tok") / "root", names=[NAME])


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_root, tmp_path / "root"))


@pytest.mark.no_network
def test_the_tokenizer_decodes_whisper_token_ids(root: Path, tmp_path: Path) -> None:
    tok = manager(root, tmp_path).load(NAME)
    assert isinstance(tok, tokenizers.Tokenizer)
    assert [tok.token_to_id(t) for t in FAKE_SPECIAL_TOKENS] == list(range(7))
    for text in ("hello world, this is a transcript", "привет, мир: 3.5 км!"):
        ids = tok.encode(PREFIX + text).ids
        assert ids[:4] == [1, 2, 5, 6]  # the special tokens are single ids
        assert tok.decode(ids) == text  # skip_special_tokens=True by default
        assert tok.decode(ids, skip_special_tokens=False) == PREFIX + text
        assert tok.encode(PREFIX + text).ids == ids  # deterministic
    assert tok.decode([1, 2, 5, 6, 0]) == ""  # only special tokens
    assert tok.get_vocab_size() == 320


@pytest.mark.no_network
def test_models_used_and_device(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    handle = mm.get(NAME, device="auto")
    assert handle.device == "cpu"  # tokenization runs on the CPU, whatever the machine
    handle.load()
    (entry,) = mm.models_used()
    assert entry["framework"] == {"name": "tokenizers", "version": metadata.version("tokenizers")}
    assert entry["loader"] == "tokenizer" and entry["model_info"] is None
    assert entry["artifacts"][0]["path"] == FILE


@pytest.mark.parametrize(
    "content",
    [b'{"version": "1.0", "model": {"type": "NoSuchModel"}}', b""],
    ids=["unknown-model", "empty"],
)
def test_a_corrupt_tokenizer_json_is_a_loader_error(
    root: Path, tmp_path: Path, content: bytes
) -> None:
    (root / FILE).write_bytes(content)
    repin(root)
    message = r"^spec 'shared_tokenizer_v1': tokenizers cannot read .*tokenizer\.json as a"
    with pytest.raises(LoaderError, match=message) as info:
        manager(root, tmp_path).load(NAME)
    assert info.value.spec == NAME and info.value.loader == "tokenizer"
    assert "passed its digest check" in str(info.value)
    assert info.value.__cause__ is not None


def test_a_truncated_tokenizer_json_is_a_loader_error(root: Path, tmp_path: Path) -> None:
    data = (root / FILE).read_bytes()
    (root / FILE).write_bytes(data[: len(data) // 2])
    repin(root)
    with pytest.raises(LoaderError, match="tokenizers cannot read") as info:
        manager(root, tmp_path).load(NAME)
    assert info.value.spec == NAME


def test_the_fake_is_small_and_reproducible(base_root: Path, tmp_path: Path) -> None:
    again = fake_models_root(tmp_path / "again", names=[NAME])
    assert (again / FILE).read_bytes() == (base_root / FILE).read_bytes()
    assert (base_root / FILE).stat().st_size < 50_000
