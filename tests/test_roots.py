"""Layered roots: DP_MODELS_ROOT (or the argument) lists several roots, searched in order;
each artifact is verified where it is found, models_used and doctor say which root served
it, pull writes only into the last (writable) root, and a read-only root works (a real
read-only bind mount, in a mount namespace of its own: tests run as root, so permissions
alone would not stop a write)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dp_models import DigestMismatchError, ModelManager, ModelsRootError, Settings
from dp_models._cli import main
from dp_models.loaders import LoadContext, Loader, NoArgs

from .conftest import inprocess_spec, make_file, sha256

WEIGHTS = {"shared": b"shared weights", "local": b"local weights"}


@pytest.fixture
def layered(tmp_path: Path, catalog_dir: Path) -> tuple[Path, Path, Path]:
    """A catalog of two specs; ``shared`` provisioned in the shared root, ``local`` in the
    local one. Returns (catalog, shared root, local root)."""
    shared, local = tmp_path / "shared", tmp_path / "local"
    for name, data in WEIGHTS.items():
        (catalog_dir / "visual" / f"{name}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (catalog_dir / "visual" / f"{name}.yaml").write_text(
            inprocess_spec(
                name,
                f"- path: {name}/w.bin\n  format: pt\n  sha256: {sha256(data)}",
                extra="loader_args: {}\n",
            )
            .replace("loader: torch_state_dict", "loader: raw")
            .replace("engine: torch", "engine: python")
        )
    make_file(shared / "shared" / "w.bin", WEIGHTS["shared"])
    make_file(local / "local" / "w.bin", WEIGHTS["local"])
    return catalog_dir, shared, local


class Raw(Loader[NoArgs]):
    """Returns the verified bytes of the spec's one file."""

    name = "raw"
    framework = None
    extra = None

    def load(self, ctx: LoadContext) -> Any:
        return ctx.files[ctx.spec.artifacts[0].path].read_bytes()


def _manager(catalog: Path, roots: Any, tmp_path: Path) -> ModelManager:
    return ModelManager(
        models_root=roots, catalog=catalog, cache_dir=tmp_path / "digests", loaders={"raw": Raw}
    )


