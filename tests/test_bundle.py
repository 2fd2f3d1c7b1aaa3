"""Bundles for air-gapped sites: a fake root (a directory artifact, a ``requires`` chain)
into a tar and back into an empty root, then doctor is ok and the specs load inside the
network guard; hostile bundles are refused with a typed error and leave the root as it was."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import dp_models
from dp_models import (
    BundleError,
    BundleMismatchError,
    BundleTamperedError,
    ModelManager,
    network_guard,
)
from dp_models._bundle import MANIFEST
from dp_models.testing import fake_catalog_dir, fake_models_root, run_cli

from .fakeroots import spacy_dir_catalog

#: a directory artifact (spaCy, given a directory under the root: the packaged spec names an
#: installed distribution), a spec that requires another (yolo11n -> bytetrack), a file
NAMES = ["spacy_en_core_web_sm", "yolo11n_detector", "emonet_8"]
SPACY = "text/spacy/en_core_web_sm-3.8.0"

Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bundle")
    return fake_models_root(
        base / "root",
        NAMES,
        catalog=spacy_dir_catalog(base / "catalog"),
        substitute=["emonet_8"],  # its class is the processor's, not installed here
    )


@pytest.fixture(scope="module")
def good(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "models.tar"
    dp_models.bundle_create(NAMES, output=out, root=source, catalog=fake_catalog_dir(source))
    return out


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (hidden ones included), with file sizes."""
    return sorted(
        f"{p.relative_to(root).as_posix()} {p.stat().st_size if p.is_file() else '-'}"
        for p in root.rglob("*")
    )


def members(bundle: Path) -> Members:
    out: Members = []
    with tarfile.open(bundle) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f is not None else b""))
    return out


