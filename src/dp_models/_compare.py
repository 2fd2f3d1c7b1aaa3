"""Do a model's two runtimes agree at this site? ``dp-models doctor --compare NAME``.

A Triton spec ``derived_from`` an in-process spec serves an export of that spec's weights
(``dp-models export onnx``). :func:`compare_runtimes` checks, on the site's own deployment,
that the two give the same answer: the probe frames (the bundled ones, or the caller's) go
through the Triton spec's preset once, and that one batch through both runtimes:

- in process, the source spec's model under the Triton spec's interface (the export's
  input shapes: the 336 px twin of a 224 px model runs the model at 336 px), on the
  manager's device and precision for it;
- on Triton, the served model, its weights digest checked as for any client.

Each output the Triton spec declares is then checked frame by frame:

- the first output of a spec that requires a labels spec (a classifier): the same top-5
  classes, in the same order;
- any other floating output: cosine similarity of at least ``min_cosine`` (0.9999);
- an integer or string output: equal.

The bundled probe is four small synthetic scenes (``dp_models/probe/*.png``, drawn by
``scripts/make_probe.py``), each checked against its sha256 here before it is read. A
pair that cannot run (an artifact missing, a lineage that no longer holds, a server that
does not answer) is reported with the error that stopped it, never skipped.

>>> from dp_models import ModelManager, compare_runtimes
>>> with ModelManager() as mm:                                              # doctest: +SKIP
...     [result] = compare_runtimes("clip_vit_b32_triton", mm)
>>> result.verdict, result.outputs[0].summary()                            # doctest: +SKIP
('agree', 'embedding cosine >= 0.9999997 (needs 0.9999)')
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _html
from ._errors import ConfigurationError, DPModelsError
from ._spec import Interface, Spec
from ._urls import redact, redact_endpoints

if TYPE_CHECKING:
    from ._catalog import Catalog
    from ._manager import ModelManager

__all__ = [
    "MIN_COSINE",
    "PROBE_FRAMES",
    "OutputAgreement",
    "RuntimeComparison",
    "compare_runtimes",
    "probe_frames",
    "runtime_pairs",
]

#: The bundled probe frames (``dp_models/probe/``) and their sha256 digests.
PROBE_FRAMES: dict[str, str] = {
    "frame_0_outdoor.png": "900e6809cc6dee3fb1868cb4acd0ef827c17fa0764cde77d5f33c12e21450053",
    "frame_1_room.png": "38996470f9cf3ad996355df871b93caf30425c8471973d92cd8fc8e9f77528dd",
    "frame_2_portrait.png": "46a7a37a3c88850f27584de0d0dc8ced36780811b03941c381f03b7839158aeb",
    "frame_3_blobs.png": "9f3cbc2b2fa8d7317e8b5c3691532d98b2961d2028b5d8016685fbfb46dd3070",
}
#: The least cosine similarity, frame by frame, at which two embeddings agree.
MIN_COSINE = 0.9999
#: How many top classes of a classifier must agree, in order.
TOP_K = 5

Frames = list[np.ndarray[Any, Any]]


def probe_frames() -> Frames:
    """The bundled probe frames (``H x W x 3`` uint8 RGB arrays), each checked against its
    sha256 in :data:`PROBE_FRAMES` before it is decoded."""
    from PIL import Image

    folder = resources.files("dp_models") / "probe"
    frames: Frames = []
    for name, digest in PROBE_FRAMES.items():
        data = (folder / name).read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DPModelsError(
                f"the bundled probe frame {name} has sha256 {got}, not {digest}: the installed "
                "dp_models package is damaged; reinstall it"
            )
        with Image.open(io.BytesIO(data)) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return frames


def _probe_digest() -> str:
    """One digest naming the bundled probe: of its files' digests, in order."""
    return hashlib.sha256("\n".join(PROBE_FRAMES.values()).encode()).hexdigest()


def runtime_pairs(catalog: Catalog, name: str) -> list[tuple[Spec, Spec]]:
    """The (in-process spec, Triton spec) pairs ``name`` names: a Triton spec with
    ``derived_from`` (one pair), or an in-process spec (one pair per Triton spec derived
    from it). Anything else is a :class:`~dp_models._errors.ConfigurationError` saying
    which names would do."""
    spec = catalog[name]
    if spec.runtime == "triton":
        if spec.derived_from is None:
            raise ConfigurationError(
                f"spec {name!r} is served by Triton but declares no derived_from: there is no "
                "in-process model it must agree with. Compare a Triton spec exported from an "
                f"in-process one ({_comparable(catalog)})"
            )
        return [(catalog[spec.derived_from], spec)]
    twins = [catalog[n] for n in catalog if catalog[n].derived_from == name]
    if not twins:
        raise ConfigurationError(
            f"spec {name!r} runs in process and no Triton spec is derived_from it: there is "
            f"nothing to compare it with. Specs that can be compared: {_comparable(catalog)}"
        )
    return [(spec, twin) for twin in twins]


