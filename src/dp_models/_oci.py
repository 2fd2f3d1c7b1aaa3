"""OCI registries as push destinations and pull mirrors: ``oci://REGISTRY/REPO:TAG`` holds a
MODELS_ROOT as one OCI artifact, so a Kubernetes site keeps its models in the registry it
already runs (Harbor, Zot, CNCF distribution, a cloud registry) and mounts them as an
image volume or pulls them in an init container.

The artifact follows the CNCF ModelPack model-spec (v1) where it fits:

* an OCI image manifest (``schemaVersion`` 2, ``application/vnd.oci.image.manifest.v1+json``)
  with ``artifactType`` :data:`ARTIFACT_TYPE`;
* its config (:data:`CONFIG_MEDIA_TYPE`): a ModelPack model config whose ``modelfs`` lists
  every layer's digest (no creation time: pushing the same files gives the same digest);
* **one layer per file**, the file's bytes as they are (ModelPack's ``.raw`` media types:
  :data:`WEIGHT_RAW`, or :data:`WEIGHT_CONFIG_RAW` / :data:`DOC_RAW` / :data:`CODE_RAW`
  by the file's name, marked ``org.cncf.model.file.mediatype.untested``), annotated with
  its path below the root (``org.cncf.model.filepath`` and ``org.opencontainers.image.title``)
  and ModelPack's file metadata (fixed mode, owner and time). A raw layer's digest is the
  file's sha256: the registry's content address *is* the pin;
* the lock of what was pushed (the manifest ``dp-models push`` hands over) as a last
  layer, :data:`LOCK_MEDIA_TYPE` titled ``catalog.lock.json``. ModelPack has no media type
  for it: this is the one dp-models type (registries and runtimes carry unknown layer
  types as they are).

Pulling by tag resolves the tag to the manifest's digest once; the mirror is then shown,
reported and recorded in a lock by digest (``oci://REGISTRY/REPO@sha256:...``). A manifest
must hash to the digest it was fetched by (or the ``Docker-Content-Digest`` the registry
announces for a tag); every path annotation must stay inside the root; each blob streams
into the pull's hashing sink (resumed with range requests like any http mirror) and must
be its layer's digest.

Connections: https, with the system's certificate authorities; plain http only to a
loopback registry (``127.0.0.0/8``, ``::1``, ``localhost``) or a host listed in
``$DP_MODELS_OCI_PLAIN_HTTP``. Credentials come from the Docker config ``docker login``
writes (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``: an ``auths``
entry's ``auth``, or ``username`` and ``password``); never from the reference, and never
shown. The registry's challenge decides how they are used: Basic authentication, or the
Bearer token flow (the credentials go to the token service the registry names, the token
to the registry). Either is sent to the registry's own origin only, never to a storage
host a blob download is redirected to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias, Union
from urllib.parse import urlencode, urljoin, urlsplit

from ._errors import (
    ConfigurationError,
    FileTooLargeError,
    JsonRejectedError,
    LockError,
    NotRegularFileError,
    OciManifestError,
    PulledFileMismatchError,
    RedirectLoopError,
    SourceUnavailableError,
)
from ._io import read_regular
from ._json import load_json
from ._lock import Lock, LockEntry
from ._settings import LOCK_FILENAME, Settings
from ._spec import check_relative_path
from ._transfer import (
    _MAX_REDIRECTS,
    _REDIRECT_STATUSES,
    CHUNK_SIZE,
    HttpMirror,
    Listing,
    Sink,
    _NotThereError,
    _PutMismatchError,
    _RetryError,
)
from ._urls import is_loopback_host, parse_endpoint, redact
from ._version import __version__

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "LOCK_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "OciDestination",
    "OciMirror",
    "OciReference",
    "is_oci",
    "parse_reference",
]

SCHEME = "oci://"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: ModelPack (CNCF model-spec v1) media types.
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_RAW = "application/vnd.cncf.model.doc.v1.raw"
CODE_RAW = "application/vnd.cncf.model.code.v1.raw"
#: The lock of what was pushed (not a ModelPack type: ModelPack has none for it).
LOCK_MEDIA_TYPE = "application/vnd.dp-models.lock.v1+json"
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_UNTESTED = "org.cncf.model.file.mediatype.untested"
ANNOTATION_TITLE = "org.opencontainers.image.title"
#: ORAS marks a layer that is a packed directory (a tar to unpack) this way.
_ANNOTATION_UNPACK = "io.deis.oras.content.unpack"

#: The largest manifest read (registries commonly refuse more than 4 MiB; a directory of
#: many thousands of files needs more).
MAX_MANIFEST_BYTES = 16 << 20
_MAX_LOCK_BYTES = 16 << 20
_MAX_SMALL_BYTES = 1 << 20
_MAX_LAYERS = 200_000
_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_EXPECTED = (
    "expected oci://REGISTRY[:PORT]/REPOSITORY:TAG or oci://REGISTRY[:PORT]/REPOSITORY@sha256:"
    "DIGEST (e.g. oci://registry.example.com/models/site:2026-05)"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
#: Suffixes and names of files that ModelPack calls weight configs, docs or code (a guess
#: from the name, hence ``mediatype.untested``); every other file is a weight.
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".txt", ".cfg", ".model", ".vocab", ".tiktoken")
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying")
_CODE_SUFFIXES = (".py", ".sh")


def is_oci(value: str) -> bool:
    """Whether ``value`` names an OCI registry (``oci://...``)."""
    return value[: len(SCHEME)].lower() == SCHEME


# -- references ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OciReference:
    """``oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]``, parsed
    (:func:`parse_reference`). It never holds credentials, so ``str()`` shows it whole."""

    #: Lowercased; an IPv6 address without brackets.
    host: str
    port: int | None
    repository: str
    tag: str | None = None
    #: ``sha256:<64 hex>``; when set, it is what is fetched (the tag is informative).
    digest: str | None = None

    @property
    def registry(self) -> str:
        """``HOST[:PORT]`` as written (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def name(self) -> str:
        """``oci://REGISTRY/REPOSITORY``, without tag or digest."""
        return f"{SCHEME}{self.registry}/{self.repository}"

    def by_digest(self, digest: str) -> OciReference:
        """This repository's manifest ``digest`` (``sha256:...``), without the tag."""
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(value: str) -> OciReference:
    """Parse an ``oci://`` reference, or raise :class:`ConfigurationError` saying what is
    wrong and what was expected.

    >>> str(parse_reference("oci://127.0.0.1:5000/models/site:v1"))
    'oci://127.0.0.1:5000/models/site:v1'
    >>> parse_reference("oci://registry.example.com/models@sha256:" + "0" * 64).tag is None
    True
    """

    def refuse(why: str) -> ConfigurationError:
        return ConfigurationError(f"{redact(value)!r} is not an OCI reference: {why}; {_EXPECTED}")

    text = value.strip()
    if not is_oci(text):
        raise refuse("it does not start with oci://")
    rest = text[len(SCHEME) :]
    if any(c.isspace() for c in rest):
        raise refuse("it holds whitespace")
    if "?" in rest or "#" in rest:
        raise refuse("a reference has no query or fragment")
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise refuse(
            "credentials do not belong in the reference (they would show in process lists "
            "and logs): log in with `docker login REGISTRY`; dp-models reads the Docker config "
            "($DOCKER_CONFIG/config.json, else ~/.docker/config.json)"
        )
    try:
        endpoint = parse_endpoint(f"https://{authority}")
    except ConfigurationError:
        raise refuse(f"{authority!r} is not a registry host (HOST or HOST:PORT)") from None
    digest: str | None = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise refuse("the digest must be sha256: and 64 lowercase hex digits")
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise refuse(
                f"the tag {tag[:40]!r} is not a tag (letters, digits, '_', '.', '-'; at "
                "most 128, not starting with '.' or '-')"
            )
    if not path:
        raise refuse("it names no repository")
    if not _REPOSITORY.fullmatch(path) or len(path) > 255:
        hint = " (repository names are lowercase)" if path.lower() != path else ""
        raise refuse(
            f"{path[:80]!r} is not a repository name{hint}: lowercase letters and digits, "
            "separated by '.', '_', '__', '-' or '/'"
        )
    return OciReference(endpoint.host, endpoint.port, path, tag, digest)


def _reference(value: str | OciReference) -> OciReference:
    return value if isinstance(value, OciReference) else parse_reference(value)


# -- credentials and transport ---------------------------------------------------------------


class _Credentials:
    """A user name and password for one registry; never shown (``repr`` masks both)."""

    __slots__ = ("_password", "_username", "source")

    def __init__(self, username: str, password: str, source: Path) -> None:
        self._username, self._password, self.source = username, password, source

    def basic(self) -> str:
        token = f"{self._username}:{self._password}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def __repr__(self) -> str:
        return f"_Credentials(***, source={str(self.source)!r})"


def _config_key(key: str) -> str:
    """An ``auths`` key as ``host[:port]``: ``https://reg:5000/v1/`` -> ``reg:5000``."""
    key = key.strip().lower()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.split("/", 1)[0]


def docker_credentials(registry: str, path: Path | None) -> _Credentials | None:
    """The credentials the Docker config ``path`` (None: no config) holds for ``registry``
    (``HOST[:PORT]``), or None. A config that cannot be read is a
    :class:`ConfigurationError` (naming the file, never its content)."""
    if path is None:
        return None
    try:
        raw = read_regular(path, max_bytes=_MAX_SMALL_BYTES)
    except FileNotFoundError:
        return None
    except (NotRegularFileError, FileTooLargeError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(f"the Docker config {path} cannot be read ({why})") from None
    try:
        data = load_json(raw)
    except JsonRejectedError as exc:
        raise ConfigurationError(
            f"the Docker config {path} is not valid JSON ({exc}); fix it or log in again with "
            "`docker login`"
        ) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {registry.lower()}
    if registry.lower() in _DOCKER_HUB:
        wanted |= _DOCKER_HUB
    for key, entry in auths.items():
        if not isinstance(key, str) or _config_key(key) not in wanted:
            continue
        if not isinstance(entry, dict):
            continue
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                user, colon, password = (
                    base64.b64decode(encoded, validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                raise ConfigurationError(
                    f"the Docker config {path}: the 'auth' of {_config_key(key)} is not base64 "
                    "of USER:PASSWORD; log in again with `docker login`"
                ) from None
            if colon:
                return _Credentials(user, password, path)
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str) and name:
            return _Credentials(name, secret, path)
    return None


def plain_http_allowed(host: str, port: int | None, listed: Sequence[str] = ()) -> bool:
    """Whether the registry ``host`` is reached over plain http: a loopback host, or one
    ``listed`` (``$DP_MODELS_OCI_PLAIN_HTTP``: ``HOST`` or ``HOST:PORT``)."""
    if is_loopback_host(host):
        return True
    shown = f"[{host}]" if ":" in host else host
    return host in listed or shown in listed or (port is not None and f"{shown}:{port}" in listed)


def _challenge(header: str | None) -> tuple[str, dict[str, str]]:
    """The scheme (lowercased) and parameters of a ``WWW-Authenticate`` header."""
    text = (header or "").strip()
    scheme, _, rest = text.partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


#: A request body: bytes, or a function that writes it to the connection (and may raise).
_Body: TypeAlias = Union[bytes, Callable[[http.client.HTTPConnection], None], None]  # noqa: UP007


class _Registry(HttpMirror):
    """The distribution API of one repository of one registry. It is an :class:`HttpMirror`
    so that a blob download is the mirror's (retries, range resume, length checks): its
    ``_request`` maps a file's path to its layer's blob. Authentication answers the
    registry's challenge (Basic, or a Bearer token), once for all threads."""

    def __init__(
        self,
        ref: OciReference,
        *,
        role: str,
        actions: str,
        settings: Settings,
        timeout_s: float,
        retries: int,
        backoff_s: float,
    ) -> None:
        self.ref = ref
        self.plain_http = settings.oci_plain_http
        self.docker_config = settings.docker_config
        host = "registry-1.docker.io" if ref.host in _DOCKER_HUB else ref.host
        self.api_repository = ref.repository
        if ref.host in _DOCKER_HUB and "/" not in ref.repository:
            self.api_repository = f"library/{ref.repository}"
        self.scheme = "http" if plain_http_allowed(ref.host, ref.port, self.plain_http) else "https"
        bracketed = f"[{host}]" if ":" in host else host
        port = ref.port or (80 if self.scheme == "http" else 443)
        super().__init__(
            f"{self.scheme}://{bracketed}:{port}",
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            role=role,
        )
        self.shown = str(ref)
        self.base = f"{self.scheme}://{bracketed}:{port}"
        self.origin = (self.scheme, host, port)
        self.scope = f"repository:{self.api_repository}:{actions}"
        self.credentials = docker_credentials(ref.registry, self.docker_config)
        #: path of a file -> its blob's sha256 (hex), for ``_request`` (an OciMirror's layers)
        self.blobs: dict[str, str] = {}
        self._authorization: str | None = None
        self._auth_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_Registry({self.shown!r})"

    def target(self, kind: str, reference: str) -> str:
        """The API path of a ``blobs`` or ``manifests`` ``reference``."""
        return f"/v2/{self.api_repository}/{kind}/{reference}"

    # -- requests ---------------------------------------------------------------------------

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout_s)
        return http.client.HTTPConnection(host, port, timeout=self.timeout_s)

    def send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: _Body = None,
        follow: bool = True,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send ``method`` to ``url`` (a path on the registry, or an absolute URL) and return
        the answer, not read. A 401 from the registry is answered (its challenge) and the
        request sent again; GET and HEAD follow redirects. The Authorization header goes
        to the registry's origin only. ``what`` names the request in messages."""
        url = urljoin(self.base + "/", url)
        seen: set[str] = set()
        answered = 0
        hops = 0
        while True:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise self._unavailable(what, "redirected to a URL that is not http(s)")
            port = parts.port or (443 if scheme == "https" else 80)
            origin = (scheme, parts.hostname or "", port)
            sent = self._authorization if origin == self.origin else None
            all_headers = {"User-Agent": f"dp-models/{__version__}", "Accept-Encoding": "identity"}
            all_headers.update(headers or {})
            if sent is not None:
                all_headers["Authorization"] = sent
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn = self._connect(*origin)
            try:
                if callable(body):
                    conn.putrequest(method, target, skip_accept_encoding=True)
                    for name, value in all_headers.items():
                        conn.putheader(name, value)
                    conn.endheaders()
                    body(conn)
                else:
                    conn.request(method, target, body=body, headers=all_headers)
                resp = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            if resp.status == 401 and origin == self.origin and answered < 2:
                challenge = resp.getheader("WWW-Authenticate")
                resp.close()
                conn.close()
                self._answer(challenge, sent, what)
                answered += 1
                continue
            if not follow or body is not None or resp.status not in _REDIRECT_STATUSES:
                return conn, resp
            location = resp.getheader("Location")
            resp.close()
            conn.close()
            if not location:
                raise self._unavailable(what, f"a redirect ({resp.status}) without a Location")
            seen.add(url)
            url = urljoin(url, location)
            hops += 1
            if url in seen or hops > _MAX_REDIRECTS:
                raise RedirectLoopError(
                    f"{self.role} {self.shown}: {what}: the redirects loop or go on for more "
                    f"than {_MAX_REDIRECTS} hops; fix the registry's configuration",
                    source=self.shown,
                    path=what,
                )

    def _request(
        self, method: str, rel: str, offset: int, *, query: str = ""
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str | None]:
        """:class:`HttpMirror`'s hook: the blob of the file ``rel``, from byte ``offset``."""
        digest = self.blobs.get(rel)
        if digest is None:
            raise _NotThereError
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        conn, resp = self.send(
            method, self.target("blobs", f"sha256:{digest}"), rel, headers=headers
        )
        if resp.status == 401:
            try:
                raise self.failure(resp, rel)
            finally:
                resp.close()
                conn.close()
        return conn, resp, digest

    # -- authentication -----------------------------------------------------------------------

    def _answer(self, challenge: str | None, sent: str | None, what: str) -> None:
        """Authenticate as the registry's ``challenge`` asks (the request carried ``sent``):
        once for every thread that got the challenge with the same header."""
        with self._auth_lock:
            if self._authorization != sent:
                return  # another thread has answered meanwhile
            scheme, params = _challenge(challenge)
            if scheme == "basic":
                if self.credentials is None:
                    raise self._no_credentials(what)
                self._authorization = self.credentials.basic()
            elif scheme == "bearer":
                self._authorization = "Bearer " + self._token(params, what)
            else:
                raise self._unavailable(
                    what,
                    f"the registry asks for {scheme or 'an unnamed'} authentication; dp-models "
                    "answers Basic and Bearer challenges",
                )

    def _token(self, params: Mapping[str, str], what: str) -> str:
        """A Bearer token from the token service the challenge names (the credentials, if
        any, go there as Basic authentication)."""
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        scheme = parts.scheme.lower()
        if not parts.hostname or scheme not in ("http", "https"):
            raise self._unavailable(what, "the registry's token challenge names no http(s) realm")
        if scheme == "http" and not plain_http_allowed(
            parts.hostname.lower(), parts.port, self.plain_http
        ):
            raise self._unavailable(
                what,
                f"the registry's token service {parts.hostname} is plain http: credentials are "
                "sent over https only (a loopback host or one in $DP_MODELS_OCI_PLAIN_HTTP "
                "excepted)",
            )
        scopes = [self.scope]
        if params.get("scope") and params["scope"] != self.scope:
            scopes.append(params["scope"])
        query = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        target = (parts.path or "/") + "?" + "&".join(filter(None, [parts.query, urlencode(query)]))
        headers = {"User-Agent": f"dp-models/{__version__}", "Accept-Encoding": "identity"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic()
        port = parts.port or (443 if scheme == "https" else 80)
        conn = self._connect(scheme, parts.hostname, port)
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read(_MAX_SMALL_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unavailable(
                what, f"the token service {parts.hostname}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            if self.credentials is None:
                raise self._no_credentials(what)
            raise self._refused(what)
        if resp.status != 200:
            raise self._unavailable(
                what, f"the token service {parts.hostname} answers HTTP {resp.status}"
            )
        try:
            data = load_json(body[:_MAX_SMALL_BYTES])
        except JsonRejectedError:
            data = None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise self._unavailable(
                what, f"the token service {parts.hostname} answered without a token"
            )
        return token

    def _no_credentials(self, what: str) -> SourceUnavailableError:
        return self._unavailable(
            what,
            f"the registry needs credentials for {self.ref.registry} and the Docker config "
            f"({self.docker_config}) has none: run `docker login {self.ref.registry}` "
            "(or point $DOCKER_CONFIG at a directory whose config.json has an 'auths' entry "
            "for it; credential helpers are not used)",
        )

    def _refused(self, what: str) -> SourceUnavailableError:
        source = self.credentials.source if self.credentials is not None else "-"
        return self._unavailable(
            what,
            f"the registry refuses the credentials for {self.ref.registry} (from {source}); "
            f"log in again with `docker login {self.ref.registry}`, and check that the "
            f"account may {self.scope.rsplit(':', 1)[-1]} {self.ref.repository}",
        )

    def failure(self, resp: http.client.HTTPResponse, what: str) -> Exception:
        """The error for an unexpected answer (read and closed by the caller): a
        :class:`_RetryError` for one worth another try, else a typed error."""
        if resp.status >= 500 or resp.status == 429:
            return _RetryError(f"HTTP {resp.status} {resp.reason}")
        if resp.status == 401:
            return (
                self._refused(what) if self.credentials is not None else self._no_credentials(what)
            )
        detail = ""
        try:
            data = load_json(resp.read(64 << 10))
            errors = data.get("errors") if isinstance(data, dict) else None
            if isinstance(errors, list):
                detail = "; ".join(
                    f"{e.get('code', '')}: {e.get('message', '')}"[:200]
                    for e in errors[:3]
                    if isinstance(e, dict)
                )
        except (JsonRejectedError, OSError, http.client.HTTPException):
            pass
        return self._unavailable(
            what, f"HTTP {resp.status} {resp.reason}" + (f" ({detail})" if detail else "")
        )

    # -- small reads and writes ------------------------------------------------------------------

    def get(
        self, target: str, what: str, max_bytes: int, *, accept: str | None = None
    ) -> tuple[http.client.HTTPResponse, bytes] | None:
        """GET the (small) ``target`` whole, retried: the answer (closed) and its body, or
        None when the registry does not have it."""

        def attempt() -> tuple[http.client.HTTPResponse, bytes] | None:
            headers = {"Accept": accept} if accept else {}
            conn, resp = self.send("GET", target, what, headers=headers)
            try:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise self.failure(resp, what)
                body = resp.read(max_bytes + 1)
            finally:
                resp.close()
                conn.close()
            if len(body) > max_bytes:
                raise self._unavailable(what, f"larger than the {max_bytes} bytes read")
            return resp, body

        return self._retrying(what, attempt, lambda: 0)

    def has_blob(self, digest: str, what: str) -> bool:
        """Whether the repository holds the blob ``sha256:digest`` (a HEAD; a redirect to
        its storage counts as yes)."""

        def attempt() -> bool:
            conn, resp = self.send(
                "HEAD", self.target("blobs", f"sha256:{digest}"), what, follow=False
            )
            try:
                if resp.status == 404:
                    return False
                if resp.status == 200 or resp.status in _REDIRECT_STATUSES:
                    return True
                raise self.failure(resp, what)
            finally:
                resp.close()
                conn.close()

        return self._retrying(what, attempt, lambda: 0)

    def upload(self, digest: str, size: int, body: Callable[[], _Body], what: str) -> None:
        """Upload the blob ``sha256:digest`` of ``size`` bytes: open an upload session, then
        PUT the bytes with their digest (the registry checks it too). ``body()`` gives the
        body anew for each try. Retried as a whole."""

        def attempt() -> None:
            conn, resp = self.send("POST", self.target("blobs", "uploads/"), what, follow=False)
            try:
                if resp.status != 202:
                    raise self.failure(resp, what)
                location = resp.getheader("Location")
                resp.read()
            finally:
                resp.close()
                conn.close()
            if not location:
                raise self._unavailable(what, "the registry opened an upload without a Location")
            url = urljoin(self.base + "/", location)
            url += ("&" if urlsplit(url).query else "?") + f"digest=sha256%3A{digest}"
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            self.put_checked(url, what, headers, body(), digest, "the blob")

        self._retrying(what, attempt, lambda: 0)

    def put_checked(
        self, url: str, what: str, headers: dict[str, str], body: Any, digest: str, noun: str
    ) -> None:
        """PUT ``body`` (a blob upload's last request, or a manifest) at ``url``: the
        registry must answer 201 and, when it names the digest it stored, name ``digest``."""
        conn, resp = self.send("PUT", url, what, headers=headers, body=body, follow=False)
        try:
            if resp.status != 201:
                raise self.failure(resp, what)
            stored = resp.getheader("Docker-Content-Digest")
            resp.read()
        finally:
            resp.close()
            conn.close()
        if stored is not None and stored != f"sha256:{digest}":
            raise self._unavailable(
                what, f"the registry stored {noun} as {stored[:80]}, not sha256:{digest}"
            )


# -- manifests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    media_type: str
    #: sha256, hex
    digest: str
    size: int


def _media_type(path: str) -> str:
    """ModelPack's raw media type for the file ``path``, guessed from its name."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith(_DOC_NAMES) or name.endswith(".md"):
        return DOC_RAW
    if name.endswith(_CODE_SUFFIXES):
        return CODE_RAW
    if name.endswith(_CONFIG_SUFFIXES):
        return WEIGHT_CONFIG_RAW
    return WEIGHT_RAW


def _packed(media_type: str, annotations: Mapping[str, str]) -> bool:
    """Whether a layer is an archive of its path (a tar, compressed or not) rather than the
    file's bytes: dp-models reads one raw file per layer."""
    if annotations.get(_ANNOTATION_UNPACK) == "true":
        return True
    if "+gzip" in media_type or "+zstd" in media_type:
        return True
    return media_type.startswith("application/vnd.cncf.model.") and ".tar" in media_type


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class _Parsed:
    files: dict[str, _Layer]
    #: paths whose layer is packed (a tar): their media type
    packed: dict[str, str]
    lock: _Layer | None


def _parse_manifest(raw: bytes, content_type: str | None, shown: str) -> _Parsed:
    """The files (path -> layer) of an OCI image manifest, its packed layers and its lock
    layer. Raises :class:`OciManifestError` for anything but a well-formed manifest whose
    paths stay inside a root."""

    def bad(why: str, path: str | None = None) -> OciManifestError:
        return OciManifestError(
            f"registry {shown}: the manifest {why}; it cannot be pulled. Push the root again "
            "with `dp-models push`, or name another reference.",
            reference=shown,
            path=path,
        )

    try:
        data = load_json(raw)
    except JsonRejectedError as exc:
        raise bad(f"is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad("is not a JSON object")
    media_type = data.get("mediaType", (content_type or "").split(";")[0].strip())
    if media_type in _INDEX_MEDIA_TYPES:
        raise bad(
            "is an image index (a list of manifests), not an artifact: name one of its "
            "manifests by digest"
        )
    if media_type == _DOCKER_MANIFEST:
        raise bad("is a Docker image manifest, not an OCI artifact manifest")
    if media_type != MANIFEST_MEDIA_TYPE or data.get("schemaVersion") != 2:
        raise bad(f"is not an OCI image manifest (schemaVersion 2, {MANIFEST_MEDIA_TYPE})")
    layers = data.get("layers")
    if not isinstance(layers, list) or len(layers) > _MAX_LAYERS:
        raise bad(f"has no list of layers (or more than {_MAX_LAYERS})")
    parsed = _Parsed({}, {}, None)
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise bad(f"layer {index} is not an object")
        mt, digest, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
        annotations = layer.get("annotations", {})
        if not isinstance(mt, str) or not isinstance(digest, str) or type(size) is not int:
            raise bad(f"layer {index} lacks a mediaType, digest or size")
        found = _DIGEST.fullmatch(digest)
        if found is None or size < 0:
            raise bad(f"layer {index}: digest {digest[:80]!r} is not sha256 (or size < 0)")
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise bad(f"layer {index}: annotations must map strings to strings")
        entry = _Layer(mt, found.group(1), size)
        if mt == LOCK_MEDIA_TYPE:
            if parsed.lock is not None:
                raise bad("has two lock layers")
            parsed.lock = entry
            continue
        named = [
            annotations[k] for k in (ANNOTATION_FILEPATH, ANNOTATION_TITLE) if k in annotations
        ]
        for path in named:
            if (problem := check_relative_path(path)) is not None:
                raise bad(f"names a layer's path {path[:120]!r}, which {problem}", path[:200])
        if not named:
            continue  # a layer that is no file of a root (docs, another tool's extras)
        path = named[0]  # ModelPack's filepath, else the title
        if path in parsed.files or path in parsed.packed:
            raise bad(f"names the path {path[:120]!r} twice", path[:200])
        if _packed(mt, annotations):
            parsed.packed[path] = mt
        else:
            parsed.files[path] = entry
    paths = sorted([*parsed.files, *parsed.packed])
    for before, after in itertools.pairwise(paths):
        if after.startswith(before + "/"):
            raise bad(f"names {before!r} as a file and as a directory ({after!r})", after[:200])
    return parsed


# -- the mirror ------------------------------------------------------------------------------------


class OciMirror:
    """A registry's artifact as a pull mirror (module docs): ``oci://REGISTRY/REPO:TAG``
    (resolved to its digest when made) or ``...@sha256:...``. ``shown`` and :meth:`where`
    give the artifact by digest, for the report and the lock; ``requested`` is the
    reference as given, ``reference`` the resolved one."""

    role = "mirror"
    lists = True

    def __init__(
        self,
        reference: str | OciReference,
        *,
        settings: Settings | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        ref = _reference(reference)
        if ref.tag is None and ref.digest is None:
            raise ConfigurationError(
                f"{ref}: name a tag or a digest to pull ({ref}:TAG or {ref}@sha256:...)"
            )
        self.requested = ref
        self._registry = _Registry(
            ref,
            role="mirror",
            actions="pull",
            settings=settings or Settings.resolve(),
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
        )
        digest, raw, content_type = self._resolve(ref)
        self.reference = ref.by_digest(f"sha256:{digest}")
        #: The manifest's digest (``sha256:...``).
        self.digest = f"sha256:{digest}"
        self.shown = self._registry.shown = str(self.reference)
        self._parsed = _parse_manifest(raw, content_type, self.shown)
        self._registry.blobs = {path: layer.digest for path, layer in self._parsed.files.items()}
        self._lock: Lock | None = None
        self._lock_read = False
        self._lock_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"OciMirror({self.shown!r})"

    def _resolve(self, ref: OciReference) -> tuple[str, bytes, str | None]:
        """The manifest's digest (hex), bytes and Content-Type; the bytes checked against
        the digest asked for, or the one the registry announces for a tag."""
        what = "the manifest"
        name = ref.digest or ref.tag or ""
        got = self._registry.get(
            self._registry.target("manifests", name),
            what,
            MAX_MANIFEST_BYTES,
            accept=", ".join([MANIFEST_MEDIA_TYPE, *sorted(_INDEX_MEDIA_TYPES)]),
        )
        if got is None:
            raise SourceUnavailableError(
                f"registry {ref}: no such manifest (the repository or the "
                f"{'digest' if ref.digest else 'tag'} does not exist); push it with "
                "`dp-models push --to`, or check the reference",
                source=str(ref),
            )
        resp, raw = got
        actual = hashlib.sha256(raw).hexdigest()
        announced = resp.getheader("Docker-Content-Digest")
        expected = ref.digest or announced
        if expected is not None and expected != f"sha256:{actual}":
            raise OciManifestError(
                f"registry {ref}: the manifest's bytes have the digest sha256:{actual}, but "
                f"{'were fetched by' if ref.digest else 'the registry announces'} "
                f"{expected[:80]}: the registry serves other bytes than it names. Nothing "
                "was pulled from it.",
                reference=str(ref),
            )
        return actual, raw, resp.getheader("Content-Type")

    # -- the Mirror interface ------------------------------------------------------------

    def where(self, rel: str) -> str:
        return self.shown

    def probe(self, rel: str) -> int | None:
        layer = self._parsed.files.get(rel)
        return None if layer is None else layer.size

    def list(self, rel: str) -> dict[str, Listing] | None:
        prefix = rel.rstrip("/") + "/"
        found = {
            path[len(prefix) :]: Listing(layer.size, layer.digest)
            for path, layer in self._parsed.files.items()
            if path.startswith(prefix)
        }
        return found or None

    def fetch(self, rel: str, sink: Sink) -> None:
        layer = self._parsed.files.get(rel)
        if layer is None:
            if rel in self._parsed.packed:
                raise SourceUnavailableError(
                    f"registry {self.shown}: {rel} is packed in a "
                    f"{self._parsed.packed[rel]} layer; dp-models reads one file per raw "
                    "layer (push the root with `dp-models push`)",
                    source=self.shown,
                    path=rel,
                )
            raise _NotThereError
        if sink.size is not None and sink.size != layer.size:
            raise PulledFileMismatchError(
                f"registry {self.shown}: {rel} is a layer of {layer.size} bytes, the pin "
                f"{sink.size}: the artifact holds another file",
                source=self.shown,
                path=rel,
                expected=f"{sink.size} bytes",
                actual=f"{layer.size} bytes",
            )
        sink.size = layer.size
        sink.published = layer.digest
        self._registry.fetch(rel, sink)
        actual = sink.hash.hexdigest()
        if actual != layer.digest:
            raise PulledFileMismatchError(
                f"registry {self.shown}: {rel}: the blob sha256:{layer.digest} arrived as "
                f"bytes of sha256 {actual}: the registry's storage holds other bytes than its "
                "digest. Nothing was written.",
                source=self.shown,
                path=rel,
                expected=layer.digest,
                actual=actual,
            )

    # -- the pushed lock -------------------------------------------------------------------

    def manifest(self) -> Lock | None:
        """The lock ``dp-models push`` stored with the artifact (its lock layer, checked
        against the layer's digest), or None when it has none. Read once."""
        with self._lock_guard:
            if not self._lock_read:
                self._lock = self._read_lock()
                self._lock_read = True
            return self._lock

    def _read_lock(self) -> Lock | None:
        layer = self._parsed.lock
        if layer is None:
            return None
        if layer.size > _MAX_LOCK_BYTES:
            raise OciManifestError(
                f"registry {self.shown}: the lock layer is {layer.size} bytes, more than the "
                f"{_MAX_LOCK_BYTES} a lock may be",
                reference=self.shown,
            )
        what = LOCK_FILENAME
        got = self._registry.get(
            self._registry.target("blobs", f"sha256:{layer.digest}"), what, _MAX_LOCK_BYTES
        )
        if got is None:
            raise SourceUnavailableError(
                f"registry {self.shown}: the lock layer's blob is missing", source=self.shown
            )
        raw = got[1]
        actual = hashlib.sha256(raw).hexdigest()
        if actual != layer.digest:
            raise OciManifestError(
                f"registry {self.shown}: the lock layer sha256:{layer.digest} arrived as bytes "
                f"of sha256 {actual}",
                reference=self.shown,
            )
        try:
            return Lock.parse(raw, Path(LOCK_FILENAME))
        except LockError as exc:
            raise OciManifestError(
                f"registry {self.shown}: the lock layer is not a valid lock ({exc})",
                reference=self.shown,
            ) from None

    def entry(self, rel: str) -> LockEntry | None:
        """The pushed lock's entry for the artifact at ``rel``, if any."""
        lock = self.manifest()
        return None if lock is None else lock.artifacts.get(rel)


# -- the destination ---------------------------------------------------------------------------


class OciDestination:
    """Pushes a root's files to ``oci://REGISTRY/REPO:TAG`` as one artifact (module docs):
    each file a blob (:meth:`put`), then the config, the lock layer and the manifest, tagged
    (:meth:`commit`). The tag moves only in :meth:`commit`, after every blob is stored."""

    def __init__(
        self,
        reference: str | OciReference,
        *,
        settings: Settings | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        ref = _reference(reference)
        if ref.digest is not None or ref.tag is None:
            raise ConfigurationError(
                f"{ref}: push names a tag ({ref.name}:TAG), which it moves to what it pushed; "
                "a digest is what a push returns, not where it goes"
            )
        self.reference = ref
        self.shown = str(ref)
        self._registry = _Registry(
            ref,
            role="registry",
            actions="pull,push",
            settings=settings or Settings.resolve(),
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
        )

    def __repr__(self) -> str:
        return f"OciDestination({self.shown!r})"

    def has(self, rel: str, size: int, sha256: str) -> bool:
        # a blob is addressed by its content: having the digest is having the bytes
        return self._registry.has_blob(sha256, rel)

    def put(
        self,
        rel: str,
        fd: int,
        size: int,
        sha256: str,
        advance: Callable[[int], None],
        *,
        unchanged: Callable[[], bool] | None = None,
    ) -> None:
        # always hashed as it streams (the registry checks the digest too): ``unchanged``
        # is checked as well, for a file that changed back to its verified bytes meanwhile
        def body() -> _Body:
            def write(conn: http.client.HTTPConnection) -> None:
                hasher, sent = hashlib.sha256(), 0
                while sent < size:
                    chunk = os.pread(fd, min(CHUNK_SIZE, size - sent), sent)
                    if not chunk:
                        break  # the file got shorter: the registry never gets a whole body
                    hasher.update(chunk)
                    conn.send(chunk)
                    sent += len(chunk)
                    advance(len(chunk))
                if sent != size or hasher.hexdigest() != sha256:
                    # not waiting for the registry's answer: it refuses the digest too
                    raise _PutMismatchError(hasher.hexdigest(), sent)
                if unchanged is not None and not unchanged():
                    raise _PutMismatchError(None, sent)

            return write

        self._registry.upload(sha256, size, body, rel)

    def _put_bytes(self, data: bytes, what: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self._registry.has_blob(digest, what):
            self._registry.upload(digest, len(data), lambda: data, what)
        return digest

    def commit(self, manifest: bytes) -> str:
        files = _files_of(manifest, self.shown)
        lock_digest = self._put_bytes(manifest, LOCK_FILENAME)
        layers: list[dict[str, Any]] = []
        for path, (sha256, size) in sorted(files.items()):
            metadata = {
                "name": path,
                "mode": 0o644,
                "uid": 0,
                "gid": 0,
                "size": size,
                "mtime": "1970-01-01T00:00:00Z",
                "typeflag": ord("0"),
            }
            layers.append(
                {
                    "mediaType": _media_type(path),
                    "digest": f"sha256:{sha256}",
                    "size": size,
                    "annotations": {
                        ANNOTATION_FILEPATH: path,
                        ANNOTATION_TITLE: path,
                        ANNOTATION_FILE_METADATA: json.dumps(metadata, sort_keys=True),
                        ANNOTATION_UNTESTED: "true",
                    },
                }
            )
        layers.append(
            {
                "mediaType": LOCK_MEDIA_TYPE,
                "digest": f"sha256:{lock_digest}",
                "size": len(manifest),
                "annotations": {ANNOTATION_TITLE: LOCK_FILENAME},
            }
        )
        config = _dumps(
            {
                "descriptor": {},
                "config": {},
                "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]},
            }
        )
        config_digest = self._put_bytes(config, "the config")
        body = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "config": {
                    "mediaType": CONFIG_MEDIA_TYPE,
                    "digest": f"sha256:{config_digest}",
                    "size": len(config),
                },
                "layers": layers,
            }
        )
        digest = hashlib.sha256(body).hexdigest()
        registry = self._registry
        what = "the manifest"

        def attempt() -> None:
            url = registry.target("manifests", self.reference.tag or "")
            headers = {"Content-Type": MANIFEST_MEDIA_TYPE}
            registry.put_checked(url, what, headers, body, digest, "it")

        registry._retrying(what, attempt, lambda: 0)
        return str(self.reference.by_digest(f"sha256:{digest}"))

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""


def _files_of(manifest: bytes, shown: str) -> dict[str, tuple[str, int]]:
    """Every file (path below the root -> sha256, size) the lock ``manifest`` lists: a file
    artifact, and each file of a directory artifact's manifest."""
    try:
        lock = Lock.parse(manifest, Path(LOCK_FILENAME))
    except LockError as exc:
        raise LockError(f"the lock to push to {shown} is not valid: {exc}") from None
    files: dict[str, tuple[str, int]] = {}

    def add(path: str, sha256: str, size: int) -> None:
        if files.setdefault(path, (sha256, size)) != (sha256, size):
            raise LockError(f"the lock to push to {shown} pins {path} twice, to other bytes")

    for path, entry in sorted(lock.artifacts.items()):
        if entry.kind == "file":
            add(path, entry.sha256, entry.size)
        elif entry.files is None:
            raise LockError(
                f"the lock to push to {shown} has no manifest for the directory {path}: "
                "a registry holds a directory file by file; `dp-models lock --root ROOT` "
                "records it"
            )
        else:
            for rel, f in entry.files.items():
                add(f"{path}/{rel}", f.sha256, f.size)
    return files
