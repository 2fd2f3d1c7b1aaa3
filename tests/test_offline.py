"""Offline enforcement: every framework's offline flags, and its caches inside MODELS_ROOT.

Whether a framework honours a flag depends on when it was imported, so the import-order
cases run in a fresh interpreter where the order is real.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants as hf_constants

from dp_models import ModelManager, ModelsRootError, enforce_offline
from dp_models._offline import LEGACY_CACHE_VARS, OFFLINE_FLAGS, cache_dirs
from dp_models._settings import ENV_HF_CACHE, ENV_ROOT, Settings

from .conftest import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"

#: What the issue names, at least.
FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
CACHES = ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "SENTENCE_TRANSFORMERS_HOME")


def inside(path: str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_enforce_offline_sets_flags_and_caches(models_root: Path) -> None:
    found = enforce_offline(models_root)
    for name in FLAGS:
        assert os.environ[name] == "1", name
        assert found[name] == "1"
    for name in CACHES:
        assert inside(os.environ[name], models_root), name
        assert found[name] == os.environ[name]
    remembered = {ENV_HF_CACHE: str(Settings.resolve(models_root=models_root).hf_cache)}
    assert found == {**OFFLINE_FLAGS, **cache_dirs(models_root.resolve()), **remembered}
    assert {k: os.environ[k] for k in found} == found


def test_enforce_offline_remembers_the_hub_cache_it_points_into_the_root(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HF_HUB_CACHE goes into the root, but the cache ``huggingface`` snapshots are read
    from stays the one the user had: settings resolved afterwards still find it."""
    hub = tmp_path / "user-hub"
    monkeypatch.delenv(ENV_HF_CACHE, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    enforce_offline(models_root)
    assert inside(os.environ["HF_HUB_CACHE"], models_root)
    assert os.environ[ENV_HF_CACHE] == str(hub)
    assert Settings.resolve(models_root=models_root).hf_cache == hub


def test_enforce_offline_replaces_and_logs_a_conflicting_value(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = str(models_root.parent / "elsewhere")
    monkeypatch.setenv("HF_HOME", elsewhere)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # already right: nothing to say
    with caplog.at_level(logging.INFO, logger="dp_models"):
        enforce_offline(models_root)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert inside(os.environ["HF_HOME"], models_root)
    replaced = [r for r in caplog.records if r.levelno == logging.INFO and "replaced" in r.message]
    assert len(replaced) == 2
    assert any("HF_HOME" in r.message and elsewhere in r.message for r in replaced)
    assert any("HF_HUB_OFFLINE" in r.message for r in replaced)
    assert not any("TRANSFORMERS_OFFLINE" in r.message for r in caplog.records)


def test_enforce_offline_resolves_the_root_from_the_environment(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelsRootError):
        enforce_offline()
    assert "HF_HUB_OFFLINE" not in os.environ  # nothing set when there is no root
    monkeypatch.setenv(ENV_ROOT, str(models_root))
    enforce_offline()
    assert inside(os.environ["TORCH_HOME"], models_root)


def test_enforce_offline_switches_an_imported_huggingface_hub(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    enforce_offline(models_root)
    assert hf_constants.HF_HUB_OFFLINE is True
    assert hf_constants.is_offline_mode()
    assert inside(hf_constants.HF_HUB_CACHE, models_root)


def test_creating_a_manager_enforces_offline(models_root: Path) -> None:
    ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG)
    for name in FLAGS:
        assert os.environ[name] == "1", name
    for name in CACHES:
        assert inside(os.environ[name], models_root), name


def test_a_manager_with_offline_false_sets_nothing(models_root: Path) -> None:
    before = dict(os.environ)
    ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG, offline=False)
    assert dict(os.environ) == before


# -- in a fresh interpreter --------------------------------------------------------------


def run_python(code: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (cleaned by conftest), HF_ENDPOINT too, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}
    env.update(extra)
    return env


IMPORTED_BEFORE = """
    import json, sys
    import huggingface_hub
    import torch.hub
    from huggingface_hub import constants, errors

    out = {"offline_before": constants.HF_HUB_OFFLINE, "endpoint": constants.ENDPOINT}

    from dp_models import ModelManager

    ModelManager(models_root=sys.argv[1], catalog=sys.argv[2])
    out["offline_after"] = constants.HF_HUB_OFFLINE
    out["hf_hub_cache"] = constants.HF_HUB_CACHE
    out["torch_hub_dir"] = torch.hub.get_dir()
    try:
        huggingface_hub.hf_hub_download(repo_id="org/model", filename="x.bin")
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        out["error"] = type(exc).__name__
    print(json.dumps(out))
"""


def test_frameworks_imported_before_the_manager_go_offline(
    models_root: Path, server: LoopbackServer
) -> None:
    env = child_env(HF_ENDPOINT=server.url)
    out = run_python(IMPORTED_BEFORE, env, str(models_root), str(EXAMPLE_CATALOG))
    assert out["offline_before"] is False
    assert out["endpoint"] == server.url  # a download would have gone to the server
    assert out["offline_after"] is True
    assert inside(out["hf_hub_cache"], models_root)
    assert inside(out["torch_hub_dir"], models_root)
    assert out.get("error") in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
    assert server.connections == 0


IMPORTED_AFTER = """
    import json, sys
    from dp_models import ModelManager

    ModelManager(models_root=sys.argv[1], catalog=sys.argv[2])

    import huggingface_hub
    from huggingface_hub import constants, errors

    out = {"offline": constants.HF_HUB_OFFLINE, "hf_hub_cache": constants.HF_HUB_CACHE}
    try:
        huggingface_hub.hf_hub_download(repo_id="org/model", filename="x.bin")
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        out["error"] = type(exc).__name__
    print(json.dumps(out))
"""


def test_frameworks_imported_after_the_manager_are_offline(
    models_root: Path, server: LoopbackServer
) -> None:
    env = child_env(HF_ENDPOINT=server.url)
    out = run_python(IMPORTED_AFTER, env, str(models_root), str(EXAMPLE_CATALOG))
    assert out["offline"] is True
    assert inside(out["hf_hub_cache"], models_root)
    assert out.get("error") in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
    assert server.connections == 0


IMPORT_ONLY = """
    import json, os
    before = dict(os.environ)
    import dp_models
    print(json.dumps({"changed": sorted(set(os.environ.items()) ^ set(before.items()))}))
"""


def test_importing_dp_models_sets_nothing(models_root: Path) -> None:
    out = run_python(IMPORT_ONLY, child_env(**{ENV_ROOT: str(models_root)}))
    assert out["changed"] == []


# -- undoing a manager's switches ----------------------------------------------------------


def switched_names(root: Path) -> set[str]:
    """Every variable a manager on ``root`` sets or removes."""
    return {*OFFLINE_FLAGS, *cache_dirs(root), *LEGACY_CACHE_VARS, ENV_HF_CACHE}


def test_a_with_block_restores_exactly_the_environment_it_changed(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "my-hf-home"))  # replaced, then back
    monkeypatch.setenv("TRANSFORMERS_CACHE", str(tmp_path / "legacy"))  # removed, then back
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # already as wanted: stays
    before = dict(os.environ)
    with ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG) as mm:
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        assert inside(os.environ["HF_HOME"], models_root)
        assert "TRANSFORMERS_CACHE" not in os.environ
        assert "offline" in repr(mm)
    assert dict(os.environ) == before
    assert "offline" not in repr(mm)
    assert mm.restore_environment() == {}  # once only


