"""Endpoint URLs (dp_models._urls): the one parser, and credentials masked everywhere a URL
is shown: messages, logs, reprs, models_used, ``dp-models env`` and ``dp-models doctor``.

The property tests build URLs whose user names and passwords are made of distinctive
pieces (six or more letters or digits, any script) joined by the characters that broke the
old masking (``@ : / % # ?`` and more), written as they are or percent-encoded, in every
form an operator might configure (http, https, scheme-less). Each URL is either refused at
configuration time, or accepted; in both cases no piece of the credentials may appear in
anything dp_models shows.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from dp_models import ConfigurationError, ModelManager
from dp_models._catalog import Catalog
from dp_models._cli import main
from dp_models._settings import ENV_TRITON_URL, resolve_triton_endpoints
from dp_models._urls import (
    EndpointURL,
    parse_endpoint,
    parse_endpoints,
    redact,
    redact_endpoints,
    redact_url,
    split_replicas,
)
from dp_models.triton.client import TritonClient
from dp_models.triton.health import Deployment

from .conftest import sha256

#: Nothing listens there: a connection is refused at once (loopback only).
CLOSED = "127.0.0.1:1"

SERVED_SPEC = f"""
name: served_url
version: "1"
family: test
role: test
users: [AudioProcessor/test]
runtime: triton
engine: onnx
triton:
  model_name: served_url
  model_version: 1
  platform: onnxruntime_onnx
  max_batch_size: 4
  weights_digest: {sha256(b"served_url")}
  inputs: [{{name: x, datatype: FP32, shape: [-1]}}]
  outputs: [{{name: y, datatype: FP32, shape: [2]}}]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A catalog with one Triton spec (endpoint ``default``) and an empty root."""
    catalog = tmp_path_factory.mktemp("urls-catalog")
    (catalog / "audio").mkdir()
    (catalog / "audio" / "served_url.yaml").write_text(SERVED_SPEC)
    return catalog, tmp_path_factory.mktemp("urls-root")


@pytest.fixture(scope="module")
def baseline(served: tuple[Path, Path]) -> str:
    """Everything the checked outputs hold without credentials: dp_models' own source (every
    fixed message) and the outputs for credential-free URLs (paths, versions, the spec's
    repr). A generated secret piece found in here proves nothing, so none is drawn from it."""
    import dp_models

    texts = [p.read_text() for p in Path(dp_models.__file__).parent.rglob("*.py")]
    with pytest.MonkeyPatch.context() as mp:
        for url in ("http://127.0.0.1:1", "https://127.0.0.1:1/triton/v2"):
            mm = ModelManager(
                models_root=served[1], catalog=served[0], triton_endpoints={"default": url}
            )
            handle = mm.get("served_url")
            texts += [repr(handle), html.unescape(handle._repr_html_()), repr(handle.client())]
            texts += [json.dumps(mm.models_used())]
            mp.setenv(ENV_TRITON_URL, url)
            mp.setenv(ENV_TRITON_URL + "_ASR", url)
            for argv in (
                ["env", "--json"],
                ["env"],
                ["doctor", "--json", "--catalog", str(served[0]), "--root", str(served[1])],
            ):
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    main([*argv, "--triton-timeout", "0"] if argv[0] == "doctor" else argv)
                texts += [out.getvalue(), err.getvalue()]
    return _Quiet("\n".join(texts))


class _Quiet(str):
    """A long text that Hypothesis shows short when it reports a failing example."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} characters>"


def _assume_distinct(pieces_: list[str], baseline: str) -> None:
    assume(not any(p in baseline for p in pieces_))