def _comparable(catalog: Catalog) -> str:
    names = sorted(n for n in catalog if catalog[n].derived_from is not None)
    return ", ".join(names) or "none in this catalog"


@dataclass(frozen=True)
class OutputAgreement:
    """How one declared output of the two runtimes compares over the probe frames."""

    name: str
    #: ``"top5"`` (a classifier's classes, in order), ``"cosine"`` or ``"equal"``.
    metric: str
    #: top5 and equal: the fraction of frames that agree; cosine: the least similarity.
    value: float
    #: What ``value`` must reach.
    threshold: float
    #: The first frame that disagrees and how, or ``""``.
    detail: str = ""

    @property
    def agree(self) -> bool:
        return self.value >= self.threshold

    def summary(self) -> str:
        if self.metric == "cosine":
            text = f"{self.name} cosine >= {_floor(self.value)} (needs {self.threshold:g})"
        else:
            what = "same top-5" if self.metric == "top5" else "equal"
            text = f"{self.name} {what} on {self.value:.0%} of frames (needs 100%)"
        return text if self.agree or not self.detail else f"{text}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "agree": self.agree,
            "detail": self.detail or None,
        }


def _floor(value: float) -> str:
    """``value`` rounded down at its first digit short of 1 (0.9999987 -> 0.999998, at
    least four digits): never shown as agreeing more than it does."""
    if value >= 1:
        return "1"
    for digits in range(4, 10):
        shown = math.floor(value * 10**digits) / 10**digits
        if shown < 1 - 10**-digits:
            return f"{shown:.{digits}f}"
    return f"{math.floor(value * 10**9) / 10**9:.9f}"


@dataclass(frozen=True)
class RuntimeComparison:
    """One pair compared: the in-process ``source`` spec and the Triton ``target`` spec
    derived from it, at ``endpoint``, over ``frames`` probe frames. ``error``: why the
    comparison could not run (then ``outputs`` is empty and it does not agree)."""

    source: str
    target: str
    endpoint: str | None
    probe: str
    frames: int
    outputs: tuple[OutputAgreement, ...] = ()
    error: str | None = None

    @property
    def agree(self) -> bool:
        return self.error is None and bool(self.outputs) and all(o.agree for o in self.outputs)

    @property
    def verdict(self) -> str:
        return "agree" if self.agree else ("error" if self.error else "DISAGREE")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "endpoint": self.endpoint,
            "probe": self.probe,
            "frames": self.frames,
            "agree": self.agree,
            "verdict": self.verdict,
            "outputs": [o.to_json() for o in self.outputs],
            "error": self.error,
        }

    def __str__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        lines = [f"{self.source} (in process) vs {self.target} (Triton{where}): {self.verdict}"]
        lines.append(f"  probe: {self.probe}")
        lines += [f"  {'ok ' if o.agree else 'BAD'} {o.summary()}" for o in self.outputs]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        said = "; ".join(o.summary() for o in self.outputs) or (self.error or "")
        said = said if len(said) <= 120 else said[:117] + "..."
        return f"<RuntimeComparison {self.source} vs {self.target}: {self.verdict} ({said})>"

    def _repr_html_(self) -> str:
        rows = [
            [_html.code(o.name), o.metric, o.summary(), "ok" if o.agree else "DISAGREE"]
            for o in self.outputs
        ]
        notes = [self.probe] + ([redact(self.error)] if self.error else [])
        title = f"{self.source} vs {self.target}: {self.verdict}"
        return _html.titled(
            title, _html.table(["output", "metric", "result", "verdict"], rows), notes=notes
        )