def test_restore_environment_reports_and_close_does_not_restore(models_root: Path) -> None:
    before = dict(os.environ)
    mm = ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG)
    mm.close()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # closing drops models, stays offline
    restored = mm.restore_environment()
    assert restored["HF_HUB_OFFLINE"] is None and restored["TORCH_HOME"] is None
    assert set(restored) <= switched_names(models_root)
    assert dict(os.environ) == before
    with mm:  # entered again: offline again, restored again on exit
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert dict(os.environ) == before


def test_nested_managers_restore_in_order(models_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-root"
    other.mkdir()
    before = dict(os.environ)
    with ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG):
        outer = dict(os.environ)
        with ModelManager(models_root=other, catalog=EXAMPLE_CATALOG):
            assert inside(os.environ["TORCH_HOME"], other)
        assert dict(os.environ) == outer  # back to the outer manager's, still offline
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert dict(os.environ) == before


def test_managers_ending_out_of_order_keep_the_later_one_offline(
    models_root: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-root"
    other.mkdir()
    before = dict(os.environ)
    first = ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG)
    second = ModelManager(models_root=other, catalog=EXAMPLE_CATALOG)
    in_effect = dict(os.environ)
    assert first.restore_environment() == {}  # the second still needs every switch
    assert dict(os.environ) == in_effect
    second.restore_environment()  # ... and puts back what was there before both
    assert dict(os.environ) == before


def test_a_value_changed_meanwhile_is_left_alone(
    models_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="dp_models"),
        ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG),
    ):
        os.environ["HF_HUB_OFFLINE"] = "0"  # the user's choice, inside the block
        del os.environ["TORCH_HOME"]
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert "TORCH_HOME" not in os.environ
    assert "TRANSFORMERS_OFFLINE" not in os.environ  # the rest is restored
    left = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
    assert len(left) == 2 and any("HF_HUB_OFFLINE left as '0'" in m for m in left)


