"""The `dp-models` command line, run in-process through `main(argv)` and once as a real
console script."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dp_models._cli import main
from dp_models._digest import directory_digest
from dp_models._errors import LockError
from dp_models._lock import Lock
from dp_models._progress import TerminalProgress

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
        "home": "root",
        "location": str(root.resolve()),
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


def test_lock_refuses_the_installed_package_s_lock_and_names_what_to_pass(
    capsys: pytest.CaptureFixture[str], models_root: Path
) -> None:
    """Without --lock or --catalog the lock is the packaged catalog's: never written."""
    from dp_models._settings import packaged_catalog_dir

    packaged = packaged_catalog_dir() / "catalog.lock.json"
    before = packaged.read_bytes()
    code, out, err = run(capsys, "lock", "--root", str(models_root))
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"dp-models: error: not writing the lock {packaged}")
    assert "pass --lock PATH" in err and "$DP_MODELS_LOCK" in err
    assert packaged.read_bytes() == before


def test_lock_in_a_place_that_cannot_be_written_is_one_typed_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    catalog_dir: Path,
    models_root: Path,
    write_spec: SpecWriter,
    tmp_path: Path,
) -> None:
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    args = ("--catalog", str(catalog_dir), "--root", str(models_root))
    not_a_dir = make_file(tmp_path / "deploy", b"a file where a directory should be")
    lock = not_a_dir / "models.lock.json"
    code, out, err = run(capsys, "lock", *args, "--lock", str(lock))
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"dp-models: error: cannot write the lock {lock}: ")
    assert "pass --lock PATH" in err
    with pytest.raises(LockError) as info:  # typed: what the one line said
        Lock(lock).write()
    assert info.value.path == lock and isinstance(info.value.__cause__, OSError)

    def read_only(path: object, data: object) -> None:  # a read-only file system
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".lock.tmp"))

    monkeypatch.setattr("dp_models._lock.atomic_write", read_only)
    writable = tmp_path / "ro" / "models.lock.json"
    code, out, err = run(capsys, "lock", *args, "--lock", str(writable))
    assert code == 1 and len(err.splitlines()) == 1
    assert f"cannot write the lock {writable}: Read-only file system." in err
    assert ".lock.tmp" not in err


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


@pytest.mark.adversarial
def test_env_masks_a_triton_url_whole_whatever_it_holds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheme-less URL, or a password with an "@", showed its secret (or half of it)."""
    monkeypatch.setenv("DP_MODELS_TRITON_URL", "bob:hun@ter2@triton:8000")
    monkeypatch.setenv("DP_MODELS_TRITON_URL_ASR", "http://bob:hun@ter2@asr:8000/v2")
    code, out, _ = run(capsys, "env", "--json")
    assert code == 0
    environment = json.loads(out)["environment"]
    assert environment["DP_MODELS_TRITON_URL"] == "***@triton:8000"
    assert environment["DP_MODELS_TRITON_URL_ASR"] == "http://***@asr:8000/v2"
    code, out, _ = run(capsys, "env")
    assert code == 0 and "ter2" not in out and "bob" not in out and "***@triton:8000" in out


@pytest.mark.adversarial
def test_env_lists_replica_settings_and_masks_each_replica_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DP_MODELS_TRITON_URL_GPU", "http://a:pw1@h1:8000,http://b:pw2@h2:8000")
    monkeypatch.setenv("DP_MODELS_TRITON_REPLICAS_GPU", "urls")
    code, out, _ = run(capsys, "env", "--json")
    assert code == 0
    environment = json.loads(out)["environment"]
    assert environment["DP_MODELS_TRITON_URL_GPU"] == "http://***@h1:8000,http://***@h2:8000"
    assert environment["DP_MODELS_TRITON_REPLICAS_GPU"] == "urls"
    assert "pw1" not in out and "pw2" not in out


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


# -- fatal errors with --json, Ctrl-C --------------------------------------------------------


def main_or_fail(argv: list[str]) -> int:
    """``main(argv)``, failing the test (not ending the session) if Ctrl-C escapes it."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main (a traceback for the user)")


