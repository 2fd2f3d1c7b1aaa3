"""System shared memory between the Triton client and a real server on this host.

One ``tritonserver`` for the module (loopback) serves small stand-ins: ``shm_echo`` (a
fixed and a variable input, a fixed, a BYTES and a variable output: shared memory and HTTP
binary data in one request), ``shm_blob`` (its input as long as the test likes: regions
that must grow) and ``shm_fail`` (a model that answers an error for a negative input). A
second server, started in a mount namespace of its own with a private ``/dev/shm``, is the
server in another container that cannot open the client's regions. The session server of
the plugin serves every packaged Triton spec: shared memory and HTTP must answer each bit
for bit alike.

What the server has registered is read from it (``get_system_shared_memory_status``), and
what this host holds from ``/dev/shm``.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import (
    ConfigurationError,
    TritonError,
    TritonInferenceError,
    TritonSharedMemoryError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from dp_models._settings import (
    ENV_TRITON_SHM,
    ENV_VARS,
    Settings,
    resolve_triton_shared_memory,
    triton_shm_variable,
)
from dp_models._spec import Spec
from dp_models.testing.faults import FaultProxy
from dp_models.testing.triton import (
    TritonServer,
    expected_standin_outputs,
    write_standin_repository,
)
from dp_models.testing.triton_transport import FakeTransport
from dp_models.triton import shm
from dp_models.triton.client import TritonClient
from dp_models.triton.transport import HTTPTransport

from .bounded import bounded

PACKAGED = Catalog.load()
TRITON_SPECS = sorted(name for name, spec in PACKAGED.items() if spec.runtime == "triton")
#: Length given to a variable (-1) input dimension of the packaged specs.
VARIABLE_INPUT = 5
#: What names this process's segments start with in /dev/shm.
OURS = f"{shm.PREFIX}{os.getpid()}_"
#: A command line's prefix that runs it with a /dev/shm of its own, of 1 MiB.
PRIVATE_SHM = [
    *("unshare", "-m", "--propagation", "private", "sh", "-c"),
    'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$@"',
    "sh",
]
FAST: dict[str, Any] = {
    "connection_timeout_s": 2.0,
    "ready_timeout_s": 5.0,
    "retries": 1,
    "backoff_s": 0.05,
}


def _spec_yaml(name: str, body: str) -> str:
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        "runtime: triton\nengine: python\n" + textwrap.dedent(body).strip() + "\n"
    )


SPECS = {
    "shm_echo": """
        triton:
          model_name: shm_echo
          model_version: 1
          platform: python
          max_batch_size: 8
          inputs:
            - {name: x, datatype: FP32, shape: [4]}
            - {name: ids, datatype: INT64, shape: [-1]}
          outputs:
            - {name: y, datatype: FP32, shape: [2]}
            - {name: label, datatype: BYTES, shape: [1]}
            - {name: tokens, datatype: INT32, shape: [-1]}
        """,
    "shm_blob": """
        triton:
          model_name: shm_blob
          model_version: 1
          platform: python
          max_batch_size: 8
          inputs:
            - {name: x, datatype: FP32, shape: [-1]}
          outputs:
            - {name: y, datatype: FP64, shape: [64, 64]}
        """,
    "shm_fail": """
        triton:
          model_name: shm_fail
          model_version: 1
          platform: python
          max_batch_size: 8
          inputs:
            - {name: x, datatype: FP32, shape: [4]}
          outputs:
            - {name: y, datatype: FP32, shape: [4]}
        """,
}

#: shm_fail's model: twice its input, or an error answer for a negative one.
FAIL_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            if (x < 0).any():
                error = pb_utils.TritonError("shm_fail refuses negative inputs")
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                y = pb_utils.Tensor("y", (x * 2).astype(np.float32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
"""


