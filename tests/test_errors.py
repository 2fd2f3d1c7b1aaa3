"""One error tree: every exception dp_models raises is a DPModelsError from dp_models._errors,
every one crosses a process boundary (pickle, a process pool) with its fields, and an
OS-level failure reaching the command line is one line and a non-zero exit."""

from __future__ import annotations

import argparse
import concurrent.futures
import errno
import importlib
import inspect
import json
import multiprocessing
import os
import pickle
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

import pytest

import dp_models
from dp_models import _cli as cli
from dp_models import _digest as digest
from dp_models import _errors as errors
from dp_models._errors import (
    CatalogProblem,
    DirectoryTooLargeError,
    DPModelsError,
    OutsideRootError,
)

from .conftest import make_file

P = Path("/srv/models/visual/emonet/emonet_8.pth")
URL = "http://triton:8000"
DIGEST_A, DIGEST_B = "a" * 64, "b" * 64
TRITON = {"spec": "whisper_small_triton", "endpoint": URL}
ARTIFACT = {"spec": "emonet_8", "path": P}
LOADER = {"spec": "emonet_8", "loader": "torch_state_dict"}

#: Constructor arguments for every error class: (positional, keywords). A class missing
#: here fails test_pickle_round_trip; add a row with representative values for each field.
ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "DPModelsError": (("something failed",), {}),
    "ConfigurationError": (("verify must be 'cached' or 'always', got 'never'",), {}),
    "CatalogError": (
        ((CatalogProblem("a.yaml", "artifacts.0.sha256", "not a sha256"),),),
        {"catalog": Path("/cat")},
    ),
    "LockError": (("lock is malformed",), {"path": Path("/cat/catalog.lock.json")}),
    "LockSignatureError": (
        ("lock changed after it was signed",),
        {
            "reason": "modified",
            "path": Path("/cat/catalog.lock.json"),
            "signature": Path("/cat/catalog.lock.json.sig"),
            "key": Path("/keys/site.pub"),
        },
    ),
    "SpecNotFoundError": (("emonet_9", ["emonet_8"]), {"catalog": Path("/cat")}),
    "ModelsRootError": (("MODELS_ROOT is not set",), {"path": Path("/srv/models")}),
    "MissingExtraError": (("torch",), {"extra": "torch", "spec": "emonet_8"}),
    "LoaderNotFoundError": (("mystery", ["onnx", "torch_state_dict"]), {"spec": "x"}),
    "DeviceUnavailableError": (("no CUDA",), {"spec": "emonet_8", "requested": "cuda:1"}),
    "PrecisionError": (
        ("fp16 on the CPU",),
        {"spec": "emonet_8", "precision": "fp16", "device": "cpu"},
    ),
    "NetworkBlockedError": (
        ("example.org:443",),
        {"specs": ["emonet_8"], "allowed": ["triton:8000"]},
    ),
    "ProvenanceError": (("different models_used",), {"key": "models_used"}),
    "LineageInputError": (
        ("lineage input 0 fails verification",),
        {"path": "/out/core_clip.npz", "index": 0, "differences": ["models_used[0].version"]},
    ),
    "NotRegularFileError": (("a FIFO",), {"path": P, "kind": "a FIFO (named pipe)"}),
    "FileTooLargeError": (("too large",), {"path": P, "limit": 65536}),
    "FileChangedError": (("changed while hashed",), {"path": P}),
    "DirectoryTooLargeError": (("too many files",), {"path": P.parent, "limit": 200_000}),
    "OutsideRootError": (
        ("leads outside",),
        {"path": P.parent / "evil", "target": Path("/etc"), "root": Path("/srv/models")},
    ),
    "UnprovisionedTokenizerError": (("from the Hub",), {}),
    "LoaderError": (("the loader failed",), LOADER),
    "LoaderArgsError": (("unknown key",), LOADER),
    "StateDictMismatchError": (
        ("keys differ",),
        {**LOADER, "missing": ["fc.weight"], "unexpected": ["head.bias"]},
    ),
    "UnsafeCheckpointError": (("a payload",), LOADER),
    "LabelsError": (
        ("365 names, the model has 366 classes",),
        {
            "spec": "places365_resnet50",
            "loader": "torchvision",
            "labels": "places365_categories",
            "expected": 366,
            "actual": 365,
        },
    ),
    "TritonError": (("served wrongly",), TRITON),
    "TritonUnavailableError": (("not ready",), {**TRITON, "model": "whisper", "version": 2}),
    "TritonTimeoutError": (
        ("no answer",),
        {
            **TRITON,
            "model": "whisper",
            "version": 2,
            "timeout_s": 12.5,
            "option": "DP_MODELS_TRITON_TIMEOUT",
        },
    ),
    "TritonMetadataMismatchError": (("differs",), {**TRITON, "differences": ["input dtype"]}),
    "TritonDigestMismatchError": (
        ("other weights",),
        {**TRITON, "expected": DIGEST_A, "actual": None},
    ),
    "TritonInputError": (("bad inputs",), {**TRITON, "problems": ["shape", "dtype"]}),
    "TritonInferenceError": (("the server failed",), TRITON),
    "UnknownTokenError": (
        ("token ids the tokenizer does not know",),
        {**TRITON, "ids": [50364, 50400], "timestamps": [50364, 50400]},
    ),
    "TritonSharedMemoryError": (
        ("shared memory refused",),
        {**TRITON, "reason": "the server could not open /dp_models_1_ab"},
    ),
    "TritonExportError": (("not a Triton spec",), {"spec": "emonet_8"}),
    "DerivedExportError": (
        ("outputs differ",),
        {"spec": "clip_vit_b32_triton", "source": "clip_vit_b32", "differences": ["shape"]},
    ),
    "RunnerInputError": (
        ("bad batch",),
        {"spec": "clip_vit_b32", "runtime": "inprocess", "problems": ["dtype", "shape"]},
    ),
    "RunnerOutputError": (("outputs differ",), {"spec": "clip_vit_b32", "problems": ["shape"]}),
    "LineageError": (
        ("lineage broken",),
        {**ARTIFACT, "source": "clip_vit_b32", "recorded": "a" * 64, "current": "b" * 64},
    ),
    "ArtifactError": (("artifact problem",), ARTIFACT),
    "ArtifactMissingError": (("missing",), ARTIFACT),
    "DistributionVersionError": (
        ("other version",),
        {**ARTIFACT, "installed": "3.7.1", "required": "3.8.0"},
    ),
    "UnsafePathError": (("leaves the root",), ARTIFACT),
    "UnpinnedArtifactError": (("not pinned",), ARTIFACT),
    "ArtifactUnreadableError": (("cannot be read",), ARTIFACT),
    "ArtifactChangedError": (("changed",), ARTIFACT),
    "SizeMismatchError": (("size",), {**ARTIFACT, "expected": 10, "actual": 11}),
    "DigestMismatchError": (("digest",), {**ARTIFACT, "expected": DIGEST_A, "actual": DIGEST_B}),
    "PullError": (("pull failed",), {"path": "visual/emonet/emonet_8.pth"}),
    "NotPullableError": (("not pinned",), {"paths": ["visual/emonet/emonet_8.pth"]}),
    "SourceNotFoundError": (
        ("no mirror has it",),
        {"path": "visual/emonet/emonet_8.pth", "sources": ["http://***@mirror:8080"]},
    ),
    "SourceUnavailableError": (("HTTP 500",), {"source": "http://mirror:8080", "path": "a"}),
    "RedirectLoopError": (("redirects loop",), {"source": "http://mirror:8080", "path": "a"}),
    "PulledFileMismatchError": (
        ("other bytes",),
        {"source": "/mnt/mirror", "path": "a", "expected": DIGEST_A, "actual": DIGEST_B},
    ),
    "OciManifestError": (
        ("an unsafe path",),
        {"reference": "oci://registry:5000/models@sha256:" + "a" * 64, "path": "../etc/passwd"},
    ),
    "BundleError": (("cannot bundle",), {"path": "visual/emonet/emonet_8.pth"}),
    "BundleTamperedError": (("a link member",), {"member": "../etc/passwd"}),
    "BundleMismatchError": (("other pins",), {"paths": ["visual/emonet/emonet_8.pth"]}),
    "PushError": (("push failed",), {"destination": "s3://models/site"}),
    "NotPushableError": (
        ("root does not verify",),
        {"destination": "s3://models/site", "paths": ["visual/emonet/emonet_8.pth"]},
    ),
    "PushedFileMismatchError": (
        ("changed while pushed",),
        {
            "destination": "s3://models/site",
            "path": "visual/emonet/emonet_8.pth",
            "expected": "a" * 64,
            "actual": "b" * 64,
        },
    ),
    "DestinationUnavailableError": (("bucket missing",), {"destination": "s3://models/site"}),
    "FakeWeightsError": (("no make_fake",), {}),
    "FaultProxyError": (("already running",), {}),
    "TritonServerError": (("exited with status 1",), {}),
    "S3ServerError": (("moto_server exited with 1",), {}),
    "TritonServerNotFoundError": (("no tritonserver binary",), {}),
    "YamlRejectedError": (("line 2: duplicate key",), {}),
    "JsonRejectedError": (("nested too deep",), {}),
    "UnsupportedPickleError": (("an opcode",), {}),
    "DeadlineError": (("no complete answer within 30 s",), {}),
    "ServerAnswerError": (("unexpected shape for input 'x'",), {}),
    "NewConnectionError": ((), {}),
    "SharedMemoryRefusedError": (("no /dev/shm on this host",), {}),
}


