"""Every replica checked: a Triton endpoint with several replicas (URLs separated by
commas, or a host name resolved to several addresses in DNS mode), against real
``tritonserver`` processes on loopback.

Two servers, started once for the module: ``good`` on 127.0.0.1 serves the stand-in with
the weights digest the catalog expects; ``other`` on 127.0.0.2, at the same port, serves
the same model with other weights (another ``weights_digest`` in its config), the replica
a load balancer would hide. A fault proxy in front of ``good`` is a second good replica
that can be taken down. DNS mode resolves ``localhost`` through the resolver seam
(``dp_models.triton.transport.resolve_addresses``) to the two servers' addresses; nothing
else is replaced, and nothing leaves loopback.

The client's failover logic without a server (order, sticking to a replica, a replica
back with other weights) is at the end, through the in-memory transport.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dp_models import ConfigurationError, ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import (
    DeadlineError,
    ServerAnswerError,
    TritonDigestMismatchError,
    TritonInferenceError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from dp_models._health import HealthStatus
from dp_models._settings import ENV_TRITON_REPLICAS, ENV_TRITON_URL
from dp_models._spec import Spec
from dp_models._urls import EndpointURL
from dp_models.testing import run_cli
from dp_models.testing.faults import FaultProxy
from dp_models.testing.triton import (
    TritonServer,
    expected_standin_outputs,
    write_standin_repository,
)
from dp_models.testing.triton_transport import FakeTransport
from dp_models.triton import transport as triton_transport
from dp_models.triton.client import TritonClient
from dp_models.triton.transport import HTTPTransport

NAME = "rp_echo"
WEIGHTS = hashlib.sha256(b"rp_echo weights").hexdigest()
OTHER_WEIGHTS = hashlib.sha256(b"rp_echo other weights").hexdigest()
#: Nothing listens there: connections are refused at once (loopback only).
CLOSED = "http://127.0.0.1:1"
CLOSED_TOO = "http://127.0.0.3:1"
FAST: dict[str, Any] = {"ready_timeout_s": 0.5, "retries": 0, "backoff_s": 0.0}

SPEC_YAML = f"""\
name: {NAME}
version: "1"
family: test
role: test
users: [VisualProcessor/test]
runtime: triton
engine: python
triton:
  model_name: {NAME}
  model_version: 1
  platform: python
  max_batch_size: 2
  weights_digest: {WEIGHTS}
  inputs:
    - {{name: x, datatype: FP32, shape: [4]}}
  outputs:
    - {{name: y, datatype: FP32, shape: [2]}}