@dataclass
class Served:
    server: TritonServer
    catalog: Catalog
    digests: dict[str, str | None]

    def spec(self, name: str) -> Spec:
        return self.catalog[name]

    def client(self, name: str, url: str | None = None, **options: Any) -> TritonClient:
        return TritonClient(
            self.catalog[name],
            url or self.server.url,
            expected_digest=self.digests[name],
            **{**FAST, **options},
        )

    def registered(self) -> set[str]:
        """The regions the server has, by name (any process's). A client of its own: a
        gevent client belongs to the thread that made it."""
        raw = httpclient.InferenceServerClient(self.server.address)
        try:
            return {r["name"] for r in raw.get_system_shared_memory_status()}
        finally:
            raw.close()


def _make_repo(
    base: Path, names: list[str] | None = None
) -> tuple[Catalog, dict[str, str | None], Path]:
    catalog_dir = base / "catalog"
    (catalog_dir / "visual").mkdir(parents=True)
    for name, body in SPECS.items():
        (catalog_dir / "visual" / f"{name}.yaml").write_text(_spec_yaml(name, body))
    catalog = Catalog.load(catalog_dir)
    repo = base / "repo"
    digests = write_standin_repository(catalog, repo, names)
    if (repo / "shm_fail").is_dir():
        (repo / "shm_fail" / "1" / "model.py").write_text(FAIL_MODEL)
    return catalog, digests, repo


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    catalog, digests, repo = _make_repo(tmp_path_factory.mktemp("triton_shm"))
    server = TritonServer(stop_timeout_s=1.0).start(repo)
    try:
        yield Served(server, catalog, digests)
    finally:
        server.kill()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server on loopback that cannot see this host's /dev/shm (a /dev/shm of its own)."""
    base = tmp_path_factory.mktemp("triton_shm_elsewhere")
    catalog, digests, repo = _make_repo(base, ["shm_echo"])
    server = TritonServer(stop_timeout_s=1.0, private_shm=True).start(repo)
    try:
        yield Served(server, catalog, digests)
    finally:
        server.kill()


@pytest.fixture
def live(served: Served) -> Served:
    """The module's server, running (a test before may have restarted it)."""
    if not served.server.running:
        served.server.start()
    return served


def _segments() -> set[str]:
    """This process's segments in /dev/shm."""
    return {p.name for p in shm.SHM_DIR.iterdir() if p.name.startswith(OURS)}


def _regions(client: TritonClient) -> tuple[str, ...]:
    transport = client.transport
    assert isinstance(transport, HTTPTransport)
    return transport.shared_memory_regions


def _echo_inputs(batch: int, seed: int = 0, length: int = 6) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
        "ids": rng.integers(0, 50, size=(batch, length)).astype(np.int64),
    }


