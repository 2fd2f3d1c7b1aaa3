"""Odd files where a spec, the lock or a digest-cache entry belongs (a FIFO, a socket, a
link to /dev/zero, a directory, a huge file), YAML and JSON nested absurdly deep or holding
absurd numbers: each is a typed error (or, for the cache, an entry not trusted), within
bounded time. Property tests feed generated and mutated spec YAML and lock files through
the real loaders."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dp_models import Catalog, CatalogError
from dp_models._cli import main
from dp_models._digest import DigestCache, FileDigest, Hasher
from dp_models._errors import JsonRejectedError, LockError, YamlRejectedError
from dp_models._json import load_json
from dp_models._lock import Lock
from dp_models._settings import packaged_catalog_dir
from dp_models._yaml import MAX_NESTING, load_spec_yaml

from .bounded import bounded
from .conftest import SpecWriter, make_file, sha256

pytestmark = pytest.mark.adversarial

T = TypeVar("T")

#: Far longer than any of these may take; a hang fails the test instead of the suite.
DEADLINE_S = 30.0


def release(fifo: Path) -> Callable[[], None]:
    """Open ``fifo`` for writing and close it: a reader blocked opening it gets EOF."""

    def go() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return go


@pytest.fixture
def sockets() -> Iterator[Callable[[Path], None]]:
    """Bind a Unix socket at a path (closed after the test)."""
    opened: list[socket.socket] = []

    def bind(path: Path) -> None:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        opened.append(s)

    yield bind
    for s in opened:
        s.close()


# -- spec files ---------------------------------------------------------------------------


def test_odd_spec_files_are_all_reported_at_once(
    catalog_dir: Path, write_spec: SpecWriter, sockets: Callable[[Path], None]
) -> None:
    write_spec("good")
    area = catalog_dir / "visual"
    os.mkfifo(area / "fifo.yaml")
    (area / "zero.yaml").symlink_to("/dev/zero")
    sockets(area / "sock.yaml")
    (area / "dir.yaml").mkdir()
    make_file(area / "dir.yaml" / "inside.yaml", b"never read: a directory is not walked\n")

    with pytest.raises(CatalogError) as exc:
        bounded(lambda: Catalog.load(catalog_dir), unblock=release(area / "fifo.yaml"))

    found = {p.file: p.message for p in exc.value.problems}
    assert set(found) == {
        "visual/dir.yaml",
        "visual/fifo.yaml",
        "visual/sock.yaml",
        "visual/zero.yaml",
    }
    assert "is a FIFO (named pipe), not a regular file" in found["visual/fifo.yaml"]
    assert "is a character device, not a regular file" in found["visual/zero.yaml"]
    assert "is a socket, not a regular file" in found["visual/sock.yaml"]
    assert "is a directory, not a regular file" in found["visual/dir.yaml"]
    assert all("spec file" in message for message in found.values())


def _nested(depth: int, *, flow: bool) -> bytes:
    if flow:
        return b"name: x\nvalue: " + b"[" * depth + b"]" * depth + b"\n"
    return b"name: x\nvalue:\n  " + b"- " * depth + b"1\n"  # block sequences, one a level


@pytest.mark.parametrize("flow", [True, False], ids=["flow", "block"])
def test_yaml_nested_10000_deep_is_rejected(flow: bool) -> None:
    with pytest.raises(YamlRejectedError, match=rf"nested more than {MAX_NESTING} levels deep"):
        bounded(lambda: load_spec_yaml(_nested(10_000, flow=flow)))


def test_yaml_nesting_up_to_the_limit_is_read() -> None:
    data = load_spec_yaml(_nested(MAX_NESTING - 1, flow=True))  # the top mapping is one level
    assert isinstance(data, dict)
    with pytest.raises(YamlRejectedError, match=r"line 2: .*nested more than"):
        load_spec_yaml(_nested(MAX_NESTING, flow=True))


@pytest.mark.parametrize(
    ("literal", "phrase"),
    [
        (b"1" * 5000, "an integer of 5000 characters"),
        (b"0x" + b"f" * 5000, "an integer of 5002 characters"),
        (b":".join([b"1"] * 2000), "an integer of 3999 characters"),
        (b"!!int abc", "cannot read the value"),
        (b"!!float abc", "cannot read the value"),
        (b"!!bool maybe", "cannot read the value"),
        (b"2021-02-30", "cannot read the value"),
    ],
    ids=["decimal", "hex", "sexagesimal", "int-tag", "float-tag", "bool-tag", "bad-date"],
)
def test_odd_scalars_are_rejected_with_the_line(literal: bytes, phrase: str) -> None:
    with pytest.raises(YamlRejectedError, match=rf"line 2: {phrase}"):
        load_spec_yaml(b"name: x\nsize: " + literal + b"\n")


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (_nested(10_000, flow=True).decode(), "nested more than"),
        (_nested(10_000, flow=False).decode(), "nested more than"),
        ("name: x\nsize: " + "7" * 5000 + "\n", "an integer of 5000 characters"),
    ],
    ids=["deep-flow", "deep-block", "huge-int"],
)
def test_catalog_reports_deep_and_huge_yaml(
    catalog_dir: Path, write_spec: SpecWriter, body: str, phrase: str
) -> None:
    write_spec("x", body)
    with pytest.raises(CatalogError, match=phrase) as exc:
        bounded(lambda: Catalog.load(catalog_dir))
    (problem,) = exc.value.problems
    assert problem.file == "visual/x.yaml"


# -- the lock -----------------------------------------------------------------------------


def _odd_lock(path: Path, kind: str, bind: Callable[[Path], None]) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        bind(path)
    else:
        path.mkdir()


LOCK_KINDS = [
    ("fifo", "a FIFO (named pipe)"),
    ("zero", "a character device"),
    ("socket", "a socket"),
    ("dir", "a directory"),
]


@pytest.mark.parametrize(("kind", "described"), LOCK_KINDS, ids=[k for k, _ in LOCK_KINDS])
def test_odd_lock_file_is_a_lock_error(
    tmp_path: Path, sockets: Callable[[Path], None], kind: str, described: str
) -> None:
    path = tmp_path / "catalog.lock.json"
    _odd_lock(path, kind, sockets)
    with pytest.raises(LockError, match=re.escape(f"is {described}, not a regular file")) as exc:
        bounded(lambda: Lock.read(path), unblock=release(path))
    assert exc.value.path == path
    assert "dp-models lock" in str(exc.value)


@pytest.mark.parametrize(("kind", "described"), LOCK_KINDS, ids=[k for k, _ in LOCK_KINDS])
def test_catalog_with_an_odd_lock_reports_it(
    catalog_dir: Path,
    write_spec: SpecWriter,
    sockets: Callable[[Path], None],
    kind: str,
    described: str,
) -> None:
    write_spec("good")
    lock = catalog_dir / "catalog.lock.json"
    _odd_lock(lock, kind, sockets)
    with pytest.raises(CatalogError, match=re.escape(described)) as exc:
        bounded(lambda: Catalog.load(catalog_dir), unblock=release(lock))
    assert [p.file for p in exc.value.problems] == [str(lock)]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than"),
        ('{"format": 1, "artifacts": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001, "nested more"),
        ('{"format": 1' + "0" * 5000 + ', "artifacts": {}}', "an integer of 5001 digits"),
        ('{"format": NaN, "artifacts": {}}', "NaN is not"),
        ('{"format": 1, "artifacts": {"a": ' + "[" * 60 + "]" * 60 + "}}", "must have exactly"),
    ],
    ids=["deep-array", "deep-object", "huge-int", "nan", "deep-but-within-bound"],
)
def test_deep_and_odd_lock_json_is_a_lock_error(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "catalog.lock.json"
    path.write_text(text)
    with pytest.raises(LockError, match=phrase):
        bounded(lambda: Lock.read(path))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = b'{"a": "' + b"[" * 1000 + b'", "b": "\\"{{{{\\\\", "c": [["]]]]"]]}'
    assert load_json(text) == {"a": "[" * 1000, "b": '"{{{{\\', "c": [["]]]]"]]}
    with pytest.raises(JsonRejectedError, match="nested more than 64"):
        load_json(b'{"a": "]]]]", "b": ' + b"[" * 64 + b"]" * 64 + b"}")


# -- the digest cache ---------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = make_file(tmp_path / "root" / "weights.bin", b"weights" * 100)
    os.utime(path, ns=(0, 0))  # old enough to be cached at once
    return path


def _fifo_entry(path: Path) -> None:
    os.mkfifo(path)


def _zero_entry(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _huge_entry(path: Path) -> None:
    path.write_bytes(b" " * (1 << 20) + b"{}")


def _deep_entry(path: Path) -> None:
    path.write_bytes(b"[" * 60_000 + b"]" * 60_000)


def _dir_entry(path: Path) -> None:
    path.mkdir()


ENTRIES = [_fifo_entry, _zero_entry, _huge_entry, _deep_entry, _dir_entry]


@pytest.mark.parametrize("plant", ENTRIES, ids=["fifo", "dev-zero", "huge", "deep", "dir"])
def test_odd_cache_entry_is_never_trusted_never_fatal(
    tmp_path: Path, weights: Path, plant: Callable[[Path], None]
) -> None:
    cache = DigestCache(tmp_path / "cache", racy_window_s=0)
    st = weights.stat()
    entry = cache._entry_path(st)
    entry.parent.mkdir(parents=True)
    plant(entry)

    assert bounded(lambda: cache.get(st), unblock=release(entry)) is None
    result = bounded(lambda: Hasher(cache).file(weights), unblock=release(entry))
    assert result == FileDigest(weights, sha256(weights.read_bytes()), st.st_size, cached=False)
    if plant is not _dir_entry:  # an entry is replaced, never written through
        assert entry.is_file() and not entry.is_symlink()
        assert Hasher(DigestCache(tmp_path / "cache")).file(weights).cached is True
    assert not list(entry.parent.glob(".tmp-*"))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link"])
def test_odd_lock_file_in_the_cache_is_not_used(tmp_path: Path, weights: Path, kind: str) -> None:
    cache = DigestCache(tmp_path / "cache", racy_window_s=0)
    st = weights.stat()
    lock = cache._entry_path(st).with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "dev-zero":
        _zero_entry(lock)
    else:
        lock.symlink_to(victim)  # O_CREAT through a link would create (or lock) any file
    result = bounded(lambda: Hasher(cache).file(weights), unblock=release(lock))
    assert result.sha256 == sha256(weights.read_bytes())
    assert not victim.exists()
    assert Hasher(DigestCache(tmp_path / "cache")).file(weights).cached is True


# -- dp-models digest ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "described"),
    [("fifo", "a FIFO (named pipe)"), ("socket", "a socket"), ("device", "a character device")],
)
def test_digest_command_says_what_an_odd_file_is(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sockets: Callable[[Path], None],
    kind: str,
    described: str,
) -> None:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sockets(path)
    else:
        path.symlink_to("/dev/null")
    code = bounded(lambda: main(["digest", str(path)]), unblock=release(path))
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == f"dp-models: error: {path} is {described}, not a regular file\n"
    code = bounded(lambda: main(["digest", "--json", str(path)]), unblock=release(path))
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 1
    assert error["type"] == "NotRegularFileError"
    assert (error["path"], error["kind"]) == (str(path), described)


# -- property tests -----------------------------------------------------------------------

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PACKAGED_SPECS = sorted(packaged_catalog_dir().rglob("*.yaml"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "~",
            "yes",
            "No",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "1:30:00",
            "2021-02-30",
            "2001-12-14t21:59:43.10-05:00",
            ".inf",
            "-.NaN",
            "!!binary aGVsbG8=",
            "!!int abc",
            "!!bool maybe",
            "!!set {a, b}",
            "!!omap [a: 1]",
            "!!python/name:os.system",
            "&a 1",
            "*a",
            "<<: {a: 1}",
            "'unclosed",
            '"\\x00"',
            "\t",
            "%YAML 1.1",
            "---",
            "9" * 5000,
            "@reserved",
            "`tick",
        ]
    ),
)


def _yaml_value(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return scalars.map(str)
    inner = _yaml_value(depth - 1)
    return st.one_of(
        inner,
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.text(max_size=8), inner, max_size=4).map(
            lambda d: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"
        ),
        st.integers(min_value=1, max_value=300).map(lambda n: "[" * n + "]" * n),
    )


SPEC_KEYS = [
    "name",
    "version",
    "family",
    "role",
    "users",
    "runtime",
    "engine",
    "loader",
    "artifacts",
    "requires",
    "optional",
    "triton",
    "device",
    "precision",
    "bogus",
]

spec_yaml = st.one_of(
    st.dictionaries(st.sampled_from(SPEC_KEYS), _yaml_value(3), max_size=10).map(
        lambda d: "".join(f"{k}: {v}\n" for k, v in d.items())
    ),
    st.text(max_size=400),
)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for pos, cut, insert in edits:
        at = pos % (len(data) + 1)
        data = data[:at] + insert + data[at + cut :]
    return data


edits = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=1 << 16),
        st.integers(min_value=0, max_value=8),
        st.one_of(
            st.binary(max_size=8),
            st.sampled_from(
                [
                    b"[",
                    b"{",
                    b"\n  - ",
                    b": ",
                    b"&x ",
                    b"*x",
                    b"!!int ",
                    b"9" * 5000,
                    b"\xff",
                    b"\x00",
                    b"'",
                    b"\t",
                    b"\n---\n",
                    b"? ",
                ]
            ),
        ),
    ),
    min_size=1,
    max_size=6,
)


def _load_catalog_of(directory: Path, name: str, raw: bytes) -> None:
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / f"{name}.yaml").write_bytes(raw)
    try:
        bounded(lambda: Catalog.load(directory))
    except CatalogError as exc:
        assert exc.problems and all(p.file for p in exc.problems)


@PROPERTY
@given(text=spec_yaml)
def test_generated_spec_yaml_gives_a_catalog_or_a_catalog_error(tmp_path: Path, text: str) -> None:
    directory = tmp_path / "generated"
    directory.mkdir(exist_ok=True)
    _load_catalog_of(directory, "x", text.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(index=st.integers(min_value=0, max_value=len(PACKAGED_SPECS) - 1), changes=edits)
def test_mutated_packaged_spec_gives_a_catalog_or_a_catalog_error(
    tmp_path: Path, index: int, changes: list[tuple[int, int, bytes]]
) -> None:
    source = PACKAGED_SPECS[index]
    directory = tmp_path / "mutated"
    directory.mkdir(exist_ok=True)
    _load_catalog_of(directory, source.stem, _mutate(source.read_bytes(), changes))


def test_packaged_specs_load_unmutated(tmp_path: Path) -> None:
    # the property above starts from files that are valid on their own
    for source in PACKAGED_SPECS:
        raw = source.read_bytes()
        assert isinstance(load_spec_yaml(raw), dict), source


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=70),
        st.sampled_from([sha256(b"a"), "file", "dir", 1, -1, 1 << 70, "../x", "/abs", "a//b"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["kind", "sha256", "size"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)

VALID_LOCK = json.dumps(
    {
        "format": 1,
        "artifacts": {
            "visual/a/model.pt": {"kind": "file", "sha256": sha256(b"a"), "size": 1},
            "text/b": {"kind": "dir", "sha256": sha256(b"b"), "size": 22},
        },
    },
    indent=2,
    sort_keys=True,
).encode()


def _read_lock(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    try:
        lock = bounded(lambda: Lock.read(path))
    except LockError as exc:
        assert exc.path == path
    else:
        assert lock.exists and all(e.kind in ("file", "dir") for e in lock.artifacts.values())


@PROPERTY
@given(
    value=st.one_of(
        json_values,
        st.fixed_dictionaries({"format": json_values, "artifacts": json_values}),
        st.fixed_dictionaries(
            {
                "format": st.just(1),
                "artifacts": st.dictionaries(
                    st.text(max_size=20),
                    st.fixed_dictionaries(
                        {"kind": json_values, "sha256": json_values, "size": json_values}
                    ),
                    max_size=3,
                ),
            }
        ),
    )
)
def test_generated_lock_gives_a_lock_or_a_lock_error(tmp_path: Path, value: object) -> None:
    _read_lock(tmp_path / "catalog.lock.json", json.dumps(value).encode())


@PROPERTY
@given(changes=edits)
def test_mutated_lock_gives_a_lock_or_a_lock_error(
    tmp_path: Path, changes: list[tuple[int, int, bytes]]
) -> None:
    _read_lock(tmp_path / "catalog.lock.json", _mutate(VALID_LOCK, changes))


def test_the_valid_lock_reads(tmp_path: Path) -> None:
    path = tmp_path / "catalog.lock.json"
    path.write_bytes(VALID_LOCK)
    assert sorted(Lock.read(path).artifacts) == ["text/b", "visual/a/model.pt"]


@pytest.mark.parametrize("seed", [b"", b"\xef\xbb\xbf", b"\x00" * 4, b"\xff\xfe"])
def test_odd_encodings_of_a_lock(tmp_path: Path, seed: bytes) -> None:
    _read_lock(tmp_path / "catalog.lock.json", seed + VALID_LOCK)