"""


@dataclass
class Replicas:
    good: TritonServer
    other: TritonServer
    proxy: FaultProxy
    catalog_dir: Path
    root: Path

    @property
    def port(self) -> int:
        return self.good.http_port

    @property
    def other_url(self) -> str:
        return self.other.url

    def manager(self, url: str, **options: Any) -> ModelManager:
        return ModelManager(
            models_root=self.root,
            catalog=self.catalog_dir,
            triton_endpoints={"default": url},
            **options,
        )

    def doctor(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run_cli(
            ["doctor", "--catalog", str(self.catalog_dir), "--root", str(self.root), *argv]
        )
        out, err = capsys.readouterr()
        return code, out + err


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    base = tmp_path_factory.mktemp("replicas")
    catalog_dir = base / "catalog"
    (catalog_dir / "visual").mkdir(parents=True)
    (catalog_dir / "visual" / f"{NAME}.yaml").write_text(SPEC_YAML)
    catalog = Catalog.load(catalog_dir)
    served = write_standin_repository(catalog, base / "good")
    assert served == {NAME: WEIGHTS}  # the weights the catalog expects
    write_standin_repository(catalog, base / "other", digest_override=OTHER_WEIGHTS)
    root = base / "root"
    root.mkdir()
    good = TritonServer(stop_timeout_s=1.0).start(base / "good")
    other = TritonServer(host="127.0.0.2", stop_timeout_s=1.0)
    # the same port on another loopback address: one host name, two addresses (DNS mode)
    other.http_port, other.grpc_port, other.metrics_port = (
        good.http_port,
        good.grpc_port,
        good.metrics_port,
    )
    try:
        other.start(base / "other")
        with FaultProxy(good.address) as proxy:
            yield Replicas(good, other, proxy, catalog_dir, root)
    finally:
        good.kill()
        other.kill()


@pytest.fixture
def proxy(replicas: Replicas) -> Iterator[FaultProxy]:
    """The proxy in front of the good server, healed after the test."""
    yield replicas.proxy
    replicas.proxy.heal()


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 4)).astype(np.float32)}


def _assert_standin(mm: ModelManager, got: dict[str, Any], inputs: dict[str, Any]) -> None:
    _assert_standin_of(mm.catalog[NAME], got, inputs)


def _assert_standin_of(spec: Spec, got: dict[str, Any], inputs: dict[str, Any]) -> None:
    want = expected_standin_outputs(spec, inputs)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


def test_the_two_servers_serve_the_same_model_with_other_weights(replicas: Replicas) -> None:
    assert replicas.good.url == f"http://127.0.0.1:{replicas.port}"
    assert replicas.other.url == f"http://127.0.0.2:{replicas.port}"
    for url, digest in ((replicas.good.url, WEIGHTS), (replicas.other.url, OTHER_WEIGHTS)):
        report = replicas.manager(url).get(NAME).client().check()
        assert report.served_digest == digest
        assert [r.endpoint for r in report.replicas] == [url]


# -- doctor and ModelManager.check: every replica, each reported ---------------------------


def test_doctor_names_the_replica_that_serves_other_weights(
    replicas: Replicas, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = replicas.good.url, replicas.other_url
    listed = f"{good},{bad}"
    code, out = replicas.doctor(capsys, "--json", "--triton-url", listed)
    assert code == 1, out
    report = json.loads(out)
    assert report["ok"] is False
    [spec] = report["specs"]
    assert spec["status"] == "served_digest_mismatch" and not spec["ok"]
    assert report["triton_endpoints"] == {"default": listed}
    triton = spec["triton"]
    assert triton["endpoint"] == f"{good}, {bad}"
    assert triton["served_digest"] == OTHER_WEIGHTS
    assert [(r["endpoint"], r["status"], r["ok"]) for r in triton["replicas"]] == [
        (good, "served", True),
        (bad, "served_digest_mismatch", False),
    ]
    assert [r["served_digest"] for r in triton["replicas"]] == [WEIGHTS, OTHER_WEIGHTS]
    assert triton["replicas"][1]["served_digest_verified"] is False
    assert f"1 of 2 replicas of Triton model {NAME!r}" in spec["message"]
    assert f"not ok: {bad} (served_digest_mismatch)" in spec["message"]
    assert (
        f"at {bad} (spec {NAME!r}) serves weights with digest {OTHER_WEIGHTS}" in (spec["message"])
    )
    assert good not in spec["message"].splitlines()[0]
    assert "triton export" in spec["fix"]
    # the table, configured through the environment: one line per replica
    replicas_env = f"{bad}, {good}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_TRITON_URL, replicas_env)
        code, out = replicas.doctor(capsys)
    assert code == 1
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(NAME))
    assert lines[row].split()[2] == "SERVED_DIGEST_MISMATCH"
    assert lines[row + 1].split() == ["SERVED_DIGEST_MISMATCH", "replica", bad]
    assert lines[row + 2].split() == ["served", "replica", good]
    assert f"not ok: {bad} (served_digest_mismatch)" in out


def test_manager_check_reports_each_replica(replicas: Replicas) -> None:
    good, bad = replicas.good.url, replicas.other_url
    mm = replicas.manager(f"{good},{bad}")
    mm.get(NAME)
    health = mm.check()
    assert health["ok"] is False
    [report] = health["models"]
    assert report["status"] == "served_digest_mismatch"
    assert report["error_type"] == "TritonDigestMismatchError"
    assert [(r["endpoint"], r["status"]) for r in report["replicas"]] == [
        (good, "served"),
        (bad, "served_digest_mismatch"),
    ]
    assert bad in report["error"]
    # what the check found is recorded: one replica serves other weights
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is False
    assert entry["triton"]["endpoint"] == f"{good},{bad}"


def test_every_replica_good_is_ok_and_answers(
    replicas: Replicas, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = f"{replicas.good.url},{proxy.url}"
    code, out = replicas.doctor(capsys, "--json", "--triton-url", listed)
    assert code == 0, out
    [spec] = json.loads(out)["specs"]
    assert spec["status"] == "served" and spec["message"] == ""
    assert [(r["endpoint"], r["status"]) for r in spec["triton"]["replicas"]] == [
        (replicas.good.url, "served"),
        (proxy.url, "served"),
    ]
    mm = replicas.manager(listed)
    handle = mm.get(NAME)
    health = mm.check()
    assert health["ok"] is True
    assert [r["ok"] for r in health["models"][0]["replicas"]] == [True, True]
    with handle.client() as client:
        assert client.replicas == (replicas.good.url, proxy.url)
        inputs = _inputs(2, seed=1)
        _assert_standin(mm, client.infer(inputs), inputs)
        report = client.check()
    assert report.ok and report.status is HealthStatus.SERVED and report.live
    assert report.served_digest == WEIGHTS
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is True


def test_a_replica_down_is_reported_and_inference_fails_over(
    replicas: Replicas, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    good = replicas.good.url
    # the proxy replica answers first, then goes down: requests move to the good server
    mm = replicas.manager(f"{proxy.url},{good}")
    with mm.get(NAME).client(**FAST) as client:
        inputs = _inputs(2, seed=2)
        _assert_standin(mm, client.infer(inputs), inputs)
        proxy.refuse()
        proxy.drop_connections()
        inputs = _inputs(1, seed=3)
        _assert_standin(mm, client.infer(inputs), inputs)
        tried = proxy.accepted
        inputs = _inputs(1, seed=4)
        _assert_standin(mm, client.infer(inputs), inputs)
        assert proxy.accepted == tried  # straight to the replica in use: the proxy not tried
        report = client.check()
    assert not report.ok and report.status is HealthStatus.UNAVAILABLE
    assert [(r.endpoint, r.status, r.ok) for r in report.replicas] == [
        (proxy.url, HealthStatus.UNAVAILABLE, False),
        (good, HealthStatus.SERVED, True),
    ]
    assert f"not ok: {proxy.url} (unavailable)" in (report.error or "")
    assert report.live is False
    # doctor: a dead replica costs one wait, and is named
    code, out = replicas.doctor(
        capsys, "--json", "--triton-url", f"{CLOSED},{good}", "--triton-timeout", "0.5"
    )
    assert code == 1
    [spec] = json.loads(out)["specs"]
    assert spec["status"] == "unavailable"
    statuses = [(r["endpoint"], r["status"], r["live"]) for r in spec["triton"]["replicas"]]
    assert statuses == [(CLOSED, "unavailable", False), (good, "served", True)]
    assert f"not ok: {CLOSED} (unavailable)" in spec["message"]


def test_no_replica_answering_is_one_error_naming_each(replicas: Replicas) -> None:
    mm = replicas.manager(f"{CLOSED},{CLOSED_TOO}")
    with (
        mm.get(NAME).client(**FAST) as client,
        pytest.raises(TritonUnavailableError, match=r"no replica of .* is available") as info,
    ):
        client.infer(_inputs(1))
    message = str(info.value)
    assert f"  - {CLOSED}: not ready within 0.5 s" in message
    assert f"  - {CLOSED_TOO}: not ready within 0.5 s" in message
    assert info.value.endpoint == f"{CLOSED}, {CLOSED_TOO}"


def test_a_replica_with_other_weights_is_an_error_not_skipped(replicas: Replicas) -> None:
    """Failover is for unavailability only: a replica serving other weights stops the call
    (what was verified is what runs)."""
    mm = replicas.manager(f"{replicas.other_url},{replicas.good.url}")
    with (
        mm.get(NAME).client(**FAST) as client,
        pytest.raises(TritonDigestMismatchError, match="serves weights with digest") as info,
    ):
        client.infer(_inputs(1))
    assert info.value.endpoint == replicas.other_url
    assert info.value.actual == OTHER_WEIGHTS


def test_a_dead_replica_is_waited_for_once_across_specs(
    replicas: Replicas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "visual").mkdir(parents=True)
    (catalog / "visual" / f"{NAME}.yaml").write_text(SPEC_YAML)
    twin = SPEC_YAML.replace(f"name: {NAME}\n", f"name: {NAME}_twin\n", 1)
    (catalog / "visual" / f"{NAME}_twin.yaml").write_text(twin)
    argv = ["doctor", "--json", "--catalog", str(catalog), "--root", str(replicas.root)]
    capsys.readouterr()
    code = run_cli(
        [*argv, "--triton-url", f"{replicas.good.url},{CLOSED}", "--triton-timeout", "1"]
    )
    specs = json.loads(capsys.readouterr().out)["specs"]
    assert code == 1
    closed = [next(r for r in s["triton"]["replicas"] if r["endpoint"] == CLOSED) for s in specs]
    assert "not ready within 1 s" in closed[0]["error"]
    assert "not ready within 0 s" in closed[1]["error"]  # known down: not waited for again
    assert all(s["triton"]["replicas"][0]["status"] == "served" for s in specs)


class _Watched(HTTPTransport):
    """The real transport of one replica, with a hook run before each call of the named
    kind (to see a check begin, or to stage a fault at a given step); counts its requests.
    Used from one thread only (as tritonclient.http's gevent client must be)."""

    def __init__(self, url: EndpointURL, hooks: dict[str, Callable[[], None]]) -> None:
        super().__init__(url.address, connection_timeout_s=1.0, read_timeout_s=30.0)
        self.hooks = hooks
        self.requests = 0

    def is_server_live(self, *, timeout_s: float) -> bool:
        self.hooks.get("is_server_live", lambda: None)()
        return super().is_server_live(timeout_s=timeout_s)

    def get_model_metadata(self, model: str, version: str, *, timeout_s: float) -> Any:
        self.hooks.get("get_model_metadata", lambda: None)()
        return super().get_model_metadata(model, version, timeout_s=timeout_s)

    def infer(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray[Any, Any]]:
        self.requests += 1
        return super().infer(*args, **kwargs)


def _watched_client(
    replicas: Replicas, url: str, hooks: dict[str, dict[str, Callable[[], None]]], **options: Any
) -> tuple[TritonClient, dict[str, _Watched]]:
    """A client of the replicas listed in ``url``, over real transports; ``hooks``: by
    replica URL, the hooks of its transport. Returns the client and the transports by URL."""
    made: dict[str, _Watched] = {}

    def transport_of(replica: EndpointURL) -> _Watched:
        made[replica.redacted] = _Watched(replica, hooks.get(replica.redacted, {}))
        return made[replica.redacted]

    spec = replicas.manager(url).catalog[NAME]
    client = TritonClient(spec, url, expected_digest=WEIGHTS, transports=transport_of, **options)
    return client, made


def test_a_replica_whose_checks_time_out_is_passed_over_nothing_sent_to_it(
    replicas: Replicas, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy's replica answers as ready, then its metadata never comes (the proxy
    stalls from that read on): the replica is unavailable, and the request, never sent
    there, goes to the good one."""
    good = replicas.good.url
    client, made = _watched_client(
        replicas,
        f"{proxy.url},{good}",
        {proxy.url: {"get_model_metadata": proxy.stall}},
        network_timeout_s=1.0,
        ready_timeout_s=5.0,
        retries=0,
        backoff_s=0.0,
    )
    inputs = _inputs(2, seed=12)
    with client, caplog.at_level(logging.WARNING, logger="dp_models.triton"):
        got = client.infer(inputs)
        _assert_standin(replicas.manager(good), got, inputs)
        client.infer(inputs)  # the good replica stays in use
    assert (made[proxy.url].requests, made[good].requests) == (0, 2)
    assert (
        f"at {proxy.url}: unavailable (reading the model metadata: no answer within 1 s "
        "(network_timeout_s)); trying another replica"
    ) in caplog.text


def test_a_replica_found_serving_other_weights_stays_recorded_after_the_others_pass(
    replicas: Replicas,
) -> None:
    """check() finds the second replica serving other weights: models_used records False,
    and a request the first replica answers after a new connection (so checked again, and
    good) does not overwrite it."""
    good, bad = replicas.good.url, replicas.other_url
    mm = replicas.manager(f"{good},{bad}")
    with mm.get(NAME).client(**FAST) as client:
        assert client.check().status is HealthStatus.SERVED_DIGEST_MISMATCH
        [entry] = mm.models_used()
        assert entry["triton"]["served_digest_verified"] is False
        client.close()  # a new connection: the first replica is checked again, and passes
        inputs = _inputs(1, seed=13)
        _assert_standin(mm, client.infer(inputs), inputs)
        [entry] = mm.models_used()
        assert entry["triton"]["served_digest_verified"] is False
        assert client.served_digest_verified is False
        assert client.served_digest == OTHER_WEIGHTS


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.adversarial
def test_a_bad_url_in_the_list_is_a_configuration_error_naming_it(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value = f"{replicas.good.url},http://bob:hunter2@127.0.0.2:port"
    with pytest.raises(ConfigurationError, match=r"\(replica 2 of 2\) 'http://\*\*\*@127") as info:
        replicas.manager(value)
    assert "triton_endpoints['default']" in str(info.value)
    assert "hunter2" not in str(info.value) and "bob" not in str(info.value)
    monkeypatch.setenv(ENV_TRITON_URL, value)
    code, out = replicas.doctor(capsys)
    assert code == 1
    assert "$DP_MODELS_TRITON_URL (replica 2 of 2)" in out and "port" in out
    assert "hunter2" not in out and "bob" not in out
    monkeypatch.delenv(ENV_TRITON_URL)
    code, out = replicas.doctor(capsys, "--triton-url", f"{replicas.good.url},127.0.0.2:1")
    assert code == 1 and "--triton-url" in out
    assert "separate whole http(s):// URLs with commas" in out
    with pytest.raises(ConfigurationError, match="transport= carries the calls of one replica"):
        TritonClient(
            replicas.manager(CLOSED).catalog[NAME],
            f"{CLOSED},{CLOSED_TOO}",
            transport=FakeTransport([]),
        )


# -- DNS mode: one name, every address a replica ------------------------------------------------


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The resolver seam: ``localhost`` resolves to the addresses the test sets (one name,
    several replicas); the lookups made are counted under ``"looked up"``."""
    table: dict[str, list[str]] = {"localhost": ["127.0.0.1", "127.0.0.2"], "looked up": []}

    def resolve(host: str, port: int) -> list[str]:
        table["looked up"].append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    monkeypatch.setattr(triton_transport, "resolve_addresses", resolve)
    return table


def test_dns_mode_checks_every_address_of_the_name(
    replicas: Replicas,
    resolved: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = replicas.port
    name_url = f"http://localhost:{port}"
    monkeypatch.setenv(ENV_TRITON_URL, name_url)
    monkeypatch.setenv(ENV_TRITON_REPLICAS, "dns")
    code, out = replicas.doctor(capsys, "--json")
    assert code == 1, out
    report = json.loads(out)
    assert report["triton_replicas"] == {"default": "dns"}
    [spec] = report["specs"]
    assert spec["status"] == "served_digest_mismatch"
    assert spec["triton"]["endpoint"] == name_url
    assert [(r["endpoint"], r["status"]) for r in spec["triton"]["replicas"]] == [
        (f"http://127.0.0.1:{port}", "served"),
        (f"http://127.0.0.2:{port}", "served_digest_mismatch"),
    ]
    assert f"not ok: http://127.0.0.2:{port} (served_digest_mismatch)" in spec["message"]
    # the same through the manager (mm.check looks the name up again)
    mm = ModelManager(models_root=replicas.root, catalog=replicas.catalog_dir)
    assert mm.triton_replicas == {"default": "dns"}
    handle = mm.get(NAME)
    [checked] = mm.check()["models"]
    assert [r["status"] for r in checked["replicas"]] == ["served", "served_digest_mismatch"]
    # the bad address leaves the name: the next check sees one good replica; its client
    # answers from it
    resolved["localhost"] = ["127.0.0.1"]
    health = mm.check()
    assert health["ok"] is True
    assert [r["endpoint"] for r in health["models"][0]["replicas"]] == [f"http://127.0.0.1:{port}"]
    with handle.client(**FAST) as client:
        assert client.replica_mode == "dns"
        inputs = _inputs(2, seed=5)
        _assert_standin(mm, client.infer(inputs), inputs)
        # a new address is a new replica, checked before it answers anything
        resolved["localhost"] = ["127.0.0.2"]
        assert client.resolve() == (f"http://127.0.0.2:{port}",)
        with pytest.raises(TritonDigestMismatchError) as info:
            client.infer(inputs)
        assert info.value.endpoint == f"http://127.0.0.2:{port}"


def test_dns_mode_a_name_that_does_not_resolve_is_unavailable(
    replicas: Replicas, resolved: dict[str, list[str]]
) -> None:
    mm = replicas.manager(
        f"http://no-such-replica.invalid:{replicas.port}", triton_replicas={"default": "dns"}
    )
    mm.get(NAME)
    [report] = mm.check()["models"]
    assert report["status"] == "unavailable" and report["replicas"] == []
    assert "'no-such-replica.invalid' does not resolve" in report["error"]
    with pytest.raises(TritonUnavailableError, match="does not resolve"):
        mm.get(NAME).client(**FAST).infer(_inputs(1))
    assert set(resolved["looked up"]) == {"no-such-replica.invalid"}


def test_dns_mode_takes_one_url(replicas: Replicas) -> None:
    spec = replicas.manager(CLOSED).catalog[NAME]
    with pytest.raises(ConfigurationError, match="resolves the host name of one URL"):
        TritonClient(spec, f"{CLOSED},{CLOSED_TOO}", replicas="dns")
    with pytest.raises(ConfigurationError, match="replicas must be one of urls, dns"):
        TritonClient(spec, CLOSED, replicas="srv")


class _HostRecorder:
    """A loopback HTTP server that records the Host header of each request and answers
    only ``/v2/health/live`` (a server whose model is never ready)."""

    def __init__(self, host: str) -> None:
        self.hosts: list[str | None] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                recorder.hosts.append(self.headers.get("Host"))
                live = self.path == "/v2/health/live"
                self.send_response(200 if live else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def test_dns_mode_sends_the_name_as_host(
    replicas: Replicas, resolved: dict[str, list[str]]
) -> None:
    recorder = _HostRecorder("127.0.0.2")
    try:
        resolved["localhost"] = ["127.0.0.2"]
        spec = replicas.manager(CLOSED).catalog[NAME]
        client = TritonClient(spec, f"http://localhost:{recorder.port}", replicas="dns", **FAST)
        with client:
            report = client.check()
        assert report.status is HealthStatus.UNAVAILABLE  # its model is never ready
        assert [r.endpoint for r in report.replicas] == [f"http://127.0.0.2:{recorder.port}"]
        assert report.replicas[0].live
        assert recorder.hosts and set(recorder.hosts) == {f"localhost:{recorder.port}"}
    finally:
        recorder.close()


# -- the failover logic, without a server --------------------------------------------------------

LOGIC_SPEC = Spec.model_validate(yaml.safe_load(SPEC_YAML))


def _logic_client(fakes: dict[str, FakeTransport], **options: Any) -> TritonClient:
    """A client of replicas ``http://a:1,http://b:1``, each answered by its fake."""

    def transport_of(replica: EndpointURL) -> FakeTransport:
        return fakes[replica.host]

    return TritonClient(
        LOGIC_SPEC,
        "http://a:1,http://b:1",
        expected_digest=WEIGHTS,
        transports=transport_of,
        **{**FAST, "ready_timeout_s": 0.0, **options},
    )


def _serving(digest: str = WEIGHTS) -> FakeTransport:
    return FakeTransport.serving(LOGIC_SPEC, served_digest=digest)


def test_requests_stay_on_the_replica_in_use_and_move_on_when_it_is_down() -> None:
    a, b = _serving(), _serving()
    client = _logic_client({"a": a, "b": b})
    assert client.replicas == ("http://a:1", "http://b:1")
    client.infer(_inputs(1))
    assert (len(a.answered()), len(b.answered())) == (1, 0)
    assert b.calls == []  # a replica is not contacted before it is needed
    a.stop()
    client.infer(_inputs(1))
    assert (len(a.answered()), len(b.answered())) == (1, 1)
    a.restart()
    seen = len(a.calls)
    client.infer(_inputs(1))
    assert len(a.calls) == seen and len(b.answered()) == 2  # stays on the replica in use
    b.stop()
    client.infer(_inputs(1))
    assert len(a.answered()) == 2  # back to a, checked again first
    assert [c.name for c in a.calls[seen:]][:4] == [
        "is_server_live",
        "is_model_ready",
        "get_model_metadata",
        "get_model_config",
    ]


def test_a_replica_back_with_other_weights_stops_the_call() -> None:
    a, b = _serving(), _serving()
    seen: list[bool | None] = []
    client = _logic_client({"a": a, "b": b}, on_verified=seen.append)
    client.infer(_inputs(1))
    a.restart(served_digest=OTHER_WEIGHTS)
    with pytest.raises(TritonDigestMismatchError) as info:
        client.infer(_inputs(1))
    assert info.value.endpoint == "http://a:1" and info.value.actual == OTHER_WEIGHTS
    assert b.calls == []  # never skipped for another replica
    assert seen == [True, False]


def test_check_reports_each_replica_and_records_the_worst() -> None:
    a, b = _serving(), _serving(OTHER_WEIGHTS)
    seen: list[bool | None] = []
    client = _logic_client({"a": a, "b": b}, on_verified=seen.append)
    report = client.check()
    assert [(r.endpoint, r.status) for r in report.replicas] == [
        ("http://a:1", HealthStatus.SERVED),
        ("http://b:1", HealthStatus.SERVED_DIGEST_MISMATCH),
    ]
    assert report.status is HealthStatus.SERVED_DIGEST_MISMATCH and not report.ok
    assert report.served_digest == OTHER_WEIGHTS and report.live
    assert seen == [False]  # one verdict per check: a replica serves other weights
    b.restart(served_digest=WEIGHTS)
    report = client.check()
    assert report.ok and report.status is HealthStatus.SERVED and report.error is None
    assert seen == [False, True]
    b.restart(served_digest=None)  # one replica publishes none: the spec requires one
    report = client.check()
    assert report.status is HealthStatus.SERVED_DIGEST_MISMATCH
    assert "http://b:1 (served_digest_mismatch)" in (report.error or "")
    assert "does not publish a 'weights_digest'" in (report.replicas[1].error or "")
    assert seen == [False, True, False]


def test_a_timeout_and_an_error_answer_are_not_sent_elsewhere() -> None:
    a, b = _serving(), _serving()
    client = _logic_client({"a": a, "b": b})
    client.infer(_inputs(1))
    a.fail("infer", DeadlineError("no complete answer"))
    with pytest.raises(TritonTimeoutError) as timeout:
        client.infer(_inputs(1))
    assert timeout.value.endpoint == "http://a:1"
    a.fail("infer", ServerAnswerError("out of memory"))
    with pytest.raises(TritonInferenceError, match=r"at http://a:1 .*out of memory"):
        client.infer(_inputs(1))
    assert b.calls == []


def test_no_replica_up_names_each_and_why() -> None:
    a, b = FakeTransport([], up=False), FakeTransport([], up=False)
    client = _logic_client({"a": a, "b": b})
    with pytest.raises(TritonUnavailableError, match=r"\(2 tried\)") as info:
        client.infer(_inputs(1))
    lines = str(info.value).splitlines()
    assert lines[1].startswith("  - http://a:1: not ready within 0 s: no connection")
    assert lines[2].startswith("  - http://b:1: not ready within 0 s: no connection")
    assert client.check().replicas[1].live is False


def test_a_replica_whose_checks_time_out_is_unavailable_not_a_request_timeout() -> None:
    """Nothing was sent to a replica whose metadata or config read timed out: the request
    goes to the next one; with none left, one TritonUnavailableError names each."""
    a, b = _serving(), _serving()
    client = _logic_client({"a": a, "b": b})
    a.fail("get_model_metadata", DeadlineError("no complete answer within 2.5 s"))
    client.infer(_inputs(1))
    assert (len(a.answered()), len(b.answered())) == (0, 1)
    b.drop_connection()  # checked again before the next request: too slow this time
    b.fail("get_model_config", DeadlineError("no complete answer within 2.5 s"))
    a.fail("get_model_metadata", DeadlineError("no complete answer within 2.5 s"))
    with pytest.raises(TritonUnavailableError, match=r"\(2 tried\)") as info:
        client.infer(_inputs(1))
    assert not isinstance(info.value, TritonTimeoutError)
    message = str(info.value)
    assert "http://b:1: reading the model config: no answer within 60 s" in message
    assert "http://a:1: reading the model metadata: no answer within 60 s" in message
    assert (len(a.answered()), len(b.answered())) == (0, 1)


def test_a_replica_serving_other_weights_stays_recorded_until_found_good() -> None:
    a, b = _serving(), _serving(OTHER_WEIGHTS)
    seen: list[bool | None] = []
    client = _logic_client({"a": a, "b": b}, on_verified=seen.append)
    assert client.check().status is HealthStatus.SERVED_DIGEST_MISMATCH
    assert seen == [False]
    client.infer(_inputs(1))  # over the connection check() verified: no new check
    assert seen == [False]
    a.drop_connection()  # a new connection to a: checked again (and good) before answering
    client.infer(_inputs(1))
    assert len(a.answered()) == 2 and b.answered() == []
    assert seen == [False, False]
    assert client.served_digest_verified is False and client.served_digest == OTHER_WEIGHTS
    b.stop()  # b down: not found good, so still recorded
    assert client.check().status is HealthStatus.UNAVAILABLE
    assert seen == [False, False, False]
    b.restart(served_digest=WEIGHTS)
    assert client.check().ok
    assert seen == [False, False, False, True]
    client.infer(_inputs(1))
    a.drop_connection()
    client.infer(_inputs(1))
    assert seen[-1] is True and client.served_digest_verified is True


def test_check_waiting_for_a_dead_replica_holds_up_no_request_to_a_live_one() -> None:
    """A processor's health endpoint calls check() while requests go on: the wait for a
    replica that does not answer (a closed port, waited for up to ready_timeout_s) holds
    up no request to another. The live replica is in memory: tritonclient.http's client
    (gevent) is bound to the thread that opened its connections."""
    ready_timeout_s = 4.0
    waiting = threading.Event()  # check() has begun waiting for the dead replica
    live = _serving()

    def transport_of(replica: EndpointURL) -> Any:
        if replica.redacted == CLOSED:
            return _Watched(replica, {"is_server_live": waiting.set})
        return live

    client = TritonClient(
        LOGIC_SPEC,
        f"http://a:1,{CLOSED}",
        expected_digest=WEIGHTS,
        transports=transport_of,
        ready_timeout_s=ready_timeout_s,
        retries=0,
        backoff_s=0.0,
    )
    reports: list[Any] = []
    check = threading.Thread(target=lambda: reports.append(client.check()), daemon=True)
    inputs = _inputs(2, seed=11)
    client.infer(inputs)  # the live replica is in use, checked
    check.start()
    assert waiting.wait(30), "check() never reached the dead replica"
    started = time.monotonic()
    got = client.infer(inputs)
    took = time.monotonic() - started
    check_running = check.is_alive()
    check.join(ready_timeout_s + 30)
    assert check_running, f"the request waited for check() ({took:.2f} s)"
    assert took < ready_timeout_s / 2
    _assert_standin_of(LOGIC_SPEC, got, inputs)
    [report] = reports
    assert [(r.endpoint, r.status) for r in report.replicas] == [
        ("http://a:1", HealthStatus.SERVED),
        (CLOSED, HealthStatus.UNAVAILABLE),
    ]
    assert f"not ready within {ready_timeout_s:g} s" in (report.replicas[1].error or "")
    assert len(live.answered()) == 2


def test_one_client_serves_requests_and_checks_from_several_threads(replicas: Replicas) -> None:
    """A processor's request threads and its health endpoint share one client: the default
    transport gives each thread its own connections (tritonclient.http's gevent client
    cannot be used from another thread: `greenlet.error` before)."""
    mm = replicas.manager(replicas.good.url)
    errors: list[BaseException] = []
    results: list[bool] = []
    with mm.get(NAME).client() as client:
        client.infer(_inputs(1))  # connected, checked on this thread first

        def requests(seed: int) -> None:
            try:
                for i in range(5):
                    inputs = _inputs(2, seed=seed * 10 + i)
                    _assert_standin(mm, client.infer(inputs), inputs)
            except BaseException as exc:
                errors.append(exc)

        def checks() -> None:
            try:
                for _ in range(5):
                    results.append(client.check().ok)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=requests, args=(n,)) for n in range(2)]
        threads.append(threading.Thread(target=checks))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        client.close()  # every thread's connection goes; the next call connects again
        inputs = _inputs(2, seed=99)
        _assert_standin(mm, client.infer(inputs), inputs)
    assert errors == []
    assert results == [True] * 5
