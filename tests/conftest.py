"""Shared fixtures: a clean environment, an isolated digest cache, small catalogs and roots."""

from __future__ import annotations

import hashlib
import http.server
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dp_models import ModelManager
from dp_models._offline import LEGACY_CACHE_VARS, OFFLINE_FLAGS, cache_dirs
from dp_models._settings import ENV_TRITON_REPLICAS, ENV_TRITON_TIMEOUT, ENV_TRITON_URL, ENV_VARS

#: Every variable dp_models reads or sets; cleaned before and restored after each test.
TOUCHED_VARS = sorted({*ENV_VARS, *OFFLINE_FLAGS, *cache_dirs(Path("/")), *LEGACY_CACHE_VARS})

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
    prefixes = (ENV_TRITON_URL, ENV_TRITON_TIMEOUT, ENV_TRITON_REPLICAS)
    for name in [k for k in os.environ if k.startswith(prefixes)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DP_MODELS_CACHE_DIR", str(tmp_path_factory.mktemp("digest-cache")))


@pytest.fixture(autouse=True)
def restore_framework_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ModelManager switches already-imported frameworks to offline mode (module
    constants, torch.hub's directory); undo that after each test."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        for name in (
            "HF_HUB_OFFLINE",
            "HF_HUB_DISABLE_TELEMETRY",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN",
            "HF_HOME",
            "HF_HUB_CACHE",
            "HF_ASSETS_CACHE",
        ):
            if hasattr(hub, name):
                monkeypatch.setattr(hub, name, getattr(hub, name))
    torch_hub = sys.modules.get("torch.hub")
    if torch_hub is not None and hasattr(torch_hub, "_hub_dir"):
        monkeypatch.setattr(torch_hub, "_hub_dir", torch_hub._hub_dir)


#: Far longer than any test may take: a request the guard let through would hang this long.
HANG_S = 10.0


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 that counts what reaches it; ``hang`` stalls replies."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.hang = False
        self._release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if server.hang:
                    server._release.wait(HANG_S)
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                server.connections += 1
                return True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def saw_connections(self, count: int) -> bool:
        """Whether ``count`` connections arrived (the server counts them in its own thread)."""
        deadline = time.monotonic() + 2.0
        while self.connections < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.connections == count

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A loopback HTTP server that counts connections and requests."""
    srv = LoopbackServer()
    yield srv
    srv.close()


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
def make_manager(
    models_root: Path, catalog_dir: Path, tmp_path: Path
) -> Callable[..., ModelManager]:
    """A manager on the test's root and catalog; call it after writing the specs."""

    def make(**kwargs: Any) -> ModelManager:
        return ModelManager(
            models_root=models_root, catalog=catalog_dir, cache_dir=tmp_path / "cache", **kwargs
        )

    return make


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
                loader_args: {{class_path: "{TINYNET}"}}
                artifacts:
                  - path: {name}/weights.pt
                    format: pt
            """
        path = catalog_dir / area / (filename or f"{name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip())
        return path

    return write


#: The class_path of the minimal in-process specs (torch_state_dict requires one).
TINYNET = "dp_models.testing.nets:TinyNet"


def inprocess_spec(name: str, artifacts: str, extra: str = "") -> str:
    """YAML text of a minimal in-process spec with the given ``artifacts:`` block (and
    ``loader_args: {class_path: TINYNET}`` unless ``extra`` has loader_args)."""
    args = "" if "loader_args" in extra else f"loader_args: {{class_path: '{TINYNET}'}}\n"
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        f"runtime: inprocess\nengine: torch\nloader: torch_state_dict\n{args}"
        f"artifacts:\n{textwrap.indent(textwrap.dedent(artifacts).strip(), '  ')}\n{extra}"
    )


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let the digest cache store entries for files written a moment ago (tests only)."""
    from dp_models import _digest as digest

    original = digest.DigestCache.__init__

    def init(self: digest.DigestCache, directory: object, *, racy_window_s: float = 0.0) -> None:
        original(self, directory, racy_window_s=0.0)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.DigestCache, "__init__", init)
    yield


def close_native(model: Any) -> None:
    """Close a MediaPipe task now, freeing its native graph before the next test rather
    than whenever the garbage collector gets to it (docs/loaders.md, MediaPipe)."""
    if type(model).__module__.startswith(("mediapipe.", "dp_models.loaders.mediapipe")):
        model.close()


def make_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def env_without_dp_models() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible server (moto) on loopback, for the whole session."""
    from dp_models.testing.s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The S3 server, with the standard AWS settings pointing at it (and no profile or
    shared file of the caller's in the way)."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    return s3_server
