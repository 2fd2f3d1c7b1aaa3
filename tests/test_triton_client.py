"""The spec-bound Triton client (dp_models.triton.client) against a real Triton server.

Two servers, each started once: the plugin's session server with a stand-in for every
Triton spec of the packaged catalog (each checked through ``ModelHandle.client()``), and a
module server with small stand-ins made to differ from their specs (other versions, a wrong
or missing weights digest), which is also the one stopped and restarted.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tokenizers import Tokenizer

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main
from dp_models._errors import (
    ConfigurationError,
    TritonDigestMismatchError,
    TritonError,
    TritonInferenceError,
    TritonInputError,
    TritonMetadataMismatchError,
    TritonUnavailableError,
)
from dp_models._health import HealthStatus
from dp_models._settings import LOCK_FILENAME
from dp_models._spec import Spec, TritonTensor
from dp_models.testing import fake_catalog_dir, fake_models_root
from dp_models.testing.triton import (
    STANDIN_VARIABLE_DIM,
    TritonServer,
    expected_standin_outputs,
    write_standin_repository,
)
from dp_models.triton import whisper
from dp_models.triton.client import TritonClient

PACKAGED = Catalog.load()
TRITON_SPECS = sorted(name for name, spec in PACKAGED.items() if spec.runtime == "triton")
ENDPOINT_NAMES = sorted({s.triton.endpoint for s in PACKAGED.values() if s.triton is not None})
#: Length given to a variable (-1) input dimension in the requests here.
VARIABLE_INPUT = 5
WRONG_DIGEST = "0" * 64
#: Nothing listens there: connections are refused at once.
CLOSED_URL = "http://127.0.0.1:1"
#: Fast failure for the tests that expect one.
FAST: dict[str, Any] = {
    "ready_timeout_s": 0.5,
    "retries": 1,
    "backoff_s": 0.01,
    "connection_timeout_s": 2.0,
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _inputs(spec: Spec, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    triton = spec.triton
    assert triton is not None
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for t in triton.inputs:
        dims = [VARIABLE_INPUT if d == -1 else d for d in t.shape]
        shape = [batch, *dims] if triton.max_batch_size > 0 else dims
        dtype = {"FP32": np.float32, "INT64": np.int64}[t.datatype]
        arrays[t.name] = (rng.standard_normal(shape) * 4).astype(dtype)
    return arrays


def _assert_outputs(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want)


# -- every Triton spec of the packaged catalog, through the session server ------------------


@pytest.fixture(scope="module")
def packaged_manager(
    dp_models_triton_server: TritonServer,
    dp_models_triton_catalog: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ModelManager:
    # what the Triton specs require is in process: fake ones (the Whisper specs require
    # shared_tokenizer_v1, the Places365 specs places365_categories)
    catalog = Catalog.load(dp_models_triton_catalog)
    required = sorted({r for s in catalog.values() if s.triton is not None for r in s.requires})
    assert "shared_tokenizer_v1" in required
    root = fake_models_root(tmp_path_factory.mktemp("root"), required, catalog=catalog)
    return ModelManager(
        models_root=root,
        catalog=dp_models_triton_catalog,
        lock=fake_catalog_dir(root) / LOCK_FILENAME,
        triton_endpoints={name: dp_models_triton_server.url for name in ENDPOINT_NAMES},
    )


@pytest.mark.parametrize("name", TRITON_SPECS)
def test_every_packaged_triton_spec_passes_the_client_checks(
    packaged_manager: ModelManager, dp_models_triton_server: TritonServer, name: str
) -> None:
    handle = packaged_manager.get(name)
    spec = handle.spec
    assert spec.triton is not None
    with handle.client(network_timeout_s=30.0) as client:
        report = client.check()
        assert report.ok, report.error
        assert report.status is HealthStatus.SERVED and report.served_digest_verified is True
        assert report.served_digest == handle.weights_digest
        inputs = _inputs(spec, batch=2)
        _assert_outputs(client.infer(inputs), expected_standin_outputs(spec, inputs))
    entry = next(e for e in packaged_manager.models_used() if e["name"] == name)
    assert entry["triton"] == {
        "model_name": spec.triton.model_name,
        "model_version": spec.triton.model_version,
        "endpoint_name": spec.triton.endpoint,
        "endpoint": dp_models_triton_server.url,
        "served_digest_verified": True,
    }


@pytest.mark.parametrize("size", [224, 336, 448])
def test_a_places365_client_names_its_logits_with_the_labels_it_requires(
    packaged_manager: ModelManager, size: int
) -> None:
    handle = packaged_manager.get(f"places365_resnet50_{size}_triton")
    with handle.client() as client:
        logits = client.infer({"image": np.zeros((2, 3, size, size), np.float32)})["logits"]
        names = [client.labels()[i] for i in logits.argmax(axis=1)]
    assert len(names) == 2 and all(n.startswith("fake_class_") for n in names)
    assert client.labels() is packaged_manager.load("places365_categories")


def test_the_packaged_catalog_has_triton_specs() -> None:
    assert len(TRITON_SPECS) >= 10


# -- stand-ins made to differ, on a module server ---------------------------------------------


def _spec_yaml(name: str, body: str) -> str:
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [VisualProcessor/test]\n'
        "runtime: triton\nengine: python\n" + textwrap.dedent(body).strip() + "\n"
    )


def _echo_body(model: str, *, version: int = 1, digest: str | None, require: bool = True) -> str:
    pin = f"\n{' ' * 10}weights_digest: {digest}" if digest else ""
    return f"""
        triton:
          model_name: {model}
          model_version: {version}
          platform: python
          max_batch_size: 2
          require_weights_digest: {str(require).lower()}{pin}
          inputs:
            - {{name: x, datatype: FP32, shape: [4]}}
            - {{name: ids, datatype: INT64, shape: [-1]}}
          outputs:
            - {{name: y, datatype: FP32, shape: [2]}}
            - {{name: label, datatype: BYTES, shape: [1]}}
            - {{name: tokens, datatype: INT32, shape: [-1]}}
        """


#: spec name -> (model name, pinned version, digest in the spec, require digest)
ODD_SPECS = {
    "tc_echo": ("tc_echo", 1, _digest("tc_echo"), True),
    "tc_echo_v2": ("tc_echo", 2, _digest("tc_echo"), True),
    "tc_echo_v3": ("tc_echo", 3, _digest("tc_echo"), True),
    "tc_wrong_digest": ("tc_wrong", 1, _digest("tc_wrong"), True),
    "tc_no_digest": ("tc_nodigest", 1, _digest("tc_nodigest"), False),
    "tc_no_digest_required": ("tc_nodigest", 1, _digest("tc_nodigest"), True),
}


@dataclass
class Odd:
    server: TritonServer
    catalog_dir: Path
    catalog: Catalog
    root: Path

    def manager(self, url: str | None = None) -> ModelManager:
        return ModelManager(
            models_root=self.root,
            catalog=self.catalog_dir,
            triton_endpoints={"default": url or self.server.url},
        )


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Odd]:
    base = tmp_path_factory.mktemp("triton_client")
    catalog_dir = base / "catalog"
    (catalog_dir / "visual").mkdir(parents=True)
    for name, (model, version, digest, require) in ODD_SPECS.items():
        body = _echo_body(model, version=version, digest=digest, require=require)
        (catalog_dir / "visual" / f"{name}.yaml").write_text(_spec_yaml(name, body))
    # tc_echo as served, but with another output shape in the spec
    wrong_shape = _echo_body("tc_echo", digest=_digest("tc_echo")).replace(
        "{name: y, datatype: FP32, shape: [2]}", "{name: y, datatype: FP32, shape: [3]}"
    )
    (catalog_dir / "visual" / "tc_echo_wrong_shape.yaml").write_text(
        _spec_yaml("tc_echo_wrong_shape", wrong_shape)
    )
    catalog = Catalog.load(catalog_dir)
    repo = base / "repo"
    write_standin_repository(catalog, repo, ["tc_echo"], versions={"tc_echo": [1, 2]})
    write_standin_repository(
        catalog,
        repo,
        ["tc_wrong_digest", "tc_no_digest"],
        digest_override={"tc_wrong_digest": WRONG_DIGEST, "tc_no_digest": None},
    )
    root = base / "root"
    root.mkdir()
    server = TritonServer(stop_timeout_s=1.0).start(repo)
    try:
        yield Odd(server, catalog_dir, catalog, root)
    finally:
        server.kill()


def _echo_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
        "ids": rng.integers(0, 50, size=(batch, 6)).astype(np.int64),
    }


def _with_triton(spec: Spec, **changes: Any) -> Spec:
    assert spec.triton is not None
    return spec.model_copy(update={"triton": spec.triton.model_copy(update=changes)})


def test_binary_inference_through_the_manager_records_a_verified_digest(odd: Odd) -> None:
    mm = odd.manager()
    handle = mm.get("tc_echo")
    with handle.client() as client:
        inputs = _echo_inputs(2)
        got = client.infer(inputs)
        _assert_outputs(got, expected_standin_outputs(handle.spec, inputs))
        assert got["label"].dtype == np.object_
        assert got["tokens"].shape == (2, STANDIN_VARIABLE_DIM)
        assert client.served_digest_verified is True
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is True
    assert entry["triton"]["model_name"] == "tc_echo"
    assert entry["triton"]["model_version"] == 1
    assert entry["triton"]["endpoint"] == odd.server.url


def test_a_batch_beyond_max_batch_size_is_split_and_concatenated(odd: Odd) -> None:
    spec = odd.catalog["tc_echo"]
    raw = httpclient.InferenceServerClient(odd.server.address)

    def executions() -> int:
        stats = raw.get_inference_statistics("tc_echo", "1")["model_stats"][0]
        return int(stats["execution_count"])

    try:
        before = executions()
        with TritonClient(spec, odd.server.url, expected_digest=_digest("tc_echo")) as client:
            inputs = _echo_inputs(5, seed=3)
            got = client.infer(inputs)
        _assert_outputs(got, expected_standin_outputs(spec, inputs))
        assert got["y"].shape == (5, 2)
        # 2 + 2 + 1: max_batch_size is 2. The server may count an execution just after it
        # answered, so wait (bounded) for the count to settle before comparing.
        deadline = time.monotonic() + 5.0
        while executions() - before < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert executions() - before == 3
    finally:
        raw.close()


def test_version_pinning(odd: Odd) -> None:
    mm = odd.manager()
    inputs = _echo_inputs(1, seed=5)
    for name, version in (("tc_echo", 1), ("tc_echo_v2", 2)):
        with mm.get(name).client() as client:
            got = client.infer(inputs)
        want = expected_standin_outputs(odd.catalog[name], inputs, version=version)
        _assert_outputs(got, want)
        assert float(got["y"][0, 0]) >= 100 * version
    with (
        mm.get("tc_echo_v3").client(**FAST) as client,
        pytest.raises(TritonUnavailableError, match=r"'tc_echo' version 3 .*not ready") as info,
    ):
        client.infer(inputs)
    assert (info.value.model, info.value.version) == ("tc_echo", 3)
    assert info.value.endpoint == odd.server.url


def test_a_served_digest_that_differs_is_an_error(odd: Odd) -> None:
    mm = odd.manager()
    with (
        mm.get("tc_wrong_digest").client() as client,
        pytest.raises(TritonDigestMismatchError, match="serves weights with digest 0000") as info,
    ):
        client.infer(_echo_inputs(1))
    assert info.value.expected == _digest("tc_wrong")
    assert info.value.actual == WRONG_DIGEST
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is False
    report = mm.get("tc_wrong_digest").client().check()
    assert not report.ok and report.status is HealthStatus.SERVED_DIGEST_MISMATCH
    assert report.error_type == "TritonDigestMismatchError"
    assert report.served_digest == WRONG_DIGEST and report.served_digest_verified is False


def test_a_missing_served_digest_is_unverified_or_an_error_as_the_spec_says(odd: Odd) -> None:
    mm = odd.manager()
    with mm.get("tc_no_digest").client() as client:
        client.infer(_echo_inputs(1))
        assert client.served_digest_verified is None
        report = client.check()
        assert report.status is HealthStatus.UNVERIFIED and report.ok
        assert report.served_digest_verified is None
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is None
    with (
        mm.get("tc_no_digest_required").client() as client,
        pytest.raises(TritonDigestMismatchError, match="does not publish a 'weights_digest'"),
    ):
        client.infer(_echo_inputs(1))


def test_every_metadata_difference_is_listed(odd: Odd) -> None:
    spec = odd.catalog["tc_echo"]
    assert spec.triton is not None
    wrong = _with_triton(
        spec,
        max_batch_size=4,
        inputs=[
            TritonTensor(name="x", datatype="FP16", shape=[4]),
            TritonTensor(name="input_ids", datatype="INT64", shape=[-1]),
        ],
        outputs=[
            TritonTensor(name="y", datatype="FP32", shape=[3]),
            TritonTensor(name="label", datatype="BYTES", shape=[1]),
            TritonTensor(name="tokens", datatype="INT32", shape=[-1, 2]),
        ],
    )
    client = TritonClient(wrong, odd.server.url, expected_digest=_digest("tc_echo"))
    with pytest.raises(TritonMetadataMismatchError, match="6 differences") as info:
        client.infer({"x": np.zeros((1, 4), np.float16), "input_ids": np.zeros((1, 2), np.int64)})
    differences = info.value.differences
    assert len(differences) == 6
    joined = "\n".join(differences)
    for needle in (
        "max_batch_size: the spec says 4, the server 2",
        "inputs: 'input_ids' is in the spec but not served",
        "inputs: 'ids' is served but not in the spec",
        "inputs: 'x' datatype is FP32 on the server, FP16 in the spec",
        "outputs: 'y' shape is [2] on the server, [3] in the spec",
        "outputs: 'tokens' shape is [-1] on the server, [-1, 2] in the spec",
    ):
        assert needle in joined
    assert "'label'" not in joined
    report = client.check()
    assert report.status is HealthStatus.METADATA_MISMATCH
    assert report.error_type == "TritonMetadataMismatchError"
    assert report.ready and report.metadata_ok is False


def test_wrong_inputs_are_refused_before_anything_is_sent() -> None:
    spec = PACKAGED["optical_flow_raft_triton"]
    client = TritonClient(spec, CLOSED_URL, expected_digest=WRONG_DIGEST, **FAST)
    good = _inputs(spec, batch=2)
    bad: dict[str, Any] = {
        "frame0": good["frame0"].astype(np.float64),  # dtype
        "frame1": good["frame1"][:, :2],  # shape: 2 channels
        "frame2": good["frame1"],  # not an input
    }
    with pytest.raises(TritonInputError, match=r"\(3 problems\); nothing was sent") as info:
        client.infer(bad)
    assert info.value.problems == (
        "unexpected input 'frame2' (the spec's inputs: frame0, frame1)",
        "input 'frame0' has dtype float64, the spec's FP32 needs float32 (convert it "
        "explicitly; nothing is cast silently)",
        "input 'frame1' has shape [2, 2, 5, 5], the spec's is [batch, 3, -1, -1]",
    )
    with pytest.raises(TritonInputError, match="missing input 'frame1'"):
        client.infer({"frame0": good["frame0"]})
    with pytest.raises(TritonInputError, match="disagree on the batch size"):
        client.infer({"frame0": good["frame0"], "frame1": good["frame1"][:1]})
    with pytest.raises(TritonInputError, match=r"shape \[3, 5, 5\], the spec's is \[batch, 3"):
        client.infer({"frame0": good["frame0"][0], "frame1": good["frame1"][0]})
    with pytest.raises(TritonInputError, match="needs a batch dimension of at least 1"):
        client.infer({"frame0": good["frame0"][:0], "frame1": good["frame1"][:0]})
    with pytest.raises(TritonInputError, match="is a list, not a numpy array"):
        client.infer({"frame0": good["frame0"].tolist(), "frame1": good["frame1"]})
    # the inputs that fit reach the network, and find nobody there
    with pytest.raises(TritonUnavailableError):
        client.infer(good)


def test_credentials_in_the_endpoint_never_show(odd: Odd) -> None:
    spec = odd.catalog["tc_echo"]
    secret_url = CLOSED_URL.replace("://", "://bob:hunter2@")
    client = TritonClient(spec, secret_url, expected_digest=_digest("tc_echo"), **FAST)
    with pytest.raises(TritonUnavailableError) as info:
        client.infer(_echo_inputs(1))
    assert "hunter2" not in str(info.value)
    assert info.value.endpoint == "http://***@127.0.0.1:1"
    assert "hunter2" not in repr(client) and "hunter2" not in str(client.check().as_dict())
    # Triton without authentication ignores the basic-auth header: the checks pass
    authed = odd.server.url.replace("://", "://bob:hunter2@")
    with TritonClient(spec, authed, expected_digest=_digest("tc_echo")) as client:
        assert client.check().ok
        assert client.check().endpoint == odd.server.url.replace("://", "://***@")


def test_an_unconfigured_endpoint_or_an_inprocess_spec_is_a_configuration_error(
    odd: Odd, tmp_path: Path
) -> None:
    mm = ModelManager(models_root=odd.root, catalog=odd.catalog_dir, triton_endpoints={})
    with pytest.raises(ConfigurationError, match=r"\$DP_MODELS_TRITON_URL or pass"):
        mm.get("tc_echo").client()
    inprocess = next(s for s in PACKAGED.values() if s.runtime == "inprocess")
    with pytest.raises(ConfigurationError, match="is not served by Triton"):
        TritonClient(inprocess, CLOSED_URL)
    with pytest.raises(ConfigurationError, match="not an http"):
        TritonClient(odd.catalog["tc_echo"], "ftp://127.0.0.1:1")


def test_a_server_stopped_mid_run_is_a_clear_error_then_the_client_recovers(odd: Odd) -> None:
    mm = odd.manager()
    handle = mm.get("tc_echo")
    inputs = _echo_inputs(2, seed=9)
    want = expected_standin_outputs(handle.spec, inputs)
    client = handle.client(ready_timeout_s=1.0, retries=2, backoff_s=0.05)
    try:
        _assert_outputs(client.infer(inputs), want)
        odd.server.stop()
        with pytest.raises(TritonUnavailableError, match="'tc_echo' version 1") as info:
            client.infer(inputs)
        assert isinstance(info.value, ConnectionError) and isinstance(info.value, TritonError)
        assert odd.server.url in str(info.value)
        report = client.check()
        assert not report.ok and not report.ready
        assert report.status is HealthStatus.UNAVAILABLE
        assert report.error_type == "TritonUnavailableError"
        odd.server.start()  # the same repository, on the same port
        _assert_outputs(client.infer(inputs), want)
        assert client.check().ok
    finally:
        client.close()
        if not odd.server.running:
            odd.server.start()


# -- health: dp-models doctor and ModelManager.check ----------------------------------------

#: What doctor says of each spec of the module server's catalog.
ODD_STATUSES = {
    "tc_echo": "served",
    "tc_echo_v2": "served",
    "tc_echo_v3": "unavailable",
    "tc_echo_wrong_shape": "metadata_mismatch",
    "tc_no_digest": "unverified",
    "tc_no_digest_required": "served_digest_mismatch",
    "tc_wrong_digest": "served_digest_mismatch",
}


def _doctor(capsys: pytest.CaptureFixture[str], odd: Odd, *argv: str) -> tuple[int, str]:
    code = main(["doctor", "--catalog", str(odd.catalog_dir), "--root", str(odd.root), *argv])
    out, _ = capsys.readouterr()
    return code, out


def test_doctor_checks_each_triton_spec_against_its_endpoint(
    odd: Odd, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _doctor(
        capsys, odd, "--json", "--triton-url", odd.server.url, "--triton-timeout", "1"
    )
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {s["name"]: s["status"] for s in report["specs"]} == ODD_STATUSES
    assert report["triton_endpoints"] == {"default": odd.server.url}
    by_name = {s["name"]: s for s in report["specs"]}
    assert by_name["tc_echo"]["ok"] and by_name["tc_echo"]["triton"]["served_digest_verified"]
    assert by_name["tc_no_digest"]["ok"]  # accepted as unverified: reported, not failing
    assert by_name["tc_no_digest"]["triton"]["served_digest_verified"] is None
    mismatch = by_name["tc_echo_wrong_shape"]
    assert not mismatch["ok"]
    assert "outputs: 'y' shape is [2] on the server, [3] in the spec" in mismatch["message"]
    assert "triton export" in mismatch["fix"]
    assert by_name["tc_wrong_digest"]["triton"]["served_digest"] == WRONG_DIGEST
    assert "version 3" in by_name["tc_echo_v3"]["message"]
    # the same through the environment, as a table
    code, out = _doctor(capsys, odd, "--triton-timeout", "1")
    assert code == 0  # no endpoint configured: nothing contacted, Triton specs are remote
    assert all(line.split()[2] == "remote" for line in out.splitlines()[1:8])
    assert "endpoint 'default' not configured ($DP_MODELS_TRITON_URL)" in out
    monkeypatch.setenv("DP_MODELS_TRITON_URL", odd.server.url)
    code, out = _doctor(capsys, odd, "--triton-timeout", "1")
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:8]}
    assert rows == {
        n: s.upper() if s not in ("served", "unverified") else s for n, s in ODD_STATUSES.items()
    }
    assert f"tc_echo v1 at {odd.server.url}; served digest verified" in out
    assert "4 required specs not ok:" in out
    code, out = _doctor(capsys, odd, "--no-triton", "tc_echo")
    assert code == 0 and "not checked (--no-triton)" in out


def test_doctor_against_a_dead_endpoint_waits_once(
    odd: Odd, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _doctor(
        capsys, odd, "--json", "--triton-url", f"default={CLOSED_URL}", "--triton-timeout", "0.5"
    )
    report = json.loads(out)
    assert code == 1
    assert {s["status"] for s in report["specs"]} == {"unavailable"}
    served = [s["triton"] for s in report["specs"]]
    assert not any(r["live"] or r["ready"] for r in served)
    # the first spec waited for readiness; the others, on the same dead endpoint, did not
    assert "not ready within 0.5 s" in served[0]["error"]
    assert all("not ready within 0 s" in r["error"] for r in served[1:])
    assert main(["doctor", "--triton-url", "=", "--catalog", str(odd.catalog_dir)]) == 1
    assert "--triton-url takes [NAME=]URL" in capsys.readouterr().err


def test_manager_check_for_a_health_endpoint(odd: Odd) -> None:
    mm = odd.manager()
    assert mm.check() == {"ok": True, "models": []}  # nothing handed out yet
    mm.get("tc_echo")
    mm.get("tc_no_digest")
    health = mm.check()
    assert health["ok"] is True
    assert [(r["spec"], r["runtime"], r["ok"]) for r in health["models"]] == [
        ("tc_echo", "triton", True),
        ("tc_no_digest", "triton", True),
    ]
    # the check recorded what it verified in models_used
    used = {e["name"]: e["triton"]["served_digest_verified"] for e in mm.models_used()}
    assert used == {"tc_echo": True, "tc_no_digest": None}
    health = mm.check(["tc_echo", "tc_wrong_digest", "tc_echo_v3"], ready_timeout_s=0.5)
    assert health["ok"] is False
    assert [r["error_type"] for r in health["models"]] == [
        None,
        "TritonDigestMismatchError",
        "TritonUnavailableError",
    ]
    unconfigured = ModelManager(models_root=odd.root, catalog=odd.catalog_dir, triton_endpoints={})
    [report] = unconfigured.check(["tc_echo"])["models"]
    assert not report["ok"] and report["error_type"] == "ConfigurationError"
    assert "$DP_MODELS_TRITON_URL" in report["error"]


def test_manager_check_reverifies_inprocess_artifacts(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", ["shared_tokenizer_v1"])
    mm = ModelManager(models_root=root, catalog=fake_catalog_dir(root), verify="always")
    mm.load("shared_tokenizer_v1")
    [report] = mm.check()["models"]
    assert report["ok"] and report["loaded"] and report["runtime"] == "inprocess"
    tokenizer_json = root / "text" / "shared_tokenizer_v1" / "tokenizer.json"
    tokenizer_json.write_text("{}")
    health = mm.check()
    assert health["ok"] is False
    assert health["models"][0]["error_type"] == "SizeMismatchError"  # {} is smaller


# -- Whisper: token ids decoded with the tokenizer the spec requires -------------------------


@pytest.mark.parametrize("name", ["whisper_small_triton", "whisper_large_triton"])
def test_whisper_client_decodes_token_ids_with_the_shared_tokenizer(
    packaged_manager: ModelManager, name: str
) -> None:
    handle = packaged_manager.get(name)
    assert [r.name for r in handle.requires] == ["shared_tokenizer_v1"]
    tokenizer = packaged_manager.load("shared_tokenizer_v1")
    features = np.zeros((2, 80, 3000), dtype=np.float32)
    features[1] += 7.0  # the stand-in's ids follow the input's mean: two different rows
    with handle.client() as client:
        ids = client.infer({"input_features": features})["token_ids"]
        texts = whisper.decode_batch(client, ids)
    assert ids.shape == (2, STANDIN_VARIABLE_DIM) and ids[0, 0] != ids[1, 0]
    assert texts == [tokenizer.decode([int(i) for i in row]) for row in ids]
    assert all(texts)


def test_decode_drops_special_tokens_padding_and_what_follows_the_end(
    packaged_manager: ModelManager,
) -> None:
    tokenizer = packaged_manager.load("shared_tokenizer_v1")
    client = packaged_manager.get("whisper_medium_triton").client()
    text = " hello world, the quick brown fox"
    words = tokenizer.encode(text, add_special_tokens=False).ids
    special = [tokenizer.token_to_id(t) for t in ("<|startoftranscript|>", "<|en|>")]
    end = tokenizer.token_to_id("<|endoftext|>")
    ids = np.array([*special, *words, end, *words, -1, -1], dtype=np.int32)
    assert whisper.decode(client, ids) == text
    assert whisper.decode(client, np.array([], dtype=np.int64)) == ""
    assert whisper.decode_batch(client, np.stack([ids, ids])) == [text, text]
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    with pytest.raises(TritonInferenceError, match=f"token ids {size} outside the vocabulary"):
        whisper.decode(client, np.array([*words, size], dtype=np.int64))
    with pytest.raises(TritonInputError, match="one 1-D integer sequence"):
        whisper.decode(client, np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(TritonInputError, match="one 1-D integer sequence"):
        whisper.decode(client, np.zeros(3, dtype=np.float32))
    with pytest.raises(TritonInputError, match=r"\[batch, length\]"):
        whisper.decode_batch(client, ids)
    depth = packaged_manager.get("midas_dpt_hybrid_triton").client()
    with pytest.raises(ConfigurationError, match="requires no tokenizer"):
        whisper.decode(depth, ids)


def test_decode_drops_timestamp_markers_that_are_not_special(
    packaged_manager: ModelManager, tmp_path: Path
) -> None:
    """Some Whisper tokenizer files add <|0.00|>... as ordinary tokens, which
    skip_special_tokens keeps: decode drops every <|...|> marker."""
    source = packaged_manager.get("shared_tokenizer_v1").path
    tokenizer = Tokenizer.from_file(str(source))  # a copy: the manager's stays unchanged
    tokenizer.add_tokens(["<|0.00|>", "<|1.50|>"])
    stamps = [tokenizer.token_to_id(t) for t in ("<|0.00|>", "<|1.50|>")]
    words = tokenizer.encode(" hello world", add_special_tokens=False).ids
    ids = np.array([stamps[0], *words, stamps[1]], dtype=np.int32)
    assert "<|0.00|>" in tokenizer.decode(ids.tolist(), skip_special_tokens=True)
    spec = packaged_manager.catalog["whisper_small_triton"]
    client = TritonClient(spec, CLOSED_URL, tokenizer=lambda: tokenizer)
    assert whisper.decode(client, ids) == " hello world"


def test_doctor_says_served_for_every_packaged_triton_spec(
    packaged_manager: ModelManager,
    dp_models_triton_server: TritonServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog = packaged_manager.catalog
    argv = ["doctor", "--json", "--catalog", str(catalog.directory), "--lock"]
    argv += [str(catalog.lock.path), "--root", str(packaged_manager.root)]
    for name in ENDPOINT_NAMES:
        argv += ["--triton-url", f"{name}={dp_models_triton_server.url}"]
    code = main([*argv, *TRITON_SPECS])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["summary"] == {"served": len(TRITON_SPECS)}
    for entry in report["specs"]:
        pin = catalog.expected_digest(catalog[entry["name"]])
        assert pin is not None and entry["triton"]["served_digest"] == pin.sha256
