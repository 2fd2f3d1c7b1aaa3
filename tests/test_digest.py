"""File and directory digests, the digest cache and the parallel hasher (dp_models._digest)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from dp_models import _digest as digest
from dp_models._digest import (
    CHUNK_SIZE,
    DigestCache,
    FileDigest,
    Hasher,
    directory_digest,
    directory_files,
    is_sha256,
    sha256_file,
)
from dp_models._errors import ConfigurationError, DPModelsError, FileChangedError

from .conftest import TINY_DATA, make_file, sha256
from .hashing import count_hashing

MiB = 1 << 20


# -- helpers ---------------------------------------------------------------------------------


def dir_digest(path: Path) -> str:
    """The directory digest of ``path`` through dp_models."""
    return directory_digest([(rel, sha256_file(p)) for rel, p in directory_files(path)])


def documented_recipe() -> str:
    """The shell recipe from digest.py's docstring, without its ``cd DIR &&`` prefix."""
    doc = digest.__doc__ or ""
    lines = doc[doc.index("cd DIR &&") :].splitlines()
    command = ""
    for line in lines:
        command += line.strip()
        if not command.endswith("\\"):
            break
        command = command[:-1] + " "
    assert command.startswith("cd DIR && ") and command.endswith("| sha256sum"), command
    return command.removeprefix("cd DIR && ")


def recipe_digest(directory: Path) -> str:
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", documented_recipe()],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out.split()[0]


def age(path: Path, seconds: float = 0.05) -> None:
    """Wait until ``path``'s last change is ``seconds`` old, so that a later change gets
    another ctime even on a file system with a coarse clock."""
    ctime_ns = os.stat(path).st_ctime_ns
    while time.time_ns() - ctime_ns < seconds * 1e9:
        time.sleep(0.01)


def cache_entries(cache: DigestCache) -> list[Path]:
    assert cache.directory is not None
    return sorted(cache.directory.glob("*.json")) if cache.directory.is_dir() else []


def only_entry(cache: DigestCache) -> dict[str, object]:
    entries = cache_entries(cache)
    assert len(entries) == 1, entries
    data = json.loads(entries[0].read_bytes())
    assert isinstance(data, dict)
    return data


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        make_file(root / rel, data)
    return root


TREE = {
    "config.json": b'{"a": 1}\n',
    "Zeta.bin": b"upper case sorts before lower case in bytes",
    "a b/with space.txt": b"spaces in names\n",
    "a-b/dash": b"-",
    "a_b/underscore": b"_",
    "nested/deeper/still/weights.safetensors": bytes(range(256)) * 17,
    "nested/é.txt": "é".encode(),
    "модель/веса.bin": b"\x00\x01\x02",
    "empty": b"",
}


# -- sha256_file -----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), list(TINY_DATA.items()))
def test_sha256_file_known_digests(tmp_path: Path, data: bytes, expected: str) -> None:
    path = make_file(tmp_path / "tiny", data)
    assert sha256_file(path) == expected
    assert sha256_file(str(path)) == expected


def test_sha256_file_multi_mib_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 12345)  # not a multiple of the chunk size
    path = make_file(tmp_path / "big.bin", data)
    seen: list[int] = []
    assert sha256_file(path, progress=seen.append) == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data)
    assert max(seen) <= CHUNK_SIZE


def test_sha256_file_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "64mib.bin"
    expected = hashlib.sha256()
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(64):
            chunk = i.to_bytes(4, "little") + block[4:]
            expected.update(chunk)
            f.write(chunk)
    del block, chunk
    tracemalloc.start()
    try:
        actual = sha256_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert actual == expected.hexdigest()
    assert peak < 2 * MiB, f"hashing 64 MiB peaked at {peak / MiB:.1f} MiB"


def test_sha256_file_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "nope")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (TINY_DATA[b"abc"], True),
        (TINY_DATA[b"abc"].upper(), False),
        ("ab" * 31, False),
        (b"0" * 64, False),
        (None, False),
        ("g" * 64, False),
    ],
)
def test_is_sha256(value: object, ok: bool) -> None:
    assert is_sha256(value) is ok


# -- directory digest ------------------------------------------------------------------------


