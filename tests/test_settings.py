"""Settings: every setting resolved once (argument, environment, packaged default), frozen,
checked, and the only place dp_models reads its variables."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

import dp_models
from dp_models import ConfigurationError, ModelManager, ModelsRootError
from dp_models import _settings as settings_module
from dp_models._catalog import Catalog
from dp_models._cli import main
from dp_models._offline import enforce_offline
from dp_models._settings import (
    DEVICES,
    ENV_CACHE_DIR,
    ENV_CATALOG,
    ENV_LOCK,
    ENV_LOCK_KEY,
    ENV_ROOT,
    ENV_ROOT_ALIAS,
    ENV_TRITON_REPLICAS,
    ENV_TRITON_TIMEOUT,
    ENV_TRITON_URL,
    ENV_VARS,
    ENV_VERIFY,
    Settings,
    check_device,
    packaged_catalog_dir,
    resolve_cache_dir,
    resolve_models_root,
    resolve_triton_endpoints,
    resolve_triton_replicas,
    resolve_verify_policy,
    triton_replicas_variable,
)
from dp_models._spec import Device

from .conftest import SpecWriter, inprocess_spec, make_file, sha256

SRC = Path(dp_models.__file__).parent


# -- the resolution order, field by field ----------------------------------------------------


def _dirs(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / n for n in names]
    for d in made:
        d.mkdir()
    return made


def test_models_root_argument_then_environment_then_alias_then_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arg, env, alias = _dirs(tmp_path, "arg", "env", "alias")
    assert Settings.resolve().models_root is None
    monkeypatch.setenv(ENV_ROOT_ALIAS, str(alias))
    assert Settings.resolve().models_root == alias
    monkeypatch.setenv(ENV_ROOT, str(env))
    assert Settings.resolve().models_root == env
    assert Settings.resolve(models_root=arg).models_root == arg


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("catalog", ENV_CATALOG),
        ("lock", ENV_LOCK),
        ("lock_key", ENV_LOCK_KEY),
        ("cache_dir", ENV_CACHE_DIR),
    ],
)
def test_path_settings_argument_then_environment(
    field: str, variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(variable, str(tmp_path / "env"))
    assert getattr(Settings.resolve(), field) == tmp_path / "env"
    assert getattr(Settings.resolve(**{field: tmp_path / "arg"}), field) == tmp_path / "arg"
    monkeypatch.setenv(variable, "   ")  # empty counts as unset
    assert getattr(Settings.resolve(), field) != tmp_path / "env"


def test_path_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s = Settings.resolve()
    assert s.catalog == packaged_catalog_dir()
    assert s.lock == packaged_catalog_dir() / "catalog.lock.json"
    assert s.lock_key is None
    assert s.cache_dir == tmp_path / "xdg" / "dp_models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert Settings.resolve().cache_dir == Path.home() / ".cache" / "dp_models"
    # the lock's default follows the catalog, wherever that came from
    assert Settings.resolve(catalog=tmp_path).lock == tmp_path / "catalog.lock.json"
    monkeypatch.setenv(ENV_CATALOG, str(tmp_path / "c"))
    assert Settings.resolve().lock == tmp_path / "c" / "catalog.lock.json"
    assert Settings.resolve(use_cache=False).cache_dir is None


def test_verify_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.resolve().verify == "cached"
    monkeypatch.setenv(ENV_VERIFY, "always")
    assert Settings.resolve().verify == "always"
    assert Settings.resolve(verify="cached").verify == "cached"


def test_triton_settings_argument_then_environment_then_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings.resolve()
    assert s.triton_endpoints == {} and s.triton_timeouts == {}
    monkeypatch.setenv(ENV_TRITON_URL, " http://127.0.0.1:8000 ")
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", "https://127.0.0.1:8443/v2")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT, "ready=2")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT + "_ASR", "network=30,retries=1")
    s = Settings.resolve()
    assert s.triton_endpoints == {
        "default": "http://127.0.0.1:8000",
        "asr": "https://127.0.0.1:8443/v2",
    }
    assert s.triton_timeouts == {
        "default": {"ready_timeout_s": 2.0},
        "asr": {"network_timeout_s": 30.0, "retries": 1},
    }
    given = Settings.resolve(
        triton_endpoints={"x": "http://127.0.0.1:1"},
        triton_timeouts={"x": {"connection_timeout_s": "2"}},
    )
    assert given.triton_endpoints == {"x": "http://127.0.0.1:1"}
    assert given.triton_timeouts == {"x": {"connection_timeout_s": 2.0}}


def test_triton_replicas_listed_or_found_by_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.resolve()
    assert s.triton_replicas == {}
    monkeypatch.setenv(ENV_TRITON_URL, "http://127.0.0.1:8000, http://127.0.0.2:8000")
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", "http://triton-asr:8000")
    monkeypatch.setenv(ENV_TRITON_REPLICAS + "_ASR", " DNS ")
    s = Settings.resolve()
    assert s.triton_endpoints["default"] == "http://127.0.0.1:8000, http://127.0.0.2:8000"
    assert s.triton_replicas == {"asr": "dns"}
    assert resolve_triton_replicas() == {"asr": "dns"}
    assert s.shown()["triton_replicas"] == {"asr": "dns"}
    given = Settings.resolve(triton_replicas={"default": "urls"})
    assert given.triton_replicas == {"default": "urls"}
    assert ENV_TRITON_REPLICAS in ENV_VARS
    assert triton_replicas_variable("default") == "DP_MODELS_TRITON_REPLICAS"
    assert triton_replicas_variable("gpu_large") == "DP_MODELS_TRITON_REPLICAS_GPU_LARGE"


@pytest.mark.adversarial
def test_replica_urls_are_shown_masked_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TRITON_URL, "http://127.0.0.1:1,http://bob:hunter2@127.0.0.2:1")
    s = Settings.resolve()
    for shown in (repr(s), json.dumps(s.shown())):
        assert "hunter2" not in shown and "bob" not in shown
        assert "http://127.0.0.1:1,http://***@127.0.0.2:1" in shown


def test_device_and_offline_argument_then_default() -> None:
    """Neither has a variable: a device or offline switch set for a whole machine would
    change every process's models behind its back."""
    s = Settings.resolve()
    assert s.device is None and s.offline is True
    s = Settings.resolve(device="cuda:1", offline=False)
    assert s.device == "cuda:1" and s.offline is False