def test_a_manager_inside_enforce_offline_leaves_it_in_effect(models_root: Path) -> None:
    """enforce_offline is for good: a manager ending before or after it does not undo it."""
    enforced = enforce_offline(models_root)
    with ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG):
        pass
    assert {k: os.environ[k] for k in enforced} == enforced
    mm = ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG)
    enforce_offline(models_root)
    mm.restore_environment()
    assert {k: os.environ[k] for k in enforced} == enforced


def test_imported_frameworks_flags_are_restored(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Module copies of the flags (huggingface_hub's, torch.hub's directory, ultralytics'
    ONLINE and AUTOINSTALL, with the copy its checks module imported) go back to what they
    were; stand-in modules for torch and ultralytics keep this test free of their import
    time."""
    torch_hub = types.ModuleType("torch.hub")
    torch_hub._hub_dir = None  # type: ignore[attr-defined]

    def set_dir(d: str) -> None:
        torch_hub._hub_dir = d  # type: ignore[attr-defined]

    torch_hub.set_dir = set_dir  # type: ignore[attr-defined]
    ul_utils = types.ModuleType("ultralytics.utils")
    ul_utils.ONLINE = True  # type: ignore[attr-defined]
    ul_utils.AUTOINSTALL = True  # type: ignore[attr-defined]
    ul_checks = types.ModuleType("ultralytics.utils.checks")
    ul_checks.AUTOINSTALL = True  # type: ignore[attr-defined]  # its own copy, by name
    monkeypatch.setitem(sys.modules, "torch.hub", torch_hub)
    monkeypatch.setitem(sys.modules, "ultralytics.utils", ul_utils)
    monkeypatch.setitem(sys.modules, "ultralytics.utils.checks", ul_checks)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with ModelManager(models_root=models_root, catalog=EXAMPLE_CATALOG):
        assert hf_constants.HF_HUB_OFFLINE is True
        assert inside(hf_constants.HF_HUB_CACHE, models_root)
        assert inside(torch_hub._hub_dir, models_root)  # type: ignore[attr-defined]
        assert ul_utils.ONLINE is False  # type: ignore[attr-defined]
        assert ul_utils.AUTOINSTALL is False  # type: ignore[attr-defined]
        assert ul_checks.AUTOINSTALL is False  # type: ignore[attr-defined]
    assert hf_constants.HF_HUB_OFFLINE is False
    assert hf_constants.HF_HUB_CACHE == str(tmp_path / "hub-cache")
    assert torch_hub._hub_dir is None  # type: ignore[attr-defined]
    assert ul_utils.ONLINE is True  # type: ignore[attr-defined]
    assert ul_utils.AUTOINSTALL is True and ul_checks.AUTOINSTALL is True  # type: ignore[attr-defined]


IMPORTED_INSIDE = """
    import json, os, sys
    from dp_models import ModelManager

    with ModelManager(models_root=sys.argv[1], catalog=sys.argv[2]):
        import huggingface_hub  # reads its offline flags now, at import
        from huggingface_hub import constants

        out = {"inside": constants.HF_HUB_OFFLINE, "inside_cache": constants.HF_HUB_CACHE}
    out["after"] = constants.HF_HUB_OFFLINE
    out["after_cache"] = constants.HF_HUB_CACHE
    out["env"] = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME")}
    try:
        huggingface_hub.hf_hub_download(repo_id="org/model", filename="x.bin")
    except Exception as exc:  # the loopback server is no hub: any error will do
        out["error"] = type(exc).__name__
    print(json.dumps(out))
"""


def test_a_framework_imported_inside_the_block_is_online_after_it(
    models_root: Path, server: LoopbackServer, tmp_path: Path
) -> None:
    """The notebook case: huggingface_hub first imported inside ``with`` read the offline
    flags at import; after the block it reads them again, and a download is tried (here,
    against a loopback server standing in for the hub)."""
    user_home = tmp_path / "user-hf-home"
    env = child_env(HF_ENDPOINT=server.url, HF_HOME=str(user_home))
    out = run_python(IMPORTED_INSIDE, env, str(models_root), str(EXAMPLE_CATALOG))
    assert out["inside"] is True and inside(out["inside_cache"], models_root)
    assert out["after"] is False
    assert out["after_cache"] == str(user_home / "hub")
    assert out["env"] == {"HF_HUB_OFFLINE": None, "HF_HOME": str(user_home), "TORCH_HOME": None}
    assert server.connections >= 1
