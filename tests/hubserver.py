"""A Hugging Face-style file server on 127.0.0.1 for pull --upstream tests: real HTTP, no
mock of the client.

It serves

* repositories at one revision: ``/ORG/NAME/resolve/REVISION/PATH``. As the hub does, a
  file listed in ``lfs`` answers with a redirect to ``/cdn/<sha256>`` carrying
  ``X-Linked-Etag: "<sha256>"`` and ``X-Repo-Commit``; other files answer directly. Any
  other revision is a 404. ``/api/models/ORG/NAME/tree/REVISION[/FOLDER]?recursive=true``
  lists the files (with ``lfs.oid`` for LFS files), as the hub's tree API does;
* plain files: ``/files/PATH``, with ``/files/PATH.sha256`` when ``sidecars`` has it;
* range requests everywhere (``/cdn``, ``/files``), and per-path ``faults``: ``lie``
  (the published sha256 is another one), ``wrong`` (one byte changed), ``404``, and, on a
  tree listing, ``escape`` (it lists a file outside the folder).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"


class HubServer:
    def __init__(self) -> None:
        #: repo -> {path in repo: bytes}
        self.repos: dict[str, dict[str, bytes]] = {}
        #: repo -> paths served as LFS files
        self.lfs: dict[str, set[str]] = {}
        self.files: dict[str, bytes] = {}
        self.sidecars: dict[str, str] = {}
        self.faults: dict[str, str] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _send(
                self, data: bytes, *, body: bool, kind: str = "application/octet-stream"
            ) -> None:
                start, status = 0, 200
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
                    start, status = int(ranged[6:-1]), 206
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

            def _answer(self, *, body: bool) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                with server._lock:
                    server.requests.append(f"{self.command} {self.path}")
                    fault = server.faults.get(path)
                if fault == "404":
                    self.send_error(404)
                    return
                if path.startswith("/cdn/"):
                    data = server._blob(path[len("/cdn/") :])
                    if data is None:
                        self.send_error(404)
                        return
                    if fault == "wrong":
                        data = bytes([data[0] ^ 1]) + data[1:]
                    self._send(data, body=body)
                    return
                if path.startswith("/files/"):
                    rel = path[len("/files/") :]
                    if rel.endswith(".sha256") and rel[: -len(".sha256")] in server.sidecars:
                        text = f"{server.sidecars[rel[: -len('.sha256')]]}  {rel}\n"
                        self._send(text.encode(), body=body, kind="text/plain")
                    elif rel in server.files:
                        data = server.files[rel]
                        if fault == "wrong":
                            data = bytes([data[0] ^ 1]) + data[1:]
                        self._send(data, body=body)
                    else:
                        self.send_error(404)
                    return
                if path.startswith("/api/models/"):
                    self._tree(path[len("/api/models/") :], body=body, escape=fault == "escape")
                    return
                if "/resolve/" in path:
                    repo, rest = path.lstrip("/").split("/resolve/", 1)
                    revision, _, rel = rest.partition("/")
                    content = server.repos.get(repo, {})
                    if revision != REVISION or rel not in content:
                        self.send_error(404)
                        return
                    data = content[rel]
                    if rel in server.lfs.get(repo, set()):
                        digest = hashlib.sha256(data).hexdigest()
                        shown = "0" * 64 if fault == "lie" else digest
                        self.send_response(302)
                        self.send_header("Location", f"/cdn/{digest}")
                        self.send_header("X-Linked-Etag", f'"{shown}"')
                        self.send_header("X-Repo-Commit", REVISION)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if fault == "wrong":
                        data = bytes([data[0] ^ 1]) + data[1:]
                    self._send(data, body=body)
                    return
                self.send_error(404)

            def _tree(self, rest: str, *, body: bool, escape: bool) -> None:
                repo_parts = rest.split("/")
                repo = "/".join(repo_parts[:2])
                if len(repo_parts) < 4 or repo_parts[2] != "tree" or repo_parts[3] != REVISION:
                    self.send_error(404)
                    return
                folder = "/".join(repo_parts[4:]).strip("/")
                prefix = folder + "/" if folder else ""
                content = server.repos.get(repo)
                if content is None:
                    self.send_error(404)
                    return
                entries: list[dict[str, Any]] = []
                for rel, data in sorted(content.items()):
                    if not rel.startswith(prefix):
                        continue
                    entry: dict[str, Any] = {"type": "file", "path": rel, "size": len(data)}
                    entry["oid"] = hashlib.sha1(data).hexdigest()
                    if rel in server.lfs.get(repo, set()):
                        entry["lfs"] = {
                            "oid": hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                            "pointerSize": 134,
                        }
                    entries.append(entry)
                if escape:  # a listing naming a file outside the folder
                    entries.append({"type": "file", "path": f"{prefix}../escaped", "size": 1})
                dirs = {r.rsplit("/", 1)[0] for r in content if "/" in r}
                entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in sorted(dirs)]
                self._send(json.dumps(entries).encode(), body=body, kind="application/json")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _blob(self, sha256: str) -> bytes | None:
        for content in self.repos.values():
            for data in content.values():
                if hashlib.sha256(data).hexdigest() == sha256:
                    return data
        return None

    def add_repo(self, repo: str, directory: Path, *, lfs: set[str]) -> None:
        """Serve every file under ``directory`` as repository ``repo`` at REVISION."""
        self.repos[repo] = {
            p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*"))
            if p.is_file()
        }
        self.lfs[repo] = lfs

    def gets(self) -> list[str]:
        with self._lock:
            return [r.split(" ", 1)[1] for r in self.requests if r.startswith("GET ")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