def _blob_inputs(batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, length)).astype(np.float32)}


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Bit for bit: names, dtypes, shapes and every byte."""
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        array = np.asarray(got[name])
        assert array.dtype == expected.dtype and array.shape == expected.shape, name
        if array.dtype == np.object_:
            assert array.tolist() == expected.tolist(), name
        else:
            assert array.tobytes() == np.ascontiguousarray(expected).tobytes(), name


# -- the same answers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(
    dp_models_triton_server: TritonServer, dp_models_triton_catalog: Path
) -> tuple[TritonServer, Catalog]:
    return dp_models_triton_server, Catalog.load(dp_models_triton_catalog)


@pytest.mark.parametrize("name", TRITON_SPECS)
def test_every_packaged_spec_answers_bit_for_bit_alike_over_shared_memory_and_http(
    packaged: tuple[TritonServer, Catalog], name: str
) -> None:
    server, catalog = packaged
    spec = catalog[name]
    assert spec.triton is not None
    pin = catalog.expected_digest(spec)
    digest = pin.sha256 if pin is not None else None
    rng = np.random.default_rng(7)
    inputs = {}
    for t in spec.triton.inputs:
        dims = [VARIABLE_INPUT if d == -1 else d for d in t.shape]
        dtype = {"FP32": np.float32, "INT64": np.int64}[t.datatype]
        inputs[t.name] = (rng.standard_normal([3, *dims]) * 4).astype(dtype)
    answers = {}
    for mode in ("on", "off"):
        with TritonClient(spec, server.url, expected_digest=digest, shared_memory=mode) as c:
            answers[mode] = c.infer(inputs)
            assert c.shared_memory_status == ("on, in use" if mode == "on" else "off")
    _assert_same(answers["on"], answers["off"])
    _assert_same(answers["on"], expected_standin_outputs(spec, inputs))


def test_shared_memory_and_binary_data_in_one_request(live: Served) -> None:
    """Fixed outputs come through the region, a BYTES and a variable one as binary data;
    every output is the caller's own copy."""
    spec = live.spec("shm_echo")
    with (
        live.client("shm_echo", shared_memory="on") as on,
        live.client("shm_echo", shared_memory="off") as off,
    ):
        first = _echo_inputs(3, seed=1)
        got = on.infer(first)
        _assert_same(got, off.infer(first))
        _assert_same(got, expected_standin_outputs(spec, first))
        assert got["label"].dtype == np.object_ and got["tokens"].shape[0] == 3
        kept = got["y"].copy()
        on.infer(_echo_inputs(3, seed=2))  # the same region, other values
        np.testing.assert_array_equal(got["y"], kept)  # what the caller holds did not move
        assert got["y"].flags.owndata and got["y"].flags.writeable


# -- regions: reused, grown, released ----------------------------------------------------------


def test_regions_are_registered_once_reused_and_grown(live: Served) -> None:
    before = _segments()
    spec = live.spec("shm_blob")
    with live.client("shm_blob") as client:  # auto, loopback: shared memory
        for seed in range(3):
            inputs = _blob_inputs(2, 1000, seed)
            _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        [first] = _regions(client)
        assert client.shared_memory_status == "auto, in use"
        assert first in live.registered() and _segments() - before == {first}
        # a request larger than the region: a new one, the old one gone on both sides
        inputs = _blob_inputs(8, 200_000, seed=4)
        _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        [grown] = _regions(client)
        assert grown != first
        assert (shm.SHM_DIR / grown).stat().st_size >= inputs["x"].nbytes
        assert first not in live.registered() and grown in live.registered()
        assert _segments() - before == {grown}
        # smaller requests fit in it: no new region
        for seed in range(2):
            inputs = _blob_inputs(1, 10, seed)
            _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        assert _regions(client) == (grown,)
    # close(): nothing registered at the server, nothing left in /dev/shm
    assert grown not in live.registered()
    assert _segments() == before
    assert _regions(client) == ()


def test_a_closed_client_starts_over_on_its_next_request(live: Served) -> None:
    before = _segments()
    client = live.client("shm_echo")
    client.infer(_echo_inputs(2))
    [old] = _regions(client)
    client.close()
    assert old not in live.registered() and _segments() == before
    inputs = _echo_inputs(2, seed=5)
    _assert_same(client.infer(inputs), expected_standin_outputs(live.spec("shm_echo"), inputs))
    [new] = _regions(client)
    assert new != old and new in live.registered()
    client.close()
    assert _segments() == before and new not in live.registered()


_EXIT_CHILD = """
import json, sys
import numpy as np
from dp_models._catalog import Catalog
from dp_models.triton.client import TritonClient

url, catalog, digest, how = sys.argv[1:5]
client = TritonClient(Catalog.load(catalog)["shm_echo"], url, expected_digest=digest)
client.infer({"x": np.ones((2, 4), np.float32), "ids": np.ones((2, 3), np.int64)})
print(json.dumps(list(client.transport.shared_memory_regions)), flush=True)
if how == "dropped":
    del client  # garbage-collected: segments removed now, the name unregistered at exit
    import gc; gc.collect()
# no close(): the interpreter exits with the client alive (or dropped)
"""