def test_environ_can_be_given() -> None:
    s = Settings.resolve(environ={ENV_VERIFY: "always", ENV_TRITON_URL: "http://127.0.0.1:9"})
    assert s.verify == "always" and s.triton_endpoints == {"default": "http://127.0.0.1:9"}


# -- bad values -----------------------------------------------------------------------------


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("variable", "value", "phrase", "field"),
    [
        (ENV_VERIFY, "sometimes", r"verify policy must be one of cached, always", "verify"),
        (ENV_TRITON_URL, "triton:8000", r"no scheme", "triton_endpoints"),
        (ENV_TRITON_URL + "_ASR", "ftp://triton", r"only http and https", "triton_endpoints"),
        (ENV_TRITON_TIMEOUT, "ready=soon", r"ready_timeout_s must be a finite", "triton_timeouts"),
        (ENV_TRITON_TIMEOUT + "_ASR", "connect", r"comma-separated key=value", "triton_timeouts"),
        (
            ENV_TRITON_URL,
            "http://127.0.0.1:1,127.0.0.2:1",
            r"separate whole http\(s\):// URLs with commas",
            "triton_endpoints",
        ),
        (
            ENV_TRITON_URL + "_ASR",
            "http://127.0.0.1:1,ftp://127.0.0.2:1",
            r"port is not a number",
            "triton_endpoints",
        ),
        (ENV_TRITON_REPLICAS, "srv", r"found by urls or dns, not 'srv'", "triton_replicas"),
    ],
)
def test_a_bad_variable_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, phrase: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=phrase) as info:
        Settings.resolve()
    assert f"${variable}" in str(info.value)
    problems: dict[str, Any] = {}
    settings = Settings.resolve(problems=problems)
    assert list(problems) == [field]
    assert getattr(settings, field) == getattr(Settings.resolve(environ={}), field)  # default


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("arguments", "phrase", "where"),
    [
        ({"verify": "sometimes"}, r"verify policy must be one of", "the argument"),
        ({"device": "tpu"}, r"device must be one of auto, cpu, cuda or cuda:N", "device"),
        ({"device": "cuda:x"}, r"device must be one of", "device"),
        ({"triton_endpoints": {"a": "triton:1"}}, r"no scheme", "triton_endpoints['a']"),
        ({"triton_timeouts": {"a": {"retries": -1}}}, r"retries", "triton_timeouts['a']"),
        (
            {"triton_endpoints": {"a": "http://127.0.0.1:1,http://[x]:1"}},
            r"\(replica 2 of 2\) .*IPv6",
            "triton_endpoints['a']",
        ),
        ({"triton_replicas": {"a": "round-robin"}}, r"urls or dns", "triton_replicas['a']"),
        (
            {
                "triton_endpoints": {"a": "http://127.0.0.1:1,http://127.0.0.2:1"},
                "triton_replicas": {"a": "dns"},
            },
            r"resolves the host name of one URL",
            "triton_replicas['a']=dns",
        ),
    ],
)
def test_a_bad_argument_is_a_configuration_error_naming_it(
    arguments: dict[str, Any], phrase: str, where: str
) -> None:
    with pytest.raises(ConfigurationError, match=phrase) as info:
        Settings.resolve(**arguments)
    assert where in str(info.value)


