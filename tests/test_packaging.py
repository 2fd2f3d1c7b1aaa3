"""The wheel: it carries the catalog, and the installed command works from it alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("dp_models-*.whl")
    return built


def test_wheel_ships_the_catalog(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = sorted(REPO.joinpath("spec_catalog").rglob("*.yaml"))
    assert specs
    for spec in specs:
        assert (
            f"dp_models/spec_catalog/{spec.relative_to(REPO / 'spec_catalog').as_posix()}" in names
        )
    assert "dp_models/spec_catalog/schema.json" in names
    assert "dp_models/spec_catalog/catalog.lock.json" in names
    assert "dp_models/py.typed" in names
    from dp_models._compare import PROBE_FRAMES  # doctor --compare's bundled probe

    assert {f"dp_models/probe/{n}" for n in PROBE_FRAMES} <= names
    assert not any(n.startswith(("tests/", "examples/", "MODELS_ROOT")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dp-models = dp_models._cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_validates_and_doctors_without_arguments(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    root = tmp_path / "models"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DP_MODELS")}
    env |= {
        "PYTHONPATH": str(target),
        "DP_MODELS_ROOT": str(root),
        "DP_MODELS_CACHE_DIR": str(tmp_path / "cache"),
    }
    script = target / "bin" / "dp-models"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import dp_models; print(dp_models.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))  # the wheel, not the source tree

    validate = run("validate")
    assert validate.returncode == 0, validate.stderr
    assert f"catalog {target}/dp_models/spec_catalog:" in validate.stdout

    doctor = run("doctor", "--json")
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 1  # an empty root: required specs are missing
    assert report["catalog"] == f"{target}/dp_models/spec_catalog"
    assert report["summary"]["missing"] > 0 and report["summary"]["remote"] > 0
