"""The checks the Triton client runs, as pure functions over plain data: a spec's Triton
section against what a server answers, inputs against the spec, the served weights digest
against the expected one. No network, no client state: each is tested on its own
(``tests/test_triton_checks.py``), and :class:`~dp_models.triton.client.TritonClient`
turns their findings into typed errors.

>>> metadata_differences(section, metadata, config)        # doctest: +SKIP
["outputs: 'y' shape is [2] on the server, [3] in the spec (without the batch dimension)"]
>>> input_problems(section, {"x": np.zeros((2, 4), np.float64)})   # doctest: +SKIP
(["input 'x' has dtype float64, the spec's FP32 needs float32 (...)"], 2)
>>> served_digest_verdict("ab12...", "ab12...", required=True)      # doctest: +SKIP
<DigestVerdict.VERIFIED: 'verified'>

What a server answers is not trusted to be well formed: metadata or a config of the wrong
shape is one more difference, never an exception from deep inside a check.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from .._spec import Interface, TritonSection
from .repository import WEIGHTS_DIGEST_PARAMETER

__all__ = [
    "NUMPY_DTYPES",
    "DigestVerdict",
    "input_problems",
    "metadata_differences",
    "served_digest_of",
    "served_digest_verdict",
    "shape_text",
]

#: Spec datatype -> numpy dtype the client accepts (BYTES: object or bytes arrays).
NUMPY_DTYPES: dict[str, npt.DTypeLike] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,  # tritonclient sends float32 arrays as BF16
}


def _dtype_ok(datatype: str, dtype: np.dtype[Any]) -> bool:
    if datatype == "BYTES":
        return dtype.kind in ("O", "S")
    return dtype == np.dtype(NUMPY_DTYPES[datatype])


def _np_name(datatype: str) -> str:
    return str(np.dtype(NUMPY_DTYPES[datatype]).name)


def _dims_match(expected: list[int], actual: list[int]) -> bool:
    """``-1`` on either side matches any length."""
    return len(expected) == len(actual) and all(
        e == -1 or a == -1 or e == a for e, a in zip(expected, actual, strict=True)
    )


def shape_text(dims: list[int]) -> str:
    """``[2, -1]``: a shape as messages show it."""
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _dims(value: object) -> list[int] | None:
    """A served shape as a list of ints, or None when it is not one."""
    if not isinstance(value, list) or not all(
        isinstance(d, (int, str)) and not isinstance(d, bool) for d in value
    ):
        return None
    try:
        return [int(d) for d in value]
    except ValueError:
        return None


def metadata_differences(
    triton: TritonSection, metadata: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """Every way the served ``metadata`` and ``config`` (Triton's JSON answers for the
    model version) differ from the spec's ``triton`` section, sorted; empty when they
    match. Compared: the pinned version among the served ones, ``max_batch_size``, input
    and output names, datatypes and shapes (without the batch dimension)."""
    if not isinstance(metadata, Mapping) or not isinstance(config, Mapping):
        return ["the server's model metadata or config is not a JSON object"]
    differences: list[str] = []
    versions = metadata.get("versions", [])
    if not isinstance(versions, list):
        differences.append(f"versions: the server's is not a list ({type(versions).__name__})")
        versions = []
    versions = [str(v) for v in versions]
    if versions and str(triton.model_version) not in versions:
        differences.append(
            f"version: the spec pins {triton.model_version}, the server has {', '.join(versions)}"
        )
    served_batch = config.get("max_batch_size", 0)
    if isinstance(served_batch, bool) or not isinstance(served_batch, (int, str)):
        differences.append(f"max_batch_size: the server's is not a number ({served_batch!r})")
        served_batch = triton.max_batch_size
    try:
        served_batch = int(served_batch)
    except ValueError:
        differences.append(f"max_batch_size: the server's is not a number ({served_batch!r})")
        served_batch = triton.max_batch_size
    if served_batch != triton.max_batch_size:
        differences.append(
            f"max_batch_size: the spec says {triton.max_batch_size}, the server {served_batch}"
        )
    batched = served_batch > 0
    for label, expected in (("inputs", triton.inputs), ("outputs", triton.outputs)):
        listed = metadata.get(label, [])
        if not isinstance(listed, list) or not all(
            isinstance(t, Mapping) and isinstance(t.get("name"), str) for t in listed
        ):
            differences.append(f"{label}: the server's are not a list of named tensors")
            continue
        served = {str(t["name"]): t for t in listed}
        wanted = {t.name: t for t in expected}
        for tname in wanted.keys() - served.keys():
            differences.append(f"{label}: {tname!r} is in the spec but not served")
        for tname in served.keys() - wanted.keys():
            differences.append(f"{label}: {tname!r} is served but not in the spec")
        for tname in sorted(wanted.keys() & served.keys()):
            spec_t, got = wanted[tname], served[tname]
            if got.get("datatype") != spec_t.datatype:
                differences.append(
                    f"{label}: {tname!r} datatype is {got.get('datatype')} on the server, "
                    f"{spec_t.datatype} in the spec"
                )
            dims = _dims(got.get("shape", []))
            if dims is None:
                differences.append(f"{label}: {tname!r} shape on the server is not a list of ints")
                continue
            if batched and dims:
                dims = dims[1:]  # the batch dimension, which the spec leaves out
            if not _dims_match(spec_t.shape, dims):
                differences.append(
                    f"{label}: {tname!r} shape is {shape_text(dims)} on the server, "
                    f"{shape_text(spec_t.shape)} in the spec (without the batch dimension)"
                )
    return sorted(differences)


def input_problems(
    triton: TritonSection | Interface, inputs: Mapping[str, Any]
) -> tuple[list[str], int]:
    """What is wrong with ``inputs`` (arrays by input name) for the spec's ``triton``
    section (or an in-process spec's ``interface``, which a runner checks alike): names,
    numpy dtypes (nothing is cast), shapes, one batch size; and the batch size (1 for a
    model without a batch dimension)."""
    batched = triton.max_batch_size > 0
    wanted = {t.name: t for t in triton.inputs}
    problems = [f"missing input {n!r}" for n in wanted if n not in inputs]
    problems += [
        f"unexpected input {n!r} (the spec's inputs: {', '.join(wanted)})"
        for n in inputs
        if n not in wanted
    ]
    batch_sizes: dict[str, int] = {}
    for tname, t in wanted.items():
        if tname not in inputs:
            continue
        array = inputs[tname]
        if not isinstance(array, np.ndarray):
            problems.append(f"input {tname!r} is a {type(array).__name__}, not a numpy array")
            continue
        if not _dtype_ok(t.datatype, array.dtype):
            want = "object or bytes" if t.datatype == "BYTES" else _np_name(t.datatype)
            problems.append(
                f"input {tname!r} has dtype {array.dtype}, the spec's {t.datatype} needs "
                f"{want} (convert it explicitly; nothing is cast silently)"
            )
        dims = list(array.shape)
        if batched:
            if not dims or dims[0] < 1:
                problems.append(
                    f"input {tname!r} has shape {shape_text(dims)}: it needs a batch dimension "
                    f"of at least 1, then {shape_text(t.shape)}"
                )
                continue
            batch_sizes[tname] = dims[0]
            dims = dims[1:]
        if not _dims_match(t.shape, dims) or any(d == 0 for d in dims):
            problems.append(
                f"input {tname!r} has shape {shape_text(list(array.shape))}, the spec's is "
                + ("[batch, " + shape_text(t.shape)[1:] if batched else shape_text(t.shape))
            )
    if len(set(batch_sizes.values())) > 1:
        sizes = ", ".join(f"{n}: {b}" for n, b in batch_sizes.items())
        problems.append(f"inputs disagree on the batch size ({sizes})")
    batch = next(iter(batch_sizes.values()), 1)
    return problems, batch


def served_digest_of(config: Mapping[str, Any]) -> str | None:
    """The weights digest a model config publishes (its ``weights_digest`` parameter), or
    None when it publishes none (or one that is not a string)."""
    parameters = config.get("parameters") if isinstance(config, Mapping) else None
    entry = parameters.get(WEIGHTS_DIGEST_PARAMETER) if isinstance(parameters, Mapping) else None
    value = entry.get("string_value") if isinstance(entry, Mapping) else None
    return value if isinstance(value, str) and value else None


class DigestVerdict(str, Enum):
    """The served weights digest against the expected one."""

    #: Both known and equal.
    VERIFIED = "verified"
    #: Not checkable (nothing published, or nothing expected), and the spec accepts that.
    UNVERIFIED = "unverified"
    #: Both known and different: other weights are served.
    MISMATCH = "mismatch"
    #: Nothing published, and the spec requires a digest.
    NOT_PUBLISHED = "not_published"
    #: Published, but the catalog expects none, and the spec requires a digest.
    NOT_EXPECTED = "not_expected"


def served_digest_verdict(
    expected_digest: str | None, served_digest: str | None, *, required: bool
) -> DigestVerdict:
    """The verdict on ``served_digest`` (what the server publishes) against
    ``expected_digest`` (what the catalog pins); ``required``: the spec's
    ``require_weights_digest``."""
    if expected_digest is not None and served_digest is not None:
        if served_digest == expected_digest:
            return DigestVerdict.VERIFIED
        return DigestVerdict.MISMATCH
    if not required:
        return DigestVerdict.UNVERIFIED
    return DigestVerdict.NOT_PUBLISHED if served_digest is None else DigestVerdict.NOT_EXPECTED
