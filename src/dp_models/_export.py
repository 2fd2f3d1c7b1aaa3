"""Derived artifacts: a Triton spec's ONNX model exported from the verified weights of the
in-process spec it names in ``derived_from`` (``dp-models export onnx SOURCE --for
TARGET``), with its lineage pinned in the lock.

>>> result = export_onnx(mm, "clip_vit_b32", "clip_vit_b32_triton")   # doctest: +SKIP
>>> result.lineage.weights_digest                                     # doctest: +SKIP
'40d36571…'

The source is resolved and loaded through the manager (its artifacts verified, offline,
on the CPU in fp32); its loader says which module to export (:meth:`Loader.export_module
<dp_models.loaders.base.Loader.export_module>`: open_clip's image tower, a torchvision or
``torch_state_dict`` classifier). torch's TorchScript-based ONNX exporter writes it at a
fixed opset, with the input and output names the Triton spec declares and the batch
dimension variable when the spec batches: the same verified weights and the same versions
give the same bytes. Before anything is written, the exported graph is read back and run
once with ONNX Runtime, and its inputs and outputs are held to the Triton spec (names,
datatypes, shapes): any difference is a :class:`~dp_models._errors.DerivedExportError`
listing them, and nothing is written. The file goes to the spec's artifact path in the
writable root, atomically; the lock entry records its digest and size and ``derived``:
the source spec, the weights digest it was exported from, the exporter and the framework
versions (:class:`~dp_models._lock.Lineage`). ``get`` of the Triton spec then names the
source's weights in ``models_used`` and the signature, and refuses a lineage that no
longer holds (:class:`~dp_models._errors.LineageError`).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._digest import weights_digest
from ._errors import DerivedExportError
from ._io import atomic_write
from ._lock import Lineage, Lock, LockEntry
from ._paths import resolve_artifact_path
from ._spec import Spec, TritonTensor
from ._version import __version__
from .loaders.base import require

if TYPE_CHECKING:
    from ._manager import ModelManager

__all__ = ["OPSET", "ExportResult", "export_onnx"]

#: The ONNX opset every export is written at (a fixed one: the same input, the same bytes).
OPSET = 17
_EXPORTER = f"dp_models {__version__} torch.onnx (TorchScript exporter) opset {OPSET}"
#: Triton datatypes -> ONNX tensor element types (onnx.TensorProto values).
_ONNX_TYPES = {"FP32": 1, "UINT8": 2, "INT8": 3, "INT16": 5, "INT32": 6, "INT64": 7, "FP16": 10}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote: the Triton spec's artifact, its digest and size,
    where it came from, and whether the lock now pins it."""

    spec: str
    source: str
    path: Path
    sha256: str
    size: int
    lineage: Lineage
    pinned: bool


def _refuse(
    target: Spec, source: str, message: str, differences: list[str] | None = None
) -> DerivedExportError:
    return DerivedExportError(
        message, spec=target.name, source=source, differences=differences or []
    )


def _check_pair(manager: ModelManager, source: str, target: str) -> tuple[Spec, Spec, str]:
    """The source and target specs and the target's ONNX artifact path, or the reason
    they are not an export pair."""
    catalog = manager.catalog
    spec, src = catalog[target], catalog[source]
    if spec.triton is None or spec.triton.platform != "onnxruntime_onnx":
        raise _refuse(
            spec,
            source,
            f"spec {target!r} is not a Triton spec served from ONNX (platform "
            f"onnxruntime_onnx); `export onnx` writes such a spec's model.onnx",
        )
    if src.runtime != "inprocess":
        raise _refuse(spec, source, f"spec {source!r} is not an in-process spec: nothing to export")
    if spec.derived_from != source:
        declared = f"derived_from: {spec.derived_from}" if spec.derived_from else "no derived_from"
        raise _refuse(
            spec,
            source,
            f"spec {target!r} declares {declared}, not {source!r}: add `derived_from: {source}` "
            "to its spec so that its stamps name the weights it is exported from",
        )
    onnx_art = next((a for a in spec.artifacts if a.format == "onnx"), None)
    if onnx_art is None:
        raise _refuse(spec, source, f"spec {target!r} lists no onnx artifact to write")
    return src, spec, onnx_art.path


def _example(tensor: TritonTensor, batched: bool) -> Any:
    import torch

    if any(d < 0 for d in tensor.shape):
        raise ValueError(f"input {tensor.name!r} has a variable dimension {tensor.shape}")
    shape = ([1] if batched else []) + list(tensor.shape)
    dtypes = {"FP32": torch.float32, "FP16": torch.float16, "INT64": torch.int64}
    return torch.zeros(shape, dtype=dtypes.get(tensor.datatype, torch.float32))


def _export_bytes(module: Any, spec: Spec) -> bytes:
    """``module`` as ONNX bytes with the Triton spec's input and output names."""
    import torch

    assert spec.triton is not None
    triton = spec.triton
    batched = triton.max_batch_size > 0
    examples = tuple(_example(t, batched) for t in triton.inputs)
    names_in = [t.name for t in triton.inputs]
    names_out = [t.name for t in triton.outputs]
    axes = {n: {0: "batch"} for n in names_in + names_out} if batched else None
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter announces its deprecation; the fixed opset is the point
        warnings.simplefilter("ignore")
        # nn.MultiheadAttention's fused inference kernel has no ONNX form: trace the layers
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            _export(torch, module, examples, buffer, names_in, names_out, axes)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()


