"""A real S3-compatible server for tests and benchmarks: moto's server mode
(``moto_server``: ``pip install 'moto[server]'``, in dp_models' test extra) on a free
127.0.0.1 port, in its own process group, stopped for sure.

>>> server = S3Server(tmp_path / "moto.log")          # doctest: +SKIP
>>> os.environ.update(server.environ())               # doctest: +SKIP
>>> dp_models.push(["emonet_8"], to=f"s3://{server.bucket()}/site", root=root)  # doctest: +SKIP
>>> server.stop()                                     # doctest: +SKIP

:meth:`S3Server.environ` gives the standard AWS settings that point a client (and a Triton
server) at it; :meth:`S3Server.bucket` makes a fresh bucket. moto keeps objects in memory
and serves ranged GETs slowly (it reads the whole object for each): fine for tests, not a
model of a real store's speed."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .._errors import S3ServerError

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "S3Server"]

ACCESS_KEY = "AKIADPMODELSTEST0001"
#: Distinctive, so a test can prove it never appears in messages or reports.
SECRET_KEY = "dpm-s3cr3t-9f8e7d6c5b4a"
REGION = "us-east-1"
_names = itertools.count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise S3ServerError(
            "moto_server is not installed: the test extra brings it (scripts/test.sh installs "
            "it), or pip install 'moto[server]'"
        )
    return found


class S3Server:
    """moto's S3 server on loopback (module docs)."""

    def __init__(self, log: str | os.PathLike[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # closed in stop()
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        self.proc = subprocess.Popen(
            [_executable(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise S3ServerError(f"moto_server exited with {self.proc.returncode}: see {log}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise S3ServerError(
                        f"moto_server did not answer within 60 s: see {log}"
                    ) from None
                time.sleep(0.1)

    def environ(self) -> dict[str, str]:
        """The standard AWS settings that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.url,
        }

    def client(self) -> Any:
        """A boto3 client of this server (not from the environment)."""
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def bucket(self, client: Any = None) -> str:
        """A new, empty bucket's name."""
        name = f"dp-models-test-{os.getpid()}-{next(_names)}"
        (client or self.client()).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
