"""The network guard: a load that reaches for the network fails at once, naming where and why.

Every request here goes to a loopback server started by the test, so a test can tell that
the guard stopped a request before it left (the server saw nothing) and, outside a load,
that the same request is real (the server saw it).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants

from dp_models import ConfigurationError, ModelManager, NetworkBlockedError
from dp_models._guard import active_guards, endpoint_addresses, network_guard
from dp_models.loaders import LoadContext, Loader, NoArgs

from .conftest import HANG_S, LoopbackServer, SpecWriter, make_file, sha256

FAST_S = 2.0


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    yield srv
    srv.close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=HANG_S) as response:
        data: bytes = response.read()
    return data


class CallLoader(Loader[NoArgs]):
    """Runs whatever function the test gives it, inside the manager's guarded load."""

    name = "guard_tests_call"
    framework = "pytest"
    extra = "test"

    def __init__(self) -> None:
        self.fn: Callable[[LoadContext], Any] = lambda ctx: None

    def load(self, ctx: LoadContext) -> Any:
        return self.fn(ctx)


CALL = CallLoader()

SPEC = "guarded"
WEIGHTS = b"tiny weights"


@pytest.fixture
def manager_with(
    catalog_dir: Path, models_root: Path, write_spec: SpecWriter, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ModelManager]:
    """``manager_with(fn, **manager_kwargs)``: a manager whose spec ``guarded`` loads by ``fn``."""
    write_spec(
        SPEC,
        f'name: {SPEC}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        f"runtime: inprocess\nengine: python\nloader: {CALL.name}\ndevice: cpu\n"
        f"artifacts:\n  - {{path: {SPEC}/w.bin, format: pt, sha256: {sha256(WEIGHTS)}}}\n",
    )
    make_file(models_root / SPEC / "w.bin", WEIGHTS)

    def make(fn: Callable[[LoadContext], Any], **kwargs: Any) -> ModelManager:
        monkeypatch.setattr(CALL, "fn", fn)
        return ModelManager(
            models_root=models_root, catalog=catalog_dir, loaders={CALL.name: CALL}, **kwargs
        )

    return make


def blocked_load(mm: ModelManager, match: str) -> NetworkBlockedError:
    """``mm.load(SPEC)``, which must fail with NetworkBlockedError fast."""
    start = time.monotonic()
    with pytest.raises(NetworkBlockedError, match=match) as info:
        mm.load(SPEC)
    assert time.monotonic() - start < FAST_S
    assert active_guards() == ()
    return info.value


# -- through the ModelManager ------------------------------------------------------------


