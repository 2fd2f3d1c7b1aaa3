"""Provenance: which models produced an artifact, stamped into it and checked later.

Every output a processor writes can carry three keys:

``models_used``
    One entry per model the manager handed out, in order: name, version, runtime, engine,
    loader, precision, device, weights digest and per-artifact digests, model signature,
    framework and version, and for Triton the model name, version and endpoint.
``model_signature``
    One hash over the entries' signatures: changes when any model that ran would compute
    differently.
``weights_digest``
    One hash over the entries' weights digests.

A *model signature* is the sha256 of a canonical JSON document (sorted keys, no spaces)
of everything that determines a model's outputs: name, version, runtime, engine, loader
and loader_args, precision, preprocess preset, the sha256 of every artifact in spec
order, for Triton the model name, version and served weights digest, and the signatures
of the specs it requires. Nothing else: not paths, hosts, endpoints or the device, so the
same model gives the same signature on every machine.

Stamps are written into JSON files (top-level keys) and ``.npz`` archives (one array
``__dp_models__`` holding the JSON text, readable with ``allow_pickle=False``), always
atomically. :func:`check_stamps` compares an artifact's stamps with the current catalog
and lock and says which model changed (``dp-models verify-artifact FILE``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import ProvenanceError
from .spec import Spec

__all__ = [
    "NPZ_KEY",
    "STAMP_KEYS",
    "ModelCheck",
    "check_stamps",
    "combined_signature",
    "combined_weights_digest",
    "load_npz",
    "model_signature",
    "read_stamps",
    "save_npz",
    "stamp",
    "weights_digest",
    "write_json",
]

STAMP_KEYS = ("models_used", "model_signature", "weights_digest")
NPZ_KEY = "__dp_models__"
_SIGNATURE_FORMAT = 1


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_signature(
    spec: Spec,
    *,
    artifact_digests: Sequence[str],
    precision: str,
    served_digest: str | None = None,
    requires: Mapping[str, str] | None = None,
) -> str:
    """The signature of ``spec`` run at ``precision`` with these artifact digests (spec
    order), served digest (Triton) and required specs' signatures."""
    payload: dict[str, Any] = {
        "format": _SIGNATURE_FORMAT,
        "name": spec.name,
        "version": spec.version,
        "runtime": spec.runtime,
        "engine": spec.engine,
        "loader": spec.loader,
        "loader_args": spec.loader_args,
        "precision": precision,
        "preprocess": spec.preprocess,
        "artifacts": list(artifact_digests),
        "requires": dict(sorted((requires or {}).items())),
        "triton": None,
    }
    if spec.triton is not None:
        payload["triton"] = {
            "model_name": spec.triton.model_name,
            "model_version": spec.triton.model_version,
            "served_weights_digest": served_digest,
        }
    return _sha(_canonical(payload))


def weights_digest(digests: Sequence[str]) -> str | None:
    """One digest for a model's weights: the artifact's own sha256 when there is one, else
    the sha256 of the digests one per line (spec order); None without artifacts."""
    if not digests:
        return None
    if len(digests) == 1:
        return digests[0]
    return _sha("".join(f"{d}\n" for d in digests).encode())


def _present(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in entries if e.get("status", "ok") == "ok"]


def combined_signature(entries: Sequence[Mapping[str, Any]]) -> str:
    """The artifact-level ``model_signature``: order-independent, over models that ran."""
    lines = sorted(f"{e['name']} {e['model_signature']}\n" for e in _present(entries))
    return _sha("".join(lines).encode())


def combined_weights_digest(entries: Sequence[Mapping[str, Any]]) -> str:
    """The artifact-level ``weights_digest``: order-independent, over models that ran."""
    lines = sorted(f"{e['name']} {e.get('weights_digest')}\n" for e in _present(entries))
    return _sha("".join(lines).encode())