@pytest.mark.adversarial
def test_json_error_object_for_a_fatal_error(
    capsys: pytest.CaptureFixture[str], catalog_dir: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    write_spec("x", "name: x\nbogus: 1\n")
    code, out, err = run(capsys, "list", "--json", "--catalog", str(catalog_dir))
    assert code == 1 and err == ""
    data = json.loads(out)
    assert data["ok"] is False
    error = data["error"]
    assert error["type"] == "CatalogError"
    assert "visual/x.yaml: bogus: unknown key 'bogus'" in error["message"]
    assert error["catalog"] == str(catalog_dir)
    assert {
        "file": "visual/x.yaml",
        "field": "bogus",
        "message": "unknown key 'bogus' (see docs/spec.md)",
    } in error["problems"]

    code, out, err = run(capsys, "digest", "--json", str(tmp_path / "missing"))
    assert code == 1 and err == ""
    error = json.loads(out)["error"]
    assert error == {
        "type": "FileNotFoundError",
        "message": f"{tmp_path / 'missing'}: no such file or directory",
        "errno": "ENOENT",
        "filename": str(tmp_path / "missing"),
    }

    code, out, err = run(capsys, "list", "--catalog", str(catalog_dir))  # without --json
    assert code == 1 and out == ""
    assert err.startswith("dp-models: error: catalog ") and "unknown key 'bogus'" in err


@pytest.mark.adversarial
def test_json_error_object_for_an_unknown_spec(
    capsys: pytest.CaptureFixture[str], small: tuple[Path, Path]
) -> None:
    code, out, _ = run(capsys, "show", "goood", "--json", "--catalog", str(small[0]))
    assert code == 1
    error = json.loads(out)["error"]
    assert error["type"] == "SpecNotFoundError"
    assert error["name"] == "goood" and error["suggestions"] == ["good"]
    assert "did you mean 'good'" in error["message"]


@pytest.mark.adversarial
def test_unreadable_file_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # tests run as root, which reads any file: refuse this one at open() instead
    secret = make_file(tmp_path / "secret.bin", b"s")
    real_open = os.open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    code, out, err = run(capsys, "digest", str(secret))
    assert (code, out) == (1, "")
    assert err == f"dp-models: error: {secret}: Permission denied\n"
    code, out, err = run(capsys, "digest", "--json", str(secret))
    assert code == 1
    assert json.loads(out)["error"] == {
        "type": "PermissionError",
        "message": f"{secret}: Permission denied",
        "errno": "EACCES",
        "filename": str(secret),
    }


def _unpinned(catalog_dir: Path, models_root: Path, write_spec: SpecWriter) -> tuple[str, ...]:
    write_spec("m", inprocess_spec("m", "- {path: m.pt, format: pt}"))
    make_file(models_root / "m.pt", b"m")
    return ("--catalog", str(catalog_dir), "--root", str(models_root))


@pytest.mark.adversarial
def test_ctrl_c_while_the_lock_is_written_leaves_it_as_it_was(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    catalog_dir: Path,
    models_root: Path,
    write_spec: SpecWriter,
) -> None:
    args = _unpinned(catalog_dir, models_root, write_spec)
    assert run(capsys, "lock", *args)[0] == 0
    lock = catalog_dir / "catalog.lock.json"
    before = lock.read_bytes()
    write_spec("n", inprocess_spec("n", "- {path: n.pt, format: pt}"))
    make_file(models_root / "n.pt", b"n")

    def interrupt(fd: int) -> None:  # the new lock is written, not yet in place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    code = main_or_fail(["lock", *args])
    _, err = capsys.readouterr()
    assert code == 130
    assert err == "dp-models: interrupted\n"
    assert lock.read_bytes() == before
    assert sorted(p.name for p in catalog_dir.iterdir()) == ["catalog.lock.json", "visual"]


@pytest.mark.adversarial
def test_ctrl_c_while_the_cache_is_written_leaves_it_intact(
    no_racy_window: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    first = make_file(tmp_path / "first.bin", b"first")
    second = make_file(tmp_path / "second.bin", b"second")
    assert run(capsys, "digest", "--cache-dir", str(cache), str(first))[0] == 0
    entries = {p: p.read_bytes() for p in cache.rglob("*.json")}
    assert len(entries) == 1
    real_replace = os.replace

    def interrupt(src: Any, dst: Any) -> None:  # the entry is written, not yet in place
        if Path(dst).is_relative_to(cache):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupt)
    code = main_or_fail(["digest", "--cache-dir", str(cache), str(second)])
    _, err = capsys.readouterr()
    assert (code, err) == (130, "dp-models: interrupted\n")
    assert {p: p.read_bytes() for p in cache.rglob("*.json")} == entries
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.adversarial
def test_sigint_mid_hash_exits_130_with_one_line(tmp_path: Path) -> None:
    """A real SIGINT to a real process, delivered while it hashes (the progress hook waits
    for it): exit 130, one line, no traceback, nothing left in the cache."""
    big = make_file(tmp_path / "big.bin", b"\0" * (3 << 20))
    cache = tmp_path / "cache"
    started = tmp_path / "started"
    script = f"""
import sys, time
from pathlib import Path
from dp_models._progress import TerminalProgress
from dp_models._cli import main

def advance(self, nbytes):
    Path({str(started)!r}).touch()
    time.sleep(60)

TerminalProgress.advance = advance
sys.exit(main(["digest", "--cache-dir", {str(cache)!r}, {str(big)!r}]))
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), "the process never started hashing"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err == "dp-models: interrupted\n"
    assert out == ""
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
    assert not list(cache.rglob("*.json"))


def test_doctor_users_checks_the_specs_a_processor_uses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--users PROCESSOR`` (a processor's readiness probe): exactly its specs, with NAMES."""
    from dp_models import Catalog

    packaged = Catalog.load()
    users = "TextProcessor/embeddings"
    expected = sorted(n for n, s in packaged.items() if users in s.users)
    assert expected
    argv = ["doctor", "--users", users, "--root", str(tmp_path), "--no-triton", "--json"]
    code, out, _ = run(capsys, *argv)
    assert code == 1  # an empty root: nothing is provisioned
    assert sorted(s["name"] for s in json.loads(out)["specs"]) == expected
    code, out, _ = run(capsys, *argv, "emonet_8")
    assert sorted(s["name"] for s in json.loads(out)["specs"]) == sorted([*expected, "emonet_8"])
    code, _, err = run(capsys, "doctor", "--users", "Nobody/none", "--root", str(tmp_path))
    assert code != 0 and "no spec of the catalog" in err and "Nobody/none" in err
    # what the processor's specs require is checked too, whoever else uses it
    catalog = shutil.copytree(packaged.directory, tmp_path / "catalog")
    tracker = catalog / "visual" / "bytetrack_tracker.yaml"
    text = tracker.read_text()
    tracker.write_text(text.replace("VisualProcessor/core_object_detections", "Other/tracking"))
    argv = ["doctor", "--users", "VisualProcessor/core_object_detections", "--json"]
    code, out, _ = run(capsys, *argv, "--catalog", str(catalog), "--root", str(tmp_path))
    names = sorted(s["name"] for s in json.loads(out)["specs"])
    assert names == ["bytetrack_tracker", "yolo11n_detector"]