def _tree(cls: type[DPModelsError]) -> list[type[DPModelsError]]:
    """``cls`` and every subclass below it, each once."""
    found = [cls]
    for sub in cls.__subclasses__():
        found += [c for c in _tree(sub) if c not in found]
    return found


ERROR_CLASSES = [c for c in _tree(DPModelsError) if c.__module__ == errors.__name__]


def build(name: str) -> DPModelsError:
    """An instance of the error class ``name`` with the representative fields of ARGS."""
    args, kwargs = ARGS[name]
    err = getattr(errors, name)(*args, **kwargs)
    assert isinstance(err, DPModelsError)
    if isinstance(err, OSError):  # the builtin's own fields travel too (the CLI shows them)
        err.errno, err.strerror, err.filename = errno.EACCES, "Permission denied", str(P)
    if hasattr(err, "add_note"):  # Python 3.11+: a note a processor adds travels too
        err.add_note("while processing video abc")
    return err


def fields(err: BaseException) -> dict[str, Any]:
    """Everything an error carries: its attributes and its builtin bases' slot fields."""
    found = dict(vars(err))
    for base in type(err).__mro__:
        if base.__module__ == "builtins" and base is not BaseException:
            for name, member in vars(base).items():
                if isinstance(member, types.MemberDescriptorType):
                    found[name] = getattr(err, name)
    return found


