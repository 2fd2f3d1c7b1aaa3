"""Provenance: signatures that follow exactly what changes outputs, stamps in files,
and `dp-models verify-artifact`."""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dp_models import Catalog, LineageInputError, ModelManager, ProvenanceError
from dp_models._cli import main
from dp_models._errors import FileTooLargeError, NotRegularFileError
from dp_models._lock import Lock, LockEntry
from dp_models._provenance import (
    ABSENT_FIELDS,
    ARTIFACT_INFO_FIELDS,
    CATALOG_KEY,
    CHECKED_FIELDS,
    EMPTY_DIGEST,
    INPUTS_KEY,
    NPZ_KEY,
    STAMP_KEYS,
    check_artifact,
    check_stamps,
    load_npz,
    read_stamps,
    save_npz,
    stamp,
    write_json,
)
from dp_models.loaders import LoaderArgs
from dp_models.testing import fake_catalog_dir, fake_models_root

from .conftest import make_file, sha256
from .test_manager import EchoLoader as _Echo


class NetArgs(LoaderArgs):
    layers: int = 1


class EchoLoader(_Echo):
    """The manager tests' echo loader, with an args model (``layers``)."""

    name = "echo_provenance_tests"
    args_model = NetArgs


REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
EXAMPLE_ROOT = REPO / "MODELS_ROOT.example"

BASE = f"""
name: net
version: "1"
family: test
role: test
users: [VisualProcessor/test]
runtime: inprocess
engine: torch
loader: {EchoLoader.name}
loader_args: {{layers: 2}}
preprocess: imagenet_224
allow_half_on_cpu: true
artifacts:
  - {{path: net/w.pt, format: pt}}
"""


def build(tmp: Path, *, weights: bytes = b"w1", spec: str = BASE, name: str = "x") -> ModelManager:
    """A catalog + lock + root under ``tmp/name`` for one spec."""
    catalog, root = tmp / name / "catalog", tmp / name / "root"
    make_file(catalog / "visual" / "net.yaml", spec.encode())
    make_file(root / "net" / "w.pt", weights)
    Lock(
        catalog / "catalog.lock.json",
        {"net/w.pt": LockEntry("file", sha256(weights), len(weights))},
    ).write()
    return ModelManager(models_root=root, catalog=catalog, loaders={EchoLoader.name: EchoLoader})


def signature(mm: ModelManager, **kw: str) -> str:
    return mm.get("net", **kw).model_signature


def test_signature_is_stable_across_machines_and_paths(tmp_path: Path) -> None:
    a, b = build(tmp_path, name="a"), build(tmp_path, name="b")
    assert a.root != b.root
    assert signature(a) == signature(b)
    stamps = [m.stamp({}) for m in (a, b)]
    for made, mm in zip(stamps, (a, b), strict=True):  # only where each found its files
        for art in made["models_used"][0]["artifacts"]:
            assert art.pop("location") == str(mm.root)
        # the catalog is recorded where it was (informative) and by digest (identifying)
        used = made[CATALOG_KEY]
        assert used.pop("path") == str(mm.catalog.directory)
        assert used["lock"].pop("path") == str(mm.catalog.lock.path)
    assert stamps[0] == stamps[1]


def test_signature_ignores_the_device(tmp_path: Path) -> None:
    mm = build(tmp_path)
    assert signature(mm, device="cpu") == signature(mm, device="auto")


@pytest.mark.parametrize(
    ("change", "kwargs"),
    [
        ({"weights": b"w2"}, {}),
        ({"spec": BASE.replace("layers: 2", "layers: 3")}, {}),
        ({"spec": BASE.replace("imagenet_224", "places365_224")}, {}),
        ({"spec": BASE.replace('version: "1"', 'version: "2"')}, {}),
        ({}, {"precision": "fp16"}),
    ],
    ids=["weights", "loader_args", "preprocess", "version", "precision"],
)
def test_signature_changes_with_what_changes_outputs(
    tmp_path: Path, change: dict[str, object], kwargs: dict[str, str]
) -> None:
    base = signature(build(tmp_path, name="base"))
    other = build(tmp_path, name="other", **change)  # type: ignore[arg-type]
    assert signature(other, **kwargs) != base


def test_weights_digest_changes_only_with_weights(tmp_path: Path) -> None:
    base = build(tmp_path, name="base").get("net").weights_digest
    assert (
        build(tmp_path, name="args", spec=BASE.replace("layers: 2", "layers: 5"))
        .get("net")
        .weights_digest
        == base
    )
    assert build(tmp_path, name="w", weights=b"w2").get("net").weights_digest == sha256(b"w2")


def test_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    mm = build(tmp_path)
    mm.get("net")
    stamps = mm.stamp({"video_id": "v"})
    path = save_npz(tmp_path / "out.npz", {"emb": np.arange(6.0).reshape(2, 3)}, stamps)
    arrays, read = load_npz(path)
    assert np.array_equal(arrays["emb"], np.arange(6.0).reshape(2, 3))
    assert read == json.loads(json.dumps(stamps))
    with np.load(path, allow_pickle=False) as raw:
        assert raw[NPZ_KEY].dtype.kind == "U"
    assert read_stamps(path)["model_signature"] == stamps["model_signature"]


def test_npz_rejects_reserved_names_and_unstamped_meta(tmp_path: Path) -> None:
    with pytest.raises(ProvenanceError, match=r"reserved"):
        save_npz(tmp_path / "a.npz", {NPZ_KEY: np.zeros(1)}, {})
    with pytest.raises(ProvenanceError, match=r"stamps lack models_used"):
        save_npz(tmp_path / "a.npz", {"x": np.zeros(1)}, {"video_id": "v"})
    assert list(tmp_path.iterdir()) == []


def test_json_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    write_json(target, {"a": 1})
    with pytest.raises(ValueError, match=r"Out of range float values"):
        write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]  # no temp file left


def test_read_stamps_of_an_unstamped_file(tmp_path: Path) -> None:
    (tmp_path / "plain.json").write_text('{"a": 1}')
    with pytest.raises(ProvenanceError, match=r"carries no dp_models stamps"):
        read_stamps(tmp_path / "plain.json")
    np.savez(tmp_path / "plain.npz", x=np.zeros(1))
    with pytest.raises(ProvenanceError, match=r"carries no dp_models stamps"):
        read_stamps(tmp_path / "plain.npz")


