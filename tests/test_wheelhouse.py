"""Installing without the package index: the demo sets up and runs from a wheelhouse.

``scripts/test.sh`` builds the demo's wheelhouse (``scripts/wheelhouse.sh -o .wheelhouse-demo
onnx``, with the index, as any setup does); here a copy of this checkout runs
``scripts/demo.sh`` with ``DP_MODELS_WHEELHOUSE`` inside a network namespace with nothing but
a down loopback (``unshare -n``), with pip's configuration switched off (its find-links and
local indexes would hide a missing wheel), and pip's log shows that every file it installed
came from the wheelhouse.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / ".wheelhouse-demo"
SCRIPT = REPO / "scripts" / "wheelhouse.sh"
STAMP = ".dp_models_wheelhouse"


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """The demo's wheelhouse, up to date with pyproject.toml and constraints/ci.txt."""
    proc = _run(["bash", str(SCRIPT), "--check", "-o", str(WHEELHOUSE), "onnx"], cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"{proc.stdout.strip()}\n(scripts/test.sh builds it before pytest)")
    return WHEELHOUSE


@pytest.fixture(scope="module")
def netns() -> list[str]:
    """The command prefix that runs a command in a new network namespace."""
    prefix = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    if shutil.which("unshare") is None or _run([*prefix, "true"], cwd=REPO).returncode != 0:
        pytest.fail(  # never a skip: the proof is that no index can be reached
            f"no network namespace here (`{' '.join(prefix)} true` fails): run the tests as "
            "root, or where unprivileged user namespaces are allowed"
        )
    return prefix


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def _checkout(dest: Path) -> Path:
    """A copy of this checkout as it is now (tracked and untracked files, not ignored ones:
    no .venv, no wheelhouse), uncommitted changes included."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, dest / name
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def _offline_env(tmp_path: Path, wheelhouse: Path) -> dict[str, str]:
    """The environment: no pip variable or configuration file of this machine, pip's full
    log in tmp_path/pip.log, the wheelhouse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_LOG": str(tmp_path / "pip.log"),
        "DP_MODELS_WHEELHOUSE": str(wheelhouse),
    }
    return env


def _wheels(directory: Path) -> Iterator[tuple[str, str]]:
    for path in directory.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        yield name, str(version)


def test_the_demo_sets_up_and_runs_from_a_wheelhouse_with_no_index(
    tmp_path: Path, wheelhouse: Path, netns: list[str]
) -> None:
    repo = _checkout(tmp_path / "repo")
    proc = _run(
        [*netns, "bash", "scripts/demo.sh"], cwd=repo, env=_offline_env(tmp_path, wheelhouse)
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    assert f"from wheelhouse {wheelhouse} (no index)" in out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("frame")] == [
        "red",
        "green",
        "blue",
    ]
    assert "verified   dp-models verify-artifact: ok" in out
    assert "every model is as the catalog and lock describe it today" in out
    # pip never looked at an index, and took every file (the build backend's too) from the
    # wheelhouse
    log = (tmp_path / "pip.log").read_text()
    assert "Ignoring indexes:" in log and "Looking in indexes" not in log
    assert "Downloading" not in log
    installed = re.findall(r"Processing (\S+\.whl)", log)
    assert {Path(p).parent for p in installed} == {wheelhouse}
    names = {parse_wheel_filename(Path(p).name)[0] for p in installed}
    assert {"onnxruntime", "numpy", "hatchling", "editables"} <= names
    # and the demo ran this checkout's copy, installed editable
    code = "import dp_models; print(dp_models.__file__)"
    where = _run([".venv/bin/python", "-c", code], cwd=repo)
    assert where.stdout.strip() == str(repo / "src" / "dp_models" / "__init__.py")


def test_a_wheelhouse_that_lacks_a_wheel_fails_and_names_the_command_that_builds_it(
    tmp_path: Path, wheelhouse: Path
) -> None:
    broken = tmp_path / "wheelhouse"
    broken.mkdir()
    for path in [*wheelhouse.glob("*.whl"), wheelhouse / STAMP]:
        if not path.name.startswith("onnxruntime-"):
            (broken / path.name).symlink_to(path)
    repo = _checkout(tmp_path / "repo")
    proc = _run(["bash", "scripts/demo.sh"], cwd=repo, env=_offline_env(tmp_path, broken))
    out = proc.stdout
    assert proc.returncode != 0, out
    assert "depends on onnxruntime" in out  # pip's reason, kept from its log
    assert "hint: the wheelhouse lacks a wheel pip needs (it was made for extras onnx" in out
    assert f"scripts/wheelhouse.sh -o {broken} onnx" in out
    assert "dp-models validate" not in out  # the demo stopped at the install


def test_the_wheelhouse_holds_the_pins_of_constraints(wheelhouse: Path) -> None:
    pins = {}
    for line in (REPO / "constraints" / "ci.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, version = requirement.split("==")
            pins[canonicalize_name(name)] = version
    wheels = dict(_wheels(wheelhouse))
    assert len(wheels) == len(list(wheelhouse.glob("*.whl"))), "two versions of one package"
    pinned = {name: version for name, version in wheels.items() if name in pins}
    assert {"numpy", "onnx", "onnxruntime", "pillow", "scipy"} <= pinned.keys()
    assert pinned == {name: pins[name] for name in pinned}
    assert "dp-models" not in wheels  # the scripts install the checkout itself (-e .)
    assert (wheelhouse / STAMP).read_text().splitlines()[1].startswith("extras onnx, for ")


def test_check_says_when_a_wheelhouse_is_stale_and_a_foreign_directory_is_refused(
    tmp_path: Path, wheelhouse: Path
) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / STAMP).write_text("0" * 64 + "\nextras onnx, for another time\n")
    proc = _run(["bash", str(SCRIPT), "--check", "-o", str(stale)], cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{stale} is missing or out of date" in proc.stdout
    assert f"scripts/wheelhouse.sh -o {stale} onnx" in proc.stdout
    # the same wheelhouse is not one of other extras
    proc = _run(["bash", str(SCRIPT), "--check", "-o", str(wheelhouse), "onnx,s3"], cwd=tmp_path)
    assert proc.returncode == 1 and "extras onnx,s3" in proc.stdout
    # a directory it did not make is never written over (refused before pip runs)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    proc = _run(["bash", str(SCRIPT), "-o", str(foreign)], cwd=tmp_path)
    assert proc.returncode == 1 and "is not a wheelhouse this script made" in proc.stdout
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "foreign.partial").exists()
