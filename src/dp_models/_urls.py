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
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from ._errors import ConfigurationError

__all__ = ["EXPECTED", "EndpointURL", "parse_endpoint", "redact", "redact_url"]

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
