"""Fault injection against a real Triton server (the permanent adversarial suite).

One ``tritonserver`` for the module serves a Python-backend stand-in of one small spec;
a :class:`~dp_models.testing.faults.FaultProxy` between it and the client delays, stalls
or cuts the answers, and the server is killed and restarted, with the same or with other
weights. Every fault must end in a typed :class:`~dp_models._errors.TritonError` within the
configured timeouts (each scenario runs on a thread with a hard deadline, so that a hang
fails the test instead of hanging the suite), the same client must recover once the
server is back, and other weights must never be served unchecked.
"""

from __future__ import annotations

import hashlib
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import (
    ConfigurationError,
    FaultProxyError,
    TritonDigestMismatchError,
    TritonError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from dp_models._health import HealthStatus
from dp_models._settings import (
    ENV_TRITON_TIMEOUT,
    TRITON_CLIENT_DEFAULTS,
    resolve_triton_options,
    triton_timeout_variable,
)
from dp_models._spec import Spec
from dp_models.testing.faults import FaultProxy
from dp_models.testing.triton import (
    TritonServer,
    expected_standin_outputs,
    write_standin_repository,
)
from dp_models.triton.client import TritonClient
from dp_models.triton.transport import HTTPTransport

from .bounded import bounded

pytestmark = pytest.mark.adversarial

_T = TypeVar("_T")
_E = TypeVar("_E", bound=TritonError)

WEIGHTS = hashlib.sha256(b"fault_echo weights, as pinned").hexdigest()
OTHER_WEIGHTS = hashlib.sha256(b"fault_echo weights, swapped").hexdigest()
#: A hung scenario fails after this long instead of hanging the suite.
DEADLINE_S = 60.0
#: Slack on top of a configured timeout: thread start, a loaded machine, a last probe.
MARGIN_S = 3.0
#: Small timeouts, so that each fault ends in seconds.
FAST: dict[str, Any] = {
    "connection_timeout_s": 1.0,
    "network_timeout_s": 1.5,
    "ready_timeout_s": 1.5,
    "retries": 2,
    "backoff_s": 0.05,
}

SPEC_YAML = textwrap.dedent(
    f"""\
    name: fault_echo
    version: "1"
    family: test
    role: test
    users: [VisualProcessor/test]
    runtime: triton
    engine: python
    triton:
      model_name: fault_echo
      model_version: 1
      platform: python
      max_batch_size: 4
      require_weights_digest: true
      weights_digest: {WEIGHTS}
      inputs:
        - {{name: x, datatype: FP32, shape: [-1]}}
      outputs:
        - {{name: y, datatype: FP32, shape: [2]}}
    """
)


@dataclass
class Served:
    server: TritonServer
    repo: Path
    catalog_dir: Path
    root: Path
    serving: str = WEIGHTS

    @property
    def spec(self) -> Spec:
        return Catalog.load(self.catalog_dir)["fault_echo"]

    def serve(self, digest: str) -> None:
        """Kill the server and start it again on the same port, serving ``digest``."""
        self.server.kill()
        write_standin_repository(
            Catalog.load(self.catalog_dir), self.repo, ["fault_echo"], digest_override=digest
        )
        self.serving = digest
        self.server.start()

    def client(self, url: str | None = None, **options: Any) -> TritonClient:
        return TritonClient(
            self.spec, url or self.server.url, expected_digest=WEIGHTS, **{**FAST, **options}
        )


@pytest.fixture(scope="module")
def served_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("triton_faults")
    (base / "catalog/visual").mkdir(parents=True)
    (base / "catalog/visual/fault_echo.yaml").write_text(SPEC_YAML)
    (base / "root").mkdir()
    repo = base / "repo"
    write_standin_repository(Catalog.load(base / "catalog"), repo, ["fault_echo"])
    server = TritonServer(stop_timeout_s=1.0).start(repo)
    try:
        yield Served(server, repo, base / "catalog", base / "root")
    finally:
        server.kill()


@pytest.fixture
def served(served_module: Served) -> Served:
    """The module's server, running and serving the pinned weights (a test before may
    have killed it or swapped its weights)."""
    if served_module.serving != WEIGHTS:
        served_module.serve(WEIGHTS)
    elif not served_module.server.running:
        served_module.server.start()
    return served_module


@pytest.fixture
def proxy(served: Served) -> Iterator[FaultProxy]:
    with FaultProxy(served.server.address) as proxy:
        yield proxy


def _inputs(batch: int = 2, length: int = 8, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, length)).astype(np.float32)}