# -- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parsed", "address"),
    [
        ("http://triton:8000", EndpointURL("http", "triton", 8000, ""), "triton:8000"),
        ("HTTPS://Triton.Example/v2/", EndpointURL("https", "triton.example", None, "/v2"), ""),
        ("http://[::1]:8001", EndpointURL("http", "::1", 8001, ""), "[::1]:8001"),
        (" http://10.0.0.7:80/a/b ", EndpointURL("http", "10.0.0.7", 80, "/a/b"), ""),
        (
            "http://bob:p@ss:w@rd@triton:8000",
            EndpointURL("http", "triton", 8000, "", "bob", "p@ss:w@rd"),
            "triton:8000",
        ),
        (
            "https://b%40b:%2F%3F%23%25@triton",
            EndpointURL("https", "triton", None, "", "b@b", "/?#%"),
            "triton",
        ),
        ("http://token@triton:1", EndpointURL("http", "triton", 1, "", "token", None), ""),
    ],
)
def test_parse_endpoint(url: str, parsed: EndpointURL, address: str) -> None:
    got = parse_endpoint(url)
    assert got == parsed
    assert (got.username, got.password) == (parsed.username, parsed.password)
    if address:
        assert got.address == address
    assert got.effective_port == (got.port or (443 if got.scheme == "https" else 80))


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("bob:hunter2@triton:8000", "no scheme"),
        ("triton:8000", "no scheme"),
        ("//bob:hunter2@triton:8000", "no scheme"),
        ("ftp://bob:hunter2@triton", "only http and https"),
        ("bob://x:hunter2@triton", "only http and https"),
        ("http://bob:hunt/er2@triton", "an '@' after the host"),
        ("http://bob:hunt?er2@triton", "an '@' after the host"),
        ("http://bob:hunt#er2@triton", "an '@' after the host"),
        ("http://bob:hunt er2@triton", "whitespace"),
        ("http://triton:8000/v2?x=1", "no query or fragment"),
        ("http://bob:hunter2@", "no host"),
        ("http://bob:hunter2@:8000", "no host"),
        ("http://bob:hunter2@triton:0", "port"),
        ("http://bob:hunter2@triton:65536", "port"),
        ("http://bob:hunter2@triton:", "port"),
        ("http://bob:hunter2@[triton]:1", "IPv6"),
        ("http://bob:hunter2@trit*on", "not a DNS name"),
        ("", "empty"),
    ],
)
def test_what_is_not_an_http_endpoint_is_refused(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as exc:
        parse_endpoint(url, source="$DP_MODELS_TRITON_URL")
    message = str(exc.value)
    assert message.startswith("$DP_MODELS_TRITON_URL ")
    assert "http://HOST:PORT" in message
    assert "hunter2" not in message and "bob" not in message


# -- several replicas in one value ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("http://a:1", ["http://a:1"]),
        ("http://a:1,http://b:2", ["http://a:1", "http://b:2"]),
        (" http://a:1 ,  HTTPS://b:2/v2 ", ["http://a:1", "HTTPS://b:2/v2"]),
        # a comma in a password stays in it, unless a scheme follows it
        ("http://bob:x,y@a:1", ["http://bob:x,y@a:1"]),
        ("http://bob:x,y@a:1,http://c:3", ["http://bob:x,y@a:1", "http://c:3"]),
        ("http://a:1,ftp://b:2", ["http://a:1,ftp://b:2"]),
        (",http://a:1", ["", "http://a:1"]),
    ],
)
def test_split_replicas(value: str, parts: list[str]) -> None:
    assert split_replicas(value) == parts


def test_parse_endpoints_checks_each_replica() -> None:
    assert parse_endpoints("http://a:1") == (parse_endpoint("http://a:1"),)
    urls = parse_endpoints("http://a:1, https://bob:pw@b:2/v2,http://[::1]:3")
    assert [u.redacted for u in urls] == ["http://a:1", "https://***@b:2/v2", "http://[::1]:3"]
    assert (urls[1].username, urls[1].password) == ("bob", "pw")


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://a:1,http://bob:hunter2@b:x", r"\(replica 2 of 2\) 'http://\*\*\*@b:x' .*port"),
        ("http://bob:hunter2@a:1,b:2", r"port .*separate whole http\(s\):// URLs with commas"),
        ("http://bob:hunter2@a:1,", r"port .*separate whole http\(s\):// URLs with commas"),
        (",http://bob:hunter2@a:1", r"\(replica 1 of 2\) is empty"),
        (
            "http://a:1,http://bob:hunter2@a:1/",
            r"\(replica 2 of 2\) 'http://\*\*\*@a:1' is listed twice",
        ),
        ("http://a:80,http://a", r"\(replica 2 of 2\) 'http://a' is listed twice"),
        ("http://a:1,https://bob:hunter2@b:2,http://c:3?x", r"\(replica 3 of 3\) .*no query"),
    ],
)
def test_a_bad_replica_is_named_and_never_shows_credentials(value: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as exc:
        parse_endpoints(value, source="$DP_MODELS_TRITON_URL")
    message = str(exc.value)
    assert message.startswith("$DP_MODELS_TRITON_URL")
    assert "hunter2" not in message and "bob" not in message


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://a:1", "http://a:1"),
        ("http://bob:hunter2@a:1", "http://***@a:1"),
        ("http://a:1,http://bob:hunter2@b:2", "http://a:1,http://***@b:2"),
        ("http://bob:hunter2@a:1, http://b:2", "http://***@a:1,http://b:2"),
        ("http://bob:hun,ter2@a:1,https://x:y@b", "http://***@a:1,https://***@b"),
        ("bob:hunter2@a:1", "***@a:1"),
    ],
)
def test_redact_endpoints_masks_each_replica(value: str, shown: str) -> None:
    assert redact_endpoints(value) == shown