@pytest.mark.parametrize("how", ["alive", "dropped"])
def test_interpreter_exit_without_close_leaves_nothing(live: Served, how: str) -> None:
    catalog_dir = live.catalog.directory
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _EXIT_CHILD,
            live.server.url,
            str(catalog_dir),
            str(live.digests["shm_echo"]),
            how,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(names) == 1 and names[0].startswith(shm.PREFIX)
    assert not (shm.SHM_DIR / names[0]).exists()
    assert names[0] not in live.registered()
    assert "Warning" not in done.stderr and "leaked" not in done.stderr


def test_a_client_dropped_without_close_is_cleaned_up(live: Served) -> None:
    """Garbage-collected: its segment is removed at once, and the next request of another
    client to the same server unregisters what it had registered."""
    with warnings.catch_warnings():  # earlier tests' garbage first: it may hold segments too
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    before = _segments()
    client = live.client("shm_echo")
    client.infer(_echo_inputs(1))
    [name] = _regions(client)
    with warnings.catch_warnings():  # its HTTP connection is dropped unclosed, on purpose
        warnings.simplefilter("ignore", ResourceWarning)
        del client
        gc.collect()
    assert _segments() == before  # removed at once
    assert name in live.registered()  # the server still maps it: nobody has said otherwise
    with live.client("shm_echo") as other:
        other.infer(_echo_inputs(1))
        assert name not in live.registered()


def test_a_forked_child_leaves_its_parents_regions_alone(live: Served) -> None:
    spec = live.spec("shm_echo")
    with live.client("shm_echo") as client:
        inputs = _echo_inputs(2, seed=11)
        client.infer(inputs)
        [name] = _regions(client)
        with warnings.catch_warnings():  # Python 3.12 warns of fork() with threads about
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: what its exit, and collecting the client, would do
            try:
                shm._at_exit()
                transport = client.transport
                assert isinstance(transport, HTTPTransport) and transport._regions is not None
                transport._regions._finalizer()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert (shm.SHM_DIR / name).exists() and name in live.registered()
        _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        assert _regions(client) == (name,)
    assert name not in live.registered()


# -- failures leave nothing behind -------------------------------------------------------------


def test_an_error_answer_keeps_the_region_and_the_next_call_works(live: Served) -> None:
    before = _segments()
    with live.client("shm_fail") as client:
        ok = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(client.infer({"x": ok})["y"], ok * 2)
        regions = _regions(client)
        with pytest.raises(TritonInferenceError, match="refuses negative inputs"):
            client.infer({"x": -ok})
        # the request is over: the region serves the next one
        np.testing.assert_array_equal(client.infer({"x": ok * 3})["y"], ok * 6)
        assert _regions(client) == regions and set(regions) <= live.registered()
    assert _segments() == before and not set(regions) & live.registered()


def test_a_timeout_or_a_lost_answer_retires_the_region(live: Served) -> None:
    """A request that may still run on the server: its region is removed at once, never
    reused, unregistered after the next request that goes through; the client recovers."""
    spec = live.spec("shm_echo")
    before = _segments()
    with FaultProxy(live.server.address) as proxy:

        def scenario() -> tuple[list[str], list[Any]]:
            seen: list[str] = []
            errors: list[Any] = []
            with live.client(
                "shm_echo", proxy.url, network_timeout_s=1.0, ready_timeout_s=1.0
            ) as client:
                inputs = _echo_inputs(2, seed=3)
                _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
                for fault in (lambda: proxy.delay(5.0), lambda: proxy.cut_after(10)):
                    [name] = _regions(client)
                    seen.append(name)
                    fault()
                    try:
                        client.infer(inputs)
                    except TritonError as exc:
                        errors.append(exc)
                    assert not (shm.SHM_DIR / name).exists()  # retired: removed at once
                    proxy.heal()
                    _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
                    assert name not in _regions(client)
                    assert name not in live.registered()  # unregistered since
                seen += _regions(client)
            return seen, errors

        seen, errors = bounded(scenario, deadline_s=60.0)
    assert isinstance(errors[0], TritonTimeoutError)
    assert isinstance(errors[1], TritonUnavailableError)
    assert len(set(seen)) == 3
    assert _segments() == before and not set(seen) & live.registered()


