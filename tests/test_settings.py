"""Resolution order (argument, environment, packaged default) and the missing-root error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp_models import ConfigurationError, ModelsRootError
from dp_models.settings import (
    ENV_CACHE_DIR,
    ENV_ROOT,
    ENV_ROOT_ALIAS,
    ENV_TRITON_URL,
    ENV_VERIFY,
    resolve_cache_dir,
    resolve_models_root,
    resolve_triton_endpoints,
    resolve_verify_policy,
)


def test_missing_root_says_how_to_set_it() -> None:
    with pytest.raises(ModelsRootError, match=r"MODELS_ROOT is not set.*DP_MODELS_ROOT=") as exc:
        resolve_models_root()
    assert isinstance(exc.value, FileNotFoundError)
    assert exc.value.path is None


def test_root_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        ModelsRootError,
        match=r"nope \(from the models_root argument\) does not "
        r"exist",
    ) as exc:
        resolve_models_root(missing)
    assert exc.value.path == missing


def test_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ModelsRootError, match=r"is not a directory"):
        resolve_models_root(f)


def test_root_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arg, env, alias = (tmp_path / n for n in ("arg", "env", "alias"))
    for d in (arg, env, alias):
        d.mkdir()
    monkeypatch.setenv(ENV_ROOT_ALIAS, str(alias))
    assert resolve_models_root() == alias
    monkeypatch.setenv(ENV_ROOT, str(env))
    assert resolve_models_root() == env
    assert resolve_models_root(arg) == arg


def test_root_is_resolved_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert resolve_models_root(tmp_path / "link") == real


def test_empty_env_var_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ROOT, "  ")
    with pytest.raises(ModelsRootError, match=r"not set"):
        resolve_models_root()


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "dp_models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_cache_dir() == Path.home() / ".cache" / "dp_models"
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_verify_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_verify_policy() == "cached"
    monkeypatch.setenv(ENV_VERIFY, "always")
    assert resolve_verify_policy() == "always"
    assert resolve_verify_policy("cached") == "cached"
    monkeypatch.setenv(ENV_VERIFY, "sometimes")
    with pytest.raises(
        ValueError,
        match=r"one of cached, always; got 'sometimes' \(from "
        r"\$DP_MODELS_VERIFY\)",
    ):
        resolve_verify_policy()


def test_triton_endpoints_from_the_argument_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_TRITON_URL, " http://triton:8000 ")
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", "https://bob:p@ss@asr:8443/v2")
    assert resolve_triton_endpoints() == {
        "default": "http://triton:8000",
        "asr": "https://bob:p@ss@asr:8443/v2",
    }
    assert resolve_triton_endpoints({"x": "http://[::1]:1"}) == {"x": "http://[::1]:1"}


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
    with pytest.raises(ConfigurationError, match=why) as exc:
        resolve_triton_endpoints()
    assert "$DP_MODELS_TRITON_URL_ASR" in str(exc.value)
    assert "hunter2" not in str(exc.value) and "bob" not in str(exc.value)
