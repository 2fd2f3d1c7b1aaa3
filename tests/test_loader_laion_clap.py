"""loader laion_clap (dp_models.loaders.laion_clap): the catalog's CLAP spec on a fake root
(HTSAT-tiny with a one-layer RoBERTa, saved as LAION saves its checkpoints, and a byte-level
RoBERTa tokenizer directory), through the manager, inside the network guard."""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dp_models import Catalog
from dp_models._errors import (
    ArtifactMissingError,
    LoaderArgsError,
    LoaderError,
    NetworkBlockedError,
    StateDictMismatchError,
    UnprovisionedTokenizerError,
    UnsafeCheckpointError,
)
from dp_models._guard import network_guard
from dp_models.loaders import LoadContext
from dp_models.loaders.laion_clap import _import_laion_clap, _read_checkpoint
from dp_models.testing import fake_models_root

from .conftest import LoopbackServer
from .fakeroots import (
    REBINDS_COUNTER_UPDATE,
    RunsCode,
    catalog_problem,
    manager,
    needs_cuda,
    repin,
    rewrite_zip,
    set_loader_args,
)

CLAP = "laion_clap"
CKPT = "audio/laion_clap/630k-audioset-best.pt"
TEXT_DIR = "audio/laion_clap/roberta-base"
TEXTS = ["a dog barks", "rain on a roof", "a dog barks"]


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake root (about 150 MB) for every test; tests that change it use ``root``."""
    return fake_models_root(tmp_path_factory.mktemp("clap") / "root", names=[CLAP])


@pytest.fixture
def root(shared_root: Path, tmp_path: Path) -> Path:
    """A private copy; the checkpoint is a hard link, so replace it (``replace``), never
    write into it."""

    def copy(src: str, dst: str) -> None:
        if src.endswith(".pt"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    return Path(shutil.copytree(shared_root, tmp_path / "root", copy_function=copy))


def replace(path: Path, data: bytes) -> None:
    path.unlink()  # break the hard link to the shared root
    path.write_bytes(data)


def trusted_checkpoint(root: Path) -> Any:
    return torch.load(root / CKPT, weights_only=False)  # written by this test suite


# -- the catalog's spec on a fake, through the manager ---------------------------------------


@pytest.mark.no_network
def test_the_spec_loads_offline_from_its_checkpoint_and_roberta_dir(
    shared_root: Path, tmp_path: Path
) -> None:
    mm = manager(shared_root, tmp_path, device="cpu")
    clap = mm.load(CLAP)
    assert type(clap).__name__ == "CLAP_Module"
    assert not clap.training and not clap.model.training
    assert {p.device.type for p in clap.parameters()} == {"cpu"}
    assert {p.dtype for p in clap.parameters()} == {torch.float32}
    # the tokenizer and text tower come from the artifact directory, not the Hub
    assert clap.tokenize.name_or_path == str(shared_root / TEXT_DIR)
    assert len(clap.tokenize) == 261 == clap.model.text_branch.config.vocab_size
    # the weights are the checkpoint's (saved with "module." prefixes), not a random init
    saved = trusted_checkpoint(shared_root)["state_dict"]
    own = clap.model.state_dict()
    for key in ("audio_projection.0.weight", "text_branch.encoder.layer.0.output.dense.weight"):
        assert torch.equal(own[key], saved[f"module.{key}"]), key
    with torch.inference_mode():
        text = clap.get_text_embedding(TEXTS, use_tensor=True)
        assert text.shape == (3, 512)
        assert torch.allclose(text.norm(dim=-1), torch.ones(3))
        assert torch.equal(text[0], text[2]) and not torch.equal(text[0], text[1])
        wave = np.sin(np.linspace(0, 2000, 48_000)).astype(np.float32)[None]  # 1 s at 48 kHz
        first = clap.get_audio_embedding_from_data(wave)
        assert first.shape == (1, 512)
        np.testing.assert_array_equal(first, clap.get_audio_embedding_from_data(wave))
    entry = mm.models_used()[0]
    assert entry["framework"] == {"name": "laion_clap", "version": metadata.version("laion_clap")}
    assert entry["loader_args"]["amodel"] == "HTSAT-tiny"


def test_the_fake_is_saved_like_laions_checkpoints(shared_root: Path) -> None:
    checkpoint = trusted_checkpoint(shared_root)
    assert {"epoch", "name", "state_dict", "optimizer"} <= set(checkpoint)
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    assert "module.text_branch.embeddings.position_ids" in checkpoint["state_dict"]
    assert isinstance(checkpoint["optimizer"]["param_groups"][0]["lr"], np.float64)
    with zipfile.ZipFile(shared_root / CKPT) as archive:
        data = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        assert archive.read(data)[:2] == b"\x80\x04"  # pickle protocol 4, like LAION's files
    assert sorted(p.name for p in (shared_root / TEXT_DIR).iterdir()) == [
        "config.json",
        "merges.txt",
        "vocab.json",
    ]


def test_importing_laion_clap_left_the_hub_and_transformers_alone(shared_root: Path) -> None:
    import transformers

    laion_clap = _import_laion_clap(CLAP)
    data = sys.modules["laion_clap.training.data"]
    for attr in ("bert_tokenizer", "roberta_tokenizer", "bart_tokenizer"):
        with pytest.raises(UnprovisionedTokenizerError, match="dp_models does not provide it"):
            getattr(data, attr)(["text"])
    for name in ("BertTokenizer", "RobertaTokenizer", "BartTokenizer"):
        real = getattr(transformers, name)
        assert isinstance(real, type) and hasattr(real, "from_pretrained")  # not a stand-in
        assert getattr(data, name) is real
    hook = sys.modules[laion_clap.CLAP_Module.__module__]
    assert hook.RobertaTokenizer is transformers.RobertaTokenizer  # the build's patch is undone


def test_a_numpy_1_checkpoint_reads_with_weights_only(tmp_path: Path) -> None:
    """LAION's checkpoints were pickled by numpy 1 (numpy.core.multiarray.scalar)."""
    path = tmp_path / "np1.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "lr": np.float64(0.5)}, path)
    # protocol-2 GLOBALs are text: rename numpy 2's module to numpy 1's
    renamed = tmp_path / "renamed.pt"

    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(renamed, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    spec = Catalog.load()[CLAP]
    ctx = LoadContext(spec, {CKPT: renamed}, "cpu", "fp32")
    checkpoint = _read_checkpoint(ctx, Path(CKPT), "pt", weights_only=True)
    assert checkpoint["lr"] == 0.5 and type(checkpoint["lr"]) is np.float64
    assert torch.equal(checkpoint["state_dict"]["w"], torch.ones(2))


# -- device and precision --------------------------------------------------------------------


@needs_cuda
@pytest.mark.no_network
def test_loads_on_cuda(shared_root: Path, tmp_path: Path) -> None:
    clap = manager(shared_root, tmp_path).load(CLAP, device="cuda")
    assert {p.device.type for p in clap.parameters()} == {"cuda"}
    with torch.inference_mode():
        assert clap.get_text_embedding(TEXTS, use_tensor=True).device.type == "cuda"


# -- loader_args, artifacts, hostile and corrupt files ---------------------------------------


def test_an_audio_model_this_laion_clap_lacks_is_refused_at_load(
    root: Path, tmp_path: Path
) -> None:
    set_loader_args(root, CLAP, amodel="HTSAT-huge")
    with pytest.raises(
        LoaderArgsError, match=r"amodel 'HTSAT-huge' is not a laion_clap audio model.*HTSAT-tiny"
    ) as exc:
        manager(root, tmp_path, device="cpu").load(CLAP)
    assert (exc.value.spec, exc.value.loader) == (CLAP, "laion_clap")


@pytest.mark.parametrize(
    ("loader_args", "field", "message"),
    [
        ({"tmodel": "bert"}, "tmodel", "is not supported: laion_clap would download"),
        ({"enable_fusion": "yes"}, "enable_fusion", "valid boolean (got 'yes')"),
        ({"weights_only": "no"}, "weights_only", "valid boolean (got 'no')"),
    ],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, loader_args: dict[str, Any], field: str, message: str
) -> None:
    set_loader_args(root, CLAP, **loader_args)
    problem = catalog_problem(root, tmp_path, device="cpu")
    assert problem.field == f"loader_args.{field}"
    assert message in problem.message


def test_a_roberta_dir_without_its_vocabulary_is_named(root: Path, tmp_path: Path) -> None:
    (root / TEXT_DIR / "vocab.json").unlink()
    repin(root)
    with pytest.raises(ArtifactMissingError, match=r"has no vocab\.json") as exc:
        manager(root, tmp_path, device="cpu").load(CLAP)
    assert exc.value.spec == CLAP and exc.value.path == root / TEXT_DIR / "vocab.json"


def test_a_tokenizer_of_another_vocabulary_is_an_error(root: Path, tmp_path: Path) -> None:
    config = json.loads((root / TEXT_DIR / "config.json").read_text())
    replace(root / TEXT_DIR / "config.json", json.dumps({**config, "vocab_size": 50265}).encode())
    repin(root)
    with pytest.raises(
        LoaderError, match=r"has 261 tokens but its config\.json says vocab_size 50265"
    ):
        manager(root, tmp_path, device="cpu").load(CLAP)


@pytest.mark.adversarial
@pytest.mark.parametrize("protocol", [2, 4])  # torch's unpickler; protocol 4 translated first
def test_a_pickle_payload_is_refused_and_never_runs(
    root: Path, tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    (root / CKPT).unlink()
    torch.save({"state_dict": {"w": RunsCode(marker)}}, root / CKPT, pickle_protocol=protocol)
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match="refused and nothing in it ran") as exc:
        manager(root, tmp_path, device="cpu").load(CLAP)
    assert exc.value.spec == CLAP and "GLOBAL posix.system" in str(exc.value)
    assert not marker.exists()


@pytest.fixture
def counter_update() -> Iterator[None]:
    """Put ``collections.Counter.update`` back whatever a hostile checkpoint did to it."""
    original = collections.Counter.update
    yield
    collections.Counter.update = original  # type: ignore[method-assign]


@pytest.mark.adversarial
@pytest.mark.usefixtures("counter_update")
def test_a_checkpoint_that_rebinds_a_class_is_refused_and_the_guard_still_blocks(
    root: Path, tmp_path: Path, server: LoopbackServer
) -> None:
    original = collections.Counter.update
    rewrite_zip(root / CKPT, {"/data.pkl": REBINDS_COUNTER_UPDATE})
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match="refused and nothing in it ran") as exc:
        manager(root, tmp_path, device="cpu").load(CLAP)
    assert exc.value.spec == CLAP and "Can only build" in str(exc.value)
    assert collections.Counter.update is original  # BUILD never touched the class
    with network_guard(["after-a-hostile-checkpoint"]), pytest.raises(NetworkBlockedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    assert not server.saw_connections(1)


def test_a_checkpoint_of_another_architecture_is_a_mismatch(root: Path, tmp_path: Path) -> None:
    set_loader_args(root, CLAP, enable_fusion=True)
    with pytest.raises(StateDictMismatchError, match="a fusion checkpoint needs") as exc:
        manager(root, tmp_path, device="cpu").load(CLAP)
    assert exc.value.missing and not exc.value.unexpected
    assert all("fusion" in k or "mel_conv2d" in k for k in exc.value.missing)


def test_built_without_initialising_it_computes_what_the_framework_build_computes(
    shared_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.nn.init leaves every parameter as allocated while CLAP_Module is built (the
    checkpoint fills them all): the same embeddings, bit for bit, as a build that
    initialises them first."""
    import contextlib

    import dp_models.loaders.laion_clap as clap_loader

    inits: list[str] = []
    original = torch.nn.init.kaiming_uniform_

    def counted(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        inits.append(type(tensor).__name__)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", counted)
    wave = np.sin(np.linspace(0, 2000, 48_000)).astype(np.float32)[None]

    def embeddings() -> tuple[Any, Any]:
        clap = manager(shared_root, tmp_path, device="cpu").load(CLAP)
        with torch.inference_mode():
            text = clap.get_text_embedding(TEXTS, use_tensor=True)
            return text, clap.get_audio_embedding_from_data(wave)

    text, audio = embeddings()
    assert "Parameter" not in inits
    with monkeypatch.context() as m:
        m.setattr(
            clap_loader, "parameters_left_uninitialised", lambda ctx: contextlib.nullcontext()
        )
        framework_text, framework_audio = embeddings()
    assert "Parameter" in inits  # the framework's build initialises them
    assert torch.equal(text, framework_text)
    np.testing.assert_array_equal(audio, framework_audio)
