"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution), which
``scripts/registry_env.sh`` installs, on a free 127.0.0.1 port with its storage in a
temporary directory, in its own process group (stopped for sure). Optionally with
htpasswd (Basic) authentication, Bearer token authentication against :class:`TokenService`
(a real token issuer: ES256 JWTs signed by a throwaway certificate the registry trusts),
and blob downloads redirected to :class:`StorageServer`, a second loopback origin that
serves the registry's storage directory and records the headers it gets."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

BINARY_NAMES = ("docker-registry", "registry")


def find_registry() -> str:
    """The registry binary, or a test failure that says how to install it."""
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "no OCI registry binary (docker-registry) on PATH: run scripts/registry_env.sh "
        "(scripts/test.sh does)"
    )


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line (``htpasswd`` from apache2-utils: registry_env.sh installs it)."""
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("no htpasswd on PATH: run scripts/registry_env.sh (apache2-utils)")
    out = subprocess.run(
        [tool, "-nbB", user, password], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip() + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StorageServer:
    """A loopback HTTP server (its own origin) serving ``root``'s files, as an object store
    a registry redirects blob downloads to; ``headers`` records each request's headers."""

    def __init__(self, root: Path) -> None:
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.headers.append(dict(self.headers.items()))
                path = root / unquote(urlsplit(self.path).path).lstrip("/")
                if not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, status = 0, 200
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
                    start, status = int(ranged[6:-1]), 206
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenService:
    """A Docker-style token service on loopback: ``GET /token?service=&scope=`` with Basic
    credentials ``user``/``password`` answers ``{"token": JWT}`` granting the scopes asked
    (anonymous or wrong credentials: 401). ``authorizations`` records what it got."""

    SERVICE = "dp-models-test-registry"
    ISSUER = "dp-models-test-issuer"

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dp-models test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.certificate = workdir / "token-issuer.pem"
        self.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.authorizations: list[str | None] = []
        service = self

        def jwt(claims: dict[str, Any]) -> str:
            header = {"alg": "ES256", "typ": "JWT", "x5c": [x5c]}
            signing_input = (
                _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
            )
            der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                service.authorizations.append(auth)
                if auth != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                query = parse_qs(urlsplit(self.path).query)
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                now = int(time.time())
                token = jwt(
                    {
                        "iss": TokenService.ISSUER,
                        "sub": user,
                        "aud": TokenService.SERVICE,
                        "exp": now + 300,
                        "nbf": now - 10,
                        "iat": now,
                        "jti": secrets.token_hex(8),
                        "access": access,
                    }
                )
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry:
    """A running ``docker-registry serve`` on 127.0.0.1 (module docs). ``url``:
    ``oci://127.0.0.1:PORT``; ``storage``: its filesystem storage root."""

    def __init__(
        self,
        workdir: Path,
        *,
        htpasswd: tuple[str, str] | None = None,
        token: TokenService | None = None,
        redirect_to: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.binary = find_registry()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._auth: dict[str, Any] = {}
        if htpasswd is not None:
            path = workdir / "htpasswd"
            path.write_text(htpasswd_line(*htpasswd))
            self._auth = {"htpasswd": {"realm": "dp-models-test", "path": str(path)}}
        elif token is not None:
            self._auth = {
                "token": {
                    "realm": token.realm,
                    "service": TokenService.SERVICE,
                    "issuer": TokenService.ISSUER,
                    "rootcertbundle": str(token.certificate),
                }
            }
        self._redirect_to = redirect_to
        self.log = workdir / "registry.log"

    @property
    def url(self) -> str:
        return f"oci://127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(16)},
        }
        if self._auth:
            config["auth"] = self._auth
        if self._redirect_to is not None:
            config["middleware"] = {
                "storage": [{"name": "redirect", "options": {"baseurl": self._redirect_to}}]
            }
        return config

    def start(self) -> Registry:
        for _ in range(3):  # a free port may be taken between the probe and the bind
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(json.dumps(self._config()))  # YAML is a superset of JSON
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "serve", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            if self._wait():
                return self
            self.stop()
        raise RuntimeError(f"the registry did not start: {self.log.read_text()[-2000:]}")

    def _wait(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps the blob ``sha256:...`` (or bare hex) on disk."""
        hex_ = digest.removeprefix("sha256:")
        return self.storage / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data"

    # -- raw API access for tests that write what dp-models never would -------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` as a blob of ``repository`` (no auth); its ``sha256:...``."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert status == 202, status
        location = urlsplit(headers["Location"])
        target = f"{location.path}?{location.query}&digest={digest}"
        status, _, body = self.request(
            "PUT", target, data, {"Content-Type": "application/octet-stream"}
        )
        assert status == 201, (status, body)
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: Any, media_type: str) -> str:
        """PUT ``manifest`` (JSON-able, or bytes as they are); its ``sha256:...``."""
        raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        status, _, body = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", raw, {"Content-Type": media_type}
        )
        assert status == 201, (status, body)
        return "sha256:" + hashlib.sha256(raw).hexdigest()
