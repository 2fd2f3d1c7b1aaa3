"""Verifying specs' artifacts against MODELS_ROOT (dp_models._verify): one test per bad row."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dp_models import _digest as digest
from dp_models._catalog import Catalog, Pin
from dp_models._digest import DigestCache, Hasher
from dp_models._errors import (
    ArtifactChangedError,
    ArtifactError,
    ArtifactMissingError,
    DigestMismatchError,
    DPModelsError,
    SizeMismatchError,
    UnpinnedArtifactError,
    UnsafePathError,
)
from dp_models._lock import Lock, LockEntry
from dp_models._settings import resolve_models_root
from dp_models._verify import ArtifactReport, Verifier

from .conftest import SpecWriter, inprocess_spec, make_file, sha256
from .hashing import count_hashing

WEIGHTS = b"weights v1" * 100
OTHER = b"weights v2" * 100  # same size as WEIGHTS
TOKENIZER = {"vocab.txt": b"a\nb\n", "sub/merges.txt": b"a b\n", "sub/deeper/x y.json": b"{}"}


def tokenizer_digest(files: dict[str, bytes]) -> str:
    """The documented directory digest, computed without dp_models."""
    lines = "".join(
        f"{sha256(files[rel])}  {rel}\n" for rel in sorted(files, key=lambda r: r.encode())
    )
    return sha256(lines.encode())


@pytest.fixture
def root(models_root: Path) -> Path:
    return resolve_models_root(models_root)


@pytest.fixture
def cache(tmp_path: Path) -> DigestCache:
    return DigestCache(tmp_path / "cache")


def load_verifier(
    catalog_dir: Path, root: Path, cache: DigestCache | None = None, policy: str = "cached"
) -> tuple[Catalog, Verifier]:
    catalog = Catalog.load(catalog_dir)
    return catalog, Verifier(catalog, root, Hasher(cache or DigestCache(None), policy=policy))


def one_file_spec(
    write_spec: SpecWriter,
    *,
    name: str = "model",
    path: str = "m/weights.pt",
    sha: str | None = sha256(WEIGHTS),
    size: int | None = len(WEIGHTS),
    kind: str = "file",
) -> None:
    fields = [
        f"path: {path}",
        f"kind: {kind}",
        "format: " + ("tokenizer_dir" if kind == "dir" else "pt"),
    ]
    if sha is not None:
        fields.append(f"sha256: {sha}")
    if size is not None:
        fields.append(f"size: {size}")
    write_spec(name, inprocess_spec(name, "- {" + ", ".join(fields) + "}"))


def forbid_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object, progress: object = None) -> str:
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(digest, "sha256_file", refuse)


def single_report(verifier: Verifier, catalog: Catalog, name: str = "model") -> ArtifactReport:
    (report,) = verifier.check([catalog[name]])
    return report


# -- ok --------------------------------------------------------------------------------------


def test_pinned_file_ok(
    catalog_dir: Path, root: Path, write_spec: SpecWriter, cache: DigestCache
) -> None:
    one_file_spec(write_spec)
    make_file(root / "m/weights.pt", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root, cache)
    (report,) = verifier.verify(catalog["model"])
    assert report.ok and report.error is None
    assert (report.spec, report.path, report.sha256, report.size) == (
        "model",
        root / "m/weights.pt",
        sha256(WEIGHTS),
        len(WEIGHTS),
    )
    assert report.pin == Pin(sha256(WEIGHTS), len(WEIGHTS), "spec")
    assert report.cached is False


def test_second_verification_is_served_by_the_cache(
    no_racy_window: None,
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_file_spec(write_spec)
    make_file(root / "m/weights.pt", WEIGHTS)
    catalog, first = load_verifier(catalog_dir, root, DigestCache(tmp_path / "cache"))
    assert first.verify(catalog["model"])[0].cached is False
    forbid_hashing(monkeypatch)
    _, second = load_verifier(catalog_dir, root, DigestCache(tmp_path / "cache"))
    (report,) = second.verify(catalog["model"])
    assert report.ok and report.cached is True and report.sha256 == sha256(WEIGHTS)


def test_directory_artifact_ok_with_its_directory_digest(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
) -> None:
    expected = tokenizer_digest(TOKENIZER)
    one_file_spec(
        write_spec,
        path="m/tokenizer",
        kind="dir",
        sha=expected,
        size=sum(map(len, TOKENIZER.values())),
    )
    for rel, data in TOKENIZER.items():
        make_file(root / "m/tokenizer" / rel, data)
    catalog, verifier = load_verifier(catalog_dir, root)
    (report,) = verifier.verify([catalog["model"]])
    assert report.ok
    assert report.sha256 == expected
    assert report.size == sum(map(len, TOKENIZER.values()))
    assert sorted(rel for rel, _ in report.files) == sorted(TOKENIZER)


def test_symlinks_that_stay_inside_the_root_are_fine(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
) -> None:
    write_spec(
        "model",
        inprocess_spec(
            "model",
            f"""
        - {{path: m/weights.pt, format: pt, sha256: {sha256(WEIGHTS)}, size: {len(WEIGHTS)}}}
        - {{path: m/tokenizer, kind: dir, format: tokenizer_dir,
            sha256: {tokenizer_digest(TOKENIZER)}}}
    """,
        ),
    )
    make_file(root / "blobs/abc123", WEIGHTS)
    (root / "m").mkdir()
    (root / "m/weights.pt").symlink_to("../blobs/abc123")  # like a Hugging Face snapshot
    make_file(root / "shared/merges.txt", TOKENIZER["sub/merges.txt"])
    make_file(root / "real-tokenizer/vocab.txt", TOKENIZER["vocab.txt"])
    make_file(root / "real-tokenizer/sub/deeper/x y.json", TOKENIZER["sub/deeper/x y.json"])
    (root / "real-tokenizer/sub/merges.txt").symlink_to(root / "shared/merges.txt")
    (root / "m/tokenizer").symlink_to(root / "real-tokenizer")
    catalog, verifier = load_verifier(catalog_dir, root)
    reports = verifier.verify(catalog["model"])
    assert [r.status for r in reports] == ["ok", "ok"]
    assert reports[0].path == root / "m/weights.pt"  # the spec's spelling, not the target


# -- one test per bad row --------------------------------------------------------------------


def test_missing_artifact(
    catalog_dir: Path, root: Path, write_spec: SpecWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_file_spec(write_spec)
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(
        ArtifactMissingError,
        match=r"spec 'model': required artifact 'm/weights.pt' is missing: "
        r"expected a file at .*m/weights\.pt\. Provision it",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, FileNotFoundError) and isinstance(err, DPModelsError)
    assert (err.spec, err.path) == ("model", root / "m/weights.pt")
    assert "dp-models doctor" in str(err)
    assert single_report(verifier, catalog).status == "missing"


def test_broken_symlink_is_missing(catalog_dir: Path, root: Path, write_spec: SpecWriter) -> None:
    one_file_spec(write_spec)
    (root / "m").mkdir()
    (root / "m/weights.pt").symlink_to("gone.pt")
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(ArtifactMissingError, match=r"'m/weights.pt' is missing") as info:
        verifier.verify(catalog["model"])
    assert info.value.path == root / "m/weights.pt"


def test_file_where_a_directory_is_expected(
    catalog_dir: Path, root: Path, write_spec: SpecWriter
) -> None:
    one_file_spec(
        write_spec, path="m/tokenizer", kind="dir", sha=tokenizer_digest(TOKENIZER), size=None
    )
    make_file(root / "m/tokenizer", b"not a directory")
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(
        ArtifactMissingError,
        match=r"artifact 'm/tokenizer' must be a dir, but .*m/tokenizer is a "
        r"file\. Replace it with the dir the spec describes",
    ) as info:
        verifier.verify(catalog["model"])
    assert (info.value.spec, info.value.path) == ("model", root / "m/tokenizer")
    assert isinstance(info.value, FileNotFoundError)
    assert single_report(verifier, catalog).status == "missing"


def test_directory_where_a_file_is_expected(
    catalog_dir: Path, root: Path, write_spec: SpecWriter
) -> None:
    one_file_spec(write_spec)
    make_file(root / "m/weights.pt/inner.bin", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(
        ArtifactMissingError,
        match=r"artifact 'm/weights.pt' must be a file, but .*m/weights\.pt is a "
        r"directory\.",
    ) as info:
        verifier.verify(catalog["model"])
    assert (info.value.spec, info.value.path) == ("model", root / "m/weights.pt")


def test_wrong_size_is_found_before_any_hashing(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_file_spec(write_spec)
    make_file(root / "m/weights.pt", WEIGHTS[:-7])  # truncated
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(
        SizeMismatchError,
        match=rf"spec 'model': artifact .*m/weights\.pt is {len(WEIGHTS) - 7} "
        rf"bytes, expected {len(WEIGHTS)} \(pinned in the spec\)\. It is "
        r"truncated",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.spec, err.path, err.expected, err.actual) == (
        "model",
        root / "m/weights.pt",
        len(WEIGHTS),
        len(WEIGHTS) - 7,
    )
    report = single_report(verifier, catalog)
    assert (report.status, report.sha256) == ("size_mismatch", None)


def test_wrong_directory_size_is_found_before_any_hashing(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = sum(map(len, TOKENIZER.values()))
    one_file_spec(
        write_spec, path="m/tokenizer", kind="dir", sha=tokenizer_digest(TOKENIZER), size=size
    )
    for rel, data in TOKENIZER.items():
        make_file(root / "m/tokenizer" / rel, data)
    make_file(root / "m/tokenizer/stray.bin", b"12345")
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(SizeMismatchError) as info:
        verifier.verify(catalog["model"])
    assert (info.value.expected, info.value.actual) == (size, size + 5)


def test_wrong_digest(catalog_dir: Path, root: Path, write_spec: SpecWriter) -> None:
    one_file_spec(write_spec)
    make_file(root / "m/weights.pt", OTHER)
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(
        DigestMismatchError,
        match=rf"spec 'model': artifact .*m/weights\.pt has sha256 "
        rf"{sha256(OTHER)}, expected {sha256(WEIGHTS)} \(pinned in the "
        r"spec\)\. It is not the pinned artifact: re-provision it",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.spec, err.path, err.expected, err.actual) == (
        "model",
        root / "m/weights.pt",
        sha256(WEIGHTS),
        sha256(OTHER),
    )
    report = single_report(verifier, catalog)
    assert (report.status, report.sha256) == ("digest_mismatch", sha256(OTHER))


def test_wrong_directory_digest(catalog_dir: Path, root: Path, write_spec: SpecWriter) -> None:
    one_file_spec(
        write_spec, path="m/tokenizer", kind="dir", sha=tokenizer_digest(TOKENIZER), size=None
    )
    changed = {**TOKENIZER, "sub/merges.txt": b"b a\n"}
    for rel, data in changed.items():
        make_file(root / "m/tokenizer" / rel, data)
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(DigestMismatchError) as info:
        verifier.verify(catalog["model"])
    assert (info.value.path, info.value.expected, info.value.actual) == (
        root / "m/tokenizer",
        tokenizer_digest(TOKENIZER),
        tokenizer_digest(changed),
    )


def test_unpinned_artifact(
    catalog_dir: Path, root: Path, write_spec: SpecWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_file_spec(write_spec, sha=None, size=None)
    make_file(root / "m/weights.pt", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(
        UnpinnedArtifactError,
        match=r"spec 'model': artifact 'm/weights.pt' is not pinned: neither the "
        r"spec nor the lock .*catalog\.lock\.json gives its sha256\. Pin it "
        r"from a provisioned root with `dp-models lock --root ",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, LookupError)
    assert (err.spec, err.path) == ("model", root / "m/weights.pt")
    report = single_report(verifier, catalog)
    assert (report.status, report.pin, report.sha256) == ("unpinned", None, None)


def test_unpinned_artifact_hashed_for_the_lock(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
) -> None:
    one_file_spec(write_spec, sha=None, size=None)
    make_file(root / "m/weights.pt", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root)
    (report,) = verifier.check([catalog["model"]], hash_unpinned=True)
    assert (report.status, report.sha256, report.size) == (
        "unpinned",
        sha256(WEIGHTS),
        len(WEIGHTS),
    )


def write_lock(catalog_dir: Path, data: bytes, path: str = "m/weights.pt") -> None:
    Lock(
        catalog_dir / "catalog.lock.json", {path: LockEntry("file", sha256(data), len(data))}
    ).write()


def test_pinned_by_the_lock_ok(catalog_dir: Path, root: Path, write_spec: SpecWriter) -> None:
    one_file_spec(write_spec, sha=None, size=None)
    write_lock(catalog_dir, WEIGHTS)
    make_file(root / "m/weights.pt", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root)
    (report,) = verifier.verify(catalog["model"])
    assert report.ok
    assert report.pin == Pin(sha256(WEIGHTS), len(WEIGHTS), "lock")
    assert report.sha256 == sha256(WEIGHTS)


def test_pinned_by_the_lock_mismatch(catalog_dir: Path, root: Path, write_spec: SpecWriter) -> None:
    one_file_spec(write_spec, sha=None, size=None)
    write_lock(catalog_dir, WEIGHTS)
    make_file(root / "m/weights.pt", OTHER)
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(
        DigestMismatchError,
        match=rf"has sha256 {sha256(OTHER)}, expected {sha256(WEIGHTS)} "
        r"\(pinned in the lock\).*`dp-models lock --root ROOT`",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert (err.spec, err.path, err.expected, err.actual) == (
        "model",
        root / "m/weights.pt",
        sha256(WEIGHTS),
        sha256(OTHER),
    )


def test_pinned_by_the_lock_wrong_size(
    catalog_dir: Path, root: Path, write_spec: SpecWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_file_spec(write_spec, sha=None, size=None)
    write_lock(catalog_dir, WEIGHTS)
    make_file(root / "m/weights.pt", WEIGHTS + b"!")
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(SizeMismatchError, match=r"\(pinned in the lock\)") as info:
        verifier.verify(catalog["model"])
    assert (info.value.expected, info.value.actual) == (len(WEIGHTS), len(WEIGHTS) + 1)


def test_symlink_escaping_the_root_for_a_file_artifact(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_file_spec(write_spec)
    outside = make_file(tmp_path / "outside" / "weights.pt", WEIGHTS)  # even the right bytes
    (root / "m").mkdir()
    (root / "m/weights.pt").symlink_to(outside)
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(
        UnsafePathError,
        match=rf"spec 'model': artifact 'm/weights.pt' resolves to "
        rf"{re.escape(str(outside))}, outside MODELS_ROOT "
        rf"{re.escape(str(root))}\.",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, PermissionError) and isinstance(err, ArtifactError)
    assert (err.spec, err.path) == ("model", root / "m/weights.pt")
    assert single_report(verifier, catalog).status == "unsafe_path"


def test_symlinked_parent_directory_escaping_the_root(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
) -> None:
    one_file_spec(write_spec)
    make_file(tmp_path / "outside" / "weights.pt", WEIGHTS)
    (root / "m").symlink_to(tmp_path / "outside")
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(UnsafePathError, match=r"outside MODELS_ROOT") as info:
        verifier.verify(catalog["model"])
    assert info.value.path == root / "m/weights.pt"


def test_symlink_escaping_the_root_inside_a_directory_artifact(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_file_spec(
        write_spec, path="m/tokenizer", kind="dir", sha=tokenizer_digest(TOKENIZER), size=None
    )
    make_file(root / "m/tokenizer/vocab.txt", TOKENIZER["vocab.txt"])
    make_file(root / "m/tokenizer/sub/deeper/x y.json", TOKENIZER["sub/deeper/x y.json"])
    secret = make_file(tmp_path / "outside" / "merges.txt", TOKENIZER["sub/merges.txt"])
    (root / "m/tokenizer/sub/merges.txt").symlink_to(secret)
    catalog, verifier = load_verifier(catalog_dir, root)
    forbid_hashing(monkeypatch)
    with pytest.raises(
        UnsafePathError,
        match=rf"spec 'model': artifact 'm/tokenizer/sub/merges.txt' resolves to "
        rf"{re.escape(str(secret))}, outside MODELS_ROOT",
    ) as info:
        verifier.verify(catalog["model"])
    err = info.value
    assert isinstance(err, PermissionError)
    assert (err.spec, err.path) == ("model", root / "m/tokenizer/sub/merges.txt")
    assert single_report(verifier, catalog).status == "unsafe_path"


def test_artifact_changed_while_verified(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_file_spec(write_spec)
    weights = make_file(root / "m/weights.pt", WEIGHTS)
    original = digest.sha256_fd

    def swap_after(fd: int, progress: object = None, **kwargs: object) -> str:
        result = original(fd, progress, **kwargs)  # type: ignore[arg-type]
        with open(weights, "ab") as f:
            f.write(b"appended by a copy still running")
        return result

    monkeypatch.setattr(digest, "sha256_fd", swap_after)
    catalog, verifier = load_verifier(catalog_dir, root)
    with pytest.raises(
        ArtifactChangedError, match=r"artifact .*m/weights\.pt changed while it was being verified"
    ) as info:
        verifier.verify(catalog["model"])
    assert isinstance(info.value, RuntimeError)
    assert (info.value.spec, info.value.path) == ("model", root / "m/weights.pt")


# -- many specs at once ----------------------------------------------------------------------


def test_check_reports_every_artifact_and_never_raises(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
) -> None:
    write_spec(
        "good",
        inprocess_spec(
            "good",
            f"""
        - {{path: good/a.pt, format: pt, sha256: {sha256(WEIGHTS)}}}
        - {{path: good/missing.pt, format: pt, sha256: {sha256(WEIGHTS)}}}
    """,
        ),
    )
    write_spec(
        "bad",
        inprocess_spec(
            "bad",
            f"""
        - {{path: bad/digest.pt, format: pt, sha256: {sha256(WEIGHTS)}}}
        - {{path: bad/size.pt, format: pt, sha256: {sha256(WEIGHTS)}, size: {len(WEIGHTS)}}}
        - {{path: bad/unpinned.pt, format: pt}}
        - {{path: bad/escape.pt, format: pt, sha256: {sha256(WEIGHTS)}}}
        - {{path: bad/kind, kind: dir, format: model_dir, sha256: {sha256(WEIGHTS)}}}
    """,
        ),
        area="audio",
    )
    make_file(root / "good/a.pt", WEIGHTS)
    make_file(root / "bad/digest.pt", OTHER)
    make_file(root / "bad/size.pt", b"short")
    make_file(root / "bad/unpinned.pt", WEIGHTS)
    (root / "bad/escape.pt").symlink_to(make_file(tmp_path / "elsewhere.pt", WEIGHTS))
    make_file(root / "bad/kind", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root)
    reports = verifier.check([catalog["good"], catalog["bad"]])
    assert [(r.spec, r.artifact.path, r.status, type(r.error)) for r in reports] == [
        ("good", "good/a.pt", "ok", type(None)),
        ("good", "good/missing.pt", "missing", ArtifactMissingError),
        ("bad", "bad/digest.pt", "digest_mismatch", DigestMismatchError),
        ("bad", "bad/size.pt", "size_mismatch", SizeMismatchError),
        ("bad", "bad/unpinned.pt", "unpinned", UnpinnedArtifactError),
        ("bad", "bad/escape.pt", "unsafe_path", UnsafePathError),
        ("bad", "bad/kind", "missing", ArtifactMissingError),
    ]
    assert all(r.error is None or (r.error.spec, r.error.path) == (r.spec, r.path) for r in reports)
    # verify raises the first problem, in catalog order
    with pytest.raises(ArtifactMissingError, match=r"'good/missing.pt' is missing"):
        verifier.verify([catalog["good"], catalog["bad"]])
    with pytest.raises(DigestMismatchError, match=r"bad/digest\.pt has sha256"):
        verifier.verify(catalog["bad"])


def test_shared_artifact_between_specs_is_hashed_once(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    cache: DigestCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = f"- {{path: shared/tokenizer.json, format: json, sha256: {sha256(WEIGHTS)}}}"
    write_spec("whisper_a", inprocess_spec("whisper_a", shared), area="audio")
    write_spec("whisper_b", inprocess_spec("whisper_b", shared), area="audio")
    make_file(root / "shared/tokenizer.json", WEIGHTS)
    catalog, verifier = load_verifier(catalog_dir, root, cache, policy="always")
    calls = count_hashing(monkeypatch)
    reports = verifier.verify([catalog["whisper_a"], catalog["whisper_b"]])
    assert [(r.spec, r.status, r.sha256) for r in reports] == [
        ("whisper_a", "ok", sha256(WEIGHTS)),
        ("whisper_b", "ok", sha256(WEIGHTS)),
    ]
    assert calls == [root / "shared/tokenizer.json"]


def test_shared_file_inside_directory_artifacts_is_hashed_once(
    catalog_dir: Path,
    root: Path,
    write_spec: SpecWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The file artifact and the directory artifact that contains it: one read of the file.
    write_spec(
        "model",
        inprocess_spec(
            "model",
            f"""
        - {{path: m/tokenizer, kind: dir, format: tokenizer_dir,
            sha256: {tokenizer_digest(TOKENIZER)}}}
        - {{path: m/tokenizer/vocab.txt, format: txt, sha256: {sha256(TOKENIZER["vocab.txt"])}}}
    """,
        ),
    )
    for rel, data in TOKENIZER.items():
        make_file(root / "m/tokenizer" / rel, data)
    catalog, verifier = load_verifier(catalog_dir, root)
    calls = count_hashing(monkeypatch)
    assert all(r.ok for r in verifier.verify(catalog["model"]))
    assert sorted(calls) == sorted(root / "m/tokenizer" / rel for rel in TOKENIZER)


def test_a_symlink_to_a_directory_outside_the_root_is_never_walked(
    catalog_dir: Path,
    models_root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outside = tmp_path / "outside"
    make_file(outside / "secret.bin", b"secret")
    write_spec("d", inprocess_spec("d", "- {path: d, kind: dir, format: model_dir}"))
    make_file(models_root / "d/config.json", b"{}")
    (models_root / "d/evil").symlink_to(outside)
    entered: list[str] = []
    real_scandir = os.scandir

    def spy(path: object) -> object:
        entered.append(str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.os, "scandir", spy)
    catalog = Catalog.load(catalog_dir)
    (report,) = Verifier(catalog, models_root, Hasher()).check([catalog["d"]])
    assert report.status == "unsafe_path"
    assert isinstance(report.error, UnsafePathError)
    assert "holds a symlink that leaves MODELS_ROOT" in str(report.error)
    assert not any(p.startswith(str(outside)) or p.endswith("evil") for p in entered)


# -- one rule for "not provisioned here" ---------------------------------------------------

SERVED_SPEC = """
name: served
version: "1"
family: test
role: test
users: [AudioProcessor/test]
runtime: triton
engine: onnx
artifacts: [{path: triton/served/model.onnx, format: onnx}]
triton:
  model_name: served
  model_version: 1
  platform: onnxruntime_onnx
  max_batch_size: 4
  inputs: [{name: x, datatype: FP32, shape: [-1]}]
  outputs: [{name: y, datatype: FP32, shape: [2]}]