def assert_same(copy: BaseException, original: BaseException) -> None:
    assert type(copy) is type(original)
    assert copy.args == original.args
    assert str(copy) == str(original)
    assert fields(copy) == fields(original)


def test_every_class_is_discovered_and_has_arguments() -> None:
    names = {c.__name__ for c in ERROR_CLASSES}
    assert {n for n in errors.__all__ if n != "CatalogProblem"} <= names
    assert set(ARGS) == names, "ARGS lists a class that is gone, or misses a new one"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trip(cls: type[DPModelsError]) -> None:
    if cls.__name__ not in ARGS:
        pytest.fail(f"no constructor arguments for {cls.__name__}: add a row to ARGS")
    err = build(cls.__name__)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert_same(pickle.loads(pickle.dumps(err, protocol=protocol)), err)


def test_fields_survive_pickle() -> None:
    """Spot checks of what the generic comparison covers, on classes that failed before."""
    err = pickle.loads(pickle.dumps(build("TritonTimeoutError")))
    assert isinstance(err, errors.TritonTimeoutError) and isinstance(err, TimeoutError)
    assert (err.spec, err.endpoint, err.version, err.timeout_s) == (
        "whisper_small_triton",
        URL,
        2,
        12.5,
    )
    catalog = pickle.loads(pickle.dumps(build("CatalogError")))
    assert catalog.problems == ARGS["CatalogError"][0][0] and catalog.catalog == Path("/cat")
    assert "artifacts.0.sha256: not a sha256" in str(catalog)
    missing = pickle.loads(pickle.dumps(build("ArtifactMissingError")))
    assert isinstance(missing, FileNotFoundError) and missing.path == P
    assert (missing.errno, missing.filename) == (errno.EACCES, str(P))
    extra = pickle.loads(pickle.dumps(build("MissingExtraError")))
    assert "pip install 'dp-models[torch]'" in str(extra) and extra.extra == "torch"


