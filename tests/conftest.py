"""Shared fixtures: a clean environment, an isolated digest cache, small catalogs and roots."""

from __future__ import annotations

import hashlib
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dp_models.offline import OFFLINE_FLAGS, cache_dirs
from dp_models.settings import ENV_TRITON_URL, ENV_VARS

#: Every variable dp_models reads or sets; cleaned before and restored after each test.
TOUCHED_VARS = sorted({*ENV_VARS, *OFFLINE_FLAGS, *cache_dirs(Path("/"))})

#: Small known files and their sha256 (computed independently of dp_models).
TINY_DATA = {
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"dp_models\n": hashlib.sha256(b"dp_models\n").hexdigest(),
}


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No dp_models or framework variable leaks in from the caller; the digest cache is per test."""
    for name in TOUCHED_VARS:
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith(ENV_TRITON_URL)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DP_MODELS_CACHE_DIR", str(tmp_path_factory.mktemp("digest-cache")))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SpecWriter = Callable[..., Path]


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    d = tmp_path / "catalog"
    d.mkdir()
    return d


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


@pytest.fixture
def write_spec(catalog_dir: Path) -> SpecWriter:
    """Write a spec file: ``write_spec("name", artifacts_yaml, area="visual", **extra_yaml)``."""

    def write(
        name: str, body: str | None = None, *, area: str = "visual", filename: str | None = None
    ) -> Path:
        if body is None:
            body = f"""
                name: {name}
                version: "1"
                family: test
                role: test
                users: [VisualProcessor/test]
                runtime: inprocess
                engine: torch
                loader: torch_state_dict
                artifacts:
                  - path: {name}/weights.pt
                    format: pt
            """
        path = catalog_dir / area / (filename or f"{name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip())
        return path

    return write


def inprocess_spec(name: str, artifacts: str, extra: str = "") -> str:
    """YAML text of a minimal in-process spec with the given ``artifacts:`` block."""
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        f"runtime: inprocess\nengine: torch\nloader: torch_state_dict\n"
        f"artifacts:\n{textwrap.indent(textwrap.dedent(artifacts).strip(), '  ')}\n{extra}"
    )


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let the digest cache store entries for files written a moment ago (tests only)."""
    from dp_models import digest

    original = digest.DigestCache.__init__

    def init(self: digest.DigestCache, directory: object, *, racy_window_s: float = 0.0) -> None:
        original(self, directory, racy_window_s=0.0)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.DigestCache, "__init__", init)
    yield


def make_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def env_without_dp_models() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}