@pytest.mark.adversarial
def test_every_bad_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VERIFY, "sometimes")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT, "ready=-1")
    with pytest.raises(ConfigurationError, match=r"3 settings are invalid") as info:
        Settings.resolve(device="tpu")  # the third, named as the argument
    message = str(info.value)
    assert "$DP_MODELS_VERIFY" in message and "$DP_MODELS_TRITON_TIMEOUT" in message
    assert "device: device must be one of" in message


def test_the_argument_names_of_the_command_line() -> None:
    with pytest.raises(ConfigurationError, match=r"\(from --verify\)"):
        Settings.resolve(verify="x", argument_names={"verify": "--verify"})


def test_check_device_is_the_one_device_check() -> None:
    assert get_args(Device) == DEVICES  # what a spec may name, and the rest may ask for
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert check_device(good, source="x") == good
    for bad in ("CPU", "cuda:", "cuda:-1", "cuda:1.0", "cuda:\u0661", "gpu", "", None, 0):
        with pytest.raises(ConfigurationError, match=r"^here: device must be one of"):
            check_device(bad, source="here")


def test_settings_and_enforce_offline_import_nothing_heavy() -> None:
    """Processors call enforce_offline first thing, before any framework is imported."""
    code = (
        "import sys, json; from dp_models._offline import enforce_offline; "
        "from dp_models._settings import Settings; "
        "print(json.dumps([m for m in ('pydantic', 'yaml', 'numpy') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# -- MODELS_ROOT: never guessed, checked where it is needed ---------------------------------


def test_missing_root_says_how_to_set_it() -> None:
    with pytest.raises(ModelsRootError, match=r"MODELS_ROOT is not set.*DP_MODELS_ROOT=") as exc:
        Settings.resolve().require_root()
    assert isinstance(exc.value, FileNotFoundError)
    assert exc.value.path is None
    with pytest.raises(ModelsRootError, match=r"MODELS_ROOT is not set"):
        resolve_models_root()


def test_root_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    s = Settings.resolve(models_root=missing)  # resolving does not stop at it ...
    with pytest.raises(ModelsRootError, match=r"nope \(from the models_root argument\) does not "):
        s.require_root()  # ... whatever needs the root does
    with pytest.raises(ModelsRootError, match=r"does not exist") as exc:
        resolve_models_root(missing)
    assert exc.value.path == missing
    monkeypatch.setenv(ENV_ROOT, str(missing))
    with pytest.raises(ModelsRootError, match=r"\(from \$DP_MODELS_ROOT\) does not exist"):
        Settings.resolve().require_root()
    assert "(not usable: MODELS_ROOT" in Settings.resolve().shown()["models_root"]


def test_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ModelsRootError, match=r"is not a directory"):
        Settings.resolve(models_root=f).require_root()
    with pytest.raises(ModelsRootError, match=r"is not a directory"):
        resolve_models_root(f)


def test_root_is_resolved_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert Settings.resolve(models_root=tmp_path / "link").require_root() == real
    assert resolve_models_root(tmp_path / "link") == real


def test_empty_env_var_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ROOT, "  ")
    assert Settings.resolve().models_root is None


def test_a_stale_root_does_not_stop_commands_that_do_not_need_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "unmounted"))
    assert main(["validate"]) == 0
    assert Catalog.load()["clip_vit_b32"]
    assert main(["digest", str(make_file(tmp_path / "f", b"abc"))]) == 0
    assert sha256(b"abc") in capsys.readouterr().out


# -- the public one-setting helpers resolve the same way -------------------------------------


