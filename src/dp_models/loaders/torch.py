"""PyTorch loaders: ``torch_state_dict`` (a module class plus a state dict) and ``torchscript``.

``torch_state_dict`` builds ``module:Class(**kwargs)`` and loads its weights from a
``format: safetensors`` artifact, or from a pickled ``pt``/``pth`` checkpoint with
``torch.load(weights_only=True)``: a checkpoint that needs anything but tensors and plain
containers to unpickle could run code, and is refused unless the spec opts out with
``weights_only: false``. Keys must match exactly unless ``strict: false``.

loader_args: :class:`TorchStateDictArgs` and :class:`TorchScriptArgs`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from .._errors import (
    LoaderArgsError,
    LoaderError,
    PrecisionError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    UnsupportedPickleError,
)
from ._checkpoint import read_pickle
from .base import LoadContext, Loader, LoaderArgs, require

__all__ = [
    "CheckpointArgs",
    "TorchScriptArgs",
    "TorchScriptLoader",
    "TorchStateDictArgs",
    "TorchStateDictLoader",
]

WEIGHT_FORMATS = ("safetensors", "pt", "pth", "pth.tar", "pyth")
_SHOWN_KEYS = 8
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_CLASS_PATH = re.compile(rf"{_DOTTED}:{_DOTTED}")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class CheckpointArgs(LoaderArgs):
    """The ``loader_args`` of every loader that reads a state dict from a torch checkpoint
    (``torch_state_dict``, ``torchvision``)."""

    state_dict_key: str | None = Field(
        default=None, description="take the state dict from this key of the checkpoint"
    )
    strip_prefix: str | None = Field(
        default=None, description="remove this prefix from every key (e.g. 'module.')"
    )
    weights_only: bool = Field(
        default=True, description="false opts out of safe unpickling (trusted files only)"
    )


class TorchStateDictArgs(CheckpointArgs):
    """``loader_args`` of ``torch_state_dict``."""

    class_path: str = Field(description="'package.module:Class', importable here")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments for the class")
    strict: bool = Field(default=True, description="missing or unexpected keys are an error")

    @field_validator("class_path")
    @classmethod
    def _class_path(cls, value: str) -> str:
        if not _CLASS_PATH.fullmatch(value):
            raise ValueError(
                "must be 'package.module:Class' (dotted attributes after the colon allowed)"
            )
        return value


class TorchScriptArgs(LoaderArgs):
    """``loader_args`` of ``torchscript``."""

    trust_archive_code: bool = Field(
        default=False,
        description="true states that the pinned archive's code may run (it does, at load)",
    )


def _torch(ctx: LoadContext | None = None) -> Any:
    return require("torch", extra="torch", spec=ctx.spec.name if ctx else None)


def _cuda_available() -> bool:
    return bool(_torch().cuda.is_available())  # a missing torch is a MissingExtraError


def _apply_precision(model: Any, ctx: LoadContext, loader: str) -> Any:
    torch = _torch(ctx)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if ctx.precision not in dtypes:
        raise PrecisionError(
            f"spec {ctx.spec.name!r}: loader {loader!r} runs models in fp32, fp16 or bf16, not "
            f"{ctx.precision}; quantised models need a loader that builds them",
            spec=ctx.spec.name,
            precision=ctx.precision,
            device=ctx.device,
        )
    dtype, device = dtypes[ctx.precision], torch.device(ctx.device)
    if device.type == "cpu" and all(
        t.device.type == "cpu"
        and (t.dtype == dtype or not (t.is_floating_point() or t.is_complex()))
        for t in (*model.parameters(), *model.buffers())
    ):
        return model  # already there: Module.to would walk every module to change nothing
    return model.to(device=ctx.device, dtype=dtype)


def build_without_init(ctx: LoadContext, construct: Callable[[], Any]) -> Any:
    """``construct()`` without initialising its parameters, which is most of a framework's
    own load time and is overwritten by the checkpoint a moment later: while the module is
    built, ``torch.nn.init``'s functions leave every ``Parameter`` as allocated (in this
    thread only; any other tensor, such as a buffer computed in the constructor, and any
    tensor of another thread, is initialised as before). The caller must then load
    *every* parameter from the checkpoint (a strict load), which copies into the module's
    memory exactly as the framework's load does, so the model computes the same, bit for
    bit. The parameters are the framework's own allocations, laid out as its build lays
    them out; on Linux the large ones are backed by huge pages (:func:`advise_huge_pages`).

    This beats building on torch's ``meta`` device and allocating afterwards (measured:
    the meta device's dispatch costs more than the allocations it saves), and it keeps
    non-persistent buffers (computed at construction, in no state dict: a causal attention
    mask) as the framework computes them."""
    torch = _torch(ctx)
    with _init_skipped(torch):
        model = construct()
    advise_huge_pages(torch, [*model.parameters(), *model.buffers()])
    return model


@contextlib.contextmanager
def parameters_left_uninitialised(ctx: LoadContext) -> Iterator[None]:
    """:func:`build_without_init`'s build, for a framework object that is not itself a
    module (LAION-CLAP's ``CLAP_Module``): while it is built, ``torch.nn.init`` leaves each
    ``Parameter`` this thread creates as allocated. The caller then loads every parameter
    from a checkpoint (strictly)."""
    with _init_skipped(_torch(ctx)):
        yield


_HUGE_PAGE = 2 << 20
_madvise: Any = None


def advise_huge_pages(torch: Any, tensors: Iterable[Any]) -> None:
    """Ask Linux to back the large CPU tensors about to be filled from a checkpoint with
    transparent huge pages (``madvise(MADV_HUGEPAGE)`` on each one's whole 2 MiB pages):
    a fresh allocation is otherwise faulted in 4 KiB at a time as the checkpoint is copied
    in, which costs more than the copy. Only the kernel's page size changes, never a value;
    where the call is not available (another OS, THP disabled) nothing is asked."""
    global _madvise
    if _madvise is None:
        _madvise = _libc_madvise()
    if not _madvise:
        return
    for tensor in tensors:
        if tensor.device.type != "cpu":
            continue
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        first = -(-start // _HUGE_PAGE) * _HUGE_PAGE
        last = end // _HUGE_PAGE * _HUGE_PAGE
        if last > first:
            _madvise(first, last - first, _MADV_HUGEPAGE)  # a refusal changes nothing


_MADV_HUGEPAGE = 14  # linux/mman.h


def _libc_madvise() -> Any:
    """libc's ``madvise``, or False where there is none to call (not Linux)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return False
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


#: ``torch.nn.init`` functions that a module's constructor calls on its parameters.
_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)
_INIT_LOCK = threading.Lock()
#: (module, name, original) of each patched name, while the skipping versions are in place.
_init_patch: list[tuple[Any, str, Any]] = []
_init_users = 0
#: ``depth``: how deep this thread is in builds whose parameters are left as allocated.
_skip_here = threading.local()


def _skipped_here() -> bool:
    return bool(getattr(_skip_here, "depth", 0))


def _skipping(original: Any, parameter: type) -> Any:
    @functools.wraps(original)
    def init(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(tensor, parameter) and _skipped_here():
            return tensor  # the checkpoint fills it (build_without_init)
        return original(tensor, *args, **kwargs)

    return init


def _init_names(torch: Any) -> list[tuple[Any, str, Any]]:
    """Where ``torch.nn.init``'s functions are reachable by name in torch.nn: the module
    itself and every loaded ``torch.nn`` module holding one of them under its own name."""
    import sys

    init = torch.nn.init
    originals = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}
    found = [(init, name, original) for name, original in originals.items()]
    for module_name, module in list(sys.modules.items()):
        if module is init or not module_name.startswith("torch.nn."):
            continue
        names = getattr(module, "__dict__", {})
        found += [(module, n, f) for n, f in originals.items() if names.get(n) is f]
    return found


@contextlib.contextmanager
def _init_skipped(torch: Any) -> Iterator[None]:
    """While a module is built in this thread: ``torch.nn.init``'s functions return any
    ``Parameter`` as it is (the checkpoint fills it). Any other tensor, and any tensor in
    another thread, is initialised by the original function as before. The functions are
    replaced (once, however many threads build) in ``torch.nn.init`` and in the torch.nn
    modules that imported them by name (``nn.MultiheadAttention``'s ``xavier_uniform_``)."""
    global _init_users
    with _INIT_LOCK:
        if _init_users == 0:
            _init_patch.extend(_init_names(torch))
            for module, name, original in _init_patch:
                setattr(module, name, _skipping(original, torch.nn.Parameter))
        _init_users += 1
    depth: int = getattr(_skip_here, "depth", 0)
    _skip_here.depth = depth + 1
    try:
        yield
    finally:
        _skip_here.depth = depth
        with _INIT_LOCK:
            _init_users -= 1
            if _init_users == 0:
                for module, name, original in _init_patch:
                    setattr(module, name, original)
                _init_patch.clear()


def read_safetensors_into(
    ctx: LoadContext,
    model: Any,
    *,
    strip_prefix: str | None,
    loader: str,
    what: str,
    shape_hint: str,
    key_hint: str,
) -> bool:
    """Copy the spec's safetensors artifact straight into ``model`` (built by
    :func:`build_without_init`), one copy from a memory map of the verified file
    (:mod:`._safetensors`); every key must match, as with a strict ``load_state_dict``
    (else :class:`StateDictMismatchError`). False, with nothing copied, when that reader
    does not take the file: the caller then reads it the general way."""
    from ._safetensors import read_into

    found = read_into(
        _torch(ctx), str(ctx.artifact("safetensors")), model.state_dict(), strip_prefix=strip_prefix
    )
    if found is None:
        return False
    missing, unexpected, mismatched = found
    name = ctx.spec.name
    if mismatched:
        raise StateDictMismatchError(
            f"spec {name!r}: {what}: other shapes for {len(mismatched)} key(s) "
            f"[{_shown(mismatched)}]. {shape_hint}",
            spec=name,
            loader=loader,
            missing=[],
            unexpected=[],
        )
    if missing or unexpected:
        raise StateDictMismatchError(
            f"spec {name!r}: {what}: {len(missing)} missing key(s) [{_shown(missing)}], "
            f"{len(unexpected)} unexpected key(s) [{_shown(unexpected)}]. {key_hint}",
            spec=name,
            loader=loader,
            missing=missing,
            unexpected=unexpected,
        )
    return True


def _loader_of(ctx: LoadContext) -> str:
    """The loader to name in errors: the spec's (these helpers serve torchvision and
    slowfast too)."""
    return ctx.spec.loader or "torch_state_dict"


def _import_class(ctx: LoadContext, class_path: str) -> Any:
    """The class ``class_path`` names (its form was checked with the catalog; whether it
    imports is a question for this environment)."""
    name = ctx.spec.name
    module_name, _, attr = class_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoaderArgsError(
            f"spec {name!r}: class_path {class_path!r} does not import ({exc}). Install the "
            "package that defines the model class, or fix the path.",
            spec=name,
            loader=_loader_of(ctx),
        ) from exc
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise LoaderArgsError(
            f"spec {name!r}: module {module_name!r} has no {attr!r} (class_path {class_path!r})",
            spec=name,
            loader=_loader_of(ctx),
        ) from exc
    return obj


def _weights_artifact(ctx: LoadContext) -> tuple[Path, str]:
    """The weights artifact's path as the spec writes it (for messages) and its format as
    the spec declares it (the format, not the file name, decides how it is read: a
    safetensors file is never handed to the unpickler)."""
    art = next((a for a in ctx.spec.artifacts if a.format in WEIGHT_FORMATS), None)
    if art is None:
        ctx.artifact(*WEIGHT_FORMATS)  # raises: no artifact of these formats
        raise AssertionError("unreachable")
    return Path(art.path), art.format


#: What torch's weights-only unpickler says when it refuses something a pickle asked for
#: (an import, building or calling something not allowed), as opposed to bytes it cannot
#: parse at all.
_REFUSALS = ("GLOBAL", "Can only", "unrecognized function", "is blocked")


def refused_global(exc: BaseException) -> bool:
    """Whether a weights-only unpickling error refused something the pickle asked for (an
    import such as ``GLOBAL os.system``, ``BUILD`` on a class, a call of a function that
    is not allowed): the file is a pickle that would run code, as opposed to one that
    cannot be read at all."""
    text = _ANSI.sub("", str(exc))
    return any(marker in text for marker in _REFUSALS)


def _unpickler_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused (e.g. ``Unsupported global: GLOBAL
    os.system ...``), without torch's advice to allowlist it and without terminal colours."""
    text = _ANSI.sub("", str(exc))
    refused = [line.strip() for line in text.splitlines() if "GLOBAL" in line]
    if refused:
        line = refused[0].partition("WeightsUnpickler error:")[2] or refused[0]
        return line.strip().split(". ")[0].rstrip(".")
    _, marker, detail = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail if marker else text).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0].split(". ")[0].rstrip(".")


