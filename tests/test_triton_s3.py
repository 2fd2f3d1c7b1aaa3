"""``dp-models triton export --to s3://...``: the model repository written to a real
S3-compatible server (moto, loopback), then served from there by a real ``tritonserver``
started with ``--model-repository=s3://...``; the client's served-digest check passes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dp_models import ArtifactChangedError, ModelManager, TritonExportError
from dp_models import _s3 as s3_module
from dp_models.testing import run_cli
from dp_models.testing.triton import TritonServer, expected_standin_outputs
from dp_models.triton.repository import export_repository

from .test_triton_server import make_tiny

ECHO = "tiny_echo_triton"


def keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", ()))


def test_export_to_s3_then_a_real_server_serves_it_and_the_digest_checks(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny(tmp_path / "tiny")
    bucket = s3.bucket()
    store = f"s3://{bucket}/triton/v1"
    argv = ["triton", "export", ECHO, "--root", str(tiny.root), "--catalog", str(tiny.catalog_dir)]
    assert run_cli([*argv, "--to", store]) == 0
    out = capsys.readouterr().out
    repository = f"s3://{s3.url}/{bucket}/triton/v1"  # Triton's form for a non-AWS endpoint
    assert s3_module.triton_repository_url(store) == repository
    assert f"--model-repository {repository}" in out
    assert keys(s3, bucket) == [
        "triton/v1/tiny_echo/1/README.txt",
        "triton/v1/tiny_echo/1/model.py",
        "triton/v1/tiny_echo/config.pbtxt",
    ]
    # the server reads the repository straight from the store, with the AWS variables
    server = TritonServer().start(repository)
    try:
        mm = ModelManager(
            models_root=tiny.root,
            catalog=tiny.catalog_dir,
            triton_endpoints={"default": server.url},
        )
        health = mm.check([ECHO])
        assert health["ok"], health
        assert [m["served_digest_verified"] for m in health["models"]] == [True]
        client = mm.get(ECHO).client()
        spec = tiny.catalog[ECHO]
        arrays = {
            "x": np.arange(8, dtype=np.float32).reshape(2, 4),
            "ids": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64),
        }
        got = client.infer(arrays)
        want = expected_standin_outputs(spec, arrays)
        np.testing.assert_allclose(got["total"], want["total"])
    finally:
        server.stop()
    # an export never overwrites a repository in place
    with pytest.raises(TritonExportError, match="not empty"):
        export_repository(tiny.catalog, tiny.root, store, [ECHO])


@pytest.mark.adversarial
def test_a_file_that_changes_while_it_is_uploaded_abandons_the_export(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = make_tiny(tmp_path / "tiny")
    readme = tiny.root / "triton/tiny_echo/README.txt"
    real_put = s3_module.S3Destination.put

    def put_after_a_change(self: Any, rel: str, fd: int, *args: Any, **kw: Any) -> None:
        if rel.endswith("README.txt"):
            readme.write_bytes(b"X" + readme.read_bytes()[1:])
        real_put(self, rel, fd, *args, **kw)

    monkeypatch.setattr(s3_module.S3Destination, "put", put_after_a_change)
    bucket = s3.bucket()
    with pytest.raises(ArtifactChangedError, match="changed after it was verified"):
        export_repository(tiny.catalog, tiny.root, f"s3://{bucket}/r", [ECHO])
    assert keys(s3, bucket) == []  # what was uploaded before is removed


@pytest.mark.adversarial
def test_a_file_that_changes_after_verification_is_never_uploaded(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the verification and the upload (here: while the prefix is checked) a file
    is rewritten: the export stops before sending it, and no config.pbtxt ever appears."""
    tiny = make_tiny(tmp_path / "tiny")
    readme = tiny.root / "triton/tiny_echo/README.txt"
    real = s3_module.S3Destination.holds_anything
    seen: list[list[str]] = []

    def change_then_check(self: Any) -> bool:
        time.sleep(0.01)  # a later ctime, whatever the clock's granularity
        readme.write_bytes(b"X" + readme.read_bytes()[1:])
        return bool(real(self))

    real_write = s3_module.S3Destination.write
    real_put = s3_module.S3Destination.put
    put: list[str] = []

    def spy_write(self: Any, rel: str, data: bytes, **kw: Any) -> None:
        seen.append([rel])
        real_write(self, rel, data, **kw)

    def spy_put(self: Any, rel: str, *args: Any, **kw: Any) -> None:
        put.append(rel)
        real_put(self, rel, *args, **kw)

    monkeypatch.setattr(s3_module.S3Destination, "holds_anything", change_then_check)
    monkeypatch.setattr(s3_module.S3Destination, "write", spy_write)
    monkeypatch.setattr(s3_module.S3Destination, "put", spy_put)
    bucket = s3.bucket()
    with pytest.raises(ArtifactChangedError, match="changed after it was verified"):
        export_repository(tiny.catalog, tiny.root, f"s3://{bucket}/r", [ECHO])
    assert keys(s3, bucket) == []
    assert seen == []  # no config was ever written
    # the changed file was refused before a byte of it was sent (its identity moved)
    assert not [rel for rel in put if rel.endswith("README.txt")], put


def test_export_to_a_store_refuses_link_and_a_missing_bucket(s3: Any, tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path / "tiny")
    with pytest.raises(TritonExportError, match="s3://BUCKET/PREFIX"):
        export_repository(tiny.catalog, tiny.root, "oci://reg.example/models/triton:v1", [ECHO])
    argv = ["triton", "export", ECHO, "--root", str(tiny.root), "--catalog", str(tiny.catalog_dir)]
    assert run_cli([*argv, "--to", "oci://reg.example/models/triton:v1"]) != 0
    assert not list(Path.cwd().glob("oci:*"))
    with pytest.raises(TritonExportError, match="--link"):
        export_repository(tiny.catalog, tiny.root, "s3://b/r", [ECHO], link=True)
    with pytest.raises(TritonExportError, match="NoSuchBucket"):
        export_repository(tiny.catalog, tiny.root, "s3://no-such-bucket-dp-models/r", [ECHO])
