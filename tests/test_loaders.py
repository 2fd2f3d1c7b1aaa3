"""In-process loaders (dp_models.loaders), exercised through the ModelManager on small real
weights the tests write: torch_state_dict, torchscript, onnxruntime, the registry and its
entry-point group, and the manager's caching, single flight and re-verification."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import re
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime  # type: ignore[import-untyped]
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import (
    ArtifactError,
    ArtifactMissingError,
    CatalogError,
    CatalogProblem,
    DeviceUnavailableError,
    DigestMismatchError,
    LoaderArgsError,
    LoaderError,
    LoaderNotFoundError,
    MissingExtraError,
    PrecisionError,
    SizeMismatchError,
    StateDictMismatchError,
    UnsafeCheckpointError,
)
from dp_models.loaders import (
    LoadContext,
    Loader,
    LoaderArgs,
    LoaderRegistry,
    NoArgs,
    get_loader,
    loader_names,
    register_loader,
    require,
)
from dp_models.loaders.onnx import OnnxRuntimeLoader
from dp_models.loaders.torch import TorchScriptLoader, TorchStateDictLoader, unwrap_state_dict
from dp_models.testing import fake_models_root

from .conftest import SpecWriter
from .fakeroots import RunsCode, edit_spec, manager, needs_no_cuda, save_writes_on_load

BUILTIN_LOADERS = ["onnxruntime", "torch_state_dict", "torchscript"]
KWARGS = {"in_features": 4, "hidden": 6, "out_features": 3}
X = torch.linspace(-2.0, 2.0, 20).reshape(5, 4)
OLD = 1_000_000_000  # an mtime well outside the digest cache's racy window
AUTO = "cuda" if torch.cuda.is_available() else "cpu"  # what device: auto resolves to

TINYNET = """
from __future__ import annotations

import torch
from torch import nn

BUILT: list[dict[str, int]] = []  # kwargs of every instance, so tests see what was built


class TinyNet(nn.Module):
    def __init__(self, in_features: int = 4, hidden: int = 5, out_features: int = 2) -> None:
        super().__init__()
        BUILT.append({"in_features": in_features, "hidden": hidden, "out_features": out_features})
        self.fc = nn.Linear(in_features, hidden)
        self.drop = nn.Dropout(0.5)  # outputs match the reference only in eval mode
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.fc(x))))
"""

FOO_LOADER = """
from __future__ import annotations

from typing import Any

from dp_models.loaders import Loader, LoaderArgs


class FooArgs(LoaderArgs):
    k: int = 0


class FooLoader(Loader[FooArgs]):
    name = "foo"
    framework = "foo"
    extra = "foo"
    args_model = FooArgs

    def load(self, ctx: Any) -> Any:
        return ("foo-model", ctx.artifact().read_text(), dict(ctx.loader_args))
"""


# -- helpers -------------------------------------------------------------------------------


def artifact(root: Path, rel: str, fmt: str) -> dict[str, Any]:
    """An ``artifacts:`` entry for the file at ``root/rel``, pinned by sha256 and size."""
    data = (root / rel).read_bytes()
    return {
        "path": rel,
        "format": fmt,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def spec_yaml(
    name: str,
    artifacts: Sequence[Mapping[str, Any]],
    *,
    loader: str = "torch_state_dict",
    engine: str = "torch",
    loader_args: Mapping[str, Any] | None = None,
    **fields: Any,
) -> str:
    """A full in-process spec (JSON is YAML)."""
    doc: dict[str, Any] = {
        "name": name,
        "version": "1",
        "family": "test",
        "role": "test",
        "users": ["VisualProcessor/test"],
        "runtime": "inprocess",
        "engine": engine,
        "loader": loader,
        "artifacts": list(artifacts),
        **fields,
    }
    if loader_args is not None:
        doc["loader_args"] = dict(loader_args)
    return json.dumps(doc, indent=2)


def catalog_problem(make_manager: Callable[..., ModelManager], **kwargs: Any) -> CatalogProblem:
    """The one problem of the CatalogError that making a manager raises."""
    with pytest.raises(CatalogError) as exc:
        make_manager(**kwargs)
    [problem] = exc.value.problems
    return problem


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def reference_net(tinynet: ModuleType, **kwargs: int) -> Any:
    """A TinyNet with distinctive weights (a fresh instance never has them)."""
    net = tinynet.TinyNet(**(kwargs or KWARGS))
    with torch.no_grad():
        for i, p in enumerate(net.parameters()):
            p.copy_(torch.linspace(-1.0, 1.0, p.numel()).reshape(p.shape) * (i + 1))
    tinynet.BUILT.clear()
    return net.eval()


def assert_same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    got, want = model.state_dict(), reference.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def state_dict_spec(
    write_spec: SpecWriter,
    root: Path,
    name: str,
    checkpoint: Any,
    *,
    fmt: str = "pt",
    loader_args: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Path:
    """Write ``checkpoint`` (torch.save, or save_file for safetensors) and its spec."""
    rel = f"{name}/weights.{fmt}"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file(checkpoint, str(path))
    else:
        torch.save(checkpoint, path)
    args = {"class_path": "tinynet:TinyNet", "kwargs": KWARGS, **(loader_args or {})}
    fields.setdefault("device", "cpu")
    write_spec(name, spec_yaml(name, [artifact(root, rel, fmt)], loader_args=args, **fields))
    return path


class CountingLoader(Loader[NoArgs]):
    """A loader that counts its calls, can be slow, and can fail its first calls."""

    framework = "dp-models"
    extra = "torch"

    def __init__(self, name: str, *, delay_s: float = 0.0, fail_first: int = 0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.calls = 0
        self._lock = threading.Lock()

    def load(self, ctx: LoadContext) -> Any:
        with self._lock:
            self.calls += 1
            call = self.calls
        time.sleep(self.delay_s)
        if call <= self.fail_first:
            raise OSError(f"flaky storage on call {call}")
        return {"spec": ctx.spec.name, "bytes": ctx.artifact().read_bytes(), "call": call}


class _NeedsTorch(Loader[NoArgs]):
    name = "needs_torch"
    framework = "torch"
    extra = "torch"

    def load(self, ctx: LoadContext) -> Any:
        return require("torch", extra=self.extra, spec=ctx.spec.name).zeros(1)


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('ran')",))


def tiny_onnx() -> tuple[bytes, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``y = x @ w + b`` as an ONNX model, with its weights."""
    w = (np.arange(12, dtype=np.float32).reshape(4, 3) - 6) / 4
    b = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString(), w, b