def _assert_answer(spec: Spec, got: dict[str, Any], inputs: dict[str, Any]) -> None:
    want = expected_standin_outputs(spec, inputs)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6)


@dataclass
class Outcome:
    error: BaseException | None
    elapsed_s: float


def _bounded(fn: Callable[[], _T]) -> _T:
    """``fn()`` on a thread (the client lives there alone), bounded by :data:`DEADLINE_S`."""
    return bounded(fn, deadline_s=DEADLINE_S)


def _timed(fn: Callable[[], object]) -> Outcome:
    """How ``fn()`` (run on the scenario's thread) ended: its exception and how long it took."""
    began = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return Outcome(exc, time.monotonic() - began)
    return Outcome(None, time.monotonic() - began)


def _typed(outcome: Outcome, kind: type[_E]) -> _E:
    """The error ``outcome`` ended with, which must be a ``kind`` (not, say, an error of
    tritonclient or geventhttpclient let through)."""
    error = outcome.error
    assert error is not None, "the fault went unnoticed"
    assert isinstance(error, kind), f"{type(error).__module__}.{type(error).__name__}: {error}"
    return error


# -- a slow or stalled server ---------------------------------------------------------------------


def test_a_slow_answer_is_a_timeout_error_within_the_network_timeout(
    served: Served, proxy: FaultProxy
) -> None:
    inputs = _inputs()

    def scenario() -> tuple[Outcome, dict[str, Any]]:
        with served.client(proxy.url, backoff_s=0.5) as client:
            assert client.check().ok
            proxy.delay(30.0)
            outcome = _timed(lambda: client.infer(inputs))
            proxy.heal()
            return outcome, client.infer(inputs)  # the same client, once answers come again

    outcome, answer = _bounded(scenario)
    error = _typed(outcome, TritonTimeoutError)
    assert isinstance(error, TimeoutError) and isinstance(error, ConnectionError)
    assert error.option == "network_timeout_s" and error.timeout_s == FAST["network_timeout_s"]
    assert "no answer within 1.5 s (network_timeout_s)" in str(error)
    assert f"${ENV_TRITON_TIMEOUT}=network=SECONDS" in str(error)
    assert "not sent again" in str(error)
    # not retried: a slow server gets one request, and the caller one timeout
    assert outcome.elapsed_s < FAST["network_timeout_s"] + MARGIN_S
    _assert_answer(served.spec, answer, inputs)


def test_a_stalled_server_bounds_the_first_call_by_the_readiness_deadline(
    served: Served, proxy: FaultProxy
) -> None:
    """A server that accepts connections and never answers: each readiness probe is cut
    at the readiness deadline, not left to the (long) network timeout."""
    proxy.stall()

    def scenario() -> Outcome:
        with served.client(proxy.url, network_timeout_s=30.0, ready_timeout_s=1.0) as client:
            return _timed(lambda: client.infer(_inputs()))

    outcome = _bounded(scenario)
    error = _typed(outcome, TritonUnavailableError)
    assert "not ready within 1 s: no answer within" in str(error)
    assert outcome.elapsed_s < 1.0 + FAST["connection_timeout_s"] + MARGIN_S


def test_refused_connections_are_unavailable_within_the_readiness_deadline(
    served: Served, proxy: FaultProxy
) -> None:
    proxy.refuse()

    def scenario() -> Outcome:
        with served.client(proxy.url, ready_timeout_s=1.0) as client:
            return _timed(lambda: client.infer(_inputs()))

    outcome = _bounded(scenario)
    error = _typed(outcome, TritonUnavailableError)
    assert not isinstance(error, TritonTimeoutError)
    assert "not ready within 1 s: no connection" in str(error)
    assert outcome.elapsed_s < 1.0 + MARGIN_S


