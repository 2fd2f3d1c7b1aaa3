"""What was verified is what loads: the loader reads the file the manager opened and
verified, never a second lookup of its path (docs/security.md)."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dp_models import ModelManager
from dp_models._errors import (
    ArtifactChangedError,
    ArtifactError,
    ArtifactUnreadableError,
    DigestMismatchError,
    LoaderError,
)
from dp_models.loaders import LoadContext, Loader, NoArgs
from dp_models.testing.nets import TinyNet

from .bounded import bounded
from .conftest import SpecWriter, inprocess_spec, sha256
from .hashing import count_hashing

pytestmark = pytest.mark.adversarial

WEIGHTS = "tiny/w.pt"


def saved(net: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def nets() -> tuple[TinyNet, TinyNet]:
    torch.manual_seed(0)
    return TinyNet(), TinyNet()  # the pinned weights, and others


@pytest.fixture
def tiny(
    write_spec: SpecWriter, models_root: Path, nets: tuple[TinyNet, TinyNet]
) -> tuple[Path, bytes, bytes]:
    """A torch_state_dict spec ``tiny`` pinned to the first net's weights; returns the
    artifact's path and both nets' bytes."""
    pinned, other = saved(nets[0]), saved(nets[1])
    art = f"- {{path: {WEIGHTS}, format: pt, sha256: {sha256(pinned)}}}"
    extra = "loader_args: {class_path: 'dp_models.testing.nets:TinyNet'}\ndevice: cpu\n"
    write_spec("tiny", inprocess_spec("tiny", art, extra))
    path = models_root / WEIGHTS
    path.parent.mkdir(parents=True)
    path.write_bytes(pinned)
    return path, pinned, other


@pytest.mark.parametrize("policy", ["cached", "always"])
def test_a_rename_during_loads_never_loads_other_weights(
    policy: str,
    tiny: tuple[Path, bytes, bytes],
    nets: tuple[TinyNet, TinyNet],
    make_manager: Callable[..., ModelManager],
) -> None:
    path, pinned, other = tiny
    a, b = path.with_name("a"), path.with_name("b")
    a.write_bytes(pinned)
    b.write_bytes(other)
    stop = threading.Event()

    def swap() -> None:  # an operator re-provisioning the file with atomic renames
        n = 0
        while not stop.is_set():
            n += 1
            tmp = path.with_name(f".tmp{n}")
            os.link(b if n % 2 else a, tmp)
            os.replace(tmp, path)
            time.sleep(0.002 * (n % 3))

    mm = make_manager(verify=policy)
    expected = nets[0].fc.weight
    loaded = refused = 0
    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            mm.unload("tiny")
            try:
                model = mm.load("tiny")
            except (ArtifactError, LoaderError) as exc:
                assert isinstance(exc, (DigestMismatchError, ArtifactChangedError)) or (
                    "changed since it was resolved" in str(exc)
                ), exc
                refused += 1
                continue
            assert torch.equal(model.fc.weight, expected), "unpinned weights were loaded"
            loaded += 1
    finally:
        stop.set()
        thread.join(10)
    assert loaded > 0 and refused > 0  # both happened: the race was real


class SwapsDuringLoad(Loader[NoArgs]):
    """Renames other bytes over the artifact while it loads, then reads it the ways a
    loader can: bytes, a file object, a path."""

    name = "verified_load_tests_swap"
    framework = "pytest"
    extra = "test"
    other = b""

    def load(self, ctx: LoadContext) -> Any:
        real = ctx.spec.artifacts[0].path
        target = Path(os.environ["DP_MODELS_ROOT"]) / real
        tmp = target.with_name("swap.tmp")
        tmp.write_bytes(self.other)
        os.replace(tmp, target)
        with ctx.open() as f:
            opened = f.read()
        return {"bytes": ctx.read_bytes(), "open": opened, "path": ctx.artifact().read_bytes()}


def swapped_spec(write_spec: SpecWriter, loader: str) -> None:
    art = f"- {{path: s/w.bin, format: json, sha256: {sha256(b'the verified bytes')}}}"
    body = inprocess_spec("swapped", art, "loader_args: {}\ndevice: cpu\n")
    write_spec("swapped", body.replace("loader: torch_state_dict", f"loader: {loader}"))


@pytest.fixture
def swapping(
    write_spec: SpecWriter, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    data = b"the verified bytes"
    swapped_spec(write_spec, SwapsDuringLoad.name)
    (models_root / "s").mkdir()
    (models_root / "s/w.bin").write_bytes(data)
    monkeypatch.setenv("DP_MODELS_ROOT", str(models_root))
    SwapsDuringLoad.other = b"bytes renamed over it"
    yield models_root / "s/w.bin"


@pytest.mark.parametrize("policy", ["cached", "always"])
def test_the_loader_reads_the_verified_file_after_a_rename(
    policy: str, swapping: Path, make_manager: Callable[..., ModelManager]
) -> None:
    got = make_manager(verify=policy, loaders=LOADERS).load("swapped")
    assert got == {"bytes": b"the verified bytes"} | {
        "open": b"the verified bytes",
        "path": b"the verified bytes",
    }
    assert swapping.read_bytes() == b"bytes renamed over it"  # the rename did happen


class WritesDuringLoad(SwapsDuringLoad):
    """Appends to the artifact in place while it loads (a copy still running)."""

    name = "verified_load_tests_write"

    def load(self, ctx: LoadContext) -> Any:
        data = ctx.read_bytes()
        with open(Path(os.environ["DP_MODELS_ROOT"]) / ctx.spec.artifacts[0].path, "ab") as f:
            f.write(b" and more")
        return data


#: The test loaders, given to the managers beside the built-in ones.
LOADERS = {loader.name: loader for loader in (SwapsDuringLoad, WritesDuringLoad)}


def test_a_file_written_during_the_load_discards_the_model(
    swapping: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    swapped_spec(write_spec, WritesDuringLoad.name)
    mm = make_manager(loaders=LOADERS)
    with pytest.raises(ArtifactChangedError, match="was written during the load") as exc:
        mm.load("swapped")
    assert exc.value.spec == "swapped"
    assert mm.unload("swapped") == 0  # nothing was cached


def test_verify_always_hashes_each_file_once_per_load(
    tiny: tuple[Path, bytes, bytes],
    nets: tuple[TinyNet, TinyNet],
    make_manager: Callable[..., ModelManager],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _, _ = tiny
    mm = make_manager(verify="always")
    calls = count_hashing(monkeypatch)
    model = mm.load("tiny")
    assert calls == [path]  # one pass: hashed while read for torch.load, not before it
    assert torch.equal(model.fc.weight, nets[0].fc.weight)
    assert [e["name"] for e in mm.models_used()] == ["tiny"]


def test_verify_always_refuses_other_bytes_before_the_framework_reads_them(
    tiny: tuple[Path, bytes, bytes], make_manager: Callable[..., ModelManager]
) -> None:
    path, _, other = tiny
    path.write_bytes(other)
    mm = make_manager(verify="always")
    with pytest.raises(DigestMismatchError) as exc:
        mm.load("tiny")
    assert exc.value.actual == sha256(other)
    assert mm.models_used() == []  # a failed load is not recorded


def test_a_fifo_artifact_is_a_typed_error_not_a_hang(
    tiny: tuple[Path, bytes, bytes], make_manager: Callable[..., ModelManager]
) -> None:
    path, _, _ = tiny
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ArtifactUnreadableError, match="FIFO") as exc:
        bounded(lambda: make_manager().get("tiny"))
    assert exc.value.spec == "tiny"