def test_one_setting_helpers_agree_with_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root,) = _dirs(tmp_path, "root")
    monkeypatch.setenv(ENV_ROOT, str(root))
    monkeypatch.setenv(ENV_VERIFY, "always")
    monkeypatch.setenv(ENV_TRITON_URL, "http://127.0.0.1:9")
    s = Settings.resolve()
    assert resolve_models_root() == s.require_root() == root
    assert resolve_cache_dir() == s.cache_dir
    assert resolve_verify_policy() == s.verify == "always"
    assert resolve_triton_endpoints() == s.triton_endpoints
    monkeypatch.setenv(ENV_VERIFY, "sometimes")
    with pytest.raises(ValueError, match=r"got 'sometimes' \(from \$DP_MODELS_VERIFY\)"):
        resolve_verify_policy()


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("bob:hunter2@triton:8000", "no scheme"),
        ("triton:8000", "no scheme"),
        ("ftp://bob:hunter2@triton", "only http and https"),
        ("http://bob:hunter2/x@triton:8000", "an '@' after the host"),
        ("http://bob:hunter2@", "no host"),
        ("http://bob:hunter2@triton:http", "port"),
    ],
)
def test_a_triton_url_that_is_not_http_is_refused_at_configuration_time(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    """A scheme-less ``user:secret@host:port`` was taken as is, and printed with its secret."""
    with pytest.raises(ConfigurationError, match=why) as exc:
        resolve_triton_endpoints({"asr": value})
    message = str(exc.value)
    assert "triton_endpoints['asr']" in message and "http://HOST:PORT" in message
    assert "hunter2" not in message and "bob" not in message
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", value)
    for resolve in (resolve_triton_endpoints, Settings.resolve):
        with pytest.raises(ConfigurationError, match=why) as exc:
            resolve()
        assert "$DP_MODELS_TRITON_URL_ASR" in str(exc.value)
        assert "hunter2" not in str(exc.value) and "bob" not in str(exc.value)


@pytest.mark.adversarial
def test_settings_never_show_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TRITON_URL, "http://bob:hunter2@127.0.0.1:8000")
    s = Settings.resolve()
    assert s.triton_endpoints["default"] == "http://bob:hunter2@127.0.0.1:8000"  # for the client
    for shown in (repr(s), str(s), json.dumps(s.shown())):
        assert "hunter2" not in shown and "bob" not in shown
        assert "http://***@127.0.0.1:8000" in shown