def test_concurrent_requests_from_threads_each_get_their_own_region(live: Served) -> None:
    spec = live.spec("shm_blob")
    before = _segments()
    failures: list[str] = []
    most: list[int] = []
    with live.client("shm_blob") as client:

        def worker(index: int) -> None:
            for call in range(8):
                inputs = _blob_inputs(1 + (index + call) % 3, 500 + 97 * index, seed=index)
                got = client.infer(inputs)
                want = expected_standin_outputs(spec, inputs)
                if got["y"].tobytes() != want["y"].tobytes():
                    failures.append(f"thread {index} call {call}")
                most.append(len(_regions(client)))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert not failures
        assert 1 <= max(most) <= 4  # never more regions than requests at once
        names = _regions(client)
        assert set(names) <= live.registered()
    assert _segments() == before and not set(names) & live.registered()


def test_a_restarted_server_gets_the_regions_registered_again(
    live: Served, caplog: pytest.LogCaptureFixture
) -> None:
    spec = live.spec("shm_echo")
    with live.client("shm_echo") as client:
        inputs = _echo_inputs(2, seed=8)
        client.infer(inputs)
        [name] = _regions(client)
        live.server.kill()  # and back on the same port: the registrations are gone with it
        live.server.start()
        assert name not in live.registered()
        with caplog.at_level(logging.INFO, logger="dp_models.triton"):
            _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        assert _regions(client) == (name,) and name in live.registered()
        assert any("registering it again" in r.getMessage() for r in caplog.records)
        assert client.shared_memory_status == "auto, in use"
    assert name not in live.registered()


# -- a server that cannot see this host's /dev/shm ---------------------------------------------


def test_auto_falls_back_to_http_and_on_is_an_error(
    elsewhere: Served, caplog: pytest.LogCaptureFixture
) -> None:
    spec = elsewhere.spec("shm_echo")
    before = _segments()
    inputs = _echo_inputs(3, seed=4)
    with caplog.at_level(logging.WARNING, logger="dp_models.triton"):
        with elsewhere.client("shm_echo") as client:  # auto
            _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
            _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
            status = client.shared_memory_status
            assert status.startswith("auto, not used (the server did not register")
            assert "(shared memory auto, not used" in repr(client)
            [replica] = client.check().replicas
            assert replica.shared_memory == status
            assert client.check().as_dict()["replicas"][0]["shared_memory"] == status
        assert _segments() == before and not elsewhere.registered()
        with elsewhere.client("shm_echo") as again:  # logged once per server
            again.infer(inputs)
    warned = [r for r in caplog.records if "shared memory not used" in r.getMessage()]
    assert len(warned) == 1 and "DP_MODELS_TRITON_SHM" in warned[0].getMessage()
    with elsewhere.client("shm_echo", shared_memory="on") as client:
        with pytest.raises(TritonSharedMemoryError) as info:
            client.infer(inputs)
    error = info.value
    assert isinstance(error, ConfigurationError) and isinstance(error, TritonError)
    assert error.spec == "shm_echo" and error.endpoint == elsewhere.server.url
    assert "Unable to open shared memory region" in error.reason
    message = str(error)
    assert "shared-memory mode is 'on'" in message and "Nothing was sent" in message
    assert "$DP_MODELS_TRITON_SHM=auto" in message and "off (HTTP only)" in message
    assert _segments() == before and not elsewhere.registered()


