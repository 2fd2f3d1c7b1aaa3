"""A real S3-compatible server for the tests: moto's server mode (``moto_server``, from the
test extra) on a free 127.0.0.1 port, in its own process group, stopped for sure. The AWS
settings a client needs to reach it come from :meth:`S3Server.environ`; :meth:`bucket`
makes a fresh bucket."""

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
        raise RuntimeError(
            "moto_server is not installed: the test extra brings it (scripts/test.sh installs "
            "it), or pip install 'moto[server]'"
        )
    return found


class S3Server:
    """moto's S3 server on loopback (module docs)."""

    def __init__(self, log: Path) -> None:
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
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}: see {log}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
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
        import boto3
        from botocore.config import Config

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