def compare_runtimes(
    name: str,
    manager: ModelManager | None = None,
    *,
    frames: Sequence[Any] | None = None,
    min_cosine: float = MIN_COSINE,
    **client_options: Any,
) -> tuple[RuntimeComparison, ...]:
    """Compare the two runtimes of each pair ``name`` names (:func:`runtime_pairs`) on the
    probe ``frames`` (default: the bundled ones; else RGB frames as a runner's preprocess
    takes them), as the module documentation says. ``client_options`` go to each Triton
    client (``ready_timeout_s``, ...). Without a manager one is made from the environment
    (and closed). A pair that cannot run is returned with its ``error``; bad arguments
    raise."""
    if not 0 < min_cosine <= 1:
        raise ConfigurationError(f"min_cosine must be in (0, 1], not {min_cosine!r}")
    own = manager is None
    if manager is None:
        from ._manager import ModelManager

        manager = ModelManager()
    try:
        pairs = runtime_pairs(manager.catalog, name)
        if frames is None:
            probe = f"bundled probe ({len(PROBE_FRAMES)} frames, sha256 {_probe_digest()[:12]})"
            frames = probe_frames()
        else:
            probe = f"{len(frames)} frame{'s' if len(frames) != 1 else ''} given"
        if not len(frames):
            raise ConfigurationError("compare_runtimes needs at least one probe frame")
        return tuple(
            _compare(manager, source, target, list(frames), probe, min_cosine, client_options)
            for source, target in pairs
        )
    finally:
        if own:
            manager.close()


def _compare(
    manager: ModelManager,
    source: Spec,
    target: Spec,
    frames: list[Any],
    probe: str,
    min_cosine: float,
    client_options: dict[str, Any],
) -> RuntimeComparison:
    from ._runner import Runner, declared_interface, preset_batch

    triton = target.triton
    mine = declared_interface(source)
    assert triton is not None and isinstance(mine, Interface)
    # the caller's frames, once, before anything of the deployment: bad ones raise
    batch = preset_batch(target, frames, batch=triton.max_batch_size > 0)
    if isinstance(batch, tuple):
        batch = {t.name: a for t, a in zip(triton.inputs, batch, strict=True)}
    # the in-process model as the export ran it: the Triton spec's inputs and outputs
    twin = Interface(
        call=mine.call,
        max_batch_size=triton.max_batch_size,
        inputs=list(triton.inputs),
        outputs=list(triton.outputs),
    )
    endpoint = None
    try:
        served_handle = manager.get(target.name)
        endpoint = served_handle.endpoint
        with served_handle.runner(**client_options) as served:
            theirs = served(batch)
        with Runner(manager.get(source.name), interface=twin) as local:
            ours = local(batch)
    except (DPModelsError, OSError) as exc:
        return RuntimeComparison(
            source.name,
            target.name,
            endpoint and redact_endpoints(endpoint),
            probe,
            len(frames),
            error=f"{type(exc).__name__}: {redact(str(exc))}",
        )
    labelled = any(manager.catalog[r].role == "labels" for r in target.requires)
    outputs = []
    for i, tensor in enumerate(triton.outputs):
        a, b = np.asarray(ours[tensor.name]), np.asarray(theirs[tensor.name])
        if labelled and i == 0:
            outputs.append(_top_k(tensor.name, a, b))
        elif a.dtype.kind == "f" and b.dtype.kind == "f":
            outputs.append(_cosine(tensor.name, a, b, min_cosine))
        else:
            outputs.append(_equal(tensor.name, a, b))
    return RuntimeComparison(
        source.name,
        target.name,
        endpoint and redact_endpoints(endpoint),
        probe,
        len(frames),
        tuple(outputs),
    )


def _rows(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)


def _top_k(name: str, ours: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any]) -> OutputAgreement:
    a, b = _rows(ours), _rows(theirs)
    k = min(TOP_K, a.shape[1])
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    same = (top_a == top_b).all(axis=1)
    detail = ""
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        detail = (
            f"frame {i}: in process {top_a[i].tolist()}, Triton {top_b[i].tolist()} "
            f"(largest logit difference {float(np.abs(a[i] - b[i]).max()):.3g})"
        )
    return OutputAgreement(name, "top5", float(same.mean()), 1.0, detail)


def _cosine(
    name: str, ours: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any], threshold: float
) -> OutputAgreement:
    a, b = _rows(ours).astype(np.float64), _rows(theirs).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    equal = (a == b).all(axis=1)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(equal, 1.0, 0.0))
    cosine = np.minimum(cosine, 1.0)  # rounding can pass 1
    least = int(cosine.argmin())
    detail = "" if cosine[least] >= threshold else f"frame {least}: cosine {cosine[least]:.6f}"
    return OutputAgreement(name, "cosine", float(cosine.min()), threshold, detail)


def _equal(name: str, ours: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any]) -> OutputAgreement:
    if ours.shape != theirs.shape:
        detail = f"shapes differ: in process {list(ours.shape)}, Triton {list(theirs.shape)}"
        return OutputAgreement(name, "equal", 0.0, 1.0, detail)
    same = (_rows(ours) == _rows(theirs)).all(axis=1)
    i = int(np.flatnonzero(~same)[0]) if not same.all() else -1
    return OutputAgreement(name, "equal", float(same.mean()), 1.0, f"frame {i}" if i >= 0 else "")