def test_each_artifact_comes_from_the_first_root_that_holds_it(
    layered: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    catalog, shared, local = layered
    mm = _manager(catalog, [shared, local], tmp_path)
    assert mm.roots == (shared.resolve(), local.resolve())
    assert mm.root == local.resolve()  # the writable one
    assert mm.load("shared") == WEIGHTS["shared"]
    assert mm.load("local") == WEIGHTS["local"]
    used = {e["name"]: e["artifacts"][0] for e in mm.models_used()}
    assert used["shared"]["home"] == "root"
    assert used["shared"]["location"] == str(shared.resolve())
    assert used["local"]["location"] == str(local.resolve())


def test_the_environment_lists_roots_with_the_path_separator(
    layered: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, shared, local = layered
    monkeypatch.setenv("DP_MODELS_ROOT", f"{shared}{os.pathsep}{local}")
    settings = Settings.resolve()
    assert settings.roots == (shared.resolve(), local.resolve())
    assert settings.models_root == local.resolve()
    mm = _manager(catalog, None, tmp_path)
    assert mm.load("shared") == WEIGHTS["shared"]


def test_an_earlier_root_shadows_a_later_one_and_is_never_skipped(
    layered: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The shared root holding a bad copy is an error naming that root, though the local
    root holds the good bytes: no silent fallback to the next root."""
    catalog, shared, local = layered
    make_file(shared / "local" / "w.bin", b"a stale copy")
    mm = _manager(catalog, [shared, local], tmp_path)
    with pytest.raises(DigestMismatchError) as caught:
        mm.load("local")
    assert str(shared.resolve() / "local" / "w.bin") in str(caught.value)


@pytest.mark.adversarial
@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_root_list_with_a_missing_entry_is_refused(
    layered: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    catalog, _, local = layered
    gone = tmp_path / "unmounted-nfs"
    roots = [gone, local]
    if where == "environment":
        monkeypatch.setenv("DP_MODELS_ROOT", os.pathsep.join(str(r) for r in roots))
        roots = None  # type: ignore[assignment]
    with pytest.raises(ModelsRootError) as caught:
        _manager(catalog, roots, tmp_path)
    assert str(gone) in str(caught.value) and "does not exist" in str(caught.value)
    assert "remove it from the list of roots" in str(caught.value)


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "problem"),
    [("{local}{sep}", "has an empty entry"), ("{local}{sep}{local}", "twice")],
)
def test_a_root_list_with_an_empty_or_repeated_entry_is_refused(
    layered: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    _, _, local = layered
    monkeypatch.setenv("DP_MODELS_ROOT", value.format(local=local, sep=os.pathsep))
    with pytest.raises(ModelsRootError, match=problem):
        Settings.resolve().require_root()


def test_doctor_shows_the_root_of_each_artifact(
    layered: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, shared, local = layered
    roots = f"{shared}{os.pathsep}{local}"
    args = ["doctor", "--catalog", str(catalog), "--root", roots]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"shared/w.bin: root {shared.resolve()}" in out
    assert f"local/w.bin: root {local.resolve()}" in out
    assert f"against {shared.resolve()}, {local.resolve()}" in out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["roots"] == [str(shared.resolve()), str(local.resolve())]
    where = {s["name"]: s["artifacts"][0]["location"] for s in report["specs"]}
    assert where == {"shared": str(shared.resolve()), "local": str(local.resolve())}


# -- read-only roots, in a mount namespace ------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, logging, os, subprocess, sys
    for directory in sys.argv[1:]:
        subprocess.run(["mount", "--bind", directory, directory], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", directory, directory], check=True)
    warnings = []
    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())
    logging.getLogger("dp_models").addHandler(Keep())
    try:  # the mount really is read-only
        open(os.path.join(sys.argv[1], "probe"), "w")
        writable = True
    except OSError:
        writable = False
    result = {"writable": writable}
    exec(os.environ["DP_TEST_BODY"], {"result": result})
    result["warnings"] = warnings
    print(json.dumps(result))
    """
)


def _in_read_only(directories: list[Path], body: str, env: dict[str, str]) -> dict[str, object]:
    """Run ``body`` in a child python inside its own mount namespace where ``directories``
    are bind-mounted read-only; its ``result`` dict comes back."""
    assert shutil.which("unshare"), "util-linux's unshare is needed (it is on every CI machine)"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _CHILD]
        + [str(d) for d in directories],
        env={**os.environ, **env, "DP_TEST_BODY": textwrap.dedent(body)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_LOAD = """
from dp_models import ModelManager
from dp_models.loaders import Loader, NoArgs

class Raw(Loader[NoArgs]):
    name = "raw"
    framework = None
    extra = None
    def load(self, ctx):
        return ctx.files[ctx.spec.artifacts[0].path].read_bytes()

mm = ModelManager(catalog=__import__("os").environ["CATALOG"], loaders={"raw": Raw})
result["loaded"] = [mm.load("shared").decode(), mm.load("local").decode()]
result["where"] = [e["artifacts"][0]["location"] for e in mm.models_used()]
"""


@pytest.mark.adversarial
def test_a_read_only_shared_root_and_a_read_only_digest_cache_work(
    layered: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Both the shared root and the digest cache are read-only: loads verify and work, and
    the digest cache falls back to memory with one warning, never an error."""
    catalog, shared, local = layered
    digests = tmp_path / "ro-digests"
    digests.mkdir()
    env = {
        "DP_MODELS_ROOT": f"{shared}{os.pathsep}{local}",
        "DP_MODELS_CACHE_DIR": str(digests),
        "CATALOG": str(catalog),
    }
    result = _in_read_only([shared, digests], _LOAD, env)
    assert result["writable"] is False
    assert result["loaded"] == ["shared weights", "local weights"]
    assert result["where"] == [str(shared.resolve()), str(local.resolve())]
    warnings = result["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 1 and "digest cache" in warnings[0], warnings
    assert "kept in memory" in warnings[0]


_PULL = """
from dp_models import pull
report = pull(["shared", "local", "extra"], mirrors=[__import__("os").environ["MIRROR"]],
              catalog=__import__("os").environ["CATALOG"])
result["statuses"] = {
    a.spec: [a.status, a.source or a.files[0].source] for a in report.artifacts
}
result["root"] = str(report.root)
"""


@pytest.mark.adversarial
def test_pull_writes_only_into_the_writable_root(
    layered: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """With a read-only shared root first: what verifies there is left alone (present,
    from that root); what is missing is fetched into the last root."""
    catalog, shared, local = layered
    (catalog / "visual" / "extra.yaml").write_text(
        (catalog / "visual" / "local.yaml")
        .read_text()
        .replace("name: local", "name: extra")
        .replace("local/w.bin", "extra/w.bin")
        .replace(sha256(WEIGHTS["local"]), sha256(b"extra weights"))
    )
    mirror = tmp_path / "mirror"
    make_file(mirror / "extra" / "w.bin", b"extra weights")
    before = sorted(str(p.relative_to(shared)) for p in shared.rglob("*"))
    env = {
        "DP_MODELS_ROOT": f"{shared}{os.pathsep}{local}",
        "MIRROR": str(mirror),
        "CATALOG": str(catalog),
    }
    result = _in_read_only([shared], _PULL, env)
    assert result["statuses"] == {
        "shared": ["present", str(shared.resolve())],
        "local": ["present", str(local.resolve())],
        "extra": ["fetched", str(mirror)],
    }
    assert result["root"] == str(local.resolve())
    assert (local / "extra" / "w.bin").read_bytes() == b"extra weights"
    assert sorted(str(p.relative_to(shared)) for p in shared.rglob("*")) == before