# -- masking ----------------------------------------------------------------------------------


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://bob:hunter2@triton:8000/v2", "http://***@triton:8000/v2"),
        ("https://token@host/x", "https://***@host/x"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("/plain/path", "/plain/path"),
        # the old masking stopped at the password's first "@" and showed the rest
        ("http://bob:hun@ter2@triton:8000", "http://***@triton:8000"),
        ("http://bob:hun/ter2@triton:8000", "http://***@triton:8000"),
        ("http://bob:hun://ter2@triton", "http://***@triton"),
        ("http://bob:hun ter2@triton", "http://***@triton"),
        ("bob:hunter2@triton:8000", "***@triton:8000"),
        ("ftp://bob:hunter2@triton", "***@triton"),
        ("refused: bob:hun ter2@triton (111)", "***@triton (111)"),
        ("at http://h:1 and bob:hun ter2@h2", "at http://***@h2"),
        (
            "GET 'http://bob:h%40nter2@triton:8000/v2' failed (ConnectionRefusedError)",
            "GET 'http://***@triton:8000/v2' failed (ConnectionRefusedError)",
        ),
        ("a http://h:1 b\nc http://x:hunter2@h:2 d", "a http://h:1 b\nc http://***@h:2 d"),
    ],
)
def test_redact_masks_the_whole_user_information(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact(shown) == shown


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("bob:hun ter2@triton:8000", "***@triton:8000"),
        ("http://bob:hun\nter2@triton", "http://***@triton"),
        ("HTTPS://bob@x:hunter2@h", "HTTPS://***@h"),
        ("triton:8000", "triton:8000"),
    ],
)
def test_redact_url_masks_everything_before_the_last_at(value: str, shown: str) -> None:
    assert redact_url(value) == shown