def write(path: Path, items: Members) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def info(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type, i.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        i.linkname = "../../etc/passwd"
    return i


def test_round_trip_into_an_empty_root_then_doctor_and_load(
    source: Path, good: Path, tmp_path: Path
) -> None:
    catalog = fake_catalog_dir(source)
    with tarfile.open(good) as tar:
        names = tar.getnames()
        first = tar.extractfile(tar.getmembers()[0])
        assert first is not None
        manifest = json.loads(first.read())
    assert names[0] == MANIFEST
    assert manifest["dp_models"] == dp_models.__version__
    specs = {e["spec"] for e in manifest["artifacts"].values()}
    assert {"spacy_en_core_web_sm", "yolo11n_detector", "bytetrack_tracker"} <= specs
    assert manifest["artifacts"][SPACY]["kind"] == "dir" and manifest["artifacts"][SPACY]["files"]
    assert all(n.startswith(tuple(manifest["artifacts"])) for n in names[1:])
    root = tmp_path / "root"
    report = dp_models.bundle_import(good, root=root, catalog=catalog)
    assert {a["status"] for a in report.artifacts} == {"imported"}
    assert not [p for p in root.rglob(".dp-models-bundle*")]
    assert run_cli(["doctor", *NAMES, "--root", str(root), "--catalog", str(catalog)]) == 0
    mm = ModelManager(models_root=root, catalog=catalog)
    with network_guard(NAMES):
        for name in NAMES:
            assert mm.load(name) is not None
    # a second import skips what verifies
    again = dp_models.bundle_import(good, root=root, catalog=catalog)
    assert {a["status"] for a in again.artifacts} == {"present"}


def test_cli_create_and_import_text_and_json(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = str(fake_catalog_dir(source))
    out = tmp_path / "b.tar"
    argv = ["bundle", "create", "emonet_8", "--root", str(source), "--catalog", catalog]
    assert run_cli([*argv, "-o", str(out)]) == 0
    assert "bundled 1 artifact" in capsys.readouterr().out
    assert run_cli([*argv, "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [a["status"] for a in report["artifacts"]] == ["bundled"]
    root = tmp_path / "root"
    argv = ["bundle", "import", str(out), "--root", str(root), "--catalog", catalog]
    assert run_cli(argv) == 0
    assert "imported 1 artifact" in capsys.readouterr().out
    assert run_cli([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in report["artifacts"]] == ["present"]
    # an error is typed, one line, and --json says so
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    argv[2] = str(tmp_path / "bad.tar")
    assert run_cli([*argv, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


@pytest.mark.adversarial
def test_a_root_that_does_not_verify_writes_no_bundle(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(source, root)
    weights = root / "visual/emonet/emonet_8.pth"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    out = tmp_path / "models.tar"
    with pytest.raises(BundleMismatchError):
        dp_models.bundle_create(
            ["emonet_8"], output=out, root=root, catalog=fake_catalog_dir(source)
        )
    assert list(tmp_path.iterdir()) == [root]


def _flip(items: Members) -> Members:
    i, (m, data) = next((i, x) for i, x in enumerate(items) if x[0].name.startswith(SPACY))
    items[i] = (m, bytes([data[0] ^ 1]) + data[1:])
    return items


def _grow(items: Members) -> Members:
    m, data = items[-1]
    m.size = len(data) + 1
    items[-1] = (m, data + b"x")
    return items


def _other_pins(items: Members) -> Members:
    m, data = items[0]
    manifest = json.loads(data)
    entry = manifest["artifacts"]["visual/emonet/emonet_8.pth"]
    entry["sha256"] = "0" * 64
    raw = json.dumps(manifest).encode()
    m.size = len(raw)
    items[0] = (m, raw)
    return items


HOSTILE: dict[str, tuple[Callable[[Members], Members], type[BundleError]]] = {
    "dotdot": (lambda x: [*x, (info("../evil", b"x"), b"x")], BundleTamperedError),
    "absolute": (lambda x: [*x, (info("/tmp/evil", b"x"), b"x")], BundleTamperedError),
    "symlink": (lambda x: [*x, (info("evil", kind=tarfile.SYMTYPE), b"")], BundleTamperedError),
    "hardlink": (lambda x: [*x, (info("evil", kind=tarfile.LNKTYPE), b"")], BundleTamperedError),
    "fifo": (lambda x: [*x, (info("evil", kind=tarfile.FIFOTYPE), b"")], BundleTamperedError),
    "device": (lambda x: [*x, (info("evil", kind=tarfile.CHRTYPE), b"")], BundleTamperedError),
    "flipped byte": (_flip, BundleTamperedError),
    "other pins": (_other_pins, BundleMismatchError),
    "unlisted member": (lambda x: [*x, (info("extra.bin", b"x"), b"x")], BundleTamperedError),
    "duplicate": (lambda x: [*x, x[-1]], BundleTamperedError),
    "larger than listed": (_grow, BundleTamperedError),
    "missing member": (lambda x: x[:-1], BundleTamperedError),
    "manifest not first": (lambda x: [*x[1:], x[0]], BundleTamperedError),
}


@pytest.mark.adversarial
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_bundle_is_refused_and_the_root_is_unchanged(
    case: str, source: Path, good: Path, tmp_path: Path
) -> None:
    edit, error = HOSTILE[case]
    bad = write(tmp_path / "bad.tar", edit(members(good)))
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("here before")
    before = listing(root)
    with pytest.raises(error):
        dp_models.bundle_import(bad, root=root, catalog=fake_catalog_dir(source))
    assert listing(root) == before
    assert not (tmp_path / "evil").exists()


@pytest.mark.adversarial
@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_bundle_is_refused_and_the_root_is_unchanged(
    cut: float, source: Path, good: Path, tmp_path: Path
) -> None:
    data = good.read_bytes()
    # cut inside the data, not in the end-of-archive padding
    last = members(good)[-1][0]
    end = last.offset_data + last.size
    bad = tmp_path / "cut.tar"
    bad.write_bytes(data[: int(end * cut)])
    root = tmp_path / "root"
    root.mkdir()
    before = listing(root)
    with pytest.raises(BundleTamperedError):
        dp_models.bundle_import(bad, root=root, catalog=fake_catalog_dir(source))
    assert listing(root) == before


def test_import_replaces_a_wrong_file_and_skips_what_verifies(
    source: Path, good: Path, tmp_path: Path
) -> None:
    catalog = fake_catalog_dir(source)
    root = tmp_path / "root"
    shutil.copytree(source / SPACY, root / SPACY)
    wrong = root / "visual/emonet/emonet_8.pth"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"not the pinned weights")
    report = dp_models.bundle_import(good, root=root, catalog=catalog)
    status = {a["path"]: a["status"] for a in report.artifacts}
    assert status[SPACY] == "present"
    assert status["visual/emonet/emonet_8.pth"] == "imported"
    assert wrong.read_bytes() == (source / "visual/emonet/emonet_8.pth").read_bytes()
    assert run_cli(["doctor", *NAMES, "--root", str(root), "--catalog", str(catalog)]) == 0