# -- frozen, and resolved once ----------------------------------------------------------------


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings.resolve(
        models_root=tmp_path,
        triton_endpoints={"a": "http://127.0.0.1:1"},
        triton_timeouts={"a": {"retries": 1}},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.verify = "always"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.triton_endpoints["b"] = "http://127.0.0.1:2"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.triton_timeouts["a"]["retries"] = 5  # type: ignore[index]
    assert dataclasses.replace(s, verify="always").verify == "always"
    assert s.verify == "cached"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times Settings.resolve, and the root's resolution, run."""
    calls = {"resolve": 0, "root": 0}
    resolve, root = Settings.resolve.__func__, settings_module._models_root  # type: ignore[attr-defined]

    def counting_resolve(cls: type[Settings], **kwargs: Any) -> Any:
        calls["resolve"] += 1
        return resolve(cls, **kwargs)

    def counting_root(*args: Any, **kwargs: Any) -> Any:
        calls["root"] += 1
        return root(*args, **kwargs)

    monkeypatch.setattr(Settings, "resolve", classmethod(counting_resolve))
    monkeypatch.setattr(settings_module, "_models_root", counting_root)
    return calls


@pytest.fixture
def provisioned(catalog_dir: Path, models_root: Path, write_spec: SpecWriter) -> None:
    write_spec("m", inprocess_spec("m", f"- {{path: m.pt, format: pt, sha256: {sha256(b'm')}}}"))
    make_file(models_root / "m.pt", b"m")


@pytest.mark.usefixtures("provisioned")
def test_a_manager_resolves_its_settings_once(
    counted: dict[str, int], catalog_dir: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root was resolved by the manager and again by enforce_offline, the catalog's
    paths and key by Catalog.load, the rest by the manager: now once, for all of them."""
    monkeypatch.setenv(ENV_ROOT, str(models_root))
    mm = ModelManager(catalog=catalog_dir, verify="always")
    assert counted == {"resolve": 1, "root": 1}
    assert mm.root == models_root.resolve() and mm.verify_policy == "always"
    assert mm.settings.catalog == catalog_dir and mm.settings.verify == "always"
    mm.get("m")
    assert counted == {"resolve": 1, "root": 1}
    # what the environment says later changes nothing for this manager
    monkeypatch.setenv(ENV_VERIFY, "cached")
    monkeypatch.setenv(ENV_TRITON_URL, "http://127.0.0.1:9")
    assert mm.verify_policy == "always" and mm.triton_endpoints == {}


@pytest.mark.usefixtures("provisioned")
def test_a_manager_takes_resolved_settings(
    counted: dict[str, int], catalog_dir: Path, models_root: Path
) -> None:
    s = Settings.resolve(models_root=models_root, catalog=catalog_dir, device="cpu")
    counted.update(resolve=0, root=0)
    mm = ModelManager(settings=s)
    assert counted == {"resolve": 0, "root": 0}
    assert mm.settings is s and mm.device == "cpu" and mm.get("m").device == "cpu"
    loaded = Catalog.load(settings=s)
    assert ModelManager(catalog=loaded, settings=s).catalog is loaded
    with pytest.raises(ConfigurationError, match=r"got settings and verify, device"):
        ModelManager(settings=s, verify="always", device="cpu")
    with pytest.raises(ConfigurationError, match=r"not both"):
        Catalog.load(catalog_dir, settings=s)


@pytest.mark.usefixtures("provisioned", "no_racy_window")
def test_a_manager_without_a_digest_cache(
    catalog_dir: Path, models_root: Path, tmp_path: Path
) -> None:
    cached = Settings.resolve(models_root=models_root, catalog=catalog_dir)
    assert cached.cache_dir is not None
    ModelManager(settings=dataclasses.replace(cached, cache_dir=None)).get("m")
    assert not any(cached.cache_dir.rglob("*.json"))
    ModelManager(settings=cached).get("m")
    assert any(cached.cache_dir.rglob("*.json"))


def test_enforce_offline_takes_the_settings(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings.resolve(models_root=tmp_path)
    counted.update(resolve=0, root=0)
    assert enforce_offline(settings=s)["TORCH_HOME"] == str(tmp_path.resolve() / "torch")
    assert counted == {"resolve": 0, "root": 0}
    with pytest.raises(ConfigurationError, match=r"not both"):
        enforce_offline(tmp_path, settings=s)
    with pytest.raises(ModelsRootError, match=r"MODELS_ROOT is not set"):
        enforce_offline(settings=Settings.resolve())


# -- dp-models env shows the resolved settings --------------------------------------------------


def test_env_prints_every_resolved_setting_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", "https://bob:hunter2@127.0.0.1:8443/v2")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT, "ready=2")
    assert main(["env", "--json", "--root", str(tmp_path), "--verify", "always"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)["settings"]
    fields = {f.name for f in dataclasses.fields(Settings)} - {"models_root_problem"}
    assert set(shown) == fields
    assert shown["models_root"] == str(tmp_path.resolve())
    assert shown["verify"] == "always"
    assert shown["triton_endpoints"] == {"asr": "https://***@127.0.0.1:8443/v2"}
    assert shown["triton_timeouts"] == {"default": {"ready_timeout_s": 2.0}}
    assert "hunter2" not in out and "bob" not in out


@pytest.mark.adversarial
def test_env_shows_a_broken_setting_instead_of_stopping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TRITON_URL, "bob:hunter2@triton:8000")
    monkeypatch.setenv(ENV_VERIFY, "sometimes")
    assert main(["env", "--json"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)["settings"]
    assert shown["triton_endpoints"].startswith("(not usable: $DP_MODELS_TRITON_URL")
    assert shown["verify"].startswith("(not usable: verify policy must be one of")
    assert shown["models_root"] == "(not set)"
    assert "hunter2" not in out


# -- no other module resolves a setting ---------------------------------------------------------

#: The environment's own readers: settings (resolution), offline (sets the frameworks'
#: flags and logs what it replaced) and test support (a server's child environment).
_ENVIRONMENT_READERS = {"_settings.py", "_offline.py", "testing"}
_RESOLVERS = {n for n in settings_module.__all__ if n.startswith("resolve_")}


def _calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _RESOLVERS:
                found.append(name)
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"os.{node.attr}")
    return found


def test_no_module_resolves_a_setting_on_its_own() -> None:
    """The root was resolved by the manager, by enforce_offline and by the export; the
    catalog's paths by Catalog.load; the CLI resolved settings per helper."""
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in _ENVIRONMENT_READERS:
            continue
        found = _calls(ast.parse(path.read_text(encoding="utf-8")))
        if rel.as_posix() == "_cli.py":  # `dp-models env` lists the variables that are set
            found = [f for f in found if f != "os.environ"]
        if rel.as_posix() == "loaders/ultralytics.py":  # sets YOLO_OFFLINE, reads nothing
            found = [f for f in found if f != "os.environ"]
        if found:
            offenders[rel.as_posix()] = found
    assert offenders == {}
