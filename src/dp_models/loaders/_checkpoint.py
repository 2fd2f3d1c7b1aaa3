"""Reading torch checkpoints without running anything in them.

Three readers, each built on torch's own weights-only unpickler (``torch.load(...,
weights_only=True)``'s ``torch._weights_only_unpickler``), which imports nothing but an
allowlist (tensor and storage rebuilders, plain containers, dtypes, and what a caller
allows explicitly) and applies pickle's ``BUILD`` step only to instances of allowed
classes, never to a class or a function:

:func:`read_pickle`
    A ``torch.save`` checkpoint. Pickles in protocols 3 to 5 (which torch's unpickler does
    not parse: ``FRAME``, ``MEMOIZE``, ``STACK_GLOBAL``, ...) are first rewritten to
    protocol 2 by :func:`to_protocol_2`, an opcode-for-opcode translation that builds no
    object and imports nothing, then read by the same unpickler.
:func:`read_torchscript_state_dict`
    A TorchScript archive read as data: ``torch.jit.load`` would run the archive's code
    (its ``__setstate__`` methods can call aten ops such as ``aten::from_file``, which
    creates and writes files). Here the archive's ``data.pkl`` is unpickled with every
    ``__torch__`` class replaced by an inert record, its tensors read from the archive's
    storage records, and which attributes are parameters or buffers is read from the
    ``__parameters__`` / ``__buffers__`` lines of the archive's code, as text.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import struct
import threading
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, BinaryIO

from .._errors import UnsupportedPickleError

__all__ = [
    "read_pickle",
    "read_torchscript_state_dict",
    "to_protocol_2",
]

# torch's allowlist is process-wide: one reader at a time changes it
_ALLOW_LOCK = threading.RLock()


# -- protocol 3-5 -> protocol 2 ------------------------------------------------------------

# Opcodes torch's weights-only unpickler reads, re-emitted as they are.
_PLAIN = frozenset(
    {
        "MARK",
        "STOP",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "EMPTY_TUPLE",
        "EMPTY_LIST",
        "EMPTY_DICT",
        "EMPTY_SET",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "APPEND",
        "APPENDS",
        "SETITEM",
        "SETITEMS",
        "BUILD",
        "REDUCE",
        "NEWOBJ",
        "BINPERSID",
    }
)
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})


def _put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def _unicode(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = pickle.encode_long(value)
    if len(data) > 255:
        raise UnsupportedPickleError("an integer too large for the safe reader")
    return b"\x8a" + bytes([len(data)]) + data


def to_protocol_2(stream: BinaryIO) -> bytes:
    """Read one pickle from ``stream`` and return the same pickle in the protocol 2
    opcodes torch's weights-only unpickler reads. Nothing is built or imported: strings
    pushed for ``STACK_GLOBAL`` become a ``GLOBAL`` opcode, ``MEMOIZE`` an explicit ``PUT``,
    ``FRAME`` disappears, a bytes object becomes ``_codecs.encode(text, "latin1")`` as
    protocol 2 writes it. An opcode with no protocol 2 equivalent torch reads (bytes
    objects, ``NEWOBJ_EX``, out-of-band buffers, ...) raises
    :class:`UnsupportedPickleError`; the stream is read up to the pickle's ``STOP``."""
    out = io.BytesIO()
    strings: dict[int, str] = {}  # memo index -> a string it holds (for STACK_GLOBAL)
    pending: list[list[Any]] = []  # [string, memo index or None], not emitted yet
    memo_size = 0

    def flush() -> None:
        for value, index in pending:
            out.write(_unicode(value))
            if index is not None:
                out.write(_put(index))
        pending.clear()

    try:
        ops = pickletools.genops(stream)
        for op, raw_arg, _ in ops:
            name = op.name
            arg: Any = raw_arg
            if name == "FRAME":
                continue
            if name in _STRINGS:
                pending.append([arg, None])
                continue
            if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
                index = memo_size if name == "MEMOIZE" else int(arg)
                memo_size = max(memo_size, index + 1)
                if pending and pending[-1][1] is None:
                    pending[-1][1] = index
                    strings[index] = pending[-1][0]
                else:
                    flush()
                    strings.pop(index, None)
                    out.write(_put(index))
                continue
            if name in ("BINGET", "LONG_BINGET") and int(arg) in strings:
                pending.append([strings[int(arg)], None])
                continue
            if name == "STACK_GLOBAL":
                if len(pending) < 2:
                    raise UnsupportedPickleError("STACK_GLOBAL without two names before it")
                (module, _), (qualname, _) = pending[-2], pending[-1]
                del pending[-2:]
                flush()
                out.write(b"c" + f"{module}\n{qualname}\n".encode())
                continue
            flush()
            if name == "PROTO":
                out.write(b"\x80\x02")
            elif name in _PLAIN:
                out.write(op.code.encode("latin-1"))
            elif name in ("BINGET", "LONG_BINGET"):
                out.write(_get(int(arg)))
            elif name in ("BININT", "BININT1", "BININT2", "LONG1"):
                out.write(_int(int(arg)))
            elif name == "BINFLOAT":
                out.write(b"G" + struct.pack(">d", arg))
            elif name == "GLOBAL":
                module, _, qualname = str(arg).partition(" ")
                out.write(b"c" + f"{module}\n{qualname}\n".encode())
            elif name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8"):
                # as protocol 2 pickles bytes: _codecs.encode(latin-1 text, "latin1")
                text = bytes(arg).decode("latin-1")
                out.write(b"c_codecs\nencode\n" + _unicode(text) + _unicode("latin1") + b"\x86R")
            elif name == "SHORT_BINSTRING":
                data = arg.encode("latin-1") if isinstance(arg, str) else bytes(arg)
                out.write(b"U" + bytes([len(data)]) + data)
            else:
                raise UnsupportedPickleError(
                    f"pickle opcode {name} is not read by the safe checkpoint reader"
                )
            if name == "STOP":
                break
    except UnsupportedPickleError:
        raise
    except (ValueError, EOFError, struct.error) as exc:
        raise UnsupportedPickleError(f"not a readable pickle ({exc})") from exc
    return out.getvalue()