@pytest.mark.adversarial
def test_no_repr_or_report_shows_the_credentials(
    served: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """``repr(ModelHandle)`` showed the raw URL, password and all (now it shows no URL; its
    HTML, for notebooks, shows the masked one)."""
    url = "http://bob:hun@ter2@127.0.0.1:8000/v2"
    mm = ModelManager(models_root=served[1], catalog=served[0], triton_endpoints={"default": url})
    handle = mm.get("served_url")
    assert handle.endpoint == url  # kept for the client: the credentials go in a header
    assert "http://***@127.0.0.1:8000/v2" in handle._repr_html_()
    client = handle.client()
    assert client.endpoint == "http://***@127.0.0.1:8000/v2"
    deployment = Deployment(handle.spec, url, None)
    assert "http://***@127.0.0.1:8000/v2" in repr(deployment)
    shown = [repr(handle), html.unescape(handle._repr_html_()), repr(client), repr(deployment)]
    shown += [repr(parse_endpoint(url))]
    shown += [json.dumps(mm.models_used()), str(parse_endpoint(url))]
    assert not [s for s in shown if "bob" in s or "ter2" in s]


@pytest.mark.adversarial
def test_the_cli_refuses_a_scheme_less_triton_url(
    served: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--triton-url user:secret@host:port`` was taken as is and printed with its secret."""
    argv = ["doctor", "--json", "--catalog", str(served[0]), "--root", str(served[1])]
    assert main([*argv, "--triton-url", "bob:hunter2@127.0.0.1:1"]) == 1
    shown = "".join(capsys.readouterr())
    assert "--triton-url '***@127.0.0.1:1' is not an http(s) URL" in shown
    assert "http://HOST:PORT" in shown
    assert "hunter2" not in shown and "bob" not in shown
    assert main([*argv, "--triton-url", "default=bob:hunter2@127.0.0.1:1"]) == 1
    shown = "".join(capsys.readouterr())
    assert "no scheme" in shown and "hunter2" not in shown and "bob" not in shown


# -- property tests ---------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: A piece of a secret: long and distinctive enough that finding it in an output means it
#: leaked (letters and digits of any script).
pieces = st.text(
    st.characters(categories=("Lu", "Ll", "Lo", "Nd"), max_codepoint=0x2FFF),
    min_size=6,
    max_size=12,
)
#: What joins the pieces: what URLs treat specially, and then some.
separators = st.one_of(
    st.sampled_from(["@", ":", "/", "%", "#", "?", "@:", "://", ":@/", "%40", "%2F", "%zz", "="]),
    st.text(st.sampled_from("@:/%#?=&;+[]~!$'\"\\ é"), min_size=1, max_size=3),
)


@st.composite
def secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A user name or password and the pieces it is made of."""
    parts = draw(st.lists(pieces, min_size=1, max_size=3))
    parts += draw(st.lists(pieces, min_size=0, max_size=1)) if len(parts) == 1 else []
    text = parts[0]
    for part in parts[1:]:
        text += draw(separators) + part
    return text, parts


@st.composite
def userinfo_urls(draw: st.DrawFn, host: str | None = None) -> dict[str, Any]:
    """A URL with credentials, the credentials and their pieces."""
    user, user_pieces = draw(secrets())
    password, password_pieces = draw(st.one_of(st.none(), secrets())) or (None, [])
    encoded = draw(st.booleans())
    write = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
    userinfo = write(user) + (f":{write(password)}" if password is not None else "")
    if host is None:
        host = draw(st.sampled_from(["127.0.0.1", "[::1]", "triton", "gpu-7.triton.internal"]))
        port = draw(st.one_of(st.none(), st.integers(1, 65535)))
        host += f":{port}" if port is not None else ""
    path = draw(st.sampled_from(["", "/", "/v2", "/triton/v2/"]))
    form = draw(st.sampled_from(["http", "https", "HTTP", "scheme-less"]))
    prefix = "" if form == "scheme-less" else f"{form}://"
    url = f"{prefix}{userinfo}@{host}{path}"
    secret_pieces = user_pieces + password_pieces
    for piece in secret_pieces:
        assume(piece.lower() not in url[url.rindex("@") :].lower())
    return {
        "url": url,
        "form": form,
        "user": user,
        "password": password,
        "encoded": encoded,
        # a piece must not show as written, nor percent-encoded
        "pieces": sorted({p for piece in secret_pieces for p in (piece, quote(piece, safe=""))}),
    }


def _leaks(pieces: list[str], *shown: str) -> list[str]:
    text = "\n".join(shown)
    return [p for p in pieces if p in text]


def _expect_refused(case: dict[str, Any]) -> bool | None:
    """True: the URL must be refused; False: accepted; None: either (a raw ``%`` or ``:``
    may make other credentials than meant, but never a leak)."""
    if case["form"] == "scheme-less":
        return True
    if case["encoded"]:
        return False
    written = case["user"] + (case["password"] or "")
    return True if any(c in written for c in "/?# ") else None


@pytest.mark.adversarial
@PROPERTY
@given(case=userinfo_urls())
def test_property_no_credential_survives_configuration_or_display(
    case: dict[str, Any],
    served: tuple[Path, Path],
    baseline: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, pieces_ = case["url"], case["pieces"]
    _assume_distinct(pieces_, baseline)
    masked = [
        redact(url),
        redact_url(url),
        redact(f"GET {url}/v2/health/ready failed: [Errno 111] refused\nat {url}"),
        redact(f"endpoint={url!r}; retrying"),
    ]
    assert not _leaks(pieces_, *masked), masked
    expected = _expect_refused(case)
    parsed: EndpointURL | None = None
    try:
        parsed = parse_endpoint(url)
    except ConfigurationError as exc:
        assert expected is not False, f"refused: {exc}"
        assert not _leaks(pieces_, str(exc)), str(exc)
    event(f"{case['form']}, {'accepted' if parsed is not None else 'refused'}")
    if parsed is None:
        # refused everywhere it can be configured, and never shown
        monkeypatch.setenv(ENV_TRITON_URL, url)
        for configure in (
            lambda: resolve_triton_endpoints({"default": url}),
            lambda: resolve_triton_endpoints(),
            lambda: ModelManager(
                models_root=served[1], catalog=served[0], triton_endpoints={"default": url}
            ),
            lambda: TritonClient(Catalog.load(served[0])["served_url"], url),
        ):
            with pytest.raises(ConfigurationError) as refused:
                configure()
            assert not _leaks(pieces_, str(refused.value)), str(refused.value)
    else:
        assert expected is not True, f"accepted: {parsed!r}"
        written = case["user"] + (case["password"] or "")
        if case["encoded"] or ("%" not in written and ":" not in case["user"]):
            assert (parsed.username, parsed.password) == (case["user"], case["password"])
        mm = ModelManager(
            models_root=served[1], catalog=served[0], triton_endpoints={"default": url}
        )
        handle = mm.get("served_url")
        client = handle.client()
        shown = [repr(parsed), str(parsed), parsed.address, repr(handle), repr(client)]
        shown += [html.unescape(handle._repr_html_())]
        shown += [json.dumps(mm.models_used()), client.endpoint]
        shown += [repr(Deployment(handle.spec, url, None))]
        assert not _leaks(pieces_, *shown), shown
        monkeypatch.setenv(ENV_TRITON_URL, url)
        assert resolve_triton_endpoints() == {"default": url.strip()}
    # dp-models env shows the variable (refused or not) masked
    monkeypatch.setenv(ENV_TRITON_URL + "_ASR", url)
    capsys.readouterr()
    assert main(["env", "--json"]) == 0
    assert main(["env"]) == 0
    out, err = capsys.readouterr()
    assert not _leaks(pieces_, out, err), out
    monkeypatch.delenv(ENV_TRITON_URL)
    monkeypatch.delenv(ENV_TRITON_URL + "_ASR")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="dp_models"):
        yield caplog


@pytest.mark.adversarial
@settings(PROPERTY, max_examples=100)
@given(case=userinfo_urls(host=CLOSED), through_env=st.booleans())
def test_property_doctor_against_an_unreachable_endpoint_shows_no_credential(
    case: dict[str, Any],
    through_env: bool,
    served: tuple[Path, Path],
    baseline: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    url, pieces_ = case["url"], case["pieces"]
    _assume_distinct(pieces_, baseline)
    argv = ["doctor", "--json", "--catalog", str(served[0]), "--root", str(served[1])]
    argv += ["--triton-timeout", "0"]
    if through_env:
        monkeypatch.setenv(ENV_TRITON_URL, url)
    else:
        argv += ["--triton-url", url]
    try:
        accepted = parse_endpoint(url) is not None
    except ConfigurationError:
        accepted = False
    event("accepted" if accepted else "refused")
    capsys.readouterr()
    debug_logs.clear()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1
    assert not _leaks(pieces_, out, err, debug_logs.text), out + err + debug_logs.text
    if accepted:  # checked, and found unreachable
        report = json.loads(out)
        [spec] = report["specs"]
        assert spec["status"] == "unavailable"
        assert re.fullmatch(r"https?://\*\*\*@127\.0\.0\.1:1(/.*)?", spec["triton"]["endpoint"])
        shown = report["triton_endpoints"]["default"].lower()
        assert shown.startswith(("http://***@", "https://***@"))
    else:
        assert "is not an http(s) URL" in out + err
    monkeypatch.delenv(ENV_TRITON_URL, raising=False)