def read_checkpoint(
    ctx: LoadContext,
    path: Path,
    fmt: str,
    weights_only: bool,
    *,
    allow: Sequence[Any] = (),
    what: str = "tensors",
    mapped: bool = False,
) -> Any:
    """The checkpoint of ``ctx``'s artifact of format ``fmt`` (``path`` as the spec names
    it, for messages), read from the verified, open file: safetensors without any pickle; a
    pickle with torch's weights-only unpickler and ``allow`` added to its allowlist (any
    protocol, see :mod:`._checkpoint`), or, where the spec opted out with
    ``weights_only: false``, with torch's full unpickler. A pickle that asks for anything
    else is an :class:`UnsafeCheckpointError` (nothing in it ran); one that cannot be read
    at all a :class:`LoaderError`.

    ``mapped``: the caller copies every tensor into a module at once and drops the rest
    (:func:`fit_state_dict` on a module from :func:`build_without_init`), so the tensors
    of a zip checkpoint may be views of a private, read-only-by-use memory map of the
    verified file (``torch.load(mmap=True)``): the checkpoint's bytes are copied once,
    from the page cache into the module, instead of into new tensors first. Nothing may
    keep such a tensor: the model never refers to the file."""
    name = ctx.spec.name
    # the path leads to the verified, open file (LoadContext.artifact); frameworks read a
    # path with their own native readers, faster than through any Python file object
    verified = str(ctx.artifact(fmt))
    if fmt == "safetensors":
        st = require("safetensors.torch", extra="torch", spec=name)
        return st.load_file(verified, device="cpu")
    torch = _torch(ctx)
    mapped = mapped and zipfile.is_zipfile(verified)  # torch maps zip checkpoints only
    if not weights_only:
        return torch.load(verified, map_location="cpu", weights_only=False, mmap=mapped)
    try:
        return read_pickle(verified, allow=allow, mmap=mapped)
    except UnsupportedPickleError as exc:
        raise LoaderError(
            f"spec {name!r}: {path} cannot be read as a checkpoint ({exc}); the file passed "
            "its digest check, so the pinned artifact itself is not a torch checkpoint of "
            "plain tensors: check the spec's format and the provisioned file.",
            spec=name,
            loader=_loader_of(ctx),
        ) from exc
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if not refused_global(exc):
            raise LoaderError(
                f"spec {name!r}: {path} cannot be read as a checkpoint ({detail}); the "
                "file passed its digest check, so the pinned artifact itself is not a torch "
                "checkpoint: check the spec's format and the provisioned file.",
                spec=name,
                loader=_loader_of(ctx),
            ) from exc
        raise UnsafeCheckpointError(
            f"spec {name!r}: {path} is a pickled checkpoint that needs more than {what} to "
            "load, so unpickling it could run code; it was refused and nothing in it ran. "
            "Convert it to safetensors, or, if you trust the file, set loader_args "
            f"weights_only: false in the spec. (torch: {detail})",
            spec=name,
            loader=_loader_of(ctx),
        ) from exc