def _protocol_2_pickle() -> Any:
    """A ``pickle_module`` for ``torch.load``: every pickle is translated to protocol 2
    (:func:`to_protocol_2`) and read by torch's weights-only unpickler, never Python's."""
    from torch import _weights_only_unpickler as wou

    class Unpickler(wou.Unpickler):
        def __init__(self, file: BinaryIO, *, encoding: str = "bytes", **_: Any) -> None:
            super().__init__(io.BytesIO(to_protocol_2(file)), encoding=encoding)

    def load(file: BinaryIO, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()  # type: ignore[no-untyped-call]

    return SimpleNamespace(Unpickler=Unpickler, load=load, __name__=__name__)


@contextmanager
def _allowed(globals_: Iterable[Any]) -> Iterator[None]:
    import torch

    with _ALLOW_LOCK, torch.serialization.safe_globals(list(globals_)):
        yield


def read_pickle(
    path: str | os.PathLike[str], *, allow: Iterable[Any] = (), mmap: bool = False
) -> Any:
    """The ``torch.save`` checkpoint at ``path`` read with torch's weights-only unpickler,
    with ``allow`` (classes or ``(object, "module.name")`` pairs) added to its allowlist
    for this read. A protocol 3-5 pickle is read a second time, translated. ``mmap``: the
    tensors of a zip checkpoint are views of a private memory map of the file
    (``torch.load(mmap=True)``; the caller copies them and drops them). Raises
    ``pickle.UnpicklingError`` as torch does."""
    import torch

    allow = list(allow)
    with warnings.catch_warnings():
        # torch warns on every protocol > 2 pickle that its safe unpickler may not read it
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        with _allowed(allow):
            try:  # a path: torch reads it with its own (fast) file reader
                return torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=mmap)
            except pickle.UnpicklingError as exc:
                if "Unsupported operand" not in str(exc):
                    raise
        # weights_only=False only because torch takes no pickle_module with True: the
        # unpickler that runs is torch's weights-only one (see _protocol_2_pickle)
        with _allowed(allow), open(path, "rb") as f:
            return torch.load(
                f, map_location="cpu", weights_only=False, pickle_module=_protocol_2_pickle()
            )


# -- TorchScript archives as data -------------------------------------------------------------

_JIT_DATA_BUILDERS = (
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "restore_type_tag",
)
_CLASS = re.compile(
    r"^class (\w+)\(Module\):\n  __parameters__ = \[(.*?)\]\n  __buffers__ = \[(.*?)\]",
    re.MULTILINE,
)
_NAME = re.compile(r'"([^"]*)"')


class ScriptObject:
    """An object of a TorchScript archive read as data: its TorchScript class name and its
    attributes. No method of the archive's class exists here, so nothing of it runs."""

    _qualname = "?"

    def __repr__(self) -> str:
        return f"<TorchScript {self._qualname} read as data>"