def test_urllib_fails_fast_naming_destination_and_spec(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    server.hang = True  # a request that got through would take HANG_S
    mm = manager_with(lambda ctx: get(f"{server.url}/x"))
    err = blocked_load(
        mm, rf"connection to 127\.0\.0\.1:{server.port} blocked while loading '{SPEC}'"
    )
    assert err.destination == f"127.0.0.1:{server.port}"
    assert err.specs == (SPEC,)
    assert err.allowed == ()
    assert "MODELS_ROOT" in str(err)
    assert server.connections == 0
    assert server.requests == []


def test_the_same_request_outside_a_load_is_real(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    mm = manager_with(lambda ctx: get(f"{server.url}/x"))
    blocked_load(mm, "blocked while loading")  # a failed load leaves no guard behind
    assert get(f"{server.url}/x") == b"ok"
    assert server.requests == ["/x"]
    assert mm.models_used()[0]["name"] == SPEC


def test_huggingface_hub_download_fails_fast(
    server: LoopbackServer,
    manager_with: Callable[..., ModelManager],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    cache = tmp_path / "hf-cache"

    def load(ctx: LoadContext) -> Any:
        # The manager switched huggingface_hub offline: undo that so that only the guard
        # stands between this call and the server. huggingface_hub built its URL template
        # from $HF_ENDPOINT at import, before this test, so the endpoint is also passed.
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        return huggingface_hub.hf_hub_download(
            repo_id="org/model", filename="x.bin", cache_dir=cache, endpoint=server.url
        )

    mm = manager_with(load)
    err = blocked_load(mm, rf"connection to 127\.0\.0\.1:{server.port} blocked")
    assert err.specs == (SPEC,)
    assert server.connections == 0
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_torch_hub_download_fails_fast(
    server: LoopbackServer, manager_with: Callable[..., ModelManager], tmp_path: Path
) -> None:
    import torch.hub

    server.hang = True
    model_dir = tmp_path / "torch-hub"
    url = f"{server.url}/w.pth"
    mm = manager_with(
        lambda ctx: torch.hub.load_state_dict_from_url(
            url, model_dir=str(model_dir), progress=False
        )
    )
    blocked_load(mm, rf"connection to 127\.0\.0\.1:{server.port} blocked")
    assert server.connections == 0
    assert not model_dir.exists() or list(model_dir.iterdir()) == []


def test_dns_lookup_fails_fast(manager_with: Callable[..., ModelManager]) -> None:
    mm = manager_with(lambda ctx: socket.getaddrinfo("model-hub.invalid", 443))
    err = blocked_load(mm, r"DNS lookup of model-hub\.invalid:443 blocked while loading 'guarded'")
    assert err.destination == "DNS lookup of model-hub.invalid:443"


def test_configured_triton_endpoint_is_allowed_and_nothing_else(
    server: LoopbackServer,
    other_server: LoopbackServer,
    manager_with: Callable[..., ModelManager],
) -> None:
    triton = f"http://user:secret@127.0.0.1:{server.port}"
    replies: list[bytes] = []

    def load(ctx: LoadContext) -> Any:
        replies.append(get(f"{server.url}/v2/health/ready"))
        return get(f"{other_server.url}/elsewhere")

    mm = manager_with(load, triton_endpoints={"default": triton})
    err = blocked_load(mm, rf"connection to 127\.0\.0\.1:{other_server.port} blocked")
    assert replies == [b"ok"]
    assert server.requests == ["/v2/health/ready"]
    assert other_server.connections == 0
    assert f"127.0.0.1:{server.port}" in err.allowed
    assert "secret" not in str(err)


def test_unix_domain_sockets_are_not_blocked(manager_with: Callable[..., ModelManager]) -> None:
    def load(ctx: LoadContext) -> Any:
        left, right = socket.socketpair()
        with left, right:
            left.sendall(b"pair")
            paired = right.recv(4)
        with tempfile.TemporaryDirectory() as tmp:  # short: AF_UNIX paths are ~100 bytes max
            path = str(Path(tmp) / "s")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(path)
                listener.listen(1)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(path)
                    conn, _ = listener.accept()
                    with conn:
                        client.sendall(b"unix")
                        connected = conn.recv(4)
        return paired, connected

    assert manager_with(load).load(SPEC) == (b"pair", b"unix")


def test_threads_started_by_the_loader_are_guarded(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    def load(ctx: LoadContext) -> Any:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                get(f"{server.url}/from-thread")
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(HANG_S)
        if errors:
            raise errors[0]

    mm = manager_with(load)
    blocked_load(mm, rf"connection to 127\.0\.0\.1:{server.port} blocked")
    assert server.connections == 0
    assert get(f"{server.url}/after") == b"ok"  # inactive after the load
    assert server.requests == ["/after"]


def test_a_swallowed_block_is_surfaced_by_the_manager(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    def load(ctx: LoadContext) -> Any:
        try:
            get(f"{server.url}/x")
        except Exception as exc:
            raise ValueError("download failed, trying something else") from exc

    err = blocked_load(manager_with(load), rf"127\.0\.0\.1:{server.port}")
    assert isinstance(err.__cause__, ValueError)
    assert server.connections == 0


def test_guard_is_inactive_after_a_successful_load(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    mm = manager_with(lambda ctx: "model")
    assert mm.load(SPEC) == "model"
    assert active_guards() == ()
    assert get(f"{server.url}/after") == b"ok"
    assert server.requests == ["/after"]


# -- network_guard itself ----------------------------------------------------------------


def connect_from_thread(port: int) -> BaseException | None:
    """Connect to loopback ``port`` from another thread; what it raised, if anything."""
    raised: list[BaseException] = []

    def work() -> None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=HANG_S).close()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(HANG_S)
    return raised[0] if raised else None


def test_guard_is_process_wide(server: LoopbackServer) -> None:
    with network_guard(["x"]) as blocked:
        assert active_guards() == ("x",)
        err = connect_from_thread(server.port)
    assert isinstance(err, NetworkBlockedError)
    assert err.specs == ("x",)
    assert blocked == [err]
    assert active_guards() == ()
    assert server.connections == 0
    assert connect_from_thread(server.port) is None
    assert server.saw_connections(1)


def test_nested_guards_block_until_the_last_exits(server: LoopbackServer) -> None:
    with network_guard(["outer"]) as outer:
        with network_guard(["inner"]) as inner:
            assert active_guards() == ("inner", "outer")
            both = connect_from_thread(server.port)
        assert active_guards() == ("outer",)
        only_outer = connect_from_thread(server.port)
    assert active_guards() == ()
    assert isinstance(both, NetworkBlockedError)
    assert both.specs == ("inner", "outer")
    assert isinstance(only_outer, NetworkBlockedError)
    assert only_outer.specs == ("outer",)
    assert inner == [both]
    assert outer == [both, only_outer]
    assert server.connections == 0


def test_overlapping_guards_block_until_the_last_exits(server: LoopbackServer) -> None:
    first, second = network_guard(["a"]), network_guard(["b"])
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not the last one in: "b" still guards
    try:
        assert active_guards() == ("b",)
        err = connect_from_thread(server.port)
        assert isinstance(err, NetworkBlockedError)
        assert err.specs == ("b",)
    finally:
        second.__exit__(None, None, None)
    assert active_guards() == ()
    assert server.connections == 0


def test_same_name_guards_count(server: LoopbackServer) -> None:
    with network_guard(["same"]):
        with network_guard(["same"]):
            pass
        assert active_guards() == ("same",)
        assert isinstance(connect_from_thread(server.port), NetworkBlockedError)
    assert active_guards() == ()


def test_guard_with_an_endpoint_opens_while_another_guard_is_active(
    server: LoopbackServer,
) -> None:
    # The second guard resolves its endpoint's host name on entry while the first guard,
    # which allows nothing, is active: that lookup is the guard's own, not a load's.
    with network_guard(["a"]), network_guard(["b"], allow=[f"http://localhost:{server.port}"]):
        socket.create_connection(("localhost", server.port), timeout=HANG_S).close()
        with pytest.raises(NetworkBlockedError, match=r"DNS lookup of localhost:1 "):
            socket.getaddrinfo("localhost", 1)
    assert server.saw_connections(1)


def test_address_literals_are_not_dns_lookups(server: LoopbackServer) -> None:
    with network_guard(["x"]):
        assert socket.getaddrinfo("127.0.0.1", server.port)  # nothing leaves for a literal
        assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
        with pytest.raises(NetworkBlockedError, match=r"DNS lookup of localhost\b"):
            socket.gethostbyname("localhost")
        with pytest.raises(NetworkBlockedError, match=rf"to 127\.0\.0\.1:{server.port} blocked"):
            socket.create_connection(("127.0.0.1", server.port), timeout=HANG_S)
    assert server.connections == 0


def test_a_refused_socket_is_closed(server: LoopbackServer) -> None:
    # socket.create_connection closes its socket only on OSError; without this every
    # blocked attempt would leak a descriptor (and a ResourceWarning) until collected.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with network_guard(["x"]), pytest.raises(NetworkBlockedError):
        sock.connect(("127.0.0.1", server.port))
    assert sock.fileno() == -1
    assert server.connections == 0


def test_udp_sendto_is_blocked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with network_guard(["x"]), pytest.raises(NetworkBlockedError, match=r"127\.0\.0\.1:9 "):
            udp.sendto(b"x", ("127.0.0.1", 9))


def test_outside_any_guard_nothing_is_blocked(server: LoopbackServer) -> None:
    assert active_guards() == ()
    assert get(f"{server.url}/free") == b"ok"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://triton:8000", ("triton", 8000)),
        ("http://triton", ("triton", 80)),
        ("https://triton", ("triton", 443)),
        ("https://triton:8443/v2", ("triton", 8443)),
        ("http://user:secret@127.0.0.1:8000/v2", ("127.0.0.1", 8000)),
        ("http://us@r:p@ss@127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("http://[::1]:8000", ("::1", 8000)),
        ("HTTP://Triton:8000", ("triton", 8000)),
    ],
)
def test_endpoint_addresses(url: str, expected: tuple[str, int]) -> None:
    assert endpoint_addresses(url) == [expected]
    assert endpoint_addresses(f"{url},http://127.0.0.2:9") == [expected, ("127.0.0.2", 9)]


@pytest.mark.parametrize("url", ["triton:8001", "triton", "user:secret@127.0.0.1:8000"])
def test_an_endpoint_without_a_scheme_is_refused_not_guessed(url: str) -> None:
    with pytest.raises(ConfigurationError, match="no scheme") as exc:
        endpoint_addresses(url)
    assert "secret" not in str(exc.value)


def test_a_loader_that_swallows_the_block_does_not_get_its_model_through(
    server: LoopbackServer, manager_with: Callable[..., ModelManager]
) -> None:
    def fallback(ctx: LoadContext) -> Any:
        try:
            get(server.url + "/weights")
        except Exception:
            return "a fallback model"
        return "downloaded"

    mm = manager_with(fallback)
    with pytest.raises(NetworkBlockedError, match=rf"connection to 127\.0\.0\.1:{server.port}"):
        mm.load(SPEC)
    assert server.saw_connections(0)