def _state_dict(ctx: LoadContext, checkpoint: Any, key: str | None, prefix: str | None) -> Any:
    name = ctx.spec.name
    if key is not None:
        if not isinstance(checkpoint, Mapping) or key not in checkpoint:
            found = sorted(checkpoint)[:_SHOWN_KEYS] if isinstance(checkpoint, Mapping) else []
            raise LoaderArgsError(
                f"spec {name!r}: the checkpoint has no key {key!r} (loader_args.state_dict_key);"
                f" its top-level keys are {found}",
                spec=name,
                loader=_loader_of(ctx),
            )
        checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping):
        raise LoaderArgsError(
            f"spec {name!r}: the checkpoint is a {type(checkpoint).__name__}, not a state dict;"
            " set loader_args.state_dict_key if the weights sit under a key",
            spec=name,
            loader=_loader_of(ctx),
        )
    if prefix:
        checkpoint = {
            k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in checkpoint.items()
        }
    return checkpoint


def unwrap_state_dict(checkpoint: Any, *, spec: str, loader: str) -> dict[str, Any]:
    """The state dict of a checkpoint that is one, or holds one under ``state_dict`` (as
    PyTorch Lightning and the CLIP training code save them), without the ``module.`` prefix
    that ``DataParallel`` adds to every key. Anything else is a :class:`LoaderError`."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise LoaderError(
            f"spec {spec!r}: the checkpoint holds a {type(checkpoint).__name__}, not a state "
            "dict (nor a mapping with one under 'state_dict')",
            spec=spec,
            loader=loader,
        )
    state = dict(checkpoint)
    if state and all(str(k).startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _shown(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


def fit_state_dict(
    model: Any,
    state: Mapping[str, Any],
    *,
    spec: str,
    loader: str,
    what: str,
    shape_hint: str,
    key_hint: str,
    strict: bool = True,
) -> None:
    """Load ``state`` into ``model`` with every key accounted for (``strict``; otherwise
    missing and unexpected keys are allowed). Other shapes for the same keys, and missing
    or unexpected keys, raise :class:`StateDictMismatchError` saying ``{what}`` and the
    hint that fits (``shape_hint`` / ``key_hint``). The tensors are copied into the
    module's own memory (cast to its dtypes), as the frameworks' loads do."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same keys, other shapes: torch lists them a line each
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        shown = "; ".join(line.rstrip(".") for line in lines[:3]) or str(exc).strip()
        more = f"; and {len(lines) - 3} more" if len(lines) > 3 else ""
        raise StateDictMismatchError(
            f"spec {spec!r}: {what}: {shown}{more}. {shape_hint}",
            spec=spec,
            loader=loader,
            missing=[],
            unexpected=[],
        ) from exc
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise StateDictMismatchError(
            f"spec {spec!r}: {what}: {len(missing)} missing key(s) [{_shown(missing)}], "
            f"{len(unexpected)} unexpected key(s) [{_shown(unexpected)}]. {key_hint}",
            spec=spec,
            loader=loader,
            missing=missing,
            unexpected=unexpected,
        )