# -- answers cut short ---------------------------------------------------------------------------


def test_answers_cut_anywhere_are_typed_errors_and_the_client_recovers(
    served: Served, proxy: FaultProxy
) -> None:
    inputs = _inputs(batch=4, length=64)

    def scenario() -> list[tuple[int, Outcome]]:
        outcomes = []
        # the tensors in the HTTP answer, to cut it there too (tests/test_triton_shm.py cuts
        # the answers of requests with their tensors in shared memory)
        with served.client(proxy.url, ready_timeout_s=1.0, shared_memory="off") as client:
            assert client.check().ok
            before = proxy.answered
            client.infer(inputs)
            size = proxy.answered - before  # the bytes of one inference answer
            assert size > 100
            # in the status line, the headers, the JSON header of the body, the tensor data
            for cut in (0, 5, 40, size - 40, size - 1):
                proxy.cut_after(cut)
                outcomes.append((cut, _timed(lambda: client.infer(inputs))))
                proxy.heal()
                _assert_answer(served.spec, client.infer(inputs), inputs)
        return outcomes

    for cut, outcome in _bounded(scenario):
        error = _typed(outcome, TritonUnavailableError)
        assert "attempt(s)" in str(error) or "not ready within" in str(error), (cut, error)
        bound = (FAST["retries"] + 1) * (1.0 + FAST["connection_timeout_s"]) + MARGIN_S
        assert outcome.elapsed_s < bound, (cut, outcome.elapsed_s)


# -- the server killed and restarted ---------------------------------------------------------------


def test_a_server_killed_mid_request_is_unavailable_then_the_client_recovers(
    served: Served, proxy: FaultProxy
) -> None:
    inputs = _inputs(batch=4, length=4096, seed=3)
    spec = served.spec

    def scenario() -> tuple[Outcome, bool, dict[str, Any], dict[str, Any]]:
        with served.client(proxy.url, ready_timeout_s=1.0) as client:
            _assert_answer(spec, client.infer(inputs), inputs)
            proxy.stall()  # the server runs the next request; its answer is held back
            killer = threading.Timer(0.5, served.server.kill)
            killer.start()
            outcome = _timed(lambda: client.infer(inputs))
            killer.join()
            report = client.check()
            served.server.start()  # the same weights, on the same port
            proxy.heal()
            return outcome, report.ok, client.infer(inputs), client.check()

    outcome, ok_while_down, answer, report = _bounded(scenario)
    error = _typed(outcome, TritonUnavailableError)
    assert proxy.url in str(error)
    assert outcome.elapsed_s < 0.5 + FAST["backoff_s"] * 4 + 1.0 + MARGIN_S
    assert not ok_while_down
    _assert_answer(spec, answer, inputs)  # recovered: same client, same weights
    assert report.ok and report.served_digest_verified is True


