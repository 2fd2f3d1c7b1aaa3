"""A safetensors file read straight into a module's own memory: one copy, from a
read-only memory map of the verified file into each parameter and buffer.

``safetensors.torch.load_file`` copies the file into new tensors, and ``load_state_dict``
copies those again into the module; a module built without initialisation
(:func:`~dp_models.loaders.torch.build_without_init`) takes each tensor's bytes once,
straight from the page cache. Each target is a fresh, aligned allocation laid out as the
framework's own build lays it out, and ``copy_`` casts as ``load_state_dict`` does, so the
model computes what the framework's load computes, bit for bit. The mapping is closed
before this returns: nothing of the model refers to the file afterwards.

The file's header is checked by safetensors itself (``safe_open``) before it is read
here, and again here: every tensor's byte range must lie inside the data section and
match its dtype and shape.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import warnings
from collections.abc import Mapping
from typing import Any

from .._io import open_regular

__all__ = ["TORCH_DTYPES", "read_into"]

#: safetensors dtype -> (torch dtype name, bytes per element); others take the general path.
TORCH_DTYPES: Mapping[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class _UnreadableError(ValueError):
    """The file is not one this reader takes (the general path reads it, or says why)."""


def _header(fd: int, size: int) -> tuple[dict[str, Any], int]:
    """The header's tensors (name -> entry) and where the data section starts."""
    head = os.pread(fd, 8, 0)
    if len(head) != 8:
        raise _UnreadableError("shorter than a safetensors header")
    length = int.from_bytes(head, "little")
    if length > _MAX_HEADER or 8 + length > size:
        raise _UnreadableError("header length out of range")
    raw = os.pread(fd, length, 8)
    if len(raw) != length:
        raise _UnreadableError("truncated header")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise _UnreadableError("header is not an object")
    header.pop("__metadata__", None)
    return header, 8 + length


def _checked(name: str, entry: Any, data_size: int) -> tuple[str, list[int], int, int]:
    if not isinstance(entry, dict):
        raise _UnreadableError(f"{name}: not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in TORCH_DTYPES:
        raise _UnreadableError(f"{name}: dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _UnreadableError(f"{name}: shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
        or offsets[1] - offsets[0] != math.prod(shape) * TORCH_DTYPES[dtype][1]
    ):
        raise _UnreadableError(f"{name}: data offsets {offsets!r}")
    return dtype, shape, offsets[0], offsets[1]


def read_into(
    torch: Any, path: str, targets: Mapping[str, Any], *, strip_prefix: str | None = None
) -> tuple[list[str], list[str], list[str]] | None:
    """Copy the tensors of the safetensors file at ``path`` into ``targets`` (name ->
    tensor of the module's state dict, which shares its memory). Returns ``(missing,
    unexpected, mismatched)`` names, and copies nothing unless all three are empty; None
    when this reader does not take the file (an unusual dtype, a header it refuses): the
    caller reads it the general way then."""
    from safetensors import safe_open  # the library checks the header first

    with safe_open(path, framework="pt") as checked:
        names = set(checked.keys())
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        try:
            header, start = _header(fd, size)
            entries = {name: _checked(name, entry, size - start) for name, entry in header.items()}
        except (_UnreadableError, ValueError):
            return None
        if set(entries) != names:
            return None
        stripped = {
            (n[len(strip_prefix) :] if strip_prefix and n.startswith(strip_prefix) else n): n
            for n in entries
        }
        missing = sorted(set(targets) - set(stripped))
        unexpected = sorted(set(stripped) - set(targets))
        mismatched = sorted(
            key
            for key in set(targets) & set(stripped)
            if list(targets[key].shape) != entries[stripped[key]][1]
        )
        if missing or unexpected or mismatched:
            return missing, unexpected, mismatched
        if size == 0:
            return [], [], []
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            for key, target in targets.items():
                dtype, shape, begin, end = entries[stripped[key]]
                if begin == end:
                    continue
                with warnings.catch_warnings():  # the map is read-only; nothing writes to it
                    warnings.simplefilter("ignore", UserWarning)
                    source = torch.frombuffer(
                        mapped,
                        dtype=getattr(torch, TORCH_DTYPES[dtype][0]),
                        count=math.prod(shape),
                        offset=start + begin,
                    )
                target.copy_(source.view(shape))
                del source  # no view of the map may outlive it
        return [], [], []
    finally:
        os.close(fd)