class TorchStateDictLoader(Loader[TorchStateDictArgs]):
    """``loader: torch_state_dict``."""

    name = "torch_state_dict"
    framework = "torch"
    extra = "torch"
    args_model = TorchStateDictArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        return _cuda_available()

    def export_module(self, loaded: Any) -> Any:
        """The module itself: its ``forward`` is what the derived spec serves."""
        return loaded

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        cls = _import_class(ctx, args.class_path)
        try:
            if args.strict:  # every parameter comes from the checkpoint: none initialised
                model, empty = build_without_init(ctx, lambda: cls(**args.kwargs)), True
            else:  # the missing ones keep the class's own initialisation
                model, empty = cls(**args.kwargs), False
        except TypeError as exc:
            raise LoaderArgsError(
                f"spec {name!r}: {args.class_path}(**{args.kwargs!r}) failed: {exc}",
                spec=name,
                loader=self.name,
            ) from exc
        path, fmt = _weights_artifact(ctx)
        what = f"the weights do not fit {args.class_path}"
        shape_hint = "Check kwargs against the checkpoint."
        key_hint = (
            "Check kwargs and strip_prefix, or set strict: false if partial loading is intended."
        )
        if not (
            empty
            and fmt == "safetensors"
            and args.state_dict_key is None
            and read_safetensors_into(
                ctx,
                model,
                strip_prefix=args.strip_prefix,
                loader=self.name,
                what=what,
                shape_hint=shape_hint,
                key_hint=key_hint,
            )
        ):
            checkpoint = read_checkpoint(ctx, path, fmt, args.weights_only, mapped=True)
            state = _state_dict(ctx, checkpoint, args.state_dict_key, args.strip_prefix)
            fit_state_dict(
                model,
                state,
                spec=name,
                loader=self.name,
                what=what,
                shape_hint=shape_hint,
                key_hint=key_hint,
                strict=args.strict,
            )
            del checkpoint, state  # views of the file's map: none may outlive the copy
        model = _apply_precision(model, ctx, self.name)
        model.eval()
        return model