def onnx_spec(write_spec: SpecWriter, root: Path, name: str, data: bytes, **fields: Any) -> Path:
    path = write_bytes(root / name / "model.onnx", data)
    art = artifact(root, f"{name}/model.onnx", "onnx")
    fields.setdefault("device", "cpu")
    write_spec(name, spec_yaml(name, [art], loader="onnxruntime", engine="onnx", **fields))
    return path


def custom_spec(
    write_spec: SpecWriter, root: Path, name: str, loader: str, data: bytes = b"weights v1" * 50
) -> Path:
    path = write_bytes(root / name / "weights.bin", data)
    art = artifact(root, f"{name}/weights.bin", "pt")
    write_spec(name, spec_yaml(name, [art], loader=loader, engine="python", device="cpu"))
    return path


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def pymods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules the tests write; they are forgotten afterwards."""
    directory = tmp_path / "pymods"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    yield directory
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(directory)):
            del sys.modules[name]


@pytest.fixture
def tinynet(pymods: Path) -> ModuleType:
    """The importable module ``tinynet`` (class_path ``tinynet:TinyNet``)."""
    (pymods / "tinynet.py").write_text(TINYNET)
    sys.modules.pop("tinynet", None)
    return importlib.import_module("tinynet")


# -- torch_state_dict ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_state_dict_loads_eval_cpu_fp32_with_the_reference_outputs(
    fmt: str,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    state_dict_spec(write_spec, models_root, "tiny", ref.state_dict(), fmt=fmt, device="auto")
    mm = make_manager()
    handle = mm.get("tiny")
    assert handle.device == AUTO
    assert tinynet.BUILT == []  # get() loads nothing
    model = handle.load()
    assert isinstance(model, tinynet.TinyNet)
    assert tinynet.BUILT == [KWARGS]
    assert not model.training
    assert {p.device.type for p in model.parameters()} == {AUTO}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model.cpu()
    assert_same_weights(model, ref)
    with torch.no_grad():
        assert torch.equal(model(X), ref(X))
    entry = mm.models_used()[0]
    assert (entry["device"], entry["precision"]) == (AUTO, "fp32")
    assert entry["loader"] == "torch_state_dict"
    assert entry["framework"] == {"name": "torch", "version": metadata.version("torch")}


def test_the_declared_format_decides_how_weights_are_read(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    write_bytes(models_root / "st" / "weights.bin", b"")
    save_file(ref.state_dict(), str(models_root / "st" / "weights.bin"))
    art = artifact(models_root, "st/weights.bin", "safetensors")
    args = {"class_path": "tinynet:TinyNet", "kwargs": KWARGS}
    write_spec("st", spec_yaml("st", [art], loader_args=args))
    assert_same_weights(make_manager().load("st"), ref)


def test_state_dict_key_and_strip_prefix(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    wrapped = {
        k if k.startswith("head.") else f"module.{k}": v for k, v in ref.state_dict().items()
    }
    checkpoint = {"state_dict": wrapped, "epoch": 7, "optimizer": {"lr": 0.1}}
    args = {"state_dict_key": "state_dict", "strip_prefix": "module."}
    state_dict_spec(write_spec, models_root, "wrapped", checkpoint, loader_args=args)
    model = make_manager().load("wrapped")
    assert_same_weights(model, ref)
    with torch.no_grad():
        assert torch.equal(model(X), ref(X))


def test_emonet_8_takes_the_public_checkpoints_data_parallel_keys(tmp_path: Path) -> None:
    """The public emonet_8.pth is a flat state dict saved from nn.DataParallel: every key
    starts with "module.". The spec strips it; its fake carries the prefixed keys."""
    assert Catalog.load()["emonet_8"].loader_args["strip_prefix"] == "module."
    root = fake_models_root(tmp_path / "root", ["emonet_8"], substitute=["emonet_8"])
    state = torch.load(root / "visual/emonet/emonet_8.pth", weights_only=True)
    assert state and all(k.startswith("module.") for k in state)
    model = manager(root, tmp_path, device="cpu").load("emonet_8")
    loaded = model.state_dict()
    assert {f"module.{k}" for k in loaded} == set(state)
    assert all(torch.equal(v, state[f"module.{k}"]) for k, v in loaded.items())
    edit_spec(root, "emonet_8", loader_args={"strip_prefix": ...})
    with pytest.raises(StateDictMismatchError) as exc:  # without the option: no key fits
        manager(root, tmp_path, device="cpu").load("emonet_8")
    assert exc.value.unexpected and all(k.startswith("module.") for k in exc.value.unexpected)


def test_a_missing_state_dict_key_lists_the_checkpoint_keys(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    checkpoint = {"model": reference_net(tinynet).state_dict(), "epoch": 7}
    state_dict_spec(
        write_spec, models_root, "nokey", checkpoint, loader_args={"state_dict_key": "state_dict"}
    )
    with pytest.raises(
        LoaderArgsError,
        match=r"(?s)'nokey'.*no key 'state_dict'.*state_dict_key.*\['epoch', 'model'\]",
    ) as exc:
        make_manager().load("nokey")
    assert isinstance(exc.value, TypeError)
    assert (exc.value.spec, exc.value.loader) == ("nokey", "torch_state_dict")


def test_strict_false_loads_a_partial_state_dict(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    partial = {k: v for k, v in ref.state_dict().items() if k.startswith("fc.")}
    partial["aux.weight"] = torch.ones(2)
    state_dict_spec(write_spec, models_root, "part", partial, loader_args={"strict": False})
    model = make_manager().load("part")
    assert torch.equal(model.fc.weight, ref.fc.weight)
    assert torch.equal(model.fc.bias, ref.fc.bias)
    assert not torch.equal(model.head.weight, ref.head.weight)  # left as initialised
    assert not model.training


def test_missing_and_unexpected_keys_are_a_typed_error(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    partial = {k: v for k, v in ref.state_dict().items() if k.startswith("fc.")}
    partial["aux.weight"] = torch.ones(2)
    partial["aux.bias"] = torch.ones(2)
    state_dict_spec(write_spec, models_root, "mismatch", partial)
    with pytest.raises(
        StateDictMismatchError,
        match=r"(?s)'mismatch'.*do not fit tinynet:TinyNet.*2 missing.*2 unexpected.*strict: false",
    ) as exc:
        make_manager().load("mismatch")
    err = exc.value
    assert isinstance(err, ValueError)
    assert isinstance(err, LoaderError)
    assert err.missing == ("head.weight", "head.bias")
    assert err.unexpected == ("aux.weight", "aux.bias")
    assert (err.spec, err.loader) == ("mismatch", "torch_state_dict")


@pytest.mark.parametrize(
    ("class_path", "message", "cause"),
    [
        (
            "dpm_no_such_module:Net",
            r"class_path 'dpm_no_such_module:Net' does not import",
            ImportError,
        ),
        ("tinynet:NoSuchNet", r"module 'tinynet' has no 'NoSuchNet'", AttributeError),
    ],
)
def test_a_class_path_that_does_not_import_here_is_a_loader_args_error(
    class_path: str,
    message: str,
    cause: type[BaseException],
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    """Whether a class imports depends on the environment, so it is checked at load."""
    args = {"class_path": class_path}
    state_dict_spec(
        write_spec, models_root, "badpath", reference_net(tinynet).state_dict(), loader_args=args
    )
    with pytest.raises(LoaderArgsError, match=r"^spec 'badpath': .*" + message) as exc:
        make_manager().load("badpath")
    assert type(exc.value) is LoaderArgsError
    assert isinstance(exc.value, TypeError)
    assert (exc.value.spec, exc.value.loader) == ("badpath", "torch_state_dict")
    assert isinstance(exc.value.__cause__, cause)
    assert tinynet.BUILT == []


def test_kwargs_the_class_rejects_are_a_loader_args_error(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    args = {"kwargs": {"in_features": 4, "depth": 3}}
    state_dict_spec(
        write_spec, models_root, "badkw", reference_net(tinynet).state_dict(), loader_args=args
    )
    with pytest.raises(
        LoaderArgsError,
        match=r"^spec 'badkw': tinynet:TinyNet\(\*\*\{'in_features': 4, 'depth': 3\}\) failed: .*"
        r"unexpected keyword argument 'depth'",
    ) as exc:
        make_manager().load("badkw")
    assert isinstance(exc.value, TypeError)
    assert isinstance(exc.value.__cause__, TypeError)
    assert (exc.value.spec, exc.value.loader) == ("badkw", "torch_state_dict")


_MALFORMED = r"must be 'package.module:Class'.* \(got '{}'\)"


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"class_path": "tinynet.TinyNet"}, "class_path", _MALFORMED.format("tinynet.TinyNet")),
        ({"class_path": ":TinyNet"}, "class_path", _MALFORMED.format(":TinyNet")),
        ({"class_path": ".tinynet:TinyNet"}, "class_path", _MALFORMED.format(".tinynet:TinyNet")),
        ({"class_path": "tinynet:"}, "class_path", _MALFORMED.format("tinynet:")),
        ({"class_path": 42}, "class_path", r"valid string \(got 42\)"),
        ({"class_path": None}, "class_path", r"valid string \(got None\)"),
        ({"kwargs": [4, 6, 3]}, "kwargs", r"valid dictionary"),
        ({"strict": "false"}, "strict", r"valid boolean \(got 'false'\)"),
        ({"weights_only": 0}, "weights_only", r"valid boolean \(got 0\)"),
        ({"state_dict_key": 3}, "state_dict_key", r"valid string"),
    ],
)
def test_loader_args_the_catalog_refuses(
    args: dict[str, Any],
    field: str,
    message: str,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    """A malformed class_path and values of the wrong type are found when the catalog
    loads; weights_only and strict are strict booleans: "false" and 0 are not false."""
    state_dict_spec(
        write_spec, models_root, "badtype", reference_net(tinynet).state_dict(), loader_args=args
    )
    problem = catalog_problem(make_manager)
    assert (problem.file, problem.field) == ("visual/badtype.yaml", f"loader_args.{field}")
    assert re.search(message, problem.message), problem.message
    assert tinynet.BUILT == []


def test_a_pickle_payload_is_refused_and_its_code_does_not_run(
    tmp_path: Path,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    marker = tmp_path / "payload-ran"
    path = state_dict_spec(write_spec, models_root, "evil", _Payload(marker))
    assert zipfile.is_zipfile(path)  # a genuine torch checkpoint, not a stray pickle
    with pytest.raises(
        UnsafeCheckpointError,
        match=r"(?s)'evil'.*weights\.pt.*nothing in it ran.*weights_only: false.*"
        r"GLOBAL (builtins\.)?exec was not an allowed global",
    ) as exc:
        make_manager().load("evil")
    err = exc.value
    assert isinstance(err, pickle.UnpicklingError)
    assert isinstance(err, LoaderError)
    assert (err.spec, err.loader) == ("evil", "torch_state_dict")
    assert isinstance(err.__cause__, pickle.UnpicklingError)
    assert "\x1b[" not in str(err)  # no terminal colours from torch's message
    assert not marker.exists()


def test_weights_only_false_really_unpickles_the_payload(
    tmp_path: Path,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    """The control for the test above: the payload is real, and opting out runs it."""
    marker = tmp_path / "payload-ran"
    args = {"weights_only": False}
    state_dict_spec(write_spec, models_root, "trusted", _Payload(marker), loader_args=args)
    with pytest.raises(
        LoaderArgsError,
        match=r"^spec 'trusted': the checkpoint is a NoneType, not a state dict",
    ) as exc:
        make_manager().load("trusted")
    assert (exc.value.spec, exc.value.loader) == ("trusted", "torch_state_dict")
    assert marker.read_text() == "ran"


def test_fp16_on_cpu_is_refused_at_get(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    state_dict_spec(write_spec, models_root, "half", reference_net(tinynet).state_dict())
    mm = make_manager()
    with pytest.raises(
        PrecisionError,
        match=r"^spec 'half': fp16 on the CPU is not allowed .* set allow_half_on_cpu: true",
    ) as exc:
        mm.get("half", precision="fp16")
    assert isinstance(exc.value, ValueError)
    assert (exc.value.spec, exc.value.precision, exc.value.device) == ("half", "fp16", "cpu")
    assert tinynet.BUILT == []
    assert mm.models_used() == []


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)]
)
def test_half_on_cpu_when_the_spec_allows_it(
    precision: str,
    dtype: torch.dtype,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    state_dict_spec(
        write_spec,
        models_root,
        "half",
        ref.state_dict(),
        precision=precision,
        allow_half_on_cpu=True,
    )
    model = make_manager().load("half")
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert torch.equal(model.fc.weight, ref.fc.weight.to(dtype))
    assert not model.training


@needs_no_cuda
@pytest.mark.parametrize(
    ("where", "requested"),
    [("get", "cuda"), ("get", "cuda:1"), ("spec", "cuda"), ("manager", "cuda")],
)
def test_cuda_on_a_machine_without_it_is_refused_at_get(
    where: str,
    requested: str,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    fields: dict[str, Any] = {"device": requested} if where == "spec" else {}
    state_dict_spec(write_spec, models_root, "gpu", reference_net(tinynet).state_dict(), **fields)
    mm = make_manager(device=requested) if where == "manager" else make_manager()
    with pytest.raises(
        DeviceUnavailableError,
        match=rf"^spec 'gpu' asks for device '{requested}', but torch sees no CUDA device here\. "
        r"dp_models never falls back to the CPU silently",
    ) as exc:
        mm.get("gpu", device=requested if where == "get" else None)
    assert isinstance(exc.value, RuntimeError)
    assert (exc.value.spec, exc.value.requested) == ("gpu", requested)
    assert tinynet.BUILT == []
    assert mm.models_used() == []


# -- torchscript ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_loads_with_the_reference_outputs(
    how: str,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    ref = reference_net(tinynet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript
        scripted = torch.jit.script(ref) if how == "script" else torch.jit.trace(ref, X)  # type: ignore[no-untyped-call]
    path = models_root / "ts" / "model.pt"
    path.parent.mkdir()
    scripted.save(str(path))
    art = artifact(models_root, "ts/model.pt", "torchscript")
    spec = spec_yaml(
        "ts",
        [art],
        loader="torchscript",
        engine="torchscript",
        device="cpu",
        loader_args={"trust_archive_code": True},
    )
    write_spec("ts", spec)
    model = make_manager().load("ts")
    assert isinstance(model, torch.jit.ScriptModule)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tinynet.BUILT == []  # nothing of the Python class ran
    with torch.no_grad():
        assert torch.equal(model(X), ref(X))


@pytest.mark.adversarial
@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_the_torchscript_trust_flag_is_a_strict_boolean(
    flag: object,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    """Only the YAML boolean true trusts an archive: a string or a number that looks true
    is a catalog error, and the archive's code never runs."""
    marker = tmp_path / "written-by-the-archive"
    save_writes_on_load(models_root / "ts" / "model.pt", marker)
    art = artifact(models_root, "ts/model.pt", "torchscript")
    args = {"trust_archive_code": flag}
    write_spec(
        "ts", spec_yaml("ts", [art], loader="torchscript", engine="torchscript", loader_args=args)
    )
    problem = catalog_problem(make_manager)
    assert problem.field == "loader_args.trust_archive_code"
    assert "valid boolean" in problem.message
    assert not marker.exists()