def test_directory_digest_matches_documented_recipe(tmp_path: Path) -> None:
    d = tree(tmp_path / "dir", TREE)
    (d / "empty dir" / "inner").mkdir(parents=True)  # empty directories do not count
    ours = dir_digest(d)
    assert ours == recipe_digest(d)
    # and the recipe's lines are what the docstring says they are
    lines = "".join(
        f"{sha256(TREE[rel])}  {rel}\n" for rel in sorted(TREE, key=lambda r: r.encode())
    )
    assert ours == sha256(lines.encode())


def test_directory_files_in_utf8_byte_order(tmp_path: Path) -> None:
    d = tree(tmp_path / "dir", TREE)
    rels = [rel for rel, _ in directory_files(d)]
    assert rels == sorted(TREE, key=lambda r: r.encode("utf-8"))
    assert rels.index("Zeta.bin") < rels.index("a b/with space.txt")  # bytes, not locale
    assert all((d / rel) == p for rel, p in directory_files(d))


def test_directory_digest_independent_of_creation_order_and_mtimes(tmp_path: Path) -> None:
    first = tree(tmp_path / "first", TREE)
    second = tmp_path / "second"
    for i, rel in enumerate(reversed(list(TREE))):
        p = make_file(second / rel, TREE[rel])
        os.utime(p, ns=(10**18 + i, 10**9 * i))
        p.chmod(0o600 if i % 2 else 0o644)
    os.utime(second, ns=(0, 0))
    assert dir_digest(first) == dir_digest(second)
    assert recipe_digest(first) == recipe_digest(second)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: (d / "nested/é.txt").write_bytes(b"e"), id="content"),
        pytest.param(lambda d: (d / "a-b/dash").rename(d / "a-b/dash2"), id="name"),
        pytest.param(lambda d: (d / "a-b/dash").rename(d / "a_b/dash"), id="moved"),
        pytest.param(lambda d: make_file(d / "extra/file", b""), id="added"),
        pytest.param(lambda d: (d / "empty").unlink(), id="removed"),
    ],
)
def test_directory_digest_depends_on_names_and_contents(tmp_path: Path, change: object) -> None:
    d = tree(tmp_path / "dir", TREE)
    before = dir_digest(d)
    change(d)  # type: ignore[operator]
    assert dir_digest(d) != before
    assert dir_digest(d) == recipe_digest(d)


def test_directory_digest_takes_entries_in_any_order() -> None:
    pairs = [(rel, sha256(data)) for rel, data in TREE.items()]
    assert directory_digest(pairs) == directory_digest(list(reversed(pairs)))
    assert directory_digest([]) == TINY_DATA[b""]


def test_symlinked_file_inside_directory_is_followed(tmp_path: Path) -> None:
    outside = make_file(tmp_path / "elsewhere" / "blob", b"the linked bytes")
    linked = tree(tmp_path / "linked", {"a.txt": b"a"})
    (linked / "sub").mkdir()
    (linked / "sub" / "weights.bin").symlink_to(outside)
    copied = tree(tmp_path / "copied", {"a.txt": b"a", "sub/weights.bin": b"the linked bytes"})
    assert [rel for rel, _ in directory_files(linked)] == ["a.txt", "sub/weights.bin"]
    assert dir_digest(linked) == dir_digest(copied)
    assert dir_digest(linked) == recipe_digest(linked)


def test_symlinked_directory_is_listed_under_each_name(tmp_path: Path) -> None:
    # A linked directory is walked under the link's name as well as its own, whatever order
    # the file system lists them in (find -L does the same).
    d = tmp_path / "dir"
    for name in "abcdefgh":
        make_file(d / f"real{name}" / "x", name.encode())
        (d / f"link{name}").symlink_to(f"real{name}")
    rels = [rel for rel, _ in directory_files(d)]
    assert rels == sorted([f"{kind}{n}/x" for kind in ("link", "real") for n in "abcdefgh"])
    assert dir_digest(d) == recipe_digest(d)