def _raise(name: str) -> None:
    """Runs in a worker process: raise the representative error ``name``."""
    raise build(name)


def test_errors_cross_a_process_pool() -> None:
    """Every error raised inside a worker of a real process pool reaches the caller whole."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing shared
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = {c.__name__: pool.submit(_raise, c.__name__) for c in ERROR_CLASSES}
        for name, future in futures.items():
            exc = future.exception(timeout=120)
            assert exc is not None, name
            assert_same(exc, build(name))


def test_rebuild_refuses_other_classes() -> None:
    """A pickle cannot use the rebuild hook to make objects that are not dp_models errors."""
    reduced = build("LoaderError").__reduce__()
    rebuild = reduced[0]
    assert callable(rebuild)
    with pytest.raises(TypeError, match="not a dp_models error"):
        rebuild(ValueError, ("x",), {})


# -- the tree: drawn once, defined once ----------------------------------------------------------

#: Exception classes allowed outside dp_models._errors: private signals raised and caught in
#: their own module, never seen outside it.
PRIVATE_SIGNALS = {
    "dp_models.loaders.spacy._MetaError",
    # a safetensors header the direct reader does not take (the general path reads it)
    "dp_models.loaders._safetensors._UnreadableError",
    # pull's signals between a source (_transfer, _upstream), the file it streams into and
    # the thread pool (_pull)
    "dp_models._transfer._CancelledError",
    "dp_models._transfer._DestinationError",
    "dp_models._transfer._NotThereError",
    "dp_models._transfer._PutMismatchError",
    "dp_models._transfer._RetryError",
    "dp_models._transfer._TooLongError",
}


def test_no_exception_class_outside_errors() -> None:
    """Every exception class of the package lives in dp_models._errors (one tree)."""
    elsewhere = []
    for info in pkgutil.walk_packages(dp_models.__path__, "dp_models."):
        module = importlib.import_module(info.name)
        if module is errors:
            continue
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and f"{info.name}.{name}" not in PRIVATE_SIGNALS
            ):
                elsewhere.append(f"{info.name}.{name}")
    assert elsewhere == [], (
        "define these in dp_models/_errors.py as DPModelsError subclasses (and draw them in "
        "its tree); a private signal caught in its own module goes in PRIVATE_SIGNALS"
    )


def _drawn_tree() -> dict[str, tuple[str | None, set[str]]]:
    """The tree in errors.py's docstring: name -> (drawn parent, builtins in parentheses)."""
    assert errors.__doc__ is not None
    drawn: dict[str, tuple[str | None, set[str]]] = {}
    stack: list[str] = []
    for line in errors.__doc__.splitlines():
        if line.strip() == "DPModelsError":
            stack = ["DPModelsError"]
            drawn["DPModelsError"] = (None, set())
            continue
        m = re.match(r"^(\s*(?:[│ ]   )*)[├└]── (\w+)(?: \(([\w, ]+)\))?", line)
        if m is None or not stack:
            continue
        depth = (len(m.group(1)) - 4) // 4 + 1
        del stack[depth:]
        builtins = {b.strip() for b in (m.group(3) or "").split(",") if b.strip()}
        assert m.group(2) not in drawn, f"{m.group(2)} is drawn twice"
        drawn[m.group(2)] = (stack[-1], builtins)
        stack.append(m.group(2))
    return drawn


def test_the_drawn_tree_is_the_tree() -> None:
    drawn = _drawn_tree()
    assert set(drawn) == {c.__name__ for c in ERROR_CLASSES}
    for cls in ERROR_CLASSES:
        parent, builtins = drawn[cls.__name__]
        ours = [b for b in cls.__bases__ if issubclass(b, DPModelsError)]
        assert parent == (ours[0].__name__ if ours else None), cls.__name__
        others = {
            b.__name__
            for b in cls.__bases__
            if issubclass(b, BaseException) and not issubclass(b, DPModelsError)
        }
        assert builtins == others - {"Exception"}, cls.__name__


# -- errors that used to escape as bare builtins ---------------------------------------------