@pytest.mark.adversarial
def test_torchscript_code_runs_only_where_the_spec_trusts_it(
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    marker = tmp_path / "written-by-the-archive"
    save_writes_on_load(models_root / "ts" / "model.pt", marker)
    art = artifact(models_root, "ts/model.pt", "torchscript")
    write_spec("ts", spec_yaml("ts", [art], loader="torchscript", engine="torchscript"))
    with pytest.raises(UnsafeCheckpointError, match="trust_archive_code: true") as exc:
        make_manager().load("ts")
    assert (exc.value.spec, exc.value.loader) == ("ts", "torchscript")
    assert not marker.exists()  # refused before torch.jit.load saw the archive
    # opting in is what lets the archive's code run, and it is on the record
    trusted = {"trust_archive_code": True}
    write_spec(
        "ts",
        spec_yaml("ts", [art], loader="torchscript", engine="torchscript", loader_args=trusted),
    )
    mm = make_manager()
    mm.load("ts")
    assert marker.exists()
    (entry,) = mm.models_used()
    assert entry["loader_args"] == trusted


# -- onnxruntime ---------------------------------------------------------------------------


def test_onnx_model_loads_and_runs(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    data, w, b = tiny_onnx()
    onnx_spec(write_spec, models_root, "lin", data)
    mm = make_manager()
    session = mm.load("lin")
    assert isinstance(session, onnxruntime.InferenceSession)
    assert session.get_providers() == ["CPUExecutionProvider"]
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    (y,) = session.run(["y"], {"x": x})
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-6)
    entry = mm.models_used()[0]
    assert entry["framework"] == {
        "name": "onnxruntime",
        "version": metadata.version("onnxruntime"),
    }


def test_an_unavailable_onnx_provider_is_refused(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("checks an onnxruntime without OpenVINO")
    args = {"providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"]}
    onnx_spec(write_spec, models_root, "lin", tiny_onnx()[0], loader_args=args)
    mm = make_manager()
    handle = mm.get("lin")  # the provider is the loader's business: get() does not see it
    with pytest.raises(
        DeviceUnavailableError,
        match=r"^spec 'lin': ONNX Runtime provider\(s\) OpenVINOExecutionProvider not available "
        r"here \(available: .*CPUExecutionProvider.*\); dp_models does not fall back",
    ) as exc:
        handle.load()
    assert isinstance(exc.value, RuntimeError)
    assert (exc.value.spec, exc.value.requested) == ("lin", "OpenVINOExecutionProvider")


@pytest.mark.parametrize(
    ("device", "providers"),
    [
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ("cpu", ["CPUExecutionProvider", "CUDAExecutionProvider"]),
    ],
)
def test_onnx_providers_must_match_the_device(
    device: str,
    providers: list[str],
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    args = {"providers": providers}
    onnx_spec(write_spec, models_root, "lin", tiny_onnx()[0], loader_args=args, device=device)
    with pytest.raises(LoaderArgsError, match=r"do not match device 'cpu'") as exc:
        make_manager().load("lin")
    assert isinstance(exc.value, TypeError)
    assert exc.value.spec == "lin"


@needs_no_cuda
def test_onnx_on_cuda_without_a_cuda_provider_is_refused_at_get(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("checks an onnxruntime without CUDA")
    onnx_spec(write_spec, models_root, "lin", tiny_onnx()[0], device="cuda")
    with pytest.raises(
        DeviceUnavailableError, match=r"^spec 'lin' asks for device 'cuda', but onnxruntime sees"
    ) as exc:
        make_manager().get("lin")
    assert (exc.value.spec, exc.value.requested) == ("lin", "cuda")


@pytest.mark.parametrize(
    ("providers", "message"),
    [("CPUExecutionProvider", "valid list"), ([], "at least 1 item"), ([3], "valid string")],
)
def test_onnx_providers_must_be_a_list_of_names(
    providers: object,
    message: str,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    args = {"providers": providers}
    onnx_spec(write_spec, models_root, "lin", tiny_onnx()[0], loader_args=args)
    problem = catalog_problem(make_manager)
    assert problem.field.startswith("loader_args.providers")
    assert message in problem.message


def test_onnx_runs_only_in_its_exported_precision(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    onnx_spec(write_spec, models_root, "lin", tiny_onnx()[0])
    with pytest.raises(
        PrecisionError,
        match=r"(?s)'lin'.*precision it was exported in \(fp32\).*own exported model",
    ) as exc:
        make_manager().load("lin", precision="int8")
    assert isinstance(exc.value, ValueError)
    assert (exc.value.spec, exc.value.precision, exc.value.device) == ("lin", "int8", "cpu")


def test_a_corrupt_pinned_onnx_file_is_a_loader_error_with_the_cause_chained(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    data = tiny_onnx()[0]
    path = onnx_spec(write_spec, models_root, "broken", data[: len(data) // 2])
    with pytest.raises(
        LoaderError,
        match=rf"^spec 'broken': loader 'onnxruntime' failed on {path}: \w+: .* The artifact "
        r"passed its digest check, so the spec's loader or loader_args do not fit it\.$",
    ) as exc:
        make_manager().load("broken")
    err = exc.value
    assert type(err) is LoaderError
    assert isinstance(err, RuntimeError)
    assert (err.spec, err.loader) == ("broken", "onnxruntime")
    assert err.__cause__ is not None
    assert type(err.__cause__).__module__.startswith("onnxruntime")


# -- the manager around loading ------------------------------------------------------------


def _change(path: Path, how: str) -> None:
    if how == "same size":
        st = os.stat(path)
        path.write_bytes(b"weights v2" * 50)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even the mtime is the old one
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.unlink()


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("same size", DigestMismatchError),
        ("truncated", SizeMismatchError),
        ("deleted", ArtifactMissingError),
    ],
)
def test_an_artifact_changed_between_get_and_load_is_caught(
    how: str,
    error: type[ArtifactError],
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    loader = CountingLoader("counting_changed")
    path = custom_spec(write_spec, models_root, "changed", loader.name)
    os.utime(path, (OLD, OLD))  # old enough for get() to cache its digest
    pinned = hashlib.sha256(path.read_bytes()).hexdigest()
    mm = make_manager(loaders={loader.name: loader})
    handle = mm.get("changed")
    _change(path, how)
    with pytest.raises(error, match=rf"^spec 'changed': .*artifact .*{path.name}") as exc:
        handle.load()
    err = exc.value
    assert (err.spec, err.path) == ("changed", path)
    if isinstance(err, DigestMismatchError):
        assert isinstance(err, ValueError)
        assert (err.expected, err.actual) == (pinned, hashlib.sha256(path.read_bytes()).hexdigest())
    elif isinstance(err, SizeMismatchError):
        assert isinstance(err, ValueError)
        assert (err.expected, err.actual) == (500, 100)
    else:
        assert isinstance(err, FileNotFoundError)
    assert loader.calls == 0
    with pytest.raises(error):
        mm.load("changed")
    assert loader.calls == 0
    path.write_bytes(b"weights v1" * 50)  # the pinned bytes again: loads, nothing was cached
    assert handle.load()["call"] == 1


def test_loaded_objects_are_cached_per_name_device_and_precision(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    state_dict_spec(
        write_spec, models_root, "tiny", reference_net(tinynet).state_dict(), allow_half_on_cpu=True
    )
    mm = make_manager()
    first = mm.load("tiny")
    assert mm.load("tiny") is first
    assert mm.get("tiny", device="cpu").load() is first
    assert mm.load("tiny", device="cpu", precision="fp32") is first
    half = mm.load("tiny", precision="fp16")
    assert half is not first
    assert mm.load("tiny", precision="fp16") is half
    assert len(tinynet.BUILT) == 2
    assert mm.unload("tiny") == 2
    assert mm.unload("tiny") == 0
    again = mm.load("tiny")
    assert again is not first
    mm.close()
    assert mm.load("tiny") is not again
    assert len(tinynet.BUILT) == 4


def test_concurrent_loads_of_one_model_load_it_once(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    loader = CountingLoader("counting_slow", delay_s=0.2)
    custom_spec(write_spec, models_root, "slow", loader.name)
    mm = make_manager(loaders={loader.name: loader})
    barrier = threading.Barrier(8)

    def load(_: int) -> Any:
        barrier.wait()
        return mm.load("slow")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(load, range(8)))
    assert loader.calls == 1
    assert all(r is results[0] for r in results)
    assert results[0]["spec"] == "slow"


def test_a_failed_load_is_shared_by_waiters_and_retried_later(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    loader = CountingLoader("counting_flaky", delay_s=0.2, fail_first=1)
    path = custom_spec(write_spec, models_root, "flaky", loader.name)
    mm = make_manager(loaders={loader.name: loader})
    barrier = threading.Barrier(4)

    def load(_: int) -> Any:
        barrier.wait()
        try:
            return mm.load("flaky")
        except LoaderError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(load, range(4)))
    assert loader.calls == 1
    for err in results:
        assert isinstance(err, LoaderError)
        assert (err.spec, err.loader) == ("flaky", "counting_flaky")
        assert isinstance(err.__cause__, OSError)
        assert re.search(rf"failed on {path}: OSError: flaky storage on call 1\.", str(err))
    model = mm.load("flaky")
    assert model["call"] == 2
    assert mm.load("flaky") is model
    assert loader.calls == 2


# -- the registry --------------------------------------------------------------------------


def test_an_unknown_loader_lists_the_known_ones() -> None:
    with pytest.raises(
        LoaderNotFoundError,
        match=r"^loader 'nope', which is not registered\. Known loaders: "
        r"(.*, )?onnxruntime, (.*, )?torch_state_dict, torchscript(, .*)?\. A third-party loader",
    ) as exc:
        get_loader("nope")
    err = exc.value
    assert isinstance(err, LookupError)
    assert err.loader == "nope"
    assert err.spec is None
    assert set(BUILTIN_LOADERS) <= set(err.known)
    assert list(err.known) == loader_names()


def test_a_spec_naming_an_unknown_loader_fails_at_get(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    write_bytes(models_root / "orphan" / "weights.pt", b"w")
    art = artifact(models_root, "orphan/weights.pt", "pt")
    write_spec("orphan", spec_yaml("orphan", [art], loader="nope"))
    with pytest.raises(LoaderNotFoundError, match=r"^spec 'orphan' names loader 'nope'") as exc:
        make_manager().get("orphan")
    assert (exc.value.spec, exc.value.loader) == ("orphan", "nope")


def test_the_builtin_loaders_are_found_by_name() -> None:
    assert isinstance(get_loader("torch_state_dict"), TorchStateDictLoader)
    assert isinstance(get_loader("torchscript"), TorchScriptLoader)
    assert isinstance(get_loader("onnxruntime"), OnnxRuntimeLoader)
    assert get_loader("torchscript") is get_loader("torchscript")
    assert set(BUILTIN_LOADERS) <= set(loader_names())


def test_a_registry_refuses_to_shadow_a_name_unless_told() -> None:
    registry = LoaderRegistry()
    for name in BUILTIN_LOADERS:
        with pytest.raises(ValueError, match=rf"^a loader named '{name}' is already registered$"):
            registry.register(name, CountingLoader(name))
        assert not isinstance(registry.get(name), CountingLoader)
    registry.register("needs_torch", _NeedsTorch)  # a class is instantiated
    first = registry.get("needs_torch")
    assert isinstance(first, _NeedsTorch)
    assert "needs_torch" in registry.names()
    with pytest.raises(ValueError, match=r"^a loader named 'needs_torch' is already registered$"):
        registry.register("needs_torch", CountingLoader("needs_torch"))
    assert registry.get("needs_torch") is first
    replacement = CountingLoader("needs_torch")
    registry.register("needs_torch", replacement, replace=True)
    assert registry.get("needs_torch") is replacement
    assert "needs_torch" not in loader_names()  # the process-wide registry is untouched


def test_register_loader_adds_to_the_process_wide_registry() -> None:
    """The public function still works (notebooks); tests give managers their loaders."""
    with pytest.raises(ValueError, match=r"^a loader named 'onnxruntime' is already registered$"):
        register_loader("onnxruntime", CountingLoader("onnxruntime"))
    loader = CountingLoader("loaders_tests_registered")
    register_loader(loader.name, loader, replace=True)
    assert get_loader(loader.name) is loader
    assert loader.name in loader_names()


def test_a_manager_given_loaders_uses_them_and_leaves_the_others_alone(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    loader = CountingLoader("counting_own")
    custom_spec(write_spec, models_root, "own", loader.name)
    mm = make_manager(loaders={loader.name: loader})
    assert mm.load("own")["call"] == 1
    assert isinstance(mm.loaders.get("onnxruntime"), OnnxRuntimeLoader)  # built-ins stay
    assert loader.name not in loader_names()
    with pytest.raises(LoaderNotFoundError, match=r"names loader 'counting_own'"):
        make_manager().get("own")  # another manager does not see it


def test_register_loader_refuses_what_is_not_a_loader() -> None:
    class NoLoad:
        name = "half_a_loader"
        framework = "pytest"
        extra = "test"

        def cuda_available(self) -> bool:
            return False

    for obj, lacks in ((object(), "name, framework"), (NoLoad, "args_model")):
        with pytest.raises(TypeError, match=r"is not a dp_models Loader \(it lacks .*") as exc:
            register_loader("not_a_loader", cast(Any, obj))
        assert lacks in str(exc.value)
        assert "subclass dp_models.loaders.Loader" in str(exc.value)
    assert "not_a_loader" not in loader_names()


def test_a_third_party_loader_from_the_entry_point_group(
    pymods: Path,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    dist = pymods / "foo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dp_models.loaders]\nfoo = foo_loader:FooLoader\n")
    (pymods / "foo_loader.py").write_text(FOO_LOADER)
    importlib.invalidate_caches()

    registry = LoaderRegistry()  # a fresh one: the process-wide registry keeps what it found
    assert "foo" in registry.names()
    loader = registry.get("foo")
    assert type(loader).__module__ == "foo_loader"
    assert type(loader).__name__ == "FooLoader"
    assert registry.get("foo") is loader

    write_bytes(models_root / "foo" / "model.txt", b"foo weights")
    art = artifact(models_root, "foo/model.txt", "txt")
    write_spec(
        "foomodel",
        spec_yaml("foomodel", [art], loader="foo", engine="python", loader_args={"k": 1}),
    )
    mm = make_manager(loaders=registry)
    assert mm.load("foomodel") == ("foo-model", "foo weights", {"k": 1})
    assert mm.models_used()[0]["framework"] == {"name": "foo", "version": "1.0"}
    # its args model is the catalog's: a misspelt key is refused when the catalog loads
    write_spec(
        "foomodel",
        spec_yaml("foomodel", [art], loader="foo", engine="python", loader_args={"kk": 1}),
    )
    problem = catalog_problem(make_manager, loaders=registry)
    assert problem.field == "loader_args.kk"
    assert "loader 'foo' does not take loader_args 'kk' (did you mean 'k'?); it takes k" in (
        problem.message
    )


def test_require_names_the_extra_that_installs_a_missing_framework(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert require("torch", extra="torch") is torch
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        MissingExtraError,
        match=r"(?s)torch is not installed.*'clip'.*pip install 'dp-models\[torch\]'",
    ) as exc:
        require("torch", extra="torch", spec="clip")
    err = exc.value
    assert isinstance(err, ImportError)
    assert (err.module, err.extra, err.spec) == ("torch", "torch", "clip")
    assert isinstance(err.__cause__, ModuleNotFoundError)


def test_require_shows_the_real_error_of_a_broken_framework(pymods: Path) -> None:
    (pymods / "brokenfw.py").write_text("import dpm_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match=r"dpm_no_such_dependency") as exc:
        require("brokenfw", extra="broken")
    assert not isinstance(exc.value, MissingExtraError)


@pytest.mark.parametrize("loader", ["needs_torch", "torchscript"])
def test_a_missing_framework_at_load_names_the_extra(
    loader: str,
    monkeypatch: pytest.MonkeyPatch,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    custom_spec(write_spec, models_root, "torchless", loader)
    mm = make_manager(loaders={"needs_torch": _NeedsTorch})
    if loader == "needs_torch":  # with torch installed it loads
        assert torch.equal(mm.load("torchless"), torch.zeros(1))
        mm.close()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        MissingExtraError,
        match=r"(?s)torch is not installed.*'torchless'.*pip install 'dp-models\[torch\]'",
    ) as exc:
        mm.load("torchless")
    assert isinstance(exc.value, ImportError)
    assert (exc.value.module, exc.value.extra, exc.value.spec) == ("torch", "torch", "torchless")


def test_a_corrupt_pickle_is_not_called_unsafe(
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    path = state_dict_spec(write_spec, models_root, "junk", reference_net(tinynet).state_dict())
    path.write_bytes(b"not a checkpoint at all" * 10)
    write_spec(
        "junk",
        spec_yaml(
            "junk",
            [artifact(models_root, "junk/weights.pt", "pt")],
            loader_args={"class_path": "tinynet:TinyNet", "kwargs": KWARGS},
            device="cpu",
        ),
    )
    with pytest.raises(LoaderError, match=r"cannot be read as a checkpoint") as exc:
        make_manager().load("junk")
    assert not isinstance(exc.value, UnsafeCheckpointError)
    assert exc.value.spec == "junk"


def test_an_unknown_loader_fails_at_get_even_on_cpu(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    custom_spec(write_spec, models_root, "nobody", "no_such_loader")
    with pytest.raises(LoaderNotFoundError, match=r"names loader 'no_such_loader'"):
        make_manager().get("nobody")


@pytest.mark.adversarial
def test_a_payload_from_a_blocked_module_is_refused_as_unsafe(
    tmp_path: Path,
    tinynet: ModuleType,
    models_root: Path,
    write_spec: SpecWriter,
    make_manager: Callable[..., ModelManager],
) -> None:
    marker = tmp_path / "system-ran"
    state_dict_spec(write_spec, models_root, "evil2", {"x": RunsCode(marker)})
    with pytest.raises(
        UnsafeCheckpointError, match=r"\(torch: Trying to load unsupported GLOBAL posix\.system"
    ) as exc:
        make_manager().load("evil2")
    assert exc.value.spec == "evil2"
    assert not marker.exists()


def test_unwrap_state_dict_takes_lightning_and_data_parallel_checkpoints() -> None:
    weights = {"layer.weight": 1, "layer.bias": 2}
    parallel = {f"module.{k}": v for k, v in weights.items()}
    for checkpoint in (weights, {"state_dict": weights, "epoch": 3}, {"state_dict": parallel}):
        assert unwrap_state_dict(checkpoint, spec="s", loader="l") == weights
    with pytest.raises(LoaderError, match=r"^spec 's': the checkpoint holds a list, not a state"):
        unwrap_state_dict([1, 2], spec="s", loader="l")


# -- what a loader declares: args, engines, formats ---------------------------------------


class PluginArgs(LoaderArgs):
    size: int = 1


class PluginLoader(Loader[PluginArgs]):
    """A third party's loader of its own framework: its engine and artifact format are not
    in the built-in lists."""

    name = "plugin_tests"
    framework = "pytest"
    extra = "test"
    args_model = PluginArgs
    engines = ("plugin_engine",)
    formats = ("plugin_weights",)

    def load(self, ctx: LoadContext) -> Any:
        return (self.args(ctx).size, ctx.read_bytes("plugin_weights"))


def plugin_spec(write_spec: SpecWriter, root: Path, *, loader: str = PluginLoader.name) -> None:
    write_bytes(root / "plugin" / "w.bin", b"plugin weights")
    art = {**artifact(root, "plugin/w.bin", "txt"), "format": "plugin_weights"}
    write_spec(
        "plugin",
        spec_yaml("plugin", [art], loader=loader, engine="plugin_engine", loader_args={"size": 3}),
    )


def test_a_loader_declares_the_engines_and_formats_it_adds(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    plugin_spec(write_spec, models_root)
    mm = make_manager(loaders={PluginLoader.name: PluginLoader})
    assert mm.load("plugin") == (3, b"plugin weights")
    assert mm.models_used()[0]["engine"] == "plugin_engine"


def test_another_loader_cannot_name_them(
    models_root: Path, write_spec: SpecWriter, make_manager: Callable[..., ModelManager]
) -> None:
    """The additions are the declaring loader's: a spec of another loader (or of a loader
    not given to this manager) naming them is a catalog error, file and field named."""
    plugin_spec(write_spec, models_root, loader="torchscript")
    with pytest.raises(CatalogError) as exc:
        make_manager(loaders={PluginLoader.name: PluginLoader})
    fields = {p.field for p in exc.value.problems}
    assert fields == {"engine", "artifacts[0].format"}
    assert all(p.file == "visual/plugin.yaml" for p in exc.value.problems)
    plugin_spec(write_spec, models_root)
    with pytest.raises(CatalogError, match=r"engine: Input should be 'torch'"):
        make_manager()  # the process-wide loaders do not know plugin_tests


def test_a_loaded_catalog_is_checked_against_the_managers_own_loaders(
    models_root: Path, catalog_dir: Path, write_spec: SpecWriter
) -> None:
    loader = CountingLoader("counting_catalog")
    path = custom_spec(write_spec, models_root, "counted", loader.name)
    data = json.loads((catalog_dir / "visual" / "counted.yaml").read_text())
    data["loader_args"] = {"colour": "red"}
    (catalog_dir / "visual" / "counted.yaml").write_text(json.dumps(data))
    catalog = Catalog.load(catalog_dir)  # loader unknown here: its args cannot be checked
    with pytest.raises(CatalogError) as exc:
        ModelManager(models_root=models_root, catalog=catalog, loaders={loader.name: loader})
    [problem] = exc.value.problems
    assert (problem.file, problem.field) == ("visual/counted.yaml", "loader_args.colour")
    assert "it takes none" in problem.message
    assert path.exists() and loader.calls == 0
