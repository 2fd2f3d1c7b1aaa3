"""Endpoint URLs: the one parser, and the one way credentials are masked for display.

>>> url = parse_endpoint("http://bob:hunter2@triton:8000/v2")
>>> url.address, url.username, url.password
('triton:8000/v2', 'bob', 'hunter2')
>>> str(url)
'http://***@triton:8000/v2'
>>> redact("GET http://bob:p@ss@triton:8000/v2 failed")
'GET http://***@triton:8000/v2 failed'

An endpoint is ``http://HOST[:PORT][/PATH]`` or ``https://...``, optionally with
``USER[:PASSWORD]@`` before the host. The user name and password are secrets: they are
kept for the ``Authorization`` header and never shown; a URL is displayed through
:func:`redact`, :func:`redact_url` or the parsed :class:`EndpointURL`, all of which mask the
whole user information (user *and* password) as ``***``.

The host part ends at the first ``/``, ``?`` or ``#``, and the user information at the last
``@`` before it (RFC 3986): a password may hold ``@`` and ``:`` as they are, but ``/``, ``?``
and ``#`` must be percent-encoded (``%2F``, ``%3F``, ``%23``). A URL with an ``@`` after the
host, a query, a fragment, whitespace, or no ``http(s)://`` scheme is refused, never
guessed at: ``user:secret@host:8000`` is refused rather than taken as a host named ``user``.

An endpoint's value may list several replicas of one deployment, separated by commas
(:func:`parse_endpoints`): ``http://triton-a:8000,http://triton-b:8000``. A comma
separates replicas where an ``http://`` or ``https://`` scheme follows it, so a comma in a
password stays in the password, unless ``,http://`` follows it (percent-encode that comma:
``%2C``).

>>> [str(u) for u in parse_endpoints("http://a:8000, http://bob:pw@b:8000")]
['http://a:8000', 'http://***@b:8000']
>>> redact_endpoints("http://a:8000,http://bob:pw@b:8000")
'http://a:8000,http://***@b:8000'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from ._errors import ConfigurationError

__all__ = [
    "EXPECTED",
    "EndpointURL",
    "S3Location",
    "is_loopback_host",
    "parse_endpoint",
    "parse_endpoints",
    "parse_s3_url",
    "redact",
    "redact_endpoints",
    "redact_url",
    "split_replicas",
]

#: What an endpoint URL looks like, for messages.
EXPECTED = "http://HOST:PORT (or https://, optionally USER:PASSWORD@ before HOST and a /PATH)"

#: Shown in place of the user information.
MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_HTTP_SCHEME = re.compile(r"https?://", re.IGNORECASE)
_TOKEN = re.compile(r"\S+")
#: What may open a word with a URL in a message: quotes, brackets, ``=``.
_LEAD = "\"'`([<{=,;"
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9_])?")
#: Where one replica's URL ends and the next one's begins in an endpoint's value: a comma
#: that an ``http://`` or ``https://`` scheme follows (spaces around it allowed).
_REPLICA_SEPARATOR = re.compile(r"\s*,\s*(?=https?://)", re.IGNORECASE)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a host name, or an IP address without brackets) is loopback:
    ``localhost``, ``127.0.0.0/8`` or ``::1``.

    >>> [is_loopback_host(h) for h in ("localhost", "127.0.0.2", "::1", "10.0.0.1", "triton")]
    [True, True, True, False, False]
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(text: str) -> str:
    """``text`` with the user information of every URL in it masked (user and password).

    Works on any text: a URL, a message or a log line with URLs in it. On each line with an
    ``@``, everything up to the line's last ``@`` is masked, from the first word that holds
    ``://`` or ``@`` when that word starts with ``http://`` or ``https://`` (the text before
    it and the scheme are kept), else from the start of the line: a password holding ``@``,
    ``:``, ``/``, ``%``, ``://`` or spaces leaves no piece behind, with or without a scheme.
    This can mask more than the credentials, never less; the one thing it cannot tell
    apart is a scheme-less secret that itself holds a space followed by ``http://``. A
    value that is one URL whole (a setting) is masked with :func:`redact_url`, which does
    not go by lines.

    >>> redact("http://bob:hunter2@triton:8000/v2")
    'http://***@triton:8000/v2'
    >>> redact("refused: 'https://t%40ken:a@b@host' (try again)")
    "refused: 'https://***@host' (try again)"
    """
    return "".join(_redact_line(line) for line in text.splitlines(keepends=True))


def _redact_line(line: str) -> str:
    at = line.rfind("@")
    if at < 0:
        return line
    for word in _TOKEN.finditer(line, 0, at + 1):
        if "@" in word.group() or "://" in word.group():
            start = word.end() - len(word.group().lstrip(_LEAD))
            if _HTTP_SCHEME.match(line, start) is None:
                start = 0  # no scheme: the credentials may begin anywhere before
            return line[:start] + _mask(line[start:at]) + line[at:]
    return line  # pragma: no cover: the word holding the last "@" always matches


def redact_url(value: str) -> str:
    """One URL (or what was given as one) with everything before its last ``@`` masked,
    keeping an ``http://`` or ``https://`` scheme; a value without ``@`` is unchanged.

    >>> redact_url("bob:hunter2@triton:8000")
    '***@triton:8000'
    >>> redact_url("http://bob:pass word@triton:8000")
    'http://***@triton:8000'
    """
    at = value.rfind("@")
    return value if at < 0 else _mask(value[:at]) + value[at:]


def _mask(userinfo: str) -> str:
    """What is shown for ``userinfo``, all that comes before an ``@``: its ``http://`` or
    ``https://`` scheme, if any, then the mask. Another scheme is masked too: in
    ``bob://...@host`` it may as well be a user name."""
    scheme = _HTTP_SCHEME.match(userinfo)
    return (scheme.group() if scheme is not None else "") + MASK