@pytest.mark.parametrize("hook", [True, False], ids=["pool-hook", "no-pool-hook"])
def test_a_restart_with_other_weights_between_requests_is_caught(
    served: Served, hook: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed and restarted while the client is idle: its next request opens a new
    connection, which must not reach the new server before it is checked (where the
    connection pool cannot report new connections, the client checks every time)."""
    if not hook:
        monkeypatch.setattr(HTTPTransport, "_watch", lambda self, client: None)
    mm = ModelManager(
        served.root, served.catalog_dir, triton_endpoints={"default": served.server.url}
    )
    handle = mm.get("fault_echo")
    inputs = _inputs()

    def scenario() -> tuple[Outcome, Outcome, dict[str, Any]]:
        with handle.client(**FAST) as client:
            _assert_answer(handle.spec, client.infer(inputs), inputs)
            served.serve(OTHER_WEIGHTS)
            first = _timed(lambda: client.infer(inputs))
            again = _timed(lambda: client.infer(inputs))  # and every request after
            return first, again, client.check()

    first, again, report = _bounded(scenario)
    for outcome in (first, again):
        error = _typed(outcome, TritonDigestMismatchError)
        assert (error.expected, error.actual) == (WEIGHTS, OTHER_WEIGHTS)
    assert not report.ok and report.served_digest_verified is False
    assert report.status is HealthStatus.SERVED_DIGEST_MISMATCH
    assert report.served_digest == OTHER_WEIGHTS
    entry = next(e for e in mm.models_used() if e["name"] == "fault_echo")
    assert entry["triton"]["served_digest_verified"] is False


def test_a_restart_with_other_weights_during_the_retries_is_caught(
    served: Served, proxy: FaultProxy
) -> None:
    """The server dies under a request and comes back with other weights while the client
    backs off: the retry must check the deployment before it resends."""
    inputs = _inputs()

    def swap() -> None:
        served.server.kill()
        proxy.heal()
        served.serve(OTHER_WEIGHTS)

    def scenario() -> Outcome:
        # backoff 1, 2, 4 s: the server is back before the retries run out
        with served.client(proxy.url, retries=3, backoff_s=1.0, ready_timeout_s=20.0) as client:
            _assert_answer(served.spec, client.infer(inputs), inputs)
            proxy.stall()
            swapper = threading.Timer(0.3, swap)
            swapper.start()
            outcome = _timed(lambda: client.infer(inputs))
            swapper.join()
            return outcome

    error = _typed(_bounded(scenario), TritonDigestMismatchError)
    assert error.actual == OTHER_WEIGHTS


# -- configuration -----------------------------------------------------------------------------


def test_timeouts_come_from_the_endpoint_configuration(
    served: Served, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TRITON_TIMEOUT, "connect=1, network=1, ready=0.5, retries=0")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT + "_GPU_LARGE", "network=120")
    mm = ModelManager(served.root, served.catalog_dir, triton_endpoints={"default": proxy.url})
    assert mm.triton_timeouts == {
        "default": {
            "connection_timeout_s": 1.0,
            "network_timeout_s": 1.0,
            "ready_timeout_s": 0.5,
            "retries": 0,
        },
        "gpu_large": {"network_timeout_s": 120.0},
    }
    handle = mm.get("fault_echo")
    client = handle.client(backoff_s=0.1)
    assert (client.network_timeout_s, client.ready_timeout_s, client.retries) == (1.0, 0.5, 0)
    assert client.backoff_s == 0.1  # an argument wins over the configuration
    assert handle.client(network_timeout_s=7.0).network_timeout_s == 7.0

    def scenario() -> Outcome:
        with client:
            assert client.check().ok
            proxy.delay(30.0)
            return _timed(lambda: client.infer(_inputs()))

    outcome = _bounded(scenario)
    error = _typed(outcome, TritonTimeoutError)
    assert error.timeout_s == 1.0
    assert outcome.elapsed_s < 1.0 + MARGIN_S
    # an argument replaces the environment
    mm2 = ModelManager(
        served.root,
        served.catalog_dir,
        triton_endpoints={"default": proxy.url},
        triton_timeouts={"default": {"network_timeout_s": 2}},
    )
    assert mm2.triton_timeouts == {"default": {"network_timeout_s": 2.0}}
    assert mm2.get("fault_echo").client().connection_timeout_s == 5.0  # the default


def test_the_documented_defaults_are_the_clients() -> None:
    import inspect

    parameters = inspect.signature(TritonClient).parameters
    for name, value in TRITON_CLIENT_DEFAULTS.items():
        assert parameters[name].default == value, name
    assert triton_timeout_variable("default") == "DP_MODELS_TRITON_TIMEOUT"
    assert triton_timeout_variable("gpu_large") == "DP_MODELS_TRITON_TIMEOUT_GPU_LARGE"


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("network=0", "network_timeout_s must be a finite number of seconds > 0, got '0'"),
        ("connect=-1", "connection_timeout_s must be a finite number of seconds > 0"),
        ("ready=soon", "ready_timeout_s must be a finite number of seconds >= 0, got 'soon'"),
        ("ready=nan", "ready_timeout_s must be a finite number"),
        ("network=inf", "network_timeout_s must be a finite number"),
        ("retries=1.5", "retries must be a whole number >= 0, got '1.5'"),
        ("retries=-1", "retries must be a whole number >= 0"),
        ("backoff=-0.1", "backoff_s must be a finite number of seconds >= 0"),
        ("30", "expected comma-separated key=value pairs such as 'ready=10,network=30'"),
        ("timeout=3", "keys: connect, network, ready, retries, backoff"),
        ("network=1,,ready=2", "expected comma-separated key=value pairs"),
    ],
)
def test_bad_timeouts_in_the_environment_are_configuration_errors(
    value: str, phrase: str, monkeypatch: pytest.MonkeyPatch, served: Served
) -> None:
    monkeypatch.setenv(ENV_TRITON_TIMEOUT + "_EDGE", value)
    with pytest.raises(ConfigurationError) as info:
        resolve_triton_options()
    assert "$DP_MODELS_TRITON_TIMEOUT_EDGE" in str(info.value)
    assert phrase in str(info.value)
    with pytest.raises(ConfigurationError):  # at configuration time: the manager refuses it
        ModelManager(served.root, served.catalog_dir, triton_endpoints={})


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"network_timeout_s": 0}, "network_timeout_s must be a finite number of seconds > 0"),
        ({"network_timeout_s": "fast"}, "got 'fast'"),
        ({"ready_timeout_s": -1}, "ready_timeout_s must be a finite number of seconds >= 0"),
        ({"retries": True}, "retries must be a whole number >= 0, got True"),
        ({"timeout_s": 3}, "unknown Triton client option 'timeout_s'"),
    ],
)
def test_bad_timeouts_as_arguments_are_configuration_errors(
    options: dict[str, Any], phrase: str, served: Served
) -> None:
    with pytest.raises(ConfigurationError, match=phrase) as info:
        ModelManager(
            served.root,
            served.catalog_dir,
            triton_endpoints={},
            triton_timeouts={"default": options},
        )
    assert "triton_timeouts['default']" in str(info.value)
    if "timeout_s" not in options:
        with pytest.raises(ConfigurationError, match=phrase):
            TritonClient(served.spec, served.server.url, **options)


# -- the proxy itself -----------------------------------------------------------------------------


def test_the_fault_proxy_stops_for_sure_and_only_forwards_to_loopback(served: Served) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        FaultProxy("192.0.2.1:8000")
    with pytest.raises(ValueError, match="'host:port'"):
        FaultProxy("http://127.0.0.1:8000")
    proxy = FaultProxy(served.server.address).start()
    try:
        proxy.stall()

        def held() -> Outcome:
            with served.client(proxy.url, network_timeout_s=30.0) as client:
                return _timed(client.check)

        box: list[Outcome] = []
        waiter = threading.Thread(target=lambda: box.append(_bounded(held)), daemon=True)
        waiter.start()
        deadline = time.monotonic() + 10.0
        while proxy.open_connections == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.open_connections >= 1
    finally:
        proxy.stop()
    waiter.join(DEADLINE_S)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fault-proxy")]
    assert proxy.open_connections == 0
    proxy.stop()  # twice is fine
    with pytest.raises(FaultProxyError, match="already running"):
        with FaultProxy(served.server.address) as again:
            again.start()


def test_dp_models_env_shows_the_timeout_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dp_models._cli import main

    monkeypatch.setenv(ENV_TRITON_TIMEOUT, "ready=2")
    monkeypatch.setenv(ENV_TRITON_TIMEOUT + "_GPU_LARGE", "network=300")
    assert main(["env", "--json"]) == 0
    environment = json.loads(capsys.readouterr().out)["environment"]
    assert environment[ENV_TRITON_TIMEOUT] == "ready=2"
    assert environment[ENV_TRITON_TIMEOUT + "_GPU_LARGE"] == "network=300"