def stamped_example(tmp_path: Path) -> tuple[Path, Path, Path]:
    catalog = tmp_path / "catalog"
    root = tmp_path / "root"
    shutil.copytree(EXAMPLE_CATALOG, catalog)
    shutil.copytree(EXAMPLE_ROOT, root)
    mm = ModelManager(models_root=root, catalog=catalog)
    mm.get("tiny_color_classifier")
    out = write_json(tmp_path / "out.json", mm.stamp({"video_id": "v"}))
    return catalog, root, out


def test_check_stamps_unchanged(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    (check,) = check_stamps(read_stamps(out), Catalog.load(catalog))
    assert (check.name, check.status, check.ok) == ("tiny_color_classifier", "unchanged", True)


def test_check_stamps_says_which_model_changed_and_how(tmp_path: Path) -> None:
    catalog, root, out = stamped_example(tmp_path)
    labels = root / "demo/tiny_color_classifier/labels.txt"
    labels.write_text("rouge\nvert\nbleu\n")
    assert main(["lock", "--catalog", str(catalog), "--root", str(root)]) == 0
    (check,) = check_stamps(read_stamps(out), Catalog.load(catalog))
    assert check.status == "changed" and not check.ok  # the stamp is consistent: the model changed
    assert [d.field for d in check.differences] == [
        "models_used[0].artifacts[1].sha256",
        "models_used[0].weights_digest",
        "models_used[0].model_signature",
    ]
    pin = check.differences[0]
    assert pin.expected == sha256(b"rouge\nvert\nbleu\n")
    assert "stamp says 9fec8b87" in pin.message and "catalog pins" in pin.message
    assert "dp-models show tiny_color_classifier" in pin.fix


def test_check_stamps_removed_and_absent(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    stamps = read_stamps(out)
    (entry,) = stamps["models_used"]
    stamps["models_used"].append({**entry, "name": "gone"})
    absent = {"status": "absent", "optional": True, "reason": "not provisioned: x"}
    stamps["models_used"].append({**entry, **absent, "name": "opt"})
    report = check_stamps(stamps, Catalog.load(catalog))
    checks = {c.name: c for c in report}
    assert checks["tiny_color_classifier"].ok
    assert checks["gone"].status == "removed" and not checks["gone"].ok
    assert checks["gone"].differences[0].field == "models_used[1].name"
    assert checks["opt"].status == "removed" and not checks["opt"].ok
    # the entry that was added changed the combined stamps as well
    assert [d.field for d in report.differences] == ["model_signature", "weights_digest"]


def test_verify_artifact_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog, _, out = stamped_example(tmp_path)
    assert main(["verify-artifact", str(out), "--catalog", str(catalog)]) == 0
    assert "tiny_color_classifier            unchanged" in capsys.readouterr().out
    spec = catalog / "demo" / "tiny_color_classifier.yaml"
    spec.write_text(spec.read_text().replace('version: "1.0"', 'version: "1.1"'))
    assert main(["verify-artifact", str(out), "--catalog", str(catalog), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    (model,) = report["models"]
    assert model["status"] == "changed"
    assert model["changes"][0] == "models_used[0].version: stamp says 1.0, catalog says 1.1"
    assert [d["field"] for d in report["differences"]] == [
        "models_used[0].version",
        "models_used[0].model_signature",
    ]
    assert "dp-models show tiny_color_classifier" in report["differences"][0]["fix"]
    assert main(["verify-artifact", str(tmp_path / "missing.json"), "--catalog", str(catalog)]) == 1
    assert "cannot read stamps" in capsys.readouterr().err


# -- verify-artifact recomputes every derived field -----------------------------------------

#: A served weights digest given to the Triton spec of the fake catalog.
SERVED = "5e" * 32


@pytest.fixture(scope="module")
def real_stamp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The catalog of a fake root and the three stamp keys a ModelManager on it wrote for:
    [0] shared_tokenizer_v1 (required by [1]), [1] whisper_small_triton (Triton, with a
    served digest), [2] places365_categories (required by [3]), [3] places365_resnet50, [4]
    resnet18_features (optional, not provisioned: absent)."""
    tmp = tmp_path_factory.mktemp("stamps")
    root = fake_models_root(
        tmp / "root", ["whisper_small_triton", "places365_resnet50", "resnet18_features"]
    )
    shutil.rmtree(root / "visual" / "resnet")
    catalog = fake_catalog_dir(root)
    (spec_path,) = catalog.rglob("whisper_small_triton.yaml")
    spec = yaml.safe_load(spec_path.read_text())
    spec["triton"]["weights_digest"] = SERVED
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    mm = ModelManager(models_root=root, catalog=catalog, cache_dir=tmp / "cache")
    mm.get("whisper_small_triton")
    mm.get("places365_resnet50")
    assert mm.get_optional("resnet18_features") is None
    stamped = mm.stamp({"video_id": "v"})
    names = [e["name"] for e in stamped["models_used"]]
    assert names == [
        "shared_tokenizer_v1",
        "whisper_small_triton",
        "places365_categories",
        "places365_resnet50",
        "resnet18_features",
    ]
    return catalog, {k: stamped[k] for k in STAMP_KEYS}


def verify_json(catalog: Path, stamps: Any, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """`dp-models verify-artifact --json` on ``stamps`` written to a file."""
    path = tmp_path / "artifact.json"
    path.write_text(json.dumps(stamps))
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["verify-artifact", str(path), "--catalog", str(catalog), "--json"])
    return status, json.loads(out.getvalue())


def test_a_real_stamp_verifies(real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    catalog, stamps = real_stamp
    report = check_stamps(stamps, Catalog.load(catalog))
    assert report.ok and report.all_differences == []
    assert [c.status for c in report] == ["unchanged"] * 4 + ["absent"]
    # informational fields are reported, not checked
    assert report.models[0].info["device"] == "cpu"
    assert report.models[0].info["framework"]["name"] == "tokenizers"
    assert report.models[1].info["triton.endpoint"] is None
    absent = report.models[4]
    assert absent.ok and "optional, not provisioned" in absent.note
    assert absent.info == {"reason": "not provisioned: visual/resnet/resnet18-f37072fd.pth"}
    status, shown = verify_json(catalog, stamps, tmp_path)
    assert status == 0 and shown["ok"] is True and shown["differences"] == []
    assert [m["status"] for m in shown["models"]] == ["unchanged"] * 4 + ["absent"]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


#: One edit per hole of verify-artifact: (what, edit, the field that must be reported).
HOLES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "artifact sha256",
        lambda d: _set(d, ("models_used", 3, "artifacts", 0, "sha256"), "ab" * 32),
        "models_used[3].artifacts[0].sha256",
    ),
    (
        "weights_digest",
        lambda d: _set(d, ("models_used", 3, "weights_digest"), "ab" * 32),
        "models_used[3].weights_digest",
    ),
    (
        "served weights_digest",
        lambda d: _set(d, ("models_used", 1, "weights_digest"), "ab" * 32),
        "models_used[1].weights_digest",
    ),
    ("version", lambda d: _set(d, ("models_used", 3, "version"), "v2"), "models_used[3].version"),
    (
        "loader",
        lambda d: _set(d, ("models_used", 3, "loader"), "torchscript"),
        "models_used[3].loader",
    ),
    (
        "loader_args",
        lambda d: _set(d, ("models_used", 3, "loader_args", "num_classes"), 366),
        "models_used[3].loader_args",
    ),
    (
        "preprocess",
        lambda d: _set(d, ("models_used", 3, "preprocess"), "imagenet_224"),
        "models_used[3].preprocess",
    ),
    (
        "artifact path",
        lambda d: _set(d, ("models_used", 2, "artifacts", 0, "path"), "x/labels.txt"),
        "models_used[2].artifacts[0].path",
    ),
    (
        "precision",
        lambda d: _set(d, ("models_used", 3, "precision"), "fp16"),
        "models_used[3].precision",
    ),
    (
        "triton model version",
        lambda d: _set(d, ("models_used", 1, "triton", "model_version"), 2),
        "models_used[1].triton.model_version",
    ),
    ("requires", lambda d: _set(d, ("models_used", 1, "requires"), []), "models_used[1].requires"),
    (
        "top-level model_signature",
        lambda d: _set(d, ("model_signature",), "ab" * 32),
        "model_signature",
    ),
    (
        "top-level weights_digest",
        lambda d: _set(d, ("weights_digest",), "ab" * 32),
        "weights_digest",
    ),
    (
        "entry turned absent",
        lambda d: _set(d, ("models_used", 3, "status"), "absent"),
        "models_used[3].status",
    ),
    ("emptied models_used", lambda d: d["models_used"].clear(), "models_used"),
    (
        "duplicated entry",
        lambda d: d["models_used"].append(copy.deepcopy(d["models_used"][4])),
        "models_used[5]",
    ),
]


@pytest.mark.adversarial
@pytest.mark.parametrize(("edit", "field"), [h[1:] for h in HOLES], ids=[h[0] for h in HOLES])
def test_verify_artifact_reports_each_edit_by_field(
    real_stamp: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    catalog, stamps = real_stamp
    edited = copy.deepcopy(stamps)
    edit(edited)
    status, report = verify_json(catalog, edited, tmp_path)
    assert status == 1 and report["ok"] is False
    found = {d["field"]: d for d in report["differences"]}
    assert field in found, list(found)
    assert found[field]["message"].startswith(f"{field}: stamp says ")
    assert found[field]["fix"]


@pytest.mark.adversarial
def test_an_edited_entry_is_told_from_a_changed_model(
    real_stamp: tuple[Path, dict[str, Any]],
) -> None:
    """An edit leaves the entry contradicting itself: `edited`, not `changed`; the message
    names both values and the fix names the command."""
    catalog, stamps = real_stamp
    edited = copy.deepcopy(stamps)
    edited["models_used"][3]["artifacts"][0]["sha256"] = "ab" * 32
    report = check_stamps(edited, Catalog.load(catalog))
    check = report.models[3]
    assert check.status == "edited" and "not that of its own fields" in check.note
    (diff,) = check.differences
    pin = stamps["models_used"][3]["artifacts"][0]["sha256"]
    assert diff.message == (
        f"models_used[3].artifacts[0].sha256: stamp says {'ab' * 32}, catalog pins {pin}"
    )
    assert "dp-models show places365_resnet50" in diff.fix
    assert report.differences == []  # the combined stamps do not see this edit: only the entry does


@pytest.mark.adversarial
def test_an_absent_entry_for_a_required_spec_fails(real_stamp: tuple[Path, dict[str, Any]]) -> None:
    catalog, stamps = real_stamp
    edited = copy.deepcopy(stamps)
    entry = edited["models_used"][4]
    edited["models_used"][4] = {
        **entry,
        "name": "shared_tokenizer_v1",
        "version": "v1",
        "optional": True,
    }
    edited["models_used"][4]["engine"] = "tokenizers"
    check = check_stamps(edited, Catalog.load(catalog)).models[4]
    assert check.status == "absent" and not check.ok
    assert any(
        d.field == "models_used[4].status" and "not optional" in d.message
        for d in check.differences
    )


def test_an_honestly_empty_stamp_verifies(
    real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """`stamp(meta, [])` (a manager that handed out no model): ok, with no model."""
    catalog, _ = real_stamp
    empty = stamp({"video_id": "v"}, [])
    assert empty["model_signature"] == empty["weights_digest"] == EMPTY_DIGEST
    report = check_stamps(empty, Catalog.load(catalog))
    assert report.ok and len(report) == 0
    path = write_json(tmp_path / "empty.json", empty)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["verify-artifact", str(path), "--catalog", str(catalog)]) == 0
    assert "no model: models_used is empty" in out.getvalue()


def test_verify_artifact_prints_every_difference(
    real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    catalog, stamps = real_stamp
    edited = copy.deepcopy(stamps)
    edited["models_used"][0]["version"] = "v0"
    edited["models_used"][2]["artifacts"][0]["sha256"] = "cd" * 32
    edited["model_signature"] = "ef" * 32
    path = write_json(tmp_path / "edited.json", edited)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["verify-artifact", str(path), "--catalog", str(catalog)]) == 1
    text = out.getvalue()
    assert "models_used[0].version: stamp says v0, catalog says v1" in text
    assert f"models_used[2].artifacts[0].sha256: stamp says {'cd' * 32}, catalog pins" in text
    assert f"model_signature: stamp says {'ef' * 32}, its models_used entries give" in text
    assert "fix: `dp-models show shared_tokenizer_v1`" in text
    assert "informational (not checked): device=cpu" in text
    assert "3 differences (shared_tokenizer_v1, places365_categories, the combined stamps)" in text


#: Malformed stamps: (edit, the field the error names).
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("models_used not a list", lambda d: _set(d, ("models_used",), {"a": 1}), "models_used"),
    ("entry not an object", lambda d: _set(d, ("models_used", 1), "whisper"), "models_used[1]"),
    (
        "artifacts not a list",
        lambda d: _set(d, ("models_used", 3, "artifacts"), {"path": "x"}),
        "models_used[3].artifacts",
    ),
    (
        "artifact not an object",
        lambda d: _set(d, ("models_used", 3, "artifacts", 0), "x"),
        "models_used[3].artifacts[0]",
    ),
    (
        "version a number",
        lambda d: _set(d, ("models_used", 0, "version"), 1),
        "models_used[0].version",
    ),
    (
        "model_version a float",
        lambda d: _set(d, ("models_used", 1, "triton", "model_version"), 1.0),
        "models_used[1].triton.model_version",
    ),
    (
        "optional a number",
        lambda d: _set(d, ("models_used", 4, "optional"), 1),
        "models_used[4].optional",
    ),
    (
        "status unknown",
        lambda d: _set(d, ("models_used", 0, "status"), "fine"),
        "models_used[0].status",
    ),
    (
        "missing key",
        lambda d: _delete(d, ("models_used", 3, "model_signature")),
        "models_used[3].model_signature",
    ),
    (
        "missing artifact digest",
        lambda d: _delete(d, ("models_used", 2, "artifacts", 0, "sha256")),
        "models_used[2].artifacts[0].sha256",
    ),
    ("signature not a string", lambda d: _set(d, ("model_signature",), None), "model_signature"),
    ("no weights_digest", lambda d: _delete(d, ("weights_digest",)), "weights_digest"),
]


@pytest.mark.adversarial
@pytest.mark.parametrize(("edit", "key"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_stamp_is_a_typed_error(
    real_stamp: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    key: str,
) -> None:
    catalog, stamps = real_stamp
    edited = copy.deepcopy(stamps)
    edit(edited)
    with pytest.raises(ProvenanceError) as info:
        check_stamps(edited, Catalog.load(catalog))
    assert info.value.key == key
    assert str(info.value).startswith(key)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(edited))
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert main(["verify-artifact", str(path), "--catalog", str(catalog)]) == 1
    assert err.getvalue().startswith("dp-models: error: ") and key in err.getvalue()
    assert "Traceback" not in err.getvalue()


# -- hostile stamp files --------------------------------------------------------------------

_READ_FIFO = textwrap.dedent(
    """
    import os, sys
    from dp_models._errors import NotRegularFileError
    from dp_models._provenance import read_stamps
    os.mkfifo(sys.argv[1])
    try:
        read_stamps(sys.argv[1])
    except NotRegularFileError as exc:
        print("refused:", exc.kind)
    """
)


@pytest.mark.adversarial
@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_a_fifo_stamp_file_is_refused_without_blocking(tmp_path: Path, suffix: str) -> None:
    fifo = tmp_path / f"stamps{suffix}"
    proc = subprocess.run(
        [sys.executable, "-c", _READ_FIFO, str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,  # a read that blocks on the FIFO fails here instead of hanging the suite
        check=False,
    )
    assert proc.stdout.strip() == "refused: a FIFO (named pipe)", proc.stderr


@pytest.mark.adversarial
def test_oversized_stamps_are_refused(
    real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, stamps = real_stamp
    js = write_json(tmp_path / "big.json", stamps)
    npz = save_npz(tmp_path / "big.npz", {"x": np.zeros(1000)}, stamps)
    limit = len(json.dumps(stamps)) // 2
    monkeypatch.setattr("dp_models._provenance.MAX_STAMP_BYTES", limit)
    for path in (js, npz):
        with pytest.raises(FileTooLargeError) as info:
            read_stamps(path)
        assert info.value.limit == limit
    with pytest.raises(FileTooLargeError):
        load_npz(npz)


def _npy(path: Path) -> None:
    with path.open("wb") as f:
        np.save(f, np.zeros(3))


@pytest.mark.adversarial
def test_hostile_npz_and_json_files_are_typed_errors(tmp_path: Path) -> None:
    cases: dict[str, bytes | Callable[[Path], object]] = {
        "npy.npz": _npy,  # an .npy, not an archive
        "zip.npz": b"PK\x03\x04 truncated",
        "empty.npz": b"",
        "object.npz": lambda p: np.savez(p, **{NPZ_KEY: np.array([{"a": 1}], dtype=object)}),
        "numbers.npz": lambda p: np.savez(p, **{NPZ_KEY: np.arange(3)}),
        "list.npz": lambda p: np.savez(p, **{NPZ_KEY: np.array(json.dumps([1]))}),
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
        "digits.json": b'{"models_used": ' + b"7" * 5000 + b"}",
        "binary.json": b"\xff\xfe\x00garbage",
    }
    for name, make in cases.items():
        path = tmp_path / name
        if isinstance(make, bytes):
            path.write_bytes(make)
        else:
            make(path)
        with pytest.raises(ProvenanceError):
            read_stamps(path)
    with pytest.raises(NotRegularFileError):
        read_stamps(tmp_path)  # a directory


# -- the property: any edit of a checked field is reported, nothing else fails -------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    found: list[tuple[Any, ...]] = []
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _near(value: Any) -> st.SearchStrategy[Any]:
    """Values close to ``value``: one character off, the same number as another type, ..."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), str(value).lower()])
    if isinstance(value, int):
        return st.sampled_from([value + 1, float(value), str(value), bool(value)])
    if isinstance(value, float):
        return st.sampled_from([value + 1, int(value), str(value)])
    if isinstance(value, str):
        if not value:
            return st.just(" ")
        flip = st.integers(0, len(value) - 1).map(
            lambda i: value[:i] + ("1" if value[i] == "0" else "0") + value[i + 1 :]
        )
        return flip | st.sampled_from([value + " ", value.upper(), value[:-1]])
    if value is None:
        return st.sampled_from(["", 0, False, [], {}])
    if isinstance(value, list):
        return st.sampled_from([[], value + value[:1], value[:-1], [value]])
    return st.sampled_from([{}, dict(list(value.items())[:-1]), [value]])


_MISSING = "\x00missing\x00"


def _checked_part(stamps: Any) -> Any:
    """The part of ``stamps`` verify-artifact checks: the top level and each entry's checked
    fields (by its status), informational fields left out. Two stamps that differ here must
    not both pass."""
    if not isinstance(stamps, dict):
        return stamps
    part = {k: stamps.get(k, _MISSING) for k in STAMP_KEYS}
    entries = part["models_used"]
    if isinstance(entries, list):
        part["models_used"] = [
            {
                k: e.get(k, _MISSING)
                for k in (ABSENT_FIELDS if e.get("status") == "absent" else CHECKED_FIELDS)
            }
            if isinstance(e, dict)
            else e
            for e in entries
        ]
        for e in part["models_used"]:
            if isinstance(e, dict) and isinstance(e.get("artifacts"), list):
                e["artifacts"] = [
                    {k: v for k, v in a.items() if k not in ARTIFACT_INFO_FIELDS}
                    if isinstance(a, dict)
                    else a
                    for a in e["artifacts"]
                ]
            if isinstance(e, dict) and isinstance(e.get("triton"), dict):
                e["triton"] = {
                    k: e["triton"].get(k, _MISSING)
                    for k in ("model_name", "model_version", "endpoint_name")
                }
    return part


@pytest.mark.adversarial
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_edit_of_a_checked_field_is_reported_and_nothing_crashes(
    real_stamp: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    catalog_dir, base = real_stamp
    catalog = _catalog(catalog_dir)
    doc = copy.deepcopy(base)
    entries = doc["models_used"]
    kind = data.draw(st.sampled_from(["change", "delete", "drop", "duplicate"]), label="kind")
    where: str | None = None  # the entry (or top-level key) a report must name
    if kind in ("drop", "duplicate"):
        i = data.draw(st.integers(0, len(entries) - 1), label="entry")
        if kind == "drop":
            del entries[i]
        else:
            entries.insert(data.draw(st.integers(0, len(entries))), copy.deepcopy(entries[i]))
    else:
        path = data.draw(st.sampled_from(_paths(base)), label="path")
        old = _get(base, path)
        if kind == "change":
            new = data.draw(st.one_of(_near(old), JSON_VALUES), label="value")
            assume(not _same_json(new, old))
            _set(doc, path, new)
        else:
            _delete(doc, path)
        if path[0] != "models_used":
            where = path[0]
        elif len(path) >= 3:
            where = f"models_used[{path[1]}]"
    before, after = _checked_part(base), _checked_part(doc)
    must: bool | None = not _same_json(after, before)
    if must and isinstance(after["models_used"], list):
        # an absent entry takes no part in the combined stamps: dropping one is not
        # detectable (docs/provenance.md), so only "no crash" is asked of that edit
        kept = [
            e
            for e in before["models_used"]
            if e["status"] != "absent" or any(_same_json(e, x) for x in after["models_used"])
        ]
        if _same_json({**before, "models_used": kept}, after):
            must = None
    try:
        report = check_stamps(doc, catalog)
    except ProvenanceError as exc:
        assert must is not False, f"an informational edit was refused: {exc}"
        assert exc.key, "the error names no field"
        if where is not None:
            assert exc.key == where or exc.key.startswith(f"{where}."), exc.key
        return
    json.dumps(report.as_dict(), allow_nan=False)  # --json can always print it
    fields = [d.field for d in report.all_differences]
    assert all(fields)
    if must:
        assert not report.ok and fields, "an edit of a checked field passed"
        if where is not None:
            assert any(f == where or f.startswith(f"{where}.") for f in fields), fields
    elif must is False:
        assert report.ok, fields


_CATALOGS: dict[Path, Catalog] = {}


def _catalog(path: Path) -> Catalog:
    if path not in _CATALOGS:
        _CATALOGS[path] = Catalog.load(path)
    return _CATALOGS[path]


def _relocked(catalog: Path, tmp_path: Path, path: str, sha: str | None) -> Catalog:
    """A copy of ``catalog`` whose lock pins ``path`` to ``sha`` (None: not at all)."""
    copied = Path(shutil.copytree(catalog, tmp_path / "catalog"))
    lock_path = copied / "catalog.lock.json"
    lock = json.loads(lock_path.read_text())
    if sha is None:
        del lock["artifacts"][path]
    else:
        lock["artifacts"][path]["sha256"] = sha
    lock_path.write_text(json.dumps(lock))
    return Catalog.load(copied)


def test_a_required_spec_changed_since(
    real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Re-pinning what another model requires changes both: `changed` (the stamps agree
    with themselves), and the dependent one says which requirement changed."""
    catalog, stamps = real_stamp
    tokenizer = "text/shared_tokenizer_v1/tokenizer.json"
    report = check_stamps(stamps, _relocked(catalog, tmp_path, tokenizer, "12" * 32))
    assert [c.status for c in report] == ["changed", "changed", "unchanged", "unchanged", "absent"]
    assert [d.field for d in report.models[0].differences] == [
        "models_used[0].artifacts[0].sha256",
        "models_used[0].weights_digest",
        "models_used[0].model_signature",
    ]
    (dependent,) = report.models[1].differences
    assert dependent.field == "models_used[1].model_signature"
    assert "a spec it requires changed: shared_tokenizer_v1" in dependent.message
    assert report.differences == []


def test_an_unpinned_artifact_is_reported_with_the_command_that_pins_it(
    real_stamp: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    catalog, stamps = real_stamp
    labels = "visual/places365/categories_places365.txt"
    report = check_stamps(stamps, _relocked(catalog, tmp_path, labels, None))
    check = report.models[2]
    assert check.status == "unpinned" and not check.ok and not report.ok
    (diff,) = check.differences
    assert diff.field == "models_used[2].artifacts[0].sha256"
    assert f"catalog and lock pin nothing for {labels}" in diff.message
    assert "`dp-models lock`" in diff.fix


# -- lineage: which models produced an output, and the stamps of what it was computed from ---


@pytest.fixture(scope="module")
def handed_out(tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    """A manager that handed out whisper_small_triton (which requires shared_tokenizer_v1)
    and places365_resnet50."""
    tmp = tmp_path_factory.mktemp("handed_out")
    root = fake_models_root(tmp / "root", ["whisper_small_triton", "places365_resnet50"])
    mm = ModelManager(models_root=root, catalog=fake_catalog_dir(root), cache_dir=tmp / "cache")
    mm.get("whisper_small_triton")
    mm.get("places365_resnet50")
    return mm


def test_stamp_names_only_the_models_that_produced_the_output(handed_out: ModelManager) -> None:
    mm = handed_out
    names = [e["name"] for e in mm.stamp({}, models=["whisper_small_triton"])["models_used"]]
    assert names == ["shared_tokenizer_v1", "whisper_small_triton"]  # what it requires, too
    places = mm.stamp({}, models=["places365_resnet50"])
    assert [e["name"] for e in places["models_used"]] == [
        "places365_categories",  # the labels it requires
        "places365_resnet50",
    ]
    assert check_stamps(places, mm.catalog).ok
    assert mm.stamp({}) == mm.stamp({}, models=[e["name"] for e in mm.models_used()])
    assert mm.stamp({}, models=[])["model_signature"] == EMPTY_DIGEST


def test_stamp_of_a_model_not_handed_out_says_which_were(handed_out: ModelManager) -> None:
    with pytest.raises(ProvenanceError, match=r"'emonet_8', which this manager did not") as info:
        handed_out.stamp({}, models=["places365_resnet50", "emonet_8"])
    assert info.value.key == "models"
    assert "whisper_small_triton, places365_categories, places365_resnet50" in str(info.value)


def chain(tmp_path: Path) -> tuple[ModelManager, Path, Path, Path]:
    """A two-hop lineage on copies of the example catalog and root: ``core.npz`` (a core
    provider's output), ``mid.json`` computed from it (no model of its own: shot_quality),
    ``top.json`` computed from ``mid.json`` by a model."""
    catalog, root, _ = stamped_example(tmp_path)
    mm = ModelManager(models_root=root, catalog=catalog)
    mm.get("tiny_color_classifier")
    (tmp_path / "out").mkdir()
    core = save_npz(tmp_path / "out" / "core.npz", {"emb": np.ones(3)}, mm.stamp({"v": 1}))
    mid = write_json(tmp_path / "out" / "mid.json", mm.stamp({"v": 2}, models=[], inputs=[core]))
    top = write_json(tmp_path / "out" / "top.json", mm.stamp({"v": 3}, inputs=[mid]))
    return mm, core, mid, top


def test_a_two_hop_lineage_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mm, core, mid, top = chain(tmp_path)
    stamps = read_stamps(top)
    (link,) = stamps[INPUTS_KEY]
    assert (link["path"], link["sha256"]) == (str(mid), sha256(mid.read_bytes()))
    assert {k: link[k] for k in (*STAMP_KEYS, INPUTS_KEY, CATALOG_KEY)} == read_stamps(mid)
    (inner,) = link[INPUTS_KEY]  # the chain nests: the input's own inputs, as it recorded them
    assert (inner["path"], inner["sha256"]) == (str(core), sha256(core.read_bytes()))
    assert inner["model_signature"] == read_stamps(core)["model_signature"]
    # the combined stamps cover the inputs: same models, other inputs, another signature
    assert stamps["model_signature"] != mm.stamp({})["model_signature"]

    report = check_artifact(top, mm.catalog)
    assert report.ok and report.all_differences == []
    assert [(x.where, x.file) for x in report.links] == [
        ("inputs_used[0]", "unchanged"),
        ("inputs_used[0].inputs_used[0]", "unchanged"),
    ]
    assert [c.status for c in report.links[1].report] == ["unchanged"]
    assert main(["verify-artifact", str(top), "--catalog", str(mm.catalog.directory)]) == 0
    out = capsys.readouterr().out
    assert f"inputs_used[0].inputs_used[0] {core}: file unchanged, 1 model" in out
    assert "every model, and every input of its chain, is as the catalog" in out
    # stamps already read are an input too: no file, so only its stamps are checked
    _, read = load_npz(core)
    (handed,) = mm.stamp({}, inputs=[read])[INPUTS_KEY]
    assert (handed["path"], handed["sha256"]) == (None, None)
    (unrecorded,) = check_stamps(mm.stamp({}, inputs=[read]), mm.catalog).inputs
    assert (unrecorded.file, unrecorded.ok) == ("unrecorded", True)


def test_a_changed_middle_link_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mm, _, mid, top = chain(tmp_path)
    recorded = sha256(mid.read_bytes())
    write_json(mid, {**json.loads(mid.read_text()), "v": 99})  # recomputed since: new data
    report = check_artifact(top, mm.catalog)
    assert not report.ok
    middle, inner = report.links
    assert (middle.file, middle.ok, inner.file, inner.ok) == ("changed", False, "unchanged", True)
    (diff,) = report.all_differences
    assert diff.field == "inputs_used[0].sha256"
    assert (diff.stamped, diff.expected) == (recorded, sha256(mid.read_bytes()))
    assert f"the file {mid} now has" in diff.message
    assert "its stamps are the same: its data changed" in diff.message
    catalog = str(mm.catalog.directory)
    assert main(["verify-artifact", str(top), "--catalog", catalog, "--json"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert [d["field"] for d in shown["differences"]] == ["inputs_used[0].sha256"]
    assert shown["inputs"][0]["file"] == "changed"
    assert main(["verify-artifact", str(top), "--catalog", catalog]) == 1
    assert f"1 difference (inputs_used[0] {mid})" in capsys.readouterr().out


def test_a_middle_link_whose_model_changed_is_named(tmp_path: Path) -> None:
    mm, _, _, top = chain(tmp_path)
    catalog = mm.catalog.directory
    assert catalog is not None
    (mm.root / "demo/tiny_color_classifier/labels.txt").write_text("rot\ngrün\nblau\n")
    assert main(["lock", "--catalog", str(catalog), "--root", str(mm.root)]) == 0
    report = check_artifact(top, Catalog.load(catalog))
    fields = [d.field for d in report.all_differences]
    assert "inputs_used[0].inputs_used[0].models_used[0].artifacts[1].sha256" in fields
    assert report.links[1].report.models[0].status == "changed"
    assert [x.file for x in report.links] == ["unchanged", "unchanged"]  # the files did not


def test_input_files_that_moved_or_are_gone(tmp_path: Path) -> None:
    mm, _, _, _ = chain(tmp_path)
    moved = tmp_path / "archive"
    shutil.copytree(tmp_path / "out", moved)
    shutil.rmtree(tmp_path / "out")
    report = check_artifact(moved / "top.json", mm.catalog)  # looked for beside the artifact
    assert report.ok and [x.found for x in report.links] == [
        str(moved / "mid.json"),
        str(moved / "core.npz"),
    ]
    (moved / "core.npz").unlink()
    report = check_artifact(moved / "top.json", mm.catalog)
    assert report.ok  # reported, not failed: the stamps it recorded are still checked
    assert report.links[1].file == "missing" and "not there" in report.links[1].note


@pytest.mark.adversarial
def test_a_lineage_input_whose_stamps_fail_is_refused(tmp_path: Path) -> None:
    mm, core, mid, _ = chain(tmp_path)
    tampered = read_stamps(core)
    tampered["models_used"][0]["version"] = "0.9"
    with pytest.raises(LineageInputError, match=r"lineage input 1 fails verification") as info:
        mm.stamp({}, inputs=[core, tampered])
    assert (info.value.path, info.value.index, info.value.key) == (None, 1, "inputs[1]")
    assert info.value.differences[0].startswith("models_used[0].version: stamp says 0.9")
    with pytest.raises(ProvenanceError, match=r"inputs\[0\]: model_signature is missing") as bad:
        mm.stamp({}, inputs=[{"models_used": []}])
    assert bad.value.key == "inputs[0].model_signature"
    # a link further up the chain: the input's own input changed since
    np.savez(core, emb=np.zeros(3))
    with pytest.raises(LineageInputError, match=r"inputs_used\[0\]\.sha256") as info:
        mm.stamp({}, inputs=[mid])
    assert (info.value.path, info.value.index) == (str(mid), 0)
    assert "dp-models verify-artifact" in str(info.value)


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s[INPUTS_KEY][0].pop("sha256"), "inputs_used[0].sha256"),
        (lambda s: s[INPUTS_KEY][0].update(sha256=None), "inputs_used[0].sha256"),
        (lambda s: s[INPUTS_KEY][0].update(models_used={}), "inputs_used[0].models_used"),
        (lambda s: s.update(inputs_used={}), "inputs_used"),
    ],
    ids=["no sha256", "path without sha256", "models_used not a list", "not a list"],
)
def test_a_malformed_link_is_a_typed_error(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], key: str
) -> None:
    mm, _, _, top = chain(tmp_path)
    stamps = read_stamps(top)
    edit(stamps)
    with pytest.raises(ProvenanceError) as info:
        check_stamps(stamps, mm.catalog)
    assert info.value.key == key


# -- stamps that know their catalog (catalog_used) ------------------------------------------


def verify_cli(path: Path, *options: str) -> tuple[int, str]:
    """`dp-models verify-artifact PATH OPTIONS`: its exit status and what it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["verify-artifact", str(path), *options])
    return status, out.getvalue()


def test_a_stamp_records_its_catalog_and_lock(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    loaded = Catalog.load(catalog)
    used = read_stamps(out)[CATALOG_KEY]
    assert used == {
        "path": str(catalog),
        "digest": loaded.digest,
        "lock": {"path": str(catalog / "catalog.lock.json"), "digest": loaded.lock_digest},
    }
    assert used["lock"]["digest"] == sha256(loaded.lock.dumps().encode())
    # in no signature: the same models stamped without a catalog sign the same
    entries = read_stamps(out)["models_used"]
    plain = stamp({}, entries)
    assert CATALOG_KEY not in plain
    assert plain["model_signature"] == read_stamps(out)["model_signature"]
    assert plain["weights_digest"] == read_stamps(out)["weights_digest"]
    # and like every stamp key, a different one already in meta is not overwritten
    with pytest.raises(ProvenanceError, match=r"different 'catalog_used'") as info:
        stamp({CATALOG_KEY: {**used, "digest": "0" * 64}}, entries, catalog=loaded)
    assert info.value.key == CATALOG_KEY
    assert stamp({CATALOG_KEY: used}, entries, catalog=loaded)[CATALOG_KEY] == used


def test_the_catalog_digest_follows_the_specs_not_their_files(tmp_path: Path) -> None:
    catalog, root, _ = stamped_example(tmp_path)
    base = Catalog.load(catalog)
    moved = Path(shutil.copytree(catalog, tmp_path / "elsewhere"))
    (moved_spec,) = moved.rglob("tiny_color_classifier.yaml")
    (moved / "nested" / "deeper").mkdir(parents=True)
    text = moved_spec.read_text()
    moved_spec.unlink()  # another layout, a comment, other key order: the same specs
    data = yaml.safe_load(text)
    reordered = dict(reversed(list(data.items())))
    (moved / "nested" / "deeper" / moved_spec.name).write_text(
        "# a comment\n" + yaml.safe_dump(reordered, sort_keys=False)
    )
    (spec,) = catalog.rglob("tiny_color_classifier.yaml")
    other = Catalog.load(moved)
    assert (other.digest, other.lock_digest) == (base.digest, base.lock_digest)
    spec.write_text(spec.read_text().replace('version: "1.0"', 'version: "1.1"'))
    assert Catalog.load(catalog).digest != base.digest
    (root / "demo/tiny_color_classifier/labels.txt").write_text("rouge\nvert\nbleu\n")
    assert main(["lock", "--catalog", str(moved), "--root", str(root)]) == 0
    relocked = Catalog.load(moved)
    assert relocked.digest == base.digest and relocked.lock_digest != base.lock_digest


def test_verify_artifact_says_the_stamp_was_made_against_another_catalog(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    digest = Catalog.load(catalog).digest
    status, text = verify_cli(out)  # the packaged catalog: it has no tiny_color_classifier
    assert status == 1
    lines = text.splitlines()
    assert lines[1] == (
        f"  stamped against another catalog ({catalog}, digest {digest[:16]}...) than the one "
        f"checked against ({Catalog.load().directory}, digest {Catalog.load().digest[:16]}...); "
        f"pass --catalog {catalog} --lock {catalog / 'catalog.lock.json'} to check against it"
    )
    assert "tiny_color_classifier            removed" in lines[2]  # still listed, after it
    assert lines[-1].endswith("the stamp was made against another catalog or lock (above)")
    status, shown = verify_json(Catalog.load().directory, read_stamps(out), tmp_path)
    assert status == 1 and shown["ok"] is False
    assert shown["catalog"]["same"] is False and shown["catalog"]["same_specs"] is False
    assert shown["catalog"]["stamped"]["path"] == str(catalog)
    assert shown["catalog"]["stamped"]["digest"] == digest
    assert shown["catalog"]["message"].startswith("stamped against another catalog (")
    # the catalog it names checks it, when asked: never switched to by itself
    status, text = verify_cli(out, "--catalog", str(catalog))
    assert status == 0 and "stamped against" not in text


def test_the_same_catalog_elsewhere_is_no_other_catalog(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    copy_ = Path(shutil.copytree(catalog, tmp_path / "copy"))
    report = check_artifact(out, Catalog.load(copy_))
    assert report.ok and report.catalog is not None and report.catalog.same
    assert report.catalog.stamped.path == str(catalog)
    assert report.catalog.checked.path == str(copy_)
    assert report.catalog.message == ""
    status, text = verify_cli(out, "--catalog", str(copy_))
    assert status == 0 and "stamped against" not in text and "another catalog" not in text


def test_another_lock_is_said_with_the_lock_to_pass(tmp_path: Path) -> None:
    catalog, root, out = stamped_example(tmp_path)
    relocked = Path(shutil.copytree(catalog, tmp_path / "relocked"))
    (root / "demo/tiny_color_classifier/labels.txt").write_text("rouge\nvert\nbleu\n")
    assert main(["lock", "--catalog", str(relocked), "--root", str(root)]) == 0
    report = check_artifact(out, Catalog.load(relocked))
    assert not report.ok and report.catalog is not None
    assert (report.catalog.same_specs, report.catalog.same_lock) == (True, False)
    assert report.catalog.message.startswith("stamped against the same specs with another lock")
    assert report.catalog.message.endswith(
        f"pass --lock {catalog / 'catalog.lock.json'} to check against it"
    )
    status, text = verify_cli(out, "--catalog", str(relocked))
    assert status == 1 and "with another lock" in text.splitlines()[1]


def test_another_catalog_whose_models_verify_is_said_not_failed(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    (spec,) = catalog.rglob("tiny_color_classifier.yaml")
    extra = spec.with_name("other_classifier.yaml")
    extra.write_text(
        spec.read_text().replace("name: tiny_color_classifier", "name: other_classifier")
    )
    report = check_artifact(out, Catalog.load(catalog))
    assert report.ok and report.catalog is not None and not report.catalog.same_specs
    status, text = verify_cli(out, "--catalog", str(catalog))
    assert status == 0
    assert "stamped against another catalog" in text
    assert text.splitlines()[-1] == "every model is as the catalog and lock describe it today"


def test_a_stamp_without_its_catalog_still_verifies(tmp_path: Path) -> None:
    catalog, _, out = stamped_example(tmp_path)
    old = {k: v for k, v in json.loads(out.read_text()).items() if k != CATALOG_KEY}
    write_json(out, old)  # as written before stamps recorded their catalog
    report = check_artifact(out, Catalog.load(catalog))
    assert report.ok and report.catalog is None
    status, shown = verify_json(catalog, read_stamps(out), tmp_path)
    assert status == 0 and shown["catalog"] is None


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("/some/catalog", "catalog_used"),
        ({"digest": "ab" * 32, "lock": {"path": "l", "digest": "ab" * 32}}, "catalog_used.path"),
        ({"path": "c", "digest": "AB" * 32, "lock": {}}, "catalog_used.digest"),
        ({"path": "c", "digest": "ab" * 32}, "catalog_used.lock"),
        ({"path": "c", "digest": "ab" * 32, "lock": []}, "catalog_used.lock"),
        ({"path": "c", "digest": "ab" * 32, "lock": {"path": 1}}, "catalog_used.lock.path"),
        (
            {"path": "c", "digest": "ab" * 32, "lock": {"path": "l", "digest": None}},
            "catalog_used.lock.digest",
        ),
    ],
    ids=[
        "not an object",
        "no path",
        "digest not a sha256",
        "no lock",
        "lock a list",
        "lock path a number",
        "lock digest null",
    ],
)
def test_a_malformed_catalog_used_is_a_typed_error(tmp_path: Path, value: Any, key: str) -> None:
    catalog, _, out = stamped_example(tmp_path)
    stamps = {**read_stamps(out), CATALOG_KEY: value}
    with pytest.raises(ProvenanceError) as info:
        check_stamps(stamps, Catalog.load(catalog))
    assert info.value.key == key and str(info.value).startswith(key)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(stamps))
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert main(["verify-artifact", str(path), "--catalog", str(catalog)]) == 1
    assert err.getvalue().startswith("dp-models: error: ") and key in err.getvalue()


def test_a_link_records_its_input_s_catalog(tmp_path: Path) -> None:
    mm, _, mid, top = chain(tmp_path)
    (link,) = read_stamps(top)[INPUTS_KEY]
    assert link[CATALOG_KEY] == read_stamps(mid)[CATALOG_KEY]
    report = check_artifact(top, mm.catalog)
    assert report.ok and report.inputs[0].report.catalog is not None
    assert report.inputs[0].report.catalog.same
    stamps = read_stamps(top)
    stamps[INPUTS_KEY][0][CATALOG_KEY]["lock"]["digest"] = "nope"
    with pytest.raises(ProvenanceError) as info:
        check_stamps(stamps, mm.catalog)
    assert info.value.key == "inputs_used[0].catalog_used.lock.digest"
