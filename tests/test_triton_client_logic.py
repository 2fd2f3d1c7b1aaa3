"""The Triton client's logic without a server: readiness, metadata and digest checks,
retries, timeouts, batching and restarts, through the in-memory transport
(dp_models.testing.triton_transport.FakeTransport). The same behaviour against the real
server is in test_triton_client.py and test_triton_faults.py."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dp_models import ModelManager
from dp_models._errors import (
    ConfigurationError,
    TritonDigestMismatchError,
    TritonInferenceError,
    TritonInputError,
    TritonMetadataMismatchError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from dp_models._health import HealthStatus
from dp_models._spec import Spec
from dp_models.testing.triton import expected_standin_outputs
from dp_models.testing.triton_transport import FakeModel, FakeTransport
from dp_models.triton import whisper
from dp_models.triton.client import TritonClient
from dp_models.triton.health import Deployment, check_deployments
from dp_models.triton.transport import DeadlineError, NewConnectionError, ServerAnswerError

from .bounded import bounded

WEIGHTS = hashlib.sha256(b"logic_echo weights").hexdigest()
OTHER_WEIGHTS = hashlib.sha256(b"logic_echo other weights").hexdigest()
URL = "http://127.0.0.1:1"  # never contacted: every call goes to the fake
FAST: dict[str, Any] = {"ready_timeout_s": 0.3, "retries": 2, "backoff_s": 0.0}


def _spec(name: str = "logic_echo", *, require: bool = True, tokenizer: bool = False) -> Spec:
    body = textwrap.dedent(
        f"""\
        name: {name}
        version: "1"
        family: test
        role: test
        users: [VisualProcessor/test]
        runtime: triton
        engine: python
        requires: {"[logic_tokenizer]" if tokenizer else "[]"}
        triton:
          model_name: {name}
          model_version: 1
          platform: python
          max_batch_size: 2
          require_weights_digest: {str(require).lower()}
          weights_digest: {WEIGHTS}
          inputs:
            - {{name: x, datatype: FP32, shape: [-1]}}
          outputs:
            - {{name: y, datatype: FP32, shape: [2]}}
            - {{name: tokens, datatype: INT32, shape: [-1]}}
        """
    )
    return Spec.model_validate(yaml.safe_load(body))


SPEC = _spec()


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 5)).astype(np.float32)}


def _client(fake: FakeTransport, spec: Spec = SPEC, **options: Any) -> TritonClient:
    return TritonClient(spec, URL, expected_digest=WEIGHTS, transport=fake, **{**FAST, **options})


def _assert_standin(spec: Spec, got: dict[str, Any], inputs: dict[str, Any]) -> None:
    want = expected_standin_outputs(spec, inputs)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


def _names(fake: FakeTransport) -> list[str]:
    return [c.name for c in fake.calls]


# -- checks before the first request --------------------------------------------------------


def test_the_checks_pass_then_the_request_is_answered() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    seen: list[bool | None] = []
    client = _client(fake, on_verified=seen.append)
    inputs = _inputs()
    _assert_standin(SPEC, client.infer(inputs), inputs)
    assert _names(fake) == [
        "is_server_live",
        "is_model_ready",
        "get_model_metadata",
        "get_model_config",
        "infer",
    ]
    assert client.served_digest_verified is True and client.served_digest == WEIGHTS
    assert seen == [True]
    client.infer(inputs)  # checked once: the same connection, no new check
    assert _names(fake).count("get_model_config") == 1 and seen == [True]
    report = client.check()
    assert report.status is HealthStatus.SERVED and report.ok
    assert report.served_digest == WEIGHTS and report.endpoint == URL


def test_a_model_not_ready_is_unavailable_at_the_readiness_deadline() -> None:
    fake = FakeTransport([])  # live, serving nothing
    client = _client(fake)
    with pytest.raises(TritonUnavailableError, match=r"not ready within 0.3 s: the model") as info:
        bounded(lambda: client.infer(_inputs()))
    assert (info.value.model, info.value.version) == ("logic_echo", 1)
    assert _names(fake).count("is_model_ready") > 1  # probed again until the deadline
    assert "infer" not in _names(fake)
    report = client.check()
    assert report.status is HealthStatus.UNAVAILABLE and report.live and not report.ready


@pytest.mark.parametrize(
    ("fake", "phrase"),
    [
        (FakeTransport([], live=False), "the server is not live"),
        (FakeTransport([], up=False), "no connection (ConnectionRefusedError"),
    ],
    ids=["not-live", "refused"],
)
def test_a_server_down_is_unavailable(fake: FakeTransport, phrase: str) -> None:
    client = _client(fake)
    with pytest.raises(TritonUnavailableError, match=r"not ready within 0.3 s") as info:
        bounded(lambda: client.infer(_inputs()))
    assert phrase in str(info.value)
    assert not client.check().live


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("error", "phrase"),
    [
        (DeadlineError("slow"), "no answer within"),
        (TimeoutError("timed out"), "no connection within 5 s"),
        (ServerAnswerError("503 unavailable"), "the server answered: 503 unavailable"),
    ],
)
def test_readiness_probes_that_fail_are_retried_until_the_deadline(
    error: Exception, phrase: str
) -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("is_server_live", error, times=1000)
    client = _client(fake)
    with pytest.raises(TritonUnavailableError, match=phrase):
        bounded(lambda: client.infer(_inputs()))


def test_a_probe_failing_once_is_not_an_error() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("is_model_ready", ConnectionResetError("reset"))
    client = _client(fake, ready_timeout_s=5.0)
    client.infer(_inputs())
    assert _names(fake).count("is_model_ready") == 2


def test_metadata_that_differs_is_an_error_and_nothing_is_sent() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    [model] = fake.models.values()
    model.config["max_batch_size"] = 8
    model.metadata["outputs"][0]["shape"] = [-1, 3]
    client = _client(fake)
    with pytest.raises(TritonMetadataMismatchError, match="2 differences") as info:
        client.infer(_inputs())
    assert info.value.differences == (
        "max_batch_size: the spec says 2, the server 8",
        "outputs: 'y' shape is [3] on the server, [2] in the spec (without the batch dimension)",
    )
    assert "infer" not in _names(fake)
    report = client.check()
    assert report.status is HealthStatus.METADATA_MISMATCH
    assert report.ready and report.metadata_ok is False and report.served_digest is None


@pytest.mark.adversarial
def test_malformed_metadata_is_a_metadata_mismatch_not_a_crash() -> None:
    """A shape of strings in the metadata made the client raise ValueError."""
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    [model] = fake.models.values()
    model.metadata["inputs"][0]["shape"] = ["-1", "five"]
    model.config["parameters"] = ["weights_digest"]
    with pytest.raises(TritonMetadataMismatchError, match="'x' shape on the server is not"):
        _client(fake).infer(_inputs())


def test_a_metadata_read_the_server_refuses_is_unavailable() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("get_model_metadata", ServerAnswerError("500 internal error"))
    with pytest.raises(TritonUnavailableError, match="metadata: the server answered 500"):
        _client(fake).infer(_inputs())


# -- the served digest ----------------------------------------------------------------------


def test_other_weights_are_an_error_before_any_request() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=OTHER_WEIGHTS)
    seen: list[bool | None] = []
    client = _client(fake, on_verified=seen.append)
    with pytest.raises(TritonDigestMismatchError, match="serves weights with digest") as info:
        client.infer(_inputs())
    assert (info.value.expected, info.value.actual) == (WEIGHTS, OTHER_WEIGHTS)
    assert "infer" not in _names(fake) and seen == [False]
    report = client.check()
    assert report.status is HealthStatus.SERVED_DIGEST_MISMATCH and not report.ok
    assert report.served_digest == OTHER_WEIGHTS and report.served_digest_verified is False
    assert report.error_type == "TritonDigestMismatchError"


def test_no_served_digest_is_an_error_or_unverified_as_the_spec_says() -> None:
    required = FakeTransport.serving(SPEC, served_digest=None)
    with pytest.raises(
        TritonDigestMismatchError, match="does not publish a 'weights_digest'"
    ) as info:
        _client(required).infer(_inputs())
    assert "Deploy the repository `dp-models triton export` writes" in str(info.value)
    lenient = _spec(require=False)
    fake = FakeTransport.serving(lenient, served_digest=None)
    seen: list[bool | None] = []
    client = _client(fake, lenient, on_verified=seen.append)
    client.infer(_inputs())
    assert client.served_digest_verified is None and seen == [None]
    report = client.check()
    assert report.status is HealthStatus.UNVERIFIED and report.ok
    assert report.served_digest_verified is None
    # nothing expected (the catalog pins none), but the spec requires a digest
    client = TritonClient(SPEC, URL, transport=FakeTransport.serving(SPEC, served_digest=WEIGHTS))
    with pytest.raises(TritonDigestMismatchError, match="the catalog has none to check") as info:
        client.infer(_inputs())
    assert "Pin the digest it must serve (`dp-models lock --lock LOCK`" in str(info.value)
    assert "triton export" not in str(info.value)  # the deployment is not what is missing


# -- requests: retries, timeouts, batching ----------------------------------------------------


def test_a_lost_connection_is_retried_after_the_checks_pass_again() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = _client(fake)
    client.infer(_inputs())
    fake.fail("infer", ConnectionResetError("reset by peer"), times=2)
    inputs = _inputs(seed=1)
    _assert_standin(SPEC, client.infer(inputs), inputs)
    assert _names(fake).count("infer") == 4  # one, then two lost, then the answer
    assert _names(fake).count("get_model_config") == 3  # checked again before each retry
    assert fake.closes >= 2  # each lost connection was dropped


def test_retries_end_in_a_typed_error() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("infer", ConnectionResetError("reset by peer"), times=3)
    with pytest.raises(TritonUnavailableError, match=r"inference failed after 3 attempt\(s\)"):
        _client(fake, retries=2).infer(_inputs())
    assert _names(fake).count("infer") == 3


@pytest.mark.adversarial
def test_an_unanswered_request_is_a_timeout_and_is_not_sent_again() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = _client(fake, network_timeout_s=2.5)
    fake.fail("infer", DeadlineError("no complete answer within 2.5 s"))
    with pytest.raises(TritonTimeoutError, match=r"no answer within 2.5 s \(network_timeout_s\)"):
        client.infer(_inputs())
    assert _names(fake).count("infer") == 1
    fake.fail("infer", TimeoutError("timed out"))  # the socket's: connecting took too long
    with pytest.raises(TritonTimeoutError) as info:
        client.infer(_inputs())
    assert info.value.option == "connection_timeout_s"
    inputs = _inputs(seed=2)
    _assert_standin(SPEC, client.infer(inputs), inputs)  # the same client recovers


def test_a_request_the_server_refuses_is_an_inference_error() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("infer", ServerAnswerError("400 bad request, sent to http://bob:hunter2@host"))
    with pytest.raises(TritonInferenceError, match="failed the request: 400 bad request") as info:
        _client(fake).infer(_inputs())
    assert "hunter2" not in str(info.value)
    assert _names(fake).count("infer") == 1


def test_a_batch_beyond_max_batch_size_is_split_and_concatenated() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    inputs = _inputs(batch=5, seed=3)
    got = _client(fake).infer(inputs)
    _assert_standin(SPEC, got, inputs)
    assert [c.batch for c in fake.answered("infer")] == [2, 2, 1]


def test_parts_with_different_variable_dimensions_are_an_inference_error() -> None:
    lengths = iter([3, 4])

    def answer(inputs: Any) -> dict[str, np.ndarray[Any, Any]]:
        batch = len(inputs["x"])
        return {
            "y": np.zeros((batch, 2), np.float32),
            "tokens": np.zeros((batch, next(lengths)), np.int32),
        }

    model = FakeModel.of(SPEC, served_digest=WEIGHTS)
    model.answer = answer
    with pytest.raises(TritonInferenceError, match="send at most 2 items per call"):
        _client(FakeTransport([model])).infer(_inputs(batch=4))


@pytest.mark.adversarial
def test_an_answer_without_an_output_is_an_inference_error() -> None:
    model = FakeModel.of(SPEC, served_digest=WEIGHTS)
    model.answer = lambda inputs: {"y": np.zeros((len(inputs["x"]), 2), np.float32)}
    with pytest.raises(TritonInferenceError, match="without the outputs 'tokens'"):
        _client(FakeTransport([model])).infer(_inputs())


def test_inputs_that_do_not_fit_are_refused_before_anything_is_sent() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    with pytest.raises(TritonInputError, match="nothing was sent") as info:
        _client(fake).infer({"x": np.zeros((2, 5), np.float64)})
    assert info.value.problems == (
        "input 'x' has dtype float64, the spec's FP32 needs float32 (convert it explicitly; "
        "nothing is cast silently)",
    )
    assert fake.calls == []


# -- restarts ---------------------------------------------------------------------------------


def test_a_restart_with_the_same_weights_is_checked_then_answered() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = _client(fake)
    client.infer(_inputs())
    fake.restart()
    inputs = _inputs(seed=4)
    _assert_standin(SPEC, client.infer(inputs), inputs)
    assert _names(fake).count("get_model_config") == 2
    # the request that would have used the new connection unchecked was not answered
    refused = [c for c in fake.calls if c.name == "infer" and not c.answered]
    assert len(refused) == 1


@pytest.mark.adversarial
@pytest.mark.parametrize("watches", [True, False], ids=["pool-hook", "no-pool-hook"])
def test_a_restart_with_other_weights_is_caught_before_it_answers(watches: bool) -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS, watches_connections=watches)
    seen: list[bool | None] = []
    client = _client(fake, on_verified=seen.append)
    client.infer(_inputs())
    fake.restart(served_digest=OTHER_WEIGHTS)
    for _ in range(2):  # the next request, and every one after
        with pytest.raises(TritonDigestMismatchError) as info:
            client.infer(_inputs())
        assert info.value.actual == OTHER_WEIGHTS
    assert not [c for c in fake.answered("infer") if c.served_digest == OTHER_WEIGHTS]
    assert seen[0] is True and seen[-1] is False
    if not watches:  # nothing sees new connections: the deployment is checked every time
        assert _names(fake).count("get_model_config") == 3


@pytest.mark.adversarial
def test_a_restart_with_other_weights_during_the_retries_is_caught() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = _client(fake)
    client.infer(_inputs())
    fake.fail("infer", ConnectionResetError("reset by peer"))
    fake.restart(served_digest=OTHER_WEIGHTS)
    with pytest.raises(TritonDigestMismatchError):
        client.infer(_inputs())
    assert not [c for c in fake.answered("infer") if c.served_digest == OTHER_WEIGHTS]


@pytest.mark.adversarial
def test_a_connection_replaced_at_every_request_ends_in_a_typed_error() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    fake.fail("infer", NewConnectionError(), times=100)
    with pytest.raises(TritonUnavailableError, match="the connection was replaced 4 times"):
        bounded(lambda: _client(fake, retries=2).infer(_inputs()))


def test_a_stopped_server_is_unavailable_then_the_client_recovers() -> None:
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = _client(fake)
    client.infer(_inputs())
    fake.stop()
    with pytest.raises(TritonUnavailableError, match="no connection"):
        client.infer(_inputs())
    assert client.check().status is HealthStatus.UNAVAILABLE
    fake.restart()
    client.infer(_inputs())
    assert client.check().status is HealthStatus.SERVED


# -- options ----------------------------------------------------------------------------------


def test_client_options_are_checked_and_the_spec_must_be_a_triton_one() -> None:
    with pytest.raises(ConfigurationError, match="network_timeout_s must be a finite number"):
        TritonClient(SPEC, URL, network_timeout_s=0)
    inprocess = SPEC.model_copy(update={"runtime": "inprocess", "triton": None})
    with pytest.raises(ConfigurationError, match="is not served by Triton"):
        TritonClient(inprocess, URL)
    with pytest.raises(ConfigurationError, match="names no preprocess preset"):
        TritonClient(SPEC, URL).preprocess(np.zeros(3))


def test_the_default_transport_never_shows_the_credentials() -> None:
    client = TritonClient(SPEC, "http://bob:hunter2@127.0.0.1:1")
    shown = repr(client) + repr(client.transport) + client.endpoint
    assert "hunter2" not in shown and "bob" not in shown


# -- health of many deployments ---------------------------------------------------------------


def test_check_deployments_waits_once_per_dead_endpoint() -> None:
    other = _spec("logic_other")
    fakes = {"logic_echo": FakeTransport([], up=False), "logic_other": FakeTransport([], up=False)}
    deployments = [
        Deployment(SPEC, URL, WEIGHTS),
        Deployment(other, URL, WEIGHTS),
        Deployment(_spec("logic_unset"), None, WEIGHTS),
    ]
    reports = check_deployments(
        deployments, ready_timeout_s=0.3, transport=lambda d: fakes[d.spec.name]
    )
    assert [r.status for r in reports] == [
        HealthStatus.UNAVAILABLE,
        HealthStatus.UNAVAILABLE,
        HealthStatus.UNCONFIGURED,
    ]
    assert "not ready within 0.3 s" in (reports[0].error or "")
    assert "not ready within 0 s" in (reports[1].error or "")
    assert reports[2].error_type == "ConfigurationError" and not reports[2].ok
    assert "$DP_MODELS_TRITON_URL" in (reports[2].error or "")


# -- through the manager ----------------------------------------------------------------------


def test_handle_client_passes_the_expected_digest_and_records_the_check(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog" / "visual"
    catalog.mkdir(parents=True)
    (catalog / "logic_echo.yaml").write_text(yaml.safe_dump(SPEC.model_dump(exclude_none=True)))
    (tmp_path / "root").mkdir()
    mm = ModelManager(tmp_path / "root", tmp_path / "catalog", triton_endpoints={"default": URL})
    handle = mm.get("logic_echo")
    fake = FakeTransport.serving(SPEC, served_digest=WEIGHTS)
    client = handle.client(transport=fake, ready_timeout_s=1.0)
    assert client.expected_digest == handle.weights_digest == WEIGHTS
    client.infer(_inputs())
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is True
    fake.restart(served_digest=OTHER_WEIGHTS)
    with pytest.raises(TritonDigestMismatchError):
        client.infer(_inputs())
    [entry] = mm.models_used()
    assert entry["triton"]["served_digest_verified"] is False
    unset = ModelManager(tmp_path / "root", tmp_path / "catalog", triton_endpoints={})
    with pytest.raises(ConfigurationError, match=r"set \$DP_MODELS_TRITON_URL or pass"):
        unset.get("logic_echo").client()


# -- Whisper decoding ---------------------------------------------------------------------------


def _tokenizer() -> Any:
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"hello": 0, "world": 1, "[UNK]": 2}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|en|>"])
    tokenizer.add_tokens([AddedToken("<|0.00|>", special=False)])
    return tokenizer


def test_whisper_decoding_with_the_required_tokenizer() -> None:
    tokenizer = _tokenizer()
    end, en, stamp = (tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|en|>", "<|0.00|>"))
    made: list[int] = []

    def make() -> Any:
        made.append(1)
        return tokenizer

    client = TritonClient(_spec(tokenizer=True), URL, tokenizer=make)
    ids = np.array([en, stamp, 0, 1, end, 1, -1, -1], dtype=np.int32)
    assert whisper.decode(client, ids) == "hello world"
    assert whisper.decode(client, np.array([], dtype=np.int64)) == ""
    assert whisper.decode_batch(client, np.stack([ids, ids])) == ["hello world"] * 2
    assert made == [1]  # loaded once, on first use
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    with pytest.raises(TritonInferenceError, match=f"token ids {size} outside the vocabulary"):
        whisper.decode(client, np.array([0, size], dtype=np.int64))
    with pytest.raises(TritonInputError, match="one 1-D integer sequence"):
        whisper.decode(client, np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(TritonInputError, match=r"\[batch, length\] integer array"):
        whisper.decode_batch(client, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ConfigurationError, match="requires no tokenizer"):
        whisper.decode(TritonClient(SPEC, URL), ids)


def test_the_client_s_verdict_is_the_one_check_reports_across_replicas() -> None:
    """Found in review: replica a publishes no digest (allowed by this spec), b the expected
    one; check() reported None while the client's own attribute said True (the replica
    checked last). Both are derived from the replicas now."""
    lenient = _spec(require=False)
    fakes = {
        "a": FakeTransport.serving(lenient, served_digest=None),
        "b": FakeTransport.serving(lenient, served_digest=WEIGHTS),
    }
    seen: list[bool | None] = []
    client = TritonClient(
        lenient,
        "http://a:1,http://b:1",
        expected_digest=WEIGHTS,
        transports=lambda replica: fakes[replica.host],
        on_verified=seen.append,
        **{**FAST, "ready_timeout_s": 0.0},
    )
    report = client.check()
    assert report.ok and [r.served_digest_verified for r in report.replicas] == [None, True]
    assert client.served_digest_verified is None and seen[-1] is None
    assert client.served_digest == WEIGHTS  # the one digest read