@dataclass(frozen=True)
class EndpointURL:
    """A parsed endpoint URL. ``str()`` and ``repr()`` show it with credentials masked."""

    scheme: str
    #: Lowercased; an IPv6 address without its brackets.
    host: str
    port: int | None
    #: ``""`` or ``/prefix`` (no trailing slash).
    path: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def effective_port(self) -> int:
        """The port, or the scheme's default (80, 443)."""
        if self.port is not None:
            return self.port
        return 443 if self.scheme == "https" else 80

    @property
    def address(self) -> str:
        """``host[:port][/path]`` without scheme or credentials (what tritonclient takes)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{host}{port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        """Whether the host is this machine's loopback (:func:`is_loopback_host`)."""
        return is_loopback_host(self.host)

    @property
    def redacted(self) -> str:
        """The URL to show: ``scheme://***@host:port/path`` when it has credentials."""
        userinfo = f"{MASK}@" if self.username is not None else ""
        return f"{self.scheme}://{userinfo}{self.address}"

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"EndpointURL({self.redacted!r})"


def parse_endpoint(url: str, *, source: str = "the endpoint URL") -> EndpointURL:
    """Parse an endpoint URL, or raise :class:`~dp_models._errors.ConfigurationError` that
    names ``source`` (where the value came from), shows the value redacted and says what
    was expected."""
    value = url.strip()

    def refuse(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{source} {redact_url(url)!r} is not an http(s) URL: {why}; expected {EXPECTED}"
        )

    if not value:
        raise refuse("it is empty")
    if any(c.isspace() for c in value):
        raise refuse("it holds whitespace (percent-encode it: %20)")
    scheme_match = _SCHEME.match(value)
    if scheme_match is None:
        raise refuse("it has no scheme (write http://HOST:PORT, not HOST:PORT)")
    scheme = value[: scheme_match.end() - 3].lower()
    if scheme not in ("http", "https"):
        raise refuse("only http and https are served")
    rest = value[scheme_match.end() :]
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in tail:
        raise refuse(
            "an '@' after the host (percent-encode '/', '?' and '#' in a user name or "
            "password: %2F, %3F, %23)"
        )
    if "?" in tail or "#" in tail:
        raise refuse("an endpoint has no query or fragment")
    username = password = None
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if colon else None)
    host, port = _host_port(hostport, refuse)
    return EndpointURL(scheme, host, port, tail.rstrip("/"), username, password)


def split_replicas(value: str) -> list[str]:
    """The replica URLs an endpoint's value lists, as written (not checked): one item for a
    value with one URL. A comma separates two where ``http://`` or ``https://`` follows it.

    >>> split_replicas("http://a:1 , https://b:2")
    ['http://a:1', 'https://b:2']
    >>> split_replicas("http://bob:x,y@a:1")
    ['http://bob:x,y@a:1']
    """
    return _REPLICA_SEPARATOR.split(value.strip())


