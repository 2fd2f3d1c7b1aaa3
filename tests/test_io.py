"""dp_models._io.atomic_write: the one way dp_models writes a file (whole or not at all),
and every writer of the library goes through it."""

from __future__ import annotations

import ast
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import dp_models
from dp_models import _io
from dp_models._digest import DigestCache
from dp_models._io import atomic_write
from dp_models._lock import Lock, LockEntry
from dp_models._provenance import save_npz, write_json

from .conftest import sha256

SRC = Path(dp_models.__file__).parent


def leftovers(directory: Path) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_bytes_text_and_a_writer(tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert atomic_write(target, b"\x00bytes") == target
    assert target.read_bytes() == b"\x00bytes"
    atomic_write(str(target), "text ü")
    assert target.read_bytes() == "text ü".encode()
    atomic_write(target, lambda f: f.write(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert leftovers(tmp_path) == []


def test_permissions(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "private", b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"y", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_reader_sees_the_old_file_until_the_new_one_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    seen: list[bytes] = []

    def writer(f: BinaryIO) -> None:
        f.write(b"new, first half")
        f.flush()
        seen.append(target.read_bytes())
        f.write(b", second half")

    atomic_write(target, writer)
    assert seen == [b"old"]
    assert target.read_bytes() == b"new, first half, second half"


class DiskFullError(Exception):
    pass


def _fail(exc: BaseException) -> Callable[[BinaryIO], None]:
    def writer(f: BinaryIO) -> None:
        f.write(b"partial")
        raise exc

    return writer


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "exc", [DiskFullError("disk full"), KeyboardInterrupt()], ids=["error", "ctrl-c"]
)
def test_a_failed_write_leaves_the_old_file_and_nothing_else(
    tmp_path: Path, exc: BaseException
) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        atomic_write(target, _fail(exc))
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []
    with pytest.raises(type(exc)):
        atomic_write(tmp_path / "new", _fail(exc))
    assert not (tmp_path / "new").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.adversarial
@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_an_interrupt_at_any_step_leaves_nothing_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, step, interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(_io.os, "fsync", counting)
    yield calls


def test_durable_writes_reach_the_disk(tmp_path: Path, fsyncs: list[int]) -> None:
    atomic_write(tmp_path / "a", b"x")
    assert len(fsyncs) == 2  # the file, then the directory that holds the new name
    fsyncs.clear()
    atomic_write(tmp_path / "b", b"x", durable=False)
    assert fsyncs == []


# -- every writer of the library uses it -----------------------------------------------------


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, bool]]:
    """Every atomic_write call, by module: (path, durable)."""
    calls: list[tuple[Path, bool]] = []
    real = _io.atomic_write

    def spy(path: Any, data: Any, **kwargs: Any) -> Path:
        calls.append((Path(path), kwargs.get("durable", True)))
        return real(path, data, **kwargs)

    from dp_models import _digest as digest
    from dp_models import _lock as lock
    from dp_models import _provenance as provenance

    for module in (lock, digest, provenance):
        monkeypatch.setattr(module, "atomic_write", spy)
    return calls


def test_the_lock_stamps_and_cache_are_written_atomically(
    tmp_path: Path, writes: list[tuple[Path, bool]]
) -> None:
    import numpy as np

    Lock(tmp_path / "catalog.lock.json", {"m.pt": LockEntry("file", sha256(b"m"), 1)}).write()
    write_json(tmp_path / "meta.json", {"a": 1})
    save_npz(
        tmp_path / "out.npz",
        {"x": np.zeros(2)},
        {"models_used": [], "model_signature": "s", "weights_digest": None},
    )
    cache = DigestCache(tmp_path / "cache", racy_window_s=0.0)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    cache.put(weights, os.stat(weights), sha256(b"w"))
    names = [(p.name, durable) for p, durable in writes]
    assert names[:3] == [("catalog.lock.json", True), ("meta.json", True), ("out.npz", True)]
    assert len(names) == 4 and names[3][1] is False  # a lost cache entry only costs a re-hash
    assert json.loads((tmp_path / "catalog.lock.json").read_text())["artifacts"]
    assert leftovers(tmp_path) == []


@pytest.mark.adversarial
def test_ctrl_c_while_the_lock_is_written_keeps_the_old_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.lock.json"
    Lock(path, {"a.pt": LockEntry("file", sha256(b"a"), 1)}).write()
    before = path.read_bytes()

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Lock(path, {"b.pt": LockEntry("file", sha256(b"b"), 1)}).write()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_no_other_module_writes_a_file_its_own_way() -> None:
    """Three copies of the temporary-file-and-rename dance (lock, stamps, digest cache, and
    the signature's) were one bug fix away from differing."""
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.as_posix() == "_io.py" or rel.parts[0] == "testing":
            continue
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("mkstemp", "replace", "fsync"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("os", "tempfile"):
                    found.append(f"{base.id}.{node.attr}")
        if found:
            offenders[rel.as_posix()] = found
    assert offenders == {}