def _run_with_deadline(target: Path, seconds: float = 20.0) -> list[tuple[str, Path]]:
    result: list[list[tuple[str, Path]]] = []
    worker = threading.Thread(target=lambda: result.append(directory_files(target)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "directory_files did not finish: a symlink loop hangs it"
    assert result, "directory_files raised"
    return result[0]


def test_symlink_loops_do_not_hang(tmp_path: Path) -> None:
    d = tree(tmp_path / "dir", {"top.bin": b"t", "sub/inner.bin": b"i"})
    (d / "sub" / "up").symlink_to("..")  # a loop through the parent
    (d / "sub" / "self").symlink_to(".")  # a loop on itself
    (d / "knot").symlink_to("knot")  # a link to itself: not a file
    (d / "dangling").symlink_to("does-not-exist")  # broken: not a file
    rels = [rel for rel, _ in _run_with_deadline(d)]
    assert rels == ["sub/inner.bin", "top.bin"]
    assert dir_digest(d) == dir_digest(
        tree(tmp_path / "plain", {"top.bin": b"t", "sub/inner.bin": b"i"})
    )


# -- digest cache and hasher -----------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return make_file(tmp_path / "root" / "weights.bin", b"pretend these are weights" * 1000)


def test_fresh_hasher_hits_the_cache(
    no_racy_window: None, cache_dir: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = sha256(weights.read_bytes())
    first = Hasher(DigestCache(cache_dir)).file(weights)
    assert first == FileDigest(weights, expected, weights.stat().st_size, cached=False)
    calls = count_hashing(monkeypatch)
    second = Hasher(DigestCache(cache_dir)).file(weights)
    assert second == FileDigest(weights, expected, weights.stat().st_size, cached=True)
    assert calls == []
    entry = only_entry(DigestCache(cache_dir))
    st = weights.stat()
    assert entry["sha256"] == expected
    assert (entry["dev"], entry["ino"], entry["size"], entry["mtime_ns"], entry["ctime_ns"]) == (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def test_entry_not_trusted_after_change_with_mtime_restored(cache_dir: Path, weights: Path) -> None:
    # `touch -r`: the content changes, size and mtime are put back; only ctime can tell.
    age(weights)
    cache = DigestCache(cache_dir, racy_window_s=0)
    before = weights.stat()
    assert Hasher(cache).file(weights).cached is False
    assert Hasher(DigestCache(cache_dir, racy_window_s=0)).file(weights).cached is True

    data = bytearray(weights.read_bytes())
    data[:9] = b"swapped!!"
    with open(weights, "r+b") as f:  # same inode, same size
        f.write(data)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns

    again = Hasher(DigestCache(cache_dir, racy_window_s=0)).file(weights)
    assert again.cached is False
    assert again.sha256 == sha256(bytes(data)) != sha256(b"pretend these are weights" * 1000)


def test_racy_file_is_not_stored(
    cache_dir: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DigestCache(cache_dir, racy_window_s=60)
    assert cache.is_racy(weights.stat())
    calls = count_hashing(monkeypatch)
    assert Hasher(cache).file(weights).cached is False
    assert cache_entries(cache) == []
    assert Hasher(DigestCache(cache_dir, racy_window_s=60)).file(weights).cached is False
    assert len(calls) == 2
    # the same file, older than the window, is stored
    age(weights, 0.1)
    old_enough = DigestCache(cache_dir, racy_window_s=0.05)
    assert not old_enough.is_racy(weights.stat())
    Hasher(old_enough).file(weights)
    assert Hasher(DigestCache(cache_dir, racy_window_s=0.05)).file(weights).cached is True


def _valid_entry(weights: Path) -> dict[str, object]:
    st = weights.stat()
    return {
        "format": 1,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "sha256": sha256(weights.read_bytes()),
        "path": str(weights),
    }


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda e: b"\x00\xff garbage \xfe", id="garbage-bytes"),
        pytest.param(lambda e: b"", id="empty"),
        pytest.param(lambda e: json.dumps(e).encode()[:40], id="truncated"),
        pytest.param(lambda e: b"[1, 2, 3]", id="list"),
        pytest.param(lambda e: b'"a string"', id="string"),
        pytest.param(
            lambda e: json.dumps({**e, "size": str(e["size"])}).encode(), id="size-as-string"
        ),
        pytest.param(lambda e: json.dumps({**e, "sha256": 12}).encode(), id="sha256-as-int"),
        pytest.param(lambda e: json.dumps({**e, "sha256": "0" * 63}).encode(), id="short-sha"),
        pytest.param(lambda e: json.dumps({**e, "format": 2}).encode(), id="format-2"),
        pytest.param(
            lambda e: json.dumps({k: v for k, v in e.items() if k != "format"}).encode(),
            id="no-format",
        ),
        pytest.param(
            lambda e: json.dumps({k: v for k, v in e.items() if k != "ctime_ns"}).encode(),
            id="no-ctime",
        ),
    ],
)
def test_corrupt_entry_is_ignored_then_rewritten(
    no_racy_window: None,
    cache_dir: Path,
    weights: Path,
    corrupt: object,
) -> None:
    good = _valid_entry(weights)
    Hasher(DigestCache(cache_dir)).file(weights)
    (entry_path,) = cache_entries(DigestCache(cache_dir))
    assert json.loads(entry_path.read_bytes()) == good
    entry_path.write_bytes(corrupt(good))  # type: ignore[operator]

    result = Hasher(DigestCache(cache_dir)).file(weights)
    assert result.cached is False
    assert result.sha256 == good["sha256"]
    assert json.loads(entry_path.read_bytes()) == good  # rewritten
    assert Hasher(DigestCache(cache_dir)).file(weights).cached is True


def test_unwritable_cache_directory_warns_once(
    no_racy_window: None,
    tmp_path: Path,
    weights: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tests run as root, which ignores permission bits: make mkdir fail with a file instead.
    blocker = make_file(tmp_path / "not-a-directory", b"")
    other = make_file(tmp_path / "root" / "other.bin", b"other")
    cache = DigestCache(blocker / "cache")
    hasher = Hasher(cache, max_workers=4)
    with caplog.at_level(logging.DEBUG, logger="dp_models"):
        results = hasher.files([weights, other])
        again = Hasher(cache).file(weights)
    assert [r.sha256 for r in results if isinstance(r, FileDigest)] == [
        sha256(weights.read_bytes()),
        sha256(b"other"),
    ]
    assert again.sha256 == sha256(weights.read_bytes())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "digest cache" in message and "DP_MODELS_CACHE_DIR" in message
    assert str(blocker) in message
    assert not blocker.is_dir()


def test_disabled_cache_never_stores(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_hashing(monkeypatch)
    for _ in range(2):
        assert Hasher(DigestCache(None, racy_window_s=0)).file(weights).cached is False
    assert Hasher().file(weights).cached is False
    assert len(calls) == 3


def test_policy_always_rehashes_despite_valid_entry(
    no_racy_window: None,
    cache_dir: Path,
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Hasher(DigestCache(cache_dir)).file(weights)
    assert Hasher(DigestCache(cache_dir)).file(weights).cached is True
    calls = count_hashing(monkeypatch)
    result = Hasher(DigestCache(cache_dir), policy="always").file(weights)
    assert result.cached is False
    assert result.sha256 == sha256(weights.read_bytes())
    assert calls == [weights]


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"policy must be 'cached' or 'always'"):
        Hasher(policy="never")


@pytest.mark.parametrize("same_size", [False, True], ids=["grows", "same-size"])
def test_file_modified_while_hashed_raises(
    no_racy_window: None,
    cache_dir: Path,
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    same_size: bool,
) -> None:
    age(weights)
    original = digest.sha256_fd

    def modify_midway(fd: int, progress: object = None, **kwargs: object) -> str:
        seen = 0

        def advance(n: int) -> None:
            nonlocal seen
            if seen == 0:  # after the first chunk: another writer touches the file
                with open(weights, "r+b") as f:
                    f.seek(0, os.SEEK_END if not same_size else os.SEEK_SET)
                    f.write(b"X")
            seen += n
            if progress is not None:
                progress(n)  # type: ignore[operator]

        return original(fd, advance, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(digest, "sha256_fd", modify_midway)
    cache = DigestCache(cache_dir)
    with pytest.raises(
        FileChangedError, match=r"weights\.bin changed while it was being hashed"
    ) as info:
        Hasher(cache).file(weights)
    assert isinstance(info.value, OSError) and isinstance(info.value, DPModelsError)
    assert info.value.path == Path(weights)
    assert cache_entries(cache) == []
    # through files() it is returned, not raised
    monkeypatch.setattr(digest, "sha256_file", modify_midway)
    (result,) = Hasher(DigestCache(cache_dir)).files([weights])
    assert isinstance(result, FileChangedError)


def test_files_keeps_order_and_returns_failures(tmp_path: Path) -> None:
    datas = [os.urandom(n) for n in (3 * MiB, 0, 17, MiB + 1, 2)]
    paths: list[str | os.PathLike[str]] = [
        make_file(tmp_path / f"f{i}", d) for i, d in enumerate(datas)
    ]
    missing = tmp_path / "missing.bin"
    paths.insert(2, missing)
    results = Hasher(max_workers=4).files(paths)
    assert len(results) == len(paths)
    error = results.pop(2)
    assert isinstance(error, FileNotFoundError)
    assert error.filename == str(missing)
    assert [r.sha256 if isinstance(r, FileDigest) else r for r in results] == [
        sha256(d) for d in datas
    ]
    assert [r.path if isinstance(r, FileDigest) else r for r in results] == [
        p for p in paths if p != missing
    ]
    serial = Hasher(max_workers=1).files(paths)
    assert [type(r) for r in serial] == [type(r) for r in Hasher(max_workers=4).files(paths)]
    assert Hasher().files([]) == []


@pytest.mark.parametrize("policy", ["cached", "always"])
@pytest.mark.parametrize("workers", [1, 4])
def test_same_file_listed_twice_is_hashed_once(
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    workers: int,
) -> None:
    # The file was just written (inside the racy window): neither the cache nor the memo may
    # keep its digest, and still one call hashes it once.
    p = make_file(tmp_path / "w.bin", os.urandom(MiB))
    other = make_file(tmp_path / "o.bin", b"other")
    calls = count_hashing(monkeypatch)
    results = Hasher(DigestCache(cache_dir), policy=policy, max_workers=workers).files(
        [p, other, str(p), p]
    )
    assert [r.sha256 for r in results if isinstance(r, FileDigest)] == [
        sha256(p.read_bytes()),
        sha256(b"other"),
        sha256(p.read_bytes()),
        sha256(p.read_bytes()),
    ]
    assert sorted(calls) == sorted([p, other])


_WORKER = """
import json, sys
from dp_models._digest import DigestCache, Hasher
result = Hasher(DigestCache(sys.argv[1], racy_window_s=0)).file(sys.argv[2])
print(json.dumps({"sha256": result.sha256, "cached": result.cached}))
"""


def test_several_processes_verify_the_same_file(cache_dir: Path, tmp_path: Path) -> None:
    data = os.urandom(16 * MiB)
    p = make_file(tmp_path / "shared.bin", data)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(cache_dir), str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    assert [o["sha256"] for o in outputs] == [sha256(data)] * len(procs)
    # the inter-process lock makes one process hash it; the others read its entry
    assert sorted(o["cached"] for o in outputs) == [False] + [True] * (len(procs) - 1)
    cache = DigestCache(cache_dir, racy_window_s=0)
    assert only_entry(cache)["sha256"] == sha256(data)
    assert Hasher(cache).file(p).cached is True
    assert cache.directory is not None
    assert not [t for t in cache.directory.iterdir() if t.name.startswith(".tmp-")]


@pytest.mark.adversarial
def test_an_interrupt_drops_the_files_not_yet_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [make_file(tmp_path / f"f{i}", b"x" * 1000) for i in range(64)]
    calls = count_hashing(monkeypatch)
    original = digest.sha256_fd

    def slow_after_ctrl_c(fd: int, progress: object = None, **kwargs: object) -> str:
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the main thread, waiting
        if len(calls) >= 3:
            time.sleep(0.05)  # hashing all 64 files would now take over a second
        return original(fd, progress, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(digest, "sha256_fd", slow_after_ctrl_c)
    calls = count_hashing(monkeypatch)  # counts, then the third file brings the Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        Hasher(max_workers=2).files(files)
    assert len(calls) < 16  # the queued files were cancelled, not hashed to the end