def test_a_dev_shm_too_small_for_a_request_sends_it_over_http(
    live: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """This host cannot make a segment that large (ENOSPC, as a container's 64 MiB
    /dev/shm): auto sends those requests over HTTP and keeps the smaller ones in shared
    memory; on is an error."""
    real = shm.Segment
    room = 1 << 20

    def small_dev_shm(size: int) -> shm.Segment:
        if size > room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(size)

    monkeypatch.setattr(shm, "Segment", small_dev_shm)
    spec = live.spec("shm_blob")
    before = _segments()
    small, large = _blob_inputs(1, 100, seed=1), _blob_inputs(4, 100_000, seed=2)
    with caplog.at_level(logging.WARNING, logger="dp_models.triton"):
        with live.client("shm_blob") as client:
            _assert_same(client.infer(small), expected_standin_outputs(spec, small))
            [name] = _regions(client)
            for _ in range(2):
                _assert_same(client.infer(large), expected_standin_outputs(spec, large))
            _assert_same(client.infer(small), expected_standin_outputs(spec, small))
            assert _regions(client) == (name,)  # the small ones keep their region
            status = client.shared_memory_status
            assert status.startswith("auto, in use; requests of ") and "over HTTP" in status
            assert "could not make a shared-memory segment" in status
    warned = [r for r in caplog.records if "could not make a shared-memory segment" in r.message]
    assert len(warned) == 1 and "--shm-size" in warned[0].getMessage()
    with live.client("shm_blob", shared_memory="on") as client:
        with pytest.raises(TritonSharedMemoryError, match="could not make a shared-memory"):
            client.infer(large)
    assert _segments() == before


def test_off_never_makes_a_segment(live: Served) -> None:
    before = _segments()
    spec = live.spec("shm_echo")
    with live.client("shm_echo", shared_memory="off") as client:
        inputs = _echo_inputs(4, seed=6)
        _assert_same(client.infer(inputs), expected_standin_outputs(spec, inputs))
        assert client.shared_memory_status == "off" and _regions(client) == ()
        assert "(shared memory off)" in repr(client)
        assert _segments() == before
    assert _segments() == before


# -- deciding the mode -------------------------------------------------------------------------


def test_auto_is_for_loopback_servers_only() -> None:
    spec = PACKAGED["midas_dpt_hybrid_triton"]
    for url in (
        "http://127.0.0.1:8000",
        "http://127.0.0.9:1",
        "http://[::1]:8000",
        "http://localhost:8000,http://127.0.0.2:8000",
    ):
        assert TritonClient(spec, url).shared_memory_status == "auto, not used yet"
    for url in (
        "http://10.0.0.7:8000",
        "http://triton:8000",
        "http://127.0.0.1:8000,http://triton-b:8000",  # every replica must be loopback
    ):
        client = TritonClient(spec, url)
        assert client.shared_memory == "auto" and client.shared_memory_status == "off"
    # on: the operator says the server shares this host, whatever its URL
    assert TritonClient(spec, "http://triton:8000", shared_memory="on").shared_memory_status == (
        "on, not used yet"
    )
    assert TritonClient(spec, "http://127.0.0.1:1", shared_memory="OFF").shared_memory == "off"
    with pytest.raises(ConfigurationError, match="one of auto, on, off, not 'maybe'"):
        TritonClient(spec, "http://127.0.0.1:1", shared_memory="maybe")


def test_mode_settings_argument_then_environment_then_auto(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Settings.resolve().triton_shared_memory == {}
    monkeypatch.setenv(ENV_TRITON_SHM, " Off ")
    monkeypatch.setenv(ENV_TRITON_SHM + "_GPU_LARGE", "on")
    s = Settings.resolve()
    assert s.triton_shared_memory == {"default": "off", "gpu_large": "on"}
    assert s.shown()["triton_shared_memory"] == {"default": "off", "gpu_large": "on"}
    assert resolve_triton_shared_memory() == {"default": "off", "gpu_large": "on"}
    given = Settings.resolve(triton_shared_memory={"default": "auto"})
    assert given.triton_shared_memory == {"default": "auto"}
    assert ENV_TRITON_SHM in ENV_VARS
    assert triton_shm_variable("default") == "DP_MODELS_TRITON_SHM"
    assert triton_shm_variable("gpu_large") == "DP_MODELS_TRITON_SHM_GPU_LARGE"
    # what the manager hands its clients
    root = tmp_path / "root"
    root.mkdir()
    mm = ModelManager(root, triton_endpoints={"default": "http://127.0.0.1:1"})
    assert mm.triton_shared_memory == {"default": "off", "gpu_large": "on"}
    assert mm.get("midas_dpt_hybrid_triton").client().shared_memory == "off"
    assert mm.get("midas_dpt_hybrid_triton").client(shared_memory="on").shared_memory == "on"
    mm = ModelManager(
        root,
        triton_endpoints={"default": "http://127.0.0.1:1"},
        triton_shared_memory={"default": "on"},
    )
    assert mm.get("midas_dpt_hybrid_triton").client().shared_memory == "on"


@pytest.mark.parametrize(
    ("variable", "value"),
    [(ENV_TRITON_SHM, "yes"), (ENV_TRITON_SHM + "_ASR", "shm")],
)
def test_a_bad_mode_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=rf"\${variable}: .*one of auto, on, off"):
        Settings.resolve()
    problems: dict[str, Any] = {}
    Settings.resolve(problems=problems)
    assert list(problems) == ["triton_shared_memory"]
    with pytest.raises(ConfigurationError, match=r"triton_shared_memory\['default'\]"):
        Settings.resolve(triton_shared_memory={"default": "sometimes"})


def test_the_in_memory_transport_is_told_the_output_sizes_and_released() -> None:
    spec = PACKAGED["midas_dpt_hybrid_triton"]
    digest = hashlib.sha256(b"fake").hexdigest()
    fake = FakeTransport.serving(spec, served_digest=digest)
    client = TritonClient(spec, "http://127.0.0.1:8000", expected_digest=digest, transport=fake)
    inputs = {"image": np.zeros((2, 3, 384, 384), np.float32)}
    assert client.infer(inputs)["depth"].shape == (2, 384, 384)
    assert client._output_nbytes(inputs) == {"depth": 2 * 384 * 384 * 4}
    assert client.shared_memory_status == "off"
    client.close()
    assert fake.releases == 1


# -- segments ----------------------------------------------------------------------------------


def test_region_sizes() -> None:
    assert shm.region_size(1) == shm.MIN_REGION_BYTES
    for nbytes in (70_000, 1 << 20, (1 << 20) + 1, 19_660_800, 123_456_789):
        size = shm.region_size(nbytes)
        assert nbytes <= size <= nbytes * 1.125 + 1
    assert shm.aligned(1) == shm.ALIGNMENT and shm.aligned(64) == 64


def test_a_segment_is_private_and_a_full_dev_shm_is_an_error_not_a_crash(tmp_path: Path) -> None:
    segment = shm.Segment(1 << 16)
    try:
        assert segment.name.startswith(OURS) and segment.key == "/" + segment.name
        assert (segment.path.stat().st_mode & 0o777) == 0o600
        array = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]  # strided
        segment.write(128, array)
        copy = segment.read(128, array.dtype, array.shape)
        np.testing.assert_array_equal(copy, array)
        assert copy.flags.owndata
    finally:
        segment.close()
    assert not segment.path.exists()
    segment.close()  # twice: nothing
    # a /dev/shm too small for the region (a container's default is 64 MiB): an OSError
    # when it is made, nothing left behind; never a SIGBUS when a tensor is written
    script = textwrap.dedent(
        """
        import os, sys
        from dp_models.triton import shm
        try:
            shm.Segment(8 << 20)
        except OSError as exc:
            print("refused", exc.errno, sorted(os.listdir("/dev/shm")))
        """
    )
    done = subprocess.run(
        [*PRIVATE_SHM, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "28", "[]"]  # ENOSPC, nothing left