def parse_endpoints(value: str, *, source: str = "the endpoint URL") -> tuple[EndpointURL, ...]:
    """Parse an endpoint's value: one URL (:func:`parse_endpoint`), or several replicas of
    one deployment separated by commas (:func:`split_replicas`), each checked as one URL.
    Raises :class:`~dp_models._errors.ConfigurationError` naming ``source`` and which replica
    is wrong (shown redacted); a replica listed twice is refused too."""
    parts = split_replicas(value)
    if len(parts) == 1:
        return (_parse_replica(value, source),)
    found: list[EndpointURL] = []
    for number, part in enumerate(parts, 1):
        where = f"{source} (replica {number} of {len(parts)})"
        if not part:
            raise ConfigurationError(
                f"{where} is empty: separate the replicas' URLs with single commas"
            )
        parsed = _parse_replica(part, where)
        key = (parsed.scheme, parsed.host, parsed.effective_port, parsed.path)
        if any((p.scheme, p.host, p.effective_port, p.path) == key for p in found):
            raise ConfigurationError(f"{where} {parsed.redacted!r} is listed twice")
        found.append(parsed)
    return tuple(found)


def _parse_replica(value: str, source: str) -> EndpointURL:
    try:
        return parse_endpoint(value, source=source)
    except ConfigurationError as exc:
        if "," not in value:
            raise
        raise ConfigurationError(
            f"{exc} (several replicas: separate whole http(s):// URLs with commas)"
        ) from None


def redact_endpoints(value: str) -> str:
    """An endpoint's value (one URL, or replicas separated by commas) with each URL's
    credentials masked (:func:`redact_url`); a value with one URL is ``redact_url(value)``."""
    parts = split_replicas(value)
    if len(parts) == 1:
        return redact_url(value)
    return ",".join(redact_url(p) for p in parts)


def _host_port(
    hostport: str, refuse: Callable[[str], ConfigurationError]
) -> tuple[str, int | None]:
    """``(host, port)`` of the part after the credentials."""
    port_text: str | None
    if hostport.startswith("["):
        inner, bracket, after = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(unquote(inner))
        except ValueError:
            raise refuse("the host in brackets is not an IPv6 address") from None
        if not bracket or (after and not after.startswith(":")):
            raise refuse("the host in brackets is not an IPv6 address")
        host, port_text = inner.lower(), (after[1:] if after else None)
    else:
        host, colon, after = hostport.partition(":")
        port_text = after if colon else None
        if not host:
            raise refuse("it has no host")
        if not _HOST_NAME.fullmatch(host):
            raise refuse("the host is not a DNS name or an IP address")
        host = host.lower()
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise refuse("the port is not a number from 1 to 65535")
    return host, int(port_text)


class S3Location:
    """``s3://BUCKET/PREFIX`` split: ``bucket``, ``prefix`` (no slash at either end; may
    be empty) and ``shown`` (the URL as given, normalized)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.shown = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel


def parse_s3_url(value: str) -> S3Location:
    """The bucket and prefix of ``s3://BUCKET[/PREFIX]``; a ConfigurationError saying
    what is wrong otherwise (credentials in the URL are refused: they belong in the AWS
    settings)."""
    if not value.lower().startswith("s3://"):
        raise ConfigurationError(f"{value!r} is not an s3:// URL (expected s3://BUCKET/PREFIX)")
    rest = value[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ConfigurationError(
            "an s3:// URL names a bucket and a prefix only (s3://BUCKET/PREFIX): credentials "
            "and endpoints come from the AWS settings (AWS_PROFILE, AWS_ACCESS_KEY_ID..., "
            "AWS_ENDPOINT_URL_S3 for a MinIO/Ceph-style store)"
        )
    if not bucket or any(c in bucket for c in "?#\\ ") or not bucket.isascii():
        raise ConfigurationError(
            f"s3:// URL {value!r}: {bucket!r} is not a bucket name (expected s3://BUCKET/PREFIX)"
        )
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts) or any(c in prefix for c in "?#\\"):
        raise ConfigurationError(
            f"s3:// URL {value!r}: the prefix {prefix!r} must be plain path segments "
            "(no empty, '.' or '..' segment, no '?', '#' or backslash)"
        )
    return S3Location(bucket, prefix)