class TorchScriptLoader(Loader[TorchScriptArgs]):
    """``loader: torchscript``: ``torch.jit.load`` onto the device, only where the spec
    says it trusts the archive's code.

    A TorchScript archive is code: ``torch.jit.load`` runs its classes' ``__setstate__``
    methods, which may call any aten op (``aten::from_file`` creates and writes files), and
    the model's ``forward`` is the archive's code too. The digest pins *which* archive
    runs; it says nothing about what that archive does. So the loader refuses unless the
    spec sets ``loader_args: {trust_archive_code: true}``, a statement that the pinned
    archive comes from someone whose code you would run; the flag is part of the spec's
    ``loader_args``, so it is in every ``models_used`` entry and the model signature.
    Prefer safetensors (``torch_state_dict``) or ONNX.
    """

    name = "torchscript"
    framework = "torch"
    extra = "torch"
    args_model = TorchScriptArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        return _cuda_available()

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        torch = _torch(ctx)
        if not args.trust_archive_code:
            raise UnsafeCheckpointError(
                f"spec {name!r}: loader torchscript runs the archive's own code while it "
                "loads (its __setstate__ methods can call any aten op, file writes "
                "included), so it was not loaded and nothing in it ran. If you trust the "
                "code of this pinned archive, set loader_args: {trust_archive_code: true} in "
                "the spec (it is recorded in models_used); otherwise export the model to "
                "safetensors (loader torch_state_dict) or ONNX.",
                spec=name,
                loader=self.name,
            )
        with warnings.catch_warnings():
            # torch announces TorchScript's deprecation on every load; the spec chose it.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=FutureWarning)
            with ctx.open("torchscript", "pt", "pth") as f:
                model = torch.jit.load(f, map_location=ctx.device)
        model = _apply_precision(model, ctx, self.name)
        model.eval()
        return model
