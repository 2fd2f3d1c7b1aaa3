"""A real Triton Inference Server on loopback: the stand-ins of every Triton spec of the
packaged catalog, and a repository written by ``export_repository``, served by one
``tritonserver`` (from .venv-triton, installed by scripts/triton_env.sh) shared by the
module, checked through ``tritonclient.http`` with binary tensors.

The server in the nvidia-pytriton wheel has the Python backend only: exports of ONNX
(onnxruntime_onnx) specs are checked here by their files and rendered config, the
exported Python-backend spec is loaded and queried by the real server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from dp_models._catalog import Catalog
from dp_models._cli import main
from dp_models._errors import (
    DigestMismatchError,
    SpecNotFoundError,
    TritonExportError,
    TritonServerError,
    TritonServerNotFoundError,
    UnpinnedArtifactError,
)
from dp_models._spec import Spec
from dp_models.testing import triton as triton_testing
from dp_models.testing.triton import (
    ENV_TRITONSERVER,
    STANDIN_VARIABLE_DIM,
    TritonServer,
    expected_standin_outputs,
    find_tritonserver,
    standin_digest,
    standin_model_source,
    write_standin_catalog,
    write_standin_repository,
)
from dp_models.triton.repository import export_repository, render_config

PACKAGED = Catalog.load()
TRITON_SPECS = sorted(name for name, spec in PACKAGED.items() if spec.runtime == "triton")
#: Length given to a variable (-1) input dimension in the requests here.
VARIABLE_INPUT = 5
WRONG_DIGEST = "0" * 64
TINY_ECHO_README = b"tiny echo: a Python-backend model exported by the tests\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dir_digest(files: dict[str, bytes]) -> str:
    """The documented directory digest, computed here without dp_models."""
    lines = "".join(f"{_sha256(files[rel])}  {rel}\n" for rel in sorted(files))
    return _sha256(lines.encode())


def _triton_spec(name: str, body: str) -> str:
    return (
        f'name: {name}\nversion: "1"\nfamily: test\nrole: test\nusers: [AudioProcessor/test]\n'
        "runtime: triton\n" + textwrap.dedent(body).strip() + "\n"
    )


@dataclass
class Tiny:
    """A small catalog of Triton specs with a provisioned root."""

    catalog_dir: Path
    root: Path

    @property
    def catalog(self) -> Catalog:
        return Catalog.load(self.catalog_dir)


def make_tiny(base: Path, *, pin_echo: bool = True) -> Tiny:
    root = base / "root"
    echo_files = {
        "model.py": standin_model_source("tiny_echo", "tiny_echo_triton").encode(),
        "README.txt": TINY_ECHO_README,
    }
    for rel, data in echo_files.items():
        (root / "triton/tiny_echo").mkdir(parents=True, exist_ok=True)
        (root / "triton/tiny_echo" / rel).write_bytes(data)
    onnx_bytes = b"stands for an ONNX file"
    (root / "triton/tiny_onnx").mkdir(parents=True)
    (root / "triton/tiny_onnx/raft.onnx").write_bytes(onnx_bytes)

    cat = base / "catalog"
    (cat / "audio").mkdir(parents=True)
    pin = f"\n{' ' * 16}sha256: {_dir_digest(echo_files)}" if pin_echo else ""
    specs = {
        "tiny_echo_triton": f"""
            engine: python
            artifacts:
              - path: triton/tiny_echo
                kind: dir
                format: triton_python{pin}
            triton:
              model_name: tiny_echo
              model_version: 1
              platform: python
              max_batch_size: 4
              inputs:
                - {{name: x, datatype: FP32, shape: [4]}}
                - {{name: ids, datatype: INT64, shape: [-1]}}
              outputs:
                - {{name: total, datatype: FP32, shape: [2]}}
                - {{name: tokens, datatype: INT32, shape: [-1]}}
                - {{name: label, datatype: BYTES, shape: [1]}}
            """,
        "tiny_onnx_triton": """
            engine: onnx
            device: cuda
            artifacts:
              - path: triton/tiny_onnx/raft.onnx
                format: onnx
            triton:
              model_name: tiny_onnx
              model_version: 3
              platform: onnxruntime_onnx
              max_batch_size: 8
              inputs:
                - {name: frame0, datatype: FP32, shape: [3, -1, -1]}
              outputs:
                - {name: flow, datatype: FP16, shape: [2, -1, -1]}
            """,
        "tiny_multi_triton": """
            engine: python
            triton:
              model_name: tiny_multi
              model_version: 2
              platform: python
              max_batch_size: 0
              inputs:
                - {name: a, datatype: FP16, shape: [2, 2]}
              outputs:
                - {name: b, datatype: FP64, shape: [-1]}
            """,
    }
    for name, model in (("tiny_wrong_digest_triton", "tiny_wrong"), ("tiny_no_digest", "tiny_nod")):
        specs[name] = f"""
            engine: python
            triton:
              model_name: {model}
              model_version: 1
              platform: python
              max_batch_size: 2
              weights_digest: {_sha256(name.encode())}
              inputs:
                - {{name: x, datatype: UINT8, shape: [2]}}
              outputs:
                - {{name: y, datatype: BOOL, shape: [1]}}
            """
    for name, body in specs.items():
        (cat / "audio" / f"{name}.yaml").write_text(_triton_spec(name, body))
    lock = {
        "format": 1,
        "artifacts": {
            "triton/tiny_onnx/raft.onnx": {
                "kind": "file",
                "sha256": _sha256(onnx_bytes),
                "size": len(onnx_bytes),
            }
        },
    }
    (cat / "catalog.lock.json").write_text(json.dumps(lock))
    return Tiny(cat, root)


# -- the shared server ------------------------------------------------------------------------


@dataclass
class Served:
    server: TritonServer
    standin_digests: dict[str, str | None]
    tiny: Tiny
    exported: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("triton")
    tiny = make_tiny(base / "tiny")
    tiny_catalog = tiny.catalog

    standins = base / "standins"
    digests = write_standin_repository(PACKAGED, standins)
    write_standin_repository(
        tiny_catalog, standins, ["tiny_multi_triton"], versions={"tiny_multi_triton": [1, 2]}
    )
    write_standin_repository(
        tiny_catalog,
        standins,
        ["tiny_wrong_digest_triton", "tiny_no_digest"],
        digest_override={"tiny_wrong_digest_triton": WRONG_DIGEST, "tiny_no_digest": None},
    )

    exported = base / "exported"
    export_repository(tiny_catalog, tiny.root, exported, ["tiny_echo_triton"])
    # A version the spec does not pin, on disk beside the pinned one: never loaded.
    shutil.copytree(exported / "tiny_echo/1", exported / "tiny_echo/2")

    server = TritonServer().start([standins, exported])
    try:
        yield Served(server, digests, tiny, exported)
    finally:
        server.kill()  # seconds faster than stop(), whose graceful path is tested below


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(served.server.address, network_timeout=60.0)
    yield c
    c.close()


def _batch_shape(spec: Spec, shape: list[int], batch: int) -> list[int]:
    assert spec.triton is not None
    dims = [VARIABLE_INPUT if d == -1 else d for d in shape]
    return [batch, *dims] if spec.triton.max_batch_size > 0 else dims


def _random_inputs(spec: Spec, batch: int, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    assert spec.triton is not None
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for t in spec.triton.inputs:
        shape = _batch_shape(spec, t.shape, batch)
        dtype = triton_to_np_dtype(t.datatype)
        if t.datatype == "BYTES":
            arrays[t.name] = np.array(
                [b"x" * int(n) for n in rng.integers(0, 9, size=int(np.prod(shape)))],
                dtype=np.object_,
            ).reshape(shape)
        elif np.issubdtype(dtype, np.floating):
            arrays[t.name] = rng.standard_normal(shape).astype(dtype)
        else:
            arrays[t.name] = rng.integers(0, 9, size=shape).astype(dtype)
    return arrays


def _infer(
    client: httpclient.InferenceServerClient,
    spec: Spec,
    arrays: dict[str, np.ndarray[Any, Any]],
    version: int | None = None,
) -> dict[str, np.ndarray[Any, Any]]:
    assert spec.triton is not None
    inputs = []
    for t in spec.triton.inputs:
        inp = httpclient.InferInput(t.name, list(arrays[t.name].shape), t.datatype)
        inp.set_data_from_numpy(arrays[t.name], binary_data=True)
        inputs.append(inp)
    outputs = [
        httpclient.InferRequestedOutput(t.name, binary_data=True) for t in spec.triton.outputs
    ]
    result = client.infer(
        spec.triton.model_name,
        inputs,
        model_version=str(version or spec.triton.model_version),
        outputs=outputs,
    )
    return {t.name: result.as_numpy(t.name) for t in spec.triton.outputs}


def _assert_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for name, expected in want.items():
        actual = got[name]
        assert actual.shape == expected.shape, name
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(actual, expected, rtol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)


# -- through the real server --------------------------------------------------------------------


def test_server_is_live_and_ready_on_loopback(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    assert served.server.url.startswith("http://127.0.0.1:")
    assert client.is_server_live()
    assert client.is_server_ready()


def test_inventory_triton_specs_have_distinct_model_names() -> None:
    assert len(TRITON_SPECS) >= 15  # the inventory's Triton half
    repo_models = {PACKAGED[n].triton.model_name for n in TRITON_SPECS}  # type: ignore[union-attr]
    assert len(repo_models) == len(TRITON_SPECS)


@pytest.mark.parametrize("name", TRITON_SPECS)
def test_standin_metadata_matches_the_spec(
    name: str, served: Served, client: httpclient.InferenceServerClient
) -> None:
    spec = PACKAGED[name]
    triton = spec.triton
    assert triton is not None
    version = str(triton.model_version)
    assert client.is_model_ready(triton.model_name, version)
    meta = client.get_model_metadata(triton.model_name, version)
    assert meta["name"] == triton.model_name
    assert meta["versions"] == [version]
    batch = [-1] if triton.max_batch_size > 0 else []
    for label, tensors in (("inputs", triton.inputs), ("outputs", triton.outputs)):
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta[label]] == [
            (t.name, t.datatype, [*batch, *t.shape]) for t in tensors
        ]
    config = client.get_model_config(triton.model_name, version)
    assert config["max_batch_size"] == triton.max_batch_size


@pytest.mark.parametrize("name", TRITON_SPECS)
def test_standin_serves_the_served_digest(
    name: str, served: Served, client: httpclient.InferenceServerClient
) -> None:
    spec = PACKAGED[name]
    assert spec.triton is not None
    pin = PACKAGED.expected_digest(spec)
    digest = served.standin_digests[name]
    assert digest == (pin.sha256 if pin is not None else standin_digest(spec))
    config = client.get_model_config(spec.triton.model_name, str(spec.triton.model_version))
    assert config["parameters"]["weights_digest"] == {"string_value": digest}
    assert config["parameters"]["dp_models_spec"] == {"string_value": name}


def test_standin_catalog_copy_expects_the_served_digests(served: Served, tmp_path: Path) -> None:
    copy = Catalog.load(write_standin_catalog(PACKAGED, tmp_path / "cat", served.standin_digests))
    assert sorted(copy) == sorted(PACKAGED)
    for name in TRITON_SPECS:
        expected = copy.expected_digest(copy[name])
        assert expected is not None and expected.sha256 == served.standin_digests[name]
    untouched = next(n for n in PACKAGED if n not in TRITON_SPECS)
    assert copy[untouched] == PACKAGED[untouched]


@pytest.mark.parametrize("name", TRITON_SPECS)
def test_standin_binary_inference_is_deterministic(
    name: str, client: httpclient.InferenceServerClient
) -> None:
    spec = PACKAGED[name]
    assert spec.triton is not None
    batch = min(2, spec.triton.max_batch_size) or 1
    arrays = _random_inputs(spec, batch)
    got = _infer(client, spec, arrays)
    want = expected_standin_outputs(spec, arrays)
    _assert_outputs(got, want)
    for t in spec.triton.outputs:  # -1 output dimensions come back STANDIN_VARIABLE_DIM long
        shape = [STANDIN_VARIABLE_DIM if d == -1 else d for d in t.shape]
        assert list(got[t.name].shape[-len(shape) :]) == shape
    again = _infer(client, spec, arrays)
    _assert_outputs(again, got)


def test_standin_batch_items_are_answered_in_order(
    client: httpclient.InferenceServerClient,
) -> None:
    spec = PACKAGED["clip_vit_b32_triton"]
    image = np.stack([np.full((3, 224, 224), v, np.float32) for v in (0.0, 1.0, -2.5)])
    got = _infer(client, spec, {"image": image})["embedding"]
    assert got.shape == (3, 512)
    np.testing.assert_allclose(got[:, 0], [100.0, 101.0, 97.5])


def test_standins_of_other_datatypes_and_without_batch_dimension(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    spec = served.tiny.catalog["tiny_multi_triton"]
    arrays = {"a": np.array([[1, 2], [3, 4]], np.float16)}  # max_batch_size 0: no batch dim
    got = _infer(client, spec, arrays, version=1)
    assert got["b"].dtype == np.float64
    np.testing.assert_array_equal(got["b"], [102.5] * STANDIN_VARIABLE_DIM)


def test_version_pinning_of_standins(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    spec = served.tiny.catalog["tiny_multi_triton"]
    arrays = {"a": np.zeros((2, 2), np.float16)}
    assert client.get_model_metadata("tiny_multi")["versions"] == ["1", "2"]
    for version in (1, 2):
        got = _infer(client, spec, arrays, version=version)
        _assert_outputs(got, expected_standin_outputs(spec, arrays, version=version))
        assert got["b"][0] == 100.0 * version
    assert not client.is_model_ready("tiny_multi", "3")
    with pytest.raises(InferenceServerException, match="version 3"):
        _infer(client, spec, arrays, version=3)


def test_standin_digest_can_be_wrong_or_absent_on_purpose(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    tiny = served.tiny.catalog
    wrong = client.get_model_config("tiny_wrong")["parameters"]
    pin = tiny.expected_digest(tiny["tiny_wrong_digest_triton"])
    assert pin is not None and pin.sha256 != WRONG_DIGEST
    assert wrong["weights_digest"] == {"string_value": WRONG_DIGEST}
    assert "weights_digest" not in client.get_model_config("tiny_nod")["parameters"]


def test_exported_repository_loads_and_serves(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    tiny = served.tiny.catalog
    spec = tiny["tiny_echo_triton"]
    assert client.is_model_ready("tiny_echo", "1")
    config = client.get_model_config("tiny_echo", "1")
    assert config["backend"] == "python"
    assert config["version_policy"] == {"specific": {"versions": [1]}}
    pin = tiny.expected_digest(spec)
    assert pin is not None and pin.source == "spec"
    assert config["parameters"]["weights_digest"] == {"string_value": pin.sha256}
    meta = client.get_model_metadata("tiny_echo", "1")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("x", "FP32", [-1, 4]),
        ("ids", "INT64", [-1, -1]),
    ]
    arrays = _random_inputs(spec, batch=3, seed=7)
    got = _infer(client, spec, arrays)
    _assert_outputs(got, expected_standin_outputs(spec, arrays))
    assert got["label"].dtype == np.object_ and got["label"].shape == (3, 1)


def test_exported_version_policy_pins_the_spec_version(
    served: Served, client: httpclient.InferenceServerClient
) -> None:
    assert (served.exported / "tiny_echo/2/model.py").is_file()  # on disk...
    assert not client.is_model_ready("tiny_echo", "2")  # ...but never loaded
    assert client.get_model_metadata("tiny_echo")["versions"] == ["1"]
    spec = served.tiny.catalog["tiny_echo_triton"]
    with pytest.raises(InferenceServerException, match="version 2"):
        _infer(client, spec, _random_inputs(spec, batch=1), version=2)


def test_server_killed_and_started_again_on_the_same_url(served: Served) -> None:
    server = TritonServer().start(served.exported)
    try:
        url, pid = server.url, server.pid
        assert pid is not None
        c = httpclient.InferenceServerClient(server.address)
        assert c.is_model_ready("tiny_echo", "1")
        server.kill()
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole process group is gone, backend stubs included
        assert not list(Path("/dev/shm").glob(server.shm_prefix + "*"))
        with pytest.raises(Exception):  # noqa: B017 (a refused connection, whatever its class)
            c.is_server_live()
        c.close()
        server.start()
        assert server.url == url
        c = httpclient.InferenceServerClient(server.address)
        assert c.is_server_ready()
        c.close()
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not list(Path("/dev/shm").glob(server.shm_prefix + "*"))


def test_a_model_that_does_not_load_fails_the_start_with_the_log(tmp_path: Path) -> None:
    model = tmp_path / "repo" / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
        'output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
    )
    (model / "1/model.py").write_text("raise RuntimeError('broken on purpose')\n")
    server = TritonServer()
    with pytest.raises(TritonServerError, match=r"(?s)exited with status.*broken on purpose"):
        server.start(tmp_path / "repo")
    assert not server.running


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TritonServer(host="0.0.0.0")


# -- finding the server -------------------------------------------------------------------------


def test_missing_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_TRITONSERVER, raising=False)
    monkeypatch.setattr(triton_testing, "_search_dirs", lambda: [tmp_path])
    with pytest.raises(TritonServerNotFoundError, match=r"scripts/triton_env\.sh") as info:
        TritonServer()
    assert isinstance(info.value, FileNotFoundError)
    monkeypatch.setenv(ENV_TRITONSERVER, str(tmp_path / "nope"))
    with pytest.raises(TritonServerNotFoundError, match=r"\$DP_MODELS_TRITONSERVER"):
        find_tritonserver()


def test_server_found_in_triton_venv() -> None:
    path = find_tritonserver()
    assert path.name == "tritonserver" and os.access(path, os.X_OK)


# -- config.pbtxt --------------------------------------------------------------------------------


def test_render_config_onnx(tmp_path: Path) -> None:
    spec = make_tiny(tmp_path).catalog["tiny_onnx_triton"]
    text = render_config(spec, "ab" * 32, default_model_filename="raft.onnx")
    assert text == textwrap.dedent(
        """\
        # Written by dp_models from spec tiny_onnx_triton (version 1); do not edit.
        name: "tiny_onnx"
        platform: "onnxruntime_onnx"
        max_batch_size: 8
        default_model_filename: "raft.onnx"
        input [
          {
            name: "frame0"
            data_type: TYPE_FP32
            dims: [ 3, -1, -1 ]
          }
        ]
        output [
          {
            name: "flow"
            data_type: TYPE_FP16
            dims: [ 2, -1, -1 ]
          }
        ]
        version_policy: { specific: { versions: [ 3 ] } }
        instance_group [ { count: 1, kind: KIND_GPU } ]
        parameters: {
          key: "dp_models_spec"
          value: { string_value: "tiny_onnx_triton" }
        }
        parameters: {
          key: "weights_digest"
          value: { string_value: "abababababababababababababababababababababababababababababababab" }
        }
        """  # noqa: E501
    )


def test_render_config_python_backend_without_digest(tmp_path: Path) -> None:
    spec = make_tiny(tmp_path).catalog["tiny_echo_triton"]
    text = render_config(spec, None, versions=[1, 2])
    assert 'backend: "python"' in text and "platform:" not in text
    assert "versions: [ 1, 2 ]" in text
    assert "weights_digest" not in text and "instance_group" not in text
    assert "data_type: TYPE_STRING" in text  # BYTES
    assert text.count("  {\n") == 5 and "  },\n" in text  # 2 inputs, 3 outputs


def test_render_config_of_every_packaged_triton_spec() -> None:
    for name in TRITON_SPECS:
        spec = PACKAGED[name]
        assert spec.triton is not None
        text = render_config(spec, "cd" * 32)
        assert f'name: "{spec.triton.model_name}"' in text
        platform = spec.triton.platform
        assert (
            f'backend: "{platform}"' if platform == "python" else f'platform: "{platform}"'
        ) in (text)
        assert f"max_batch_size: {spec.triton.max_batch_size}\n" in text
        assert f"versions: [ {spec.triton.model_version} ]" in text


def test_render_config_quotes_strings(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    path = tiny.catalog_dir / "audio/tiny_multi_triton.yaml"
    path.write_text(path.read_text().replace("name: a,", 'name: "a\\"b\\\\c",'))
    text = render_config(tiny.catalog["tiny_multi_triton"], None)
    assert r'name: "a\"b\\c"' in text


# -- export --------------------------------------------------------------------------------------


def test_export_layout_and_digests(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    out = tmp_path / "repo"
    models = export_repository(
        tiny.catalog, tiny.root, out, ["tiny_echo_triton", "tiny_onnx_triton"]
    )
    assert [(m.model_name, m.version) for m in models] == [("tiny_echo", 1), ("tiny_onnx", 3)]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "tiny_echo/1/README.txt",
        "tiny_echo/1/model.py",
        "tiny_echo/config.pbtxt",
        "tiny_onnx/3/raft.onnx",
        "tiny_onnx/config.pbtxt",
    ]
    onnx = (out / "tiny_onnx/config.pbtxt").read_text()
    assert 'default_model_filename: "raft.onnx"' in onnx
    assert models[1].weights_digest == _sha256(b"stands for an ONNX file")  # pinned by the lock
    assert models[1].weights_digest in onnx
    assert "default_model_filename" not in (out / "tiny_echo/config.pbtxt").read_text()
    assert (out / "tiny_echo/1/README.txt").read_bytes() == TINY_ECHO_README
    assert not (out / "tiny_echo/1/README.txt").samefile(tiny.root / "triton/tiny_echo/README.txt")
    assert os.stat(out).st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_link_hard_links(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    out = tmp_path / "repo"
    export_repository(tiny.catalog, tiny.root, out, ["tiny_onnx_triton"], link=True)
    assert (out / "tiny_onnx/3/raft.onnx").samefile(tiny.root / "triton/tiny_onnx/raft.onnx")


def test_export_of_an_unpinned_artifact_writes_nothing(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path, pin_echo=False)
    out = tmp_path / "out" / "repo"
    with pytest.raises(UnpinnedArtifactError, match="dp-models lock"):
        export_repository(tiny.catalog, tiny.root, out, ["tiny_onnx_triton", "tiny_echo_triton"])
    assert not (tmp_path / "out").exists()


def test_export_of_a_wrong_artifact_writes_nothing(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    (tiny.root / "triton/tiny_echo/README.txt").write_bytes(b"other weights\n")
    out = tmp_path / "repo"
    out.mkdir()
    with pytest.raises(DigestMismatchError) as info:
        export_repository(tiny.catalog, tiny.root, out, ["tiny_onnx_triton", "tiny_echo_triton"])
    assert info.value.spec == "tiny_echo_triton"
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "repo", "root"]


def test_export_refusals(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    catalog = tiny.catalog
    with pytest.raises(TritonExportError, match="in-process"):
        export_repository(PACKAGED, tiny.root, tmp_path / "a", ["clip_vit_b32"])
    with pytest.raises(SpecNotFoundError):
        export_repository(catalog, tiny.root, tmp_path / "a", ["no_such_spec"])
    with pytest.raises(TritonExportError, match="lists no artifacts"):
        export_repository(catalog, tiny.root, tmp_path / "a", ["tiny_multi_triton"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    with pytest.raises(TritonExportError, match="not empty"):
        export_repository(catalog, tiny.root, busy, ["tiny_onnx_triton"])
    assert [p.name for p in busy.iterdir()] == ["keep"]


def test_cli_triton_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny(tmp_path)
    out = tmp_path / "repo"
    common = ["--catalog", str(tiny.catalog_dir), "--root", str(tiny.root), "--no-cache"]
    assert main(["triton", "export", *common, "--out", str(out), "tiny_onnx_triton"]) == 0
    text = capsys.readouterr().out
    assert "1 model" in text and "tiny_onnx" in text and _sha256(b"stands for an ONNX file") in text
    assert f"tritonserver --model-repository {out}" in text
    assert (out / "tiny_onnx/3/raft.onnx").is_file()
    # every Triton spec by default: tiny_multi has no artifacts, so nothing is written
    assert main(["triton", "export", *common, "--out", str(tmp_path / "all")]) == 1
    assert "lists no artifacts" in capsys.readouterr().err
    assert not (tmp_path / "all").exists()