def _stub(qualname: str) -> type[ScriptObject]:
    return type(qualname.rpartition(".")[2], (ScriptObject,), {"_qualname": qualname})


def _module_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, tuple[list[str], ...]]:
    """``{"__torch__.a.b.Name": (parameters, buffers)}`` read from the archive's code text."""
    found: dict[str, tuple[list[str], ...]] = {}
    code = f"{prefix}code/"
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code) : -len(".py")].replace("/", ".")
        text = archive.read(name).decode("utf-8", "replace")
        for match in _CLASS.finditer(text):
            found[f"{module}.{match.group(1)}"] = (
                _NAME.findall(match.group(2)),
                _NAME.findall(match.group(3)),
            )
    return found


def read_torchscript_state_dict(file: BinaryIO) -> dict[str, Any]:
    """The ``state_dict()`` a TorchScript archive's module would have (parameters and
    buffers, by their dotted names), read without running or compiling any of its code.

    Raises :class:`UnsupportedPickleError` for an archive this reader does not understand
    and ``pickle.UnpicklingError`` (torch's) for one that asks for anything but tensors,
    containers and its own TorchScript classes."""
    import torch as _torch_typed
    from torch import _weights_only_unpickler as wou
    from torch.jit import _pickle as jit_pickle

    torch: Any = _torch_typed  # storages and the unpickler are untyped

    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as exc:
        raise UnsupportedPickleError(f"not a TorchScript archive ({exc})") from exc
    with archive:
        records = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(records) != 1:
            raise UnsupportedPickleError("not a TorchScript archive (no single data.pkl)")
        prefix = records[0][: -len("data.pkl")]
        data = archive.read(records[0])
        qualnames = set()
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and str(arg).startswith("__torch__"):
                module, _, name = str(arg).partition(" ")
                qualnames.add(f"{module}.{name}")
            elif op.name == "STACK_GLOBAL":
                raise UnsupportedPickleError("a TorchScript data.pkl in an unexpected protocol")
        stubs = {q: _stub(q) for q in qualnames}
        modules = _module_tensors(archive, prefix)

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5):
                raise UnsupportedPickleError(f"unexpected persistent id {pid!r}")
            _, storage_type, key, _, numel = pid
            dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
            raw = archive.read(f"{prefix}data/{key}")
            if len(raw) != int(numel) * dtype.itemsize:
                raise UnsupportedPickleError(
                    f"storage record {key} holds {len(raw)} bytes, not {numel} x {dtype}"
                )
            if raw:
                untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8)
            else:
                untyped = torch.UntypedStorage(0)
            return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)

        allow = [(stub, q) for q, stub in stubs.items()]
        allow += [
            (getattr(jit_pickle, f), f"torch.jit._pickle.{f}")
            for f in _JIT_DATA_BUILDERS
            if hasattr(jit_pickle, f)
        ]
        with _allowed(allow):
            unpickler = wou.Unpickler(io.BytesIO(data), encoding="utf-8")
            unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
            try:
                root = unpickler.load()  # type: ignore[no-untyped-call]
            except (TypeError, ValueError, KeyError, AttributeError, IndexError, EOFError) as exc:
                # e.g. a class whose state is not a dict of attributes (its own __setstate__)
                raise UnsupportedPickleError(
                    f"its data.pkl is not modules and tensors ({exc})"
                ) from exc
    if not isinstance(root, ScriptObject) or root._qualname not in modules:
        raise UnsupportedPickleError("the archive's top object is not a TorchScript module")
    state: dict[str, Any] = {}
    _collect(root, "", modules, state, depth=0)
    return state


def _collect(
    obj: ScriptObject,
    prefix: str,
    modules: Mapping[str, tuple[list[str], ...]],
    state: dict[str, Any],
    *,
    depth: int,
) -> None:
    import torch

    if depth > 64:
        raise UnsupportedPickleError("TorchScript modules nested more than 64 deep")
    attrs = vars(obj)
    params, buffers = modules[obj._qualname]
    for name in (*params, *buffers):
        value = attrs.get(name)
        if isinstance(value, torch.Tensor):
            state[f"{prefix}{name}"] = value
    for name, value in attrs.items():
        if isinstance(value, ScriptObject) and value._qualname in modules:
            _collect(value, f"{prefix}{name}.", modules, state, depth=depth + 1)
