"""The `dp-models` command line, run in-process through `main(argv)` and once as a real
console script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dp_models._progress import TerminalProgress
from dp_models.cli import main
from dp_models.digest import directory_digest

from .conftest import SpecWriter, inprocess_spec, make_file, sha256

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
EXAMPLE_ROOT = REPO / "MODELS_ROOT.example"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def small(catalog_dir: Path, models_root: Path, write_spec: SpecWriter) -> tuple[Path, Path]:
    """A catalog with one good spec, one optional absent, one Triton remote, one corrupt."""
    write_spec(
        "good",
        inprocess_spec("good", f"- {{path: good.pt, format: pt, sha256: {sha256(b'good')}}}"),
    )
    write_spec(
        "maybe",
        inprocess_spec(
            "maybe",
            f"- {{path: maybe.pt, format: pt, sha256: {sha256(b'maybe')}}}",
            "optional: true\n",
        ),
    )
    write_spec(
        "served",
        """
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
    """,
        area="audio",
    )
    write_spec(
        "bad",
        inprocess_spec("bad", f"- {{path: bad.pt, format: pt, sha256: {sha256(b'expected')}}}"),
    )
    make_file(models_root / "good.pt", b"good")
    make_file(models_root / "bad.pt", b"tampered")
    return catalog_dir, models_root


def test_validate(capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]) -> None:
    code, out, _ = run(capsys, "validate", "--catalog", str(small[0]))
    assert code == 0
    assert (
        "4 specs valid (3 in-process, 1 Triton); lock catalog.lock.json: 0 pins (no lock "
        "file yet)" in out
    )


def test_validate_invalid_catalog(
    capsys: pytest.CaptureFixture[str], catalog_dir: Path, write_spec: SpecWriter
) -> None:
    write_spec("x", "name: x\nbogus: 1\n")
    code, out, err = run(capsys, "validate", "--catalog", str(catalog_dir))
    assert code == 1
    assert out == ""
    assert "visual/x.yaml: bogus: unknown key 'bogus'" in err
    assert "visual/x.yaml: version: Field required" in err


def test_validate_packaged_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate")
    assert code == 0
    assert "spec_catalog: " in out and "specs valid" in out


def test_list_and_show(capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]) -> None:
    code, out, _ = run(capsys, "list", "--catalog", str(small[0]), "--runtime", "triton")
    assert code == 0
    assert out.splitlines()[1].split() == ["served", "1", "triton", "onnx", "no"]
    code, out, _ = run(capsys, "list", "--catalog", str(small[0]), "--json")
    assert [s["name"] for s in json.loads(out)] == ["bad", "good", "maybe", "served"]
    code, out, _ = run(capsys, "show", "good", "--catalog", str(small[0]), "--json")
    data = json.loads(out)
    assert data["pins"] == [
        {"path": "good.pt", "sha256": sha256(b"good"), "size": None, "pinned_by": "spec"}
    ]
    code, out, err = run(capsys, "show", "goood", "--catalog", str(small[0]))
    assert code == 1
    assert "no spec named 'goood'" in err and "did you mean 'good'" in err


def test_doctor_table(capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]) -> None:
    catalog, root = small
    code, out, _ = run(capsys, "doctor", "--catalog", str(catalog), "--root", str(root))
    assert code == 1
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:5]}
    assert rows == {"served": "remote", "bad": "DIGEST_MISMATCH", "good": "ok", "maybe": "absent"}
    assert "1 required spec not ok:" in out
    assert f"- spec 'bad': artifact {root}/bad.pt has sha256 {sha256(b'tampered')}" in out
    assert "fix: re-provision the artifact" in out


def test_doctor_json_and_exit_status(
    capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]
) -> None:
    catalog, root = small
    code, out, _ = run(capsys, "doctor", "--json", "--catalog", str(catalog), "--root", str(root))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["summary"] == {"absent": 1, "digest_mismatch": 1, "ok": 1, "remote": 1}
    bad = next(s for s in report["specs"] if s["name"] == "bad")
    assert bad["artifacts"][0] | {"message": ""} == {
        "path": "bad.pt",
        "kind": "file",
        "status": "digest_mismatch",
        "pinned_by": "spec",
        "expected_sha256": sha256(b"expected"),
        "actual_sha256": sha256(b"tampered"),
        "expected_size": None,
        "actual_size": len(b"tampered"),
        "cached": False,
        "message": "",
    }
    code, out, _ = run(
        capsys,
        "doctor",
        "good",
        "maybe",
        "served",
        "--json",
        "--catalog",
        str(catalog),
        "--root",
        str(root),
    )
    assert code == 0 and json.loads(out)["ok"] is True


def test_doctor_optional_but_corrupt_fails(
    capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]
) -> None:
    catalog, root = small
    make_file(root / "maybe.pt", b"not maybe")
    code, out, _ = run(capsys, "doctor", "maybe", "--catalog", str(catalog), "--root", str(root))
    assert code == 1
    assert "DIGEST_MISMATCH" in out


def test_doctor_without_root(capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]) -> None:
    code, _, err = run(capsys, "doctor", "--catalog", str(small[0]))
    assert code == 1
    assert "MODELS_ROOT is not set" in err


def test_doctor_writes_nothing_into_the_root(
    capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]
) -> None:
    catalog, root = small
    before = sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*"))
    run(capsys, "doctor", "--catalog", str(catalog), "--root", str(root))
    assert sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_lock_and_check(
    capsys: pytest.CaptureFixture[str], catalog_dir: Path, models_root: Path, write_spec: SpecWriter
) -> None:
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    args = ("--catalog", str(catalog_dir), "--root", str(models_root))
    code, out, _ = run(capsys, "lock", "--check", *args)
    assert code == 1 and "m.pt: present in the root but not pinned in the lock" in out
    code, out, _ = run(capsys, "lock", *args)
    assert code == 0 and "1 pin (1 added, 0 changed, 0 dropped)" in out
    code, out, _ = run(capsys, "lock", "--check", *args)
    assert code == 0 and "is in sync" in out
    code, out, _ = run(capsys, "doctor", *args)
    assert code == 0


def test_digest_of_file_and_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make_file(tmp_path / "d/a.txt", b"abc")
    make_file(tmp_path / "d/sub/b.txt", b"")
    code, out, _ = run(capsys, "digest", "--json", str(tmp_path / "d"), str(tmp_path / "d/a.txt"))
    assert code == 0
    d, f = json.loads(out)
    assert d == {
        "path": str(tmp_path / "d"),
        "kind": "dir",
        "files": 2,
        "size": 3,
        "sha256": directory_digest([("a.txt", sha256(b"abc")), ("sub/b.txt", sha256(b""))]),
    }
    assert f["sha256"] == sha256(b"abc")
    code, out, _ = run(capsys, "digest", str(tmp_path / "d/a.txt"))
    assert out == f"{sha256(b'abc')}               3  {tmp_path / 'd/a.txt'}\n"
    code, _, err = run(capsys, "digest", str(tmp_path / "missing"))
    assert code == 1 and "no such file or directory" in err


def test_env_redacts_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DP_MODELS_ROOT", str(tmp_path))
    monkeypatch.setenv("HF_HOME", "https://user:s3cret@mirror.invalid/hf")
    code, out, _ = run(capsys, "env", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["settings"]["models_root"] == str(tmp_path.resolve())
    assert data["environment"]["HF_HOME"] == "https://***@mirror.invalid/hf"
    assert "s3cret" not in out
    assert data["versions"]["dp-models"]
    code, out, _ = run(capsys, "env")
    assert "s3cret" not in out and "models_root" in out


def test_progress_bar_only_after_a_second_and_only_on_a_terminal() -> None:
    stream = io.StringIO()
    quick = TerminalProgress(stream=stream, enabled=True, delay_s=60)
    quick.add_total(10)
    quick.advance(10)
    quick.close()
    assert stream.getvalue() == ""
    slow = TerminalProgress(stream=stream, enabled=True, delay_s=0)
    slow.add_total(4 << 20)
    slow.advance(2 << 20)
    slow.close()
    assert "hashing [###############...............]  50.0%" in stream.getvalue()
    assert stream.getvalue().endswith("\n")
    assert TerminalProgress(stream=io.StringIO()).enabled is False  # not a terminal


def test_console_script_runs_the_example(tmp_path: Path) -> None:
    exe = shutil.which("dp-models", path=str(Path(sys.executable).parent))
    assert exe is not None, "the dp-models console script is not installed"
    env = {**os.environ, "DP_MODELS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [exe, "doctor", "--catalog", str(EXAMPLE_CATALOG), "--root", str(EXAMPLE_ROOT), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"] == {"ok": 1}
    proc = subprocess.run(
        [exe, "lock", "--check", "--catalog", str(EXAMPLE_CATALOG), "--root", str(EXAMPLE_ROOT)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_usage_error_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--verify", "sometimes"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_bad_verify_variable_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, small: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("DP_MODELS_VERIFY", "bogus")
    code, _, err = run(capsys, "doctor", "--catalog", str(small[0]), "--root", str(small[1]))
    assert code == 1
    assert "dp-models: error: verify policy must be one of cached, always; got 'bogus'" in err


def test_root_origin_is_the_option(
    capsys: pytest.CaptureFixture[str], small: tuple[Path, Path], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "doctor", "--catalog", str(small[0]), "--root", str(tmp_path / "nope")
    )
    assert code == 1 and "(from --root) does not exist" in err


def test_digest_of_a_directory_with_a_non_utf8_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    raw = os.path.join(os.fsencode(d), b"caf\xe9.txt")
    with open(raw, "wb") as f:
        f.write(b"x")
    code, out, _ = run(capsys, "digest", "--json", str(d))
    assert code == 0
    expected = sha256(f"{sha256(b'x')}  ".encode() + b"caf\xe9.txt\n")
    assert json.loads(out)[0]["sha256"] == expected