def _export(
    torch: Any,
    module: Any,
    examples: tuple[Any, ...],
    buffer: io.BytesIO,
    names_in: list[str],
    names_out: list[str],
    axes: dict[str, dict[int, str]] | None,
) -> None:
    torch.onnx.export(
        module,
        examples,
        buffer,  # the TorchScript exporter writes to a file object
        input_names=names_in,
        output_names=names_out,
        dynamic_axes=axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def _dims(value_info: Any) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param or "?")
    return dims


def _differences(data: bytes, spec: Spec) -> list[str]:
    """How the exported graph's inputs and outputs differ from the Triton spec's: names,
    element types, shapes (declared, and as one run with ONNX Runtime gives them)."""
    import numpy as np
    import onnx

    onnxruntime = require("onnxruntime", extra="onnx", spec=spec.name)

    assert spec.triton is not None
    triton = spec.triton
    batched = triton.max_batch_size > 0
    model = onnx.load_from_string(data)
    problems: list[str] = []
    for kind, declared, found in (
        ("input", triton.inputs, list(model.graph.input)),
        ("output", triton.outputs, list(model.graph.output)),
    ):
        names = [v.name for v in found]
        if names != [t.name for t in declared]:
            problems.append(
                f"{kind}s are named {names}; the spec declares {[t.name for t in declared]}"
            )
            continue
        for tensor, value in zip(declared, found, strict=True):
            elem = value.type.tensor_type.elem_type
            if _ONNX_TYPES.get(tensor.datatype) != elem:
                problems.append(
                    f"{kind} {tensor.name!r} is of ONNX element type "
                    f"{onnx.TensorProto.DataType.Name(elem)}; the spec declares {tensor.datatype}"
                )
            dims = _dims(value)
            want: list[int | str] = (["batch"] if batched else []) + list(tensor.shape)
            if len(dims) != len(want) or any(
                isinstance(w, int) and w >= 0 and isinstance(d, int) and d > 0 and d != w
                for d, w in zip(dims, want, strict=False)
            ):
                problems.append(
                    f"{kind} {tensor.name!r} has shape {dims}; the spec declares {want}"
                )
    if problems:
        return problems
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {t.name: np.asarray(_example(t, batched).numpy()) for t in triton.inputs}
    for tensor, array in zip(triton.outputs, session.run(None, feeds), strict=True):
        want_shape = ([1] if batched else []) + list(tensor.shape)
        shape = list(np.shape(array))
        if len(shape) != len(want_shape) or any(
            w >= 0 and s != w for s, w in zip(shape, want_shape, strict=False)
        ):
            problems.append(
                f"output {tensor.name!r} comes out {shape} for a batch of 1; the spec declares "
                f"{want_shape}"
            )
    return problems


def export_onnx(
    manager: ModelManager, source: str, target: str, *, pin: bool = True
) -> ExportResult:
    """Export the Triton spec ``target``'s ONNX model from the in-process spec ``source``'s
    verified weights into ``manager``'s writable root, and (``pin``) record it with its
    lineage in the manager's lock (read again and rewritten atomically; ``manager`` keeps
    the catalog it loaded: a new manager sees the pin). Raises :class:`DerivedExportError`
    (nothing written) when the pair does not fit or the export differs from what
    ``target`` declares."""
    src, spec, rel = _check_pair(manager, source, target)
    torch = require("torch", extra="torch", spec=source)
    onnx = require("onnx", extra="onnx", spec=target)
    handle = manager.get(source, device="cpu", precision="fp32")
    loaded = handle.load()
    assert src.loader is not None
    loader = manager.loaders.get(src.loader, spec=source)
    module = loader.export_module(loaded)
    if module is None:
        raise _refuse(
            spec,
            source,
            f"loader {src.loader!r} of spec {source!r} cannot export a model to ONNX (loaders "
            "that can: open_clip, torchvision, torch_state_dict)",
        )
    try:
        data = _export_bytes(module, spec)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _refuse(
            spec, source, f"torch could not export {source!r} for {target!r}: {exc}"
        ) from exc
    differences = _differences(data, spec)
    if differences:
        raise _refuse(
            spec,
            source,
            f"the export of {source!r} does not fit {target!r} ({len(differences)} "
            "difference(s)); nothing was written:\n" + "\n".join(f"  - {d}" for d in differences),
            differences,
        )
    digest = weights_digest(list(handle.artifact_digests))
    assert digest is not None
    lineage = Lineage(
        source,
        digest,
        _EXPORTER,
        {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__},
    )
    path = resolve_artifact_path(manager.root, rel, spec=target)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    sha = hashlib.sha256(data).hexdigest()
    if pin:  # the lock as it is now (another export may have pinned since the manager read it)
        lock = Lock.read(manager.catalog.lock.path)
        entries = dict(lock.artifacts)
        entries[rel] = LockEntry("file", sha, len(data), derived=lineage)
        Lock(lock.path, entries, exists=True).write()
    return ExportResult(target, source, path, sha, len(data), lineage, pin)