def stamp(meta: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of ``meta`` with the three stamp keys. Stamps already in ``meta`` must be the
    same: different ones raise :class:`ProvenanceError` instead of being overwritten."""
    stamps = {
        "models_used": [dict(e) for e in entries],
        "model_signature": combined_signature(entries),
        "weights_digest": combined_weights_digest(entries),
    }
    for key, value in stamps.items():
        if key in meta and meta[key] != value:
            raise ProvenanceError(
                f"metadata already carries a different {key!r}: it was produced with other "
                "models than this manager handed out. Stamp a fresh copy of the metadata, "
                "or drop the old stamps deliberately before stamping.",
                key=key,
            )
    return {**meta, **stamps}


# -- files ----------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Write through a temporary file in the same directory, then rename: a reader sees
    the old file or the new one, and a failure leaves no partial file behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` (already stamped with ``manager.stamp``) as JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return _atomic_write(Path(path), lambda f: f.write(text.encode()))


def save_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, Any], stamps: Mapping[str, Any]
) -> Path:
    """Save ``arrays`` as an ``.npz`` with ``stamps`` (``manager.stamp({...})``) inside,
    atomically. The stamps are JSON text, so reading them needs no pickle."""
    import numpy as np

    if NPZ_KEY in arrays:
        raise ProvenanceError(f"array name {NPZ_KEY!r} is reserved for the stamps", key=NPZ_KEY)
    missing = [k for k in STAMP_KEYS if k not in stamps]
    if missing:
        raise ProvenanceError(
            f"stamps lack {', '.join(missing)}: pass manager.stamp(...)'s result", key=missing[0]
        )
    payload = {**arrays, NPZ_KEY: np.array(json.dumps(dict(stamps), allow_nan=False))}
    return _atomic_write(Path(path), lambda f: np.savez(f, **payload))


def load_npz(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, stamps)`` of an ``.npz`` written by :func:`save_npz`; never unpickles."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != NPZ_KEY}
        if NPZ_KEY not in data.files:
            raise ProvenanceError(f"{path} carries no dp_models stamps", key=NPZ_KEY)
        stamps = json.loads(str(data[NPZ_KEY]))
    return arrays, stamps


def read_stamps(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The three stamp keys of a ``.json`` or ``.npz`` artifact (other metadata left out).
    Raises :class:`ProvenanceError`."""
    p = Path(path)
    try:
        data = load_npz(p)[1] if p.suffix == ".npz" else json.loads(p.read_text("utf-8"))
    except ProvenanceError:
        raise
    except (OSError, ValueError) as exc:
        raise ProvenanceError(f"cannot read stamps from {p}: {exc}") from exc
    if not isinstance(data, dict) or not all(k in data for k in STAMP_KEYS):
        raise ProvenanceError(
            f"{p} carries no dp_models stamps (expected the keys {', '.join(STAMP_KEYS)})"
        )
    return {k: data[k] for k in STAMP_KEYS}


# -- checking -------------------------------------------------------------------------------


@dataclass
class ModelCheck:
    """How one model of an artifact's stamps compares with the current catalog."""

    name: str
    status: str  # unchanged | changed | removed | unpinned | absent
    changes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("unchanged", "absent")


def _expected(catalog: Catalog, spec: Spec, precision: str) -> dict[str, Any] | None:
    """What a fresh entry for ``spec`` would say today, from catalog pins; None if unpinned."""
    digests: list[str] = []
    if spec.runtime == "inprocess":
        for art in spec.artifacts:
            pin = catalog.pin(art)
            if pin is None:
                return None
            digests.append(pin.sha256)
    served = catalog.served_digest(spec)
    requires: dict[str, str] = {}
    for dep in spec.requires:
        sub = _expected(catalog, catalog[dep], catalog[dep].precision)
        if sub is None:
            return None
        requires[dep] = sub["model_signature"]
    return {
        "version": spec.version,
        "runtime": spec.runtime,
        "engine": spec.engine,
        "loader": spec.loader,
        "loader_args": spec.loader_args,
        "preprocess": spec.preprocess,
        "artifacts": digests,
        "weights_digest": weights_digest(digests)
        if digests
        else (served.sha256 if served else None),
        "model_signature": model_signature(
            spec,
            artifact_digests=digests,
            precision=precision,
            served_digest=served.sha256 if served else None,
            requires=requires,
        ),
    }


def check_stamps(stamps: Mapping[str, Any], catalog: Catalog) -> list[ModelCheck]:
    """Compare each ``models_used`` entry with what the catalog and lock say today."""
    entries = stamps.get("models_used")
    if not isinstance(entries, list):
        raise ProvenanceError("stamps have no models_used list", key="models_used")
    checks: list[ModelCheck] = []
    for entry in entries:
        name = str(entry.get("name"))
        if entry.get("status") == "absent":
            checks.append(ModelCheck(name, "absent"))
            continue
        if name not in catalog:
            checks.append(ModelCheck(name, "removed", ["the catalog has no spec of this name"]))
            continue
        expected = _expected(catalog, catalog[name], str(entry.get("precision")))
        if expected is None:
            checks.append(
                ModelCheck(
                    name,
                    "unpinned",
                    [
                        "an artifact of the spec (or of a spec it requires) is "
                        "not pinned: run `dp-models lock`"
                    ],
                )
            )
            continue
        if expected["model_signature"] == entry.get("model_signature"):
            checks.append(ModelCheck(name, "unchanged"))
            continue
        recorded = {**entry, "artifacts": [a.get("sha256") for a in entry.get("artifacts", [])]}
        changes = [
            f"{key}: {recorded.get(key)!r} then, {value!r} now"
            for key, value in expected.items()
            if key != "model_signature" and recorded.get(key) != value
        ]
        if not changes:
            changes = ["a required spec changed"] if catalog[name].requires else ["signature"]
        checks.append(ModelCheck(name, "changed", changes))
    return checks