@pytest.mark.adversarial
def test_a_symlink_out_of_the_walk_is_a_typed_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "model" / "weights.bin", b"w")
    (root / "model" / "evil").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(OutsideRootError, match="outside") as info:
        digest.directory_files(root / "model", within=root.resolve())
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, DPModelsError)
    assert err.path == root / "model" / "evil"
    assert (err.target, err.root) == (tmp_path.resolve(), root.resolve())


@pytest.mark.adversarial
def test_a_directory_of_too_many_files_is_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        make_file(tmp_path / "d" / f"f{i}", b"x")
    monkeypatch.setattr(digest, "MAX_DIRECTORY_FILES", 3)
    with pytest.raises(DirectoryTooLargeError, match="more than 3 files") as info:
        digest.directory_files(tmp_path / "d")
    assert isinstance(info.value, OSError) and isinstance(info.value, DPModelsError)
    assert (info.value.path, info.value.limit) == (tmp_path / "d", 3)


# -- the command line: an OS-level failure is one line, never a traceback ---------------------

#: The smallest valid argv of every command; a new command needs a row (checked below).
COMMANDS: dict[str, list[str]] = {
    "validate": ["validate"],
    "list": ["list"],
    "show": ["show", "emonet_8"],
    "doctor": ["doctor"],
    "lock": ["lock"],
    "pull": ["pull", "emonet_8", "--from", "mirror"],
    "import-hf-cache": ["import-hf-cache", "all_minilm_l6_v2"],
    "push": ["push", "emonet_8", "--to", "s3://bucket/site"],
    "digest": ["digest", "weights.bin"],
    "verify-artifact": ["verify-artifact", "out.json"],
    "verify-lock": ["verify-lock"],
    "env": ["env"],
    "bundle create": ["bundle", "create", "emonet_8", "-o", "models.tar"],
    "bundle import": ["bundle", "import", "models.tar"],
    "triton export": ["triton", "export", "--out", "repo"],
    "export onnx": ["export", "onnx", "clip_vit_b32", "--for", "clip_vit_b32_triton"],
}


def _commands(parser: Any, prefix: str = "") -> dict[str, Any]:
    """Every runnable command of the parser (``triton export`` for nested ones): its parser."""
    found: dict[str, Any] = {}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            if sub.get_default("func") is not None:
                found[prefix + name] = sub
            found.update(_commands(sub, f"{prefix}{name} "))
    return found


def test_every_command_is_covered() -> None:
    assert set(_commands(cli._parser())) == set(COMMANDS)


OS_ERRORS = {
    "PermissionError": (PermissionError, errno.EACCES, "Permission denied"),
    "IsADirectoryError": (IsADirectoryError, errno.EISDIR, "Is a directory"),
}


@pytest.mark.adversarial
@pytest.mark.parametrize("kind", sorted(OS_ERRORS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_os_error_in_any_command_is_one_line(
    command: str,
    kind: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cls, code, reason = OS_ERRORS[kind]
    target = tmp_path / "unreadable"
    argv = COMMANDS[command]
    func = cli._parser().parse_args(argv).func

    def fails(args: Any, out: Any) -> int:
        raise cls(code, reason, str(target))

    monkeypatch.setattr(cli, func.__name__, fails)
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"dp-models: error: {target}: {reason}\n"
    if "--json" not in _commands(cli._parser())[command].format_usage():
        return
    assert cli.main([*argv, "--json"]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {
        "ok": False,
        "error": {
            "type": kind,
            "message": f"{target}: {reason}",
            "errno": errno.errorcode[code],
            "filename": str(target),
        },
    }


@pytest.mark.adversarial
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_digest_of_a_directory_with_an_unreadable_file(
    as_json: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # tests run as root, which reads any file: refuse this one at open() instead
    make_file(tmp_path / "d" / "a.bin", b"a")
    secret = make_file(tmp_path / "d" / "sub" / "secret.bin", b"s")
    real_open = os.open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    argv = ["digest", "--no-cache", str(tmp_path / "d")]
    assert cli.main([*argv, "--json"] if as_json else argv) == 1
    out, err = capsys.readouterr()
    if as_json:
        error = json.loads(out)["error"]
        assert (error["type"], error["errno"], error["filename"]) == (
            "PermissionError",
            "EACCES",
            str(secret),
        )
        assert err == ""
    else:
        assert out == ""
        assert err == f"dp-models: error: {secret}: Permission denied\n"