"""


def _doctor_statuses(catalog_dir: Path, root: Path) -> tuple[int, dict[str, str]]:
    import contextlib
    import io
    import json

    from dp_models._cli import main

    argv = ["doctor", "--json", "--no-triton", "--catalog", str(catalog_dir), "--root", str(root)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, {s["name"]: s["status"] for s in json.loads(out.getvalue())["specs"]}


@pytest.mark.adversarial
def test_a_dangling_symlink_is_not_absence_anywhere(
    catalog_dir: Path, root: Path, write_spec: SpecWriter
) -> None:
    """Doctor called an optional spec behind a dangling symlink "absent", and a Triton spec
    "remote", both ok (``Path.exists`` follows the link), while ``get_optional`` raised for
    the same spec (``os.path.lexists`` does not). One rule now: something at an artifact's
    path, a broken link included, was provisioned, and its problem is an error."""
    from dp_models import ModelManager

    write_spec(
        "maybe",
        inprocess_spec(
            "maybe",
            f"- {{path: maybe/w.pt, format: pt, sha256: {sha256(b'w')}}}",
            "optional: true\n",
        ),
    )
    write_spec("served", SERVED_SPEC, area="audio")
    catalog, verifier = load_verifier(catalog_dir, root)
    mm = ModelManager(models_root=root, catalog=catalog_dir, offline=False)

    # nothing at all: absent everywhere
    assert verifier.absent(catalog["maybe"]) and verifier.absent(catalog["served"])
    assert mm.get_optional("maybe") is None
    health = mm.check(["maybe"])
    assert health["ok"] is True and health["models"][0]["absent"] is True
    assert _doctor_statuses(catalog_dir, root) == (0, {"maybe": "absent", "served": "remote"})

    # a link to nothing where each artifact goes: provisioned, wrongly, everywhere
    (root / "maybe").mkdir()
    (root / "maybe/w.pt").symlink_to(root / "maybe/gone.pt")
    (root / "triton/served").mkdir(parents=True)
    (root / "triton/served/model.onnx").symlink_to("nowhere.onnx")
    assert not verifier.absent(catalog["maybe"]) and not verifier.absent(catalog["served"])
    with pytest.raises(ArtifactMissingError, match=r"maybe/w\.pt") as info:
        mm.get_optional("maybe")
    assert info.value.spec == "maybe"
    health = mm.check(["maybe"])
    assert health["ok"] is False and health["models"][0]["absent"] is False
    assert _doctor_statuses(catalog_dir, root) == (1, {"maybe": "missing", "served": "missing"})
