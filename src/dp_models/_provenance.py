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
order, for Triton the model name, version and the expected digest (what the deployment
must serve), and the signatures of the specs it requires. Nothing else: not paths,
hosts, endpoints or the device, so the same model gives the same signature on every
machine.

Stamps are written into JSON files (top-level keys) and ``.npz`` archives (one array
``__dp_models__`` holding the JSON text, readable with ``allow_pickle=False``), always
atomically. :func:`check_stamps` recomputes every derived field of an artifact's stamps
from its entries, the current catalog and the lock, and names each field that differs
(``dp-models verify-artifact FILE``): an edited digest, version or loader, an entry turned
absent, emptied ``models_used`` are all caught; fields that vary per machine (device,
framework version, endpoint URL, model info) are reported, not checked.

Lineage: an output computed from other stamped artifacts (a core provider's output read by
shot_quality) carries a fourth key, ``inputs_used``: one *link* per input, holding that
input's own stamps (its ``models_used``, ``model_signature``, ``weights_digest`` and, when
it had inputs itself, its ``inputs_used``: a chain nests) plus the input file's absolute
``path`` and ``sha256`` (both null for stamps handed in as a mapping). The combined
``model_signature`` and ``weights_digest`` then also cover the inputs'; without inputs
they are what they always were. :func:`check_stamps` checks every link as it checks the
artifact, and that each input file still has its recorded digest (:class:`LinkCheck`).

Catalog: ``ModelManager.stamp`` also records which catalog and lock the stamp was made
against, ``catalog_used`` (:class:`CatalogIdentity`: their paths, informative, and digests,
identifying). It is in no signature (a signature identifies models, not where a catalog
lives); :func:`check_stamps` says when it names other specs or pins than those checked
against (:class:`CatalogCheck`), so that differences that only mean "another catalog" are
read as such. Stamps without it (written before it existed) check as they always did.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shlex
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._catalog import Catalog
from ._digest import is_sha256, sha256_fd, sha256_file, weights_digest
from ._errors import DPModelsError, FileTooLargeError, LineageInputError, ProvenanceError
from ._io import atomic_write, open_regular, read_regular
from ._spec import PRECISIONS, Spec

__all__ = [
    "ABSENT_FIELDS",
    "ARTIFACT_INFO_FIELDS",
    "CATALOG_KEY",
    "CHECKED_FIELDS",
    "EMPTY_DIGEST",
    "INFORMATIONAL_FIELDS",
    "INPUTS_KEY",
    "MAX_LINEAGE_DEPTH",
    "MAX_STAMP_BYTES",
    "NPZ_KEY",
    "STAMP_KEYS",
    "CatalogCheck",
    "CatalogIdentity",
    "Difference",
    "LinkCheck",
    "ModelCheck",
    "StampReport",
    "check_artifact",
    "check_stamps",
    "combined_signature",
    "combined_weights_digest",
    "input_links",
    "load_npz",
    "model_signature",
    "read_stamps",
    "save_npz",
    "select_models",
    "stamp",
    "weights_digest",
    "write_json",
]

STAMP_KEYS = ("models_used", "model_signature", "weights_digest")
NPZ_KEY = "__dp_models__"
#: The optional fourth stamp key: the stamps of the artifacts an output was computed from.
INPUTS_KEY = "inputs_used"
#: The optional stamp key naming the catalog and lock a stamp was made against
#: (:class:`CatalogIdentity`); in no signature.
CATALOG_KEY = "catalog_used"
#: The most links a chain of ``inputs_used`` may nest (an input of an input of ...).
MAX_LINEAGE_DEPTH = 32
#: The most a ``.json`` stamped file, or the stamps member of an ``.npz``, may hold.
MAX_STAMP_BYTES = 64 * 1024 * 1024
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
    expected_digest: str | None = None,
    requires: Mapping[str, str] | None = None,
    derived_from: Mapping[str, Any] | None = None,
) -> str:
    """The signature of ``spec`` run at ``precision`` with these artifact digests (spec
    order), the digest its deployment must serve (Triton: the expected digest, from the
    catalog), required specs' signatures and, for a derived Triton spec, its source and
    the weights digest its model was exported from (``derived_from``)."""
    return _signature_of(
        name=spec.name,
        version=spec.version,
        runtime=spec.runtime,
        engine=spec.engine,
        loader=spec.loader,
        loader_args=spec.loader_args,
        precision=precision,
        preprocess=spec.preprocess,
        artifacts=artifact_digests,
        requires=requires or {},
        triton=None if spec.triton is None else (spec.triton.model_name, spec.triton.model_version),
        expected_digest=expected_digest,
        derived_from=derived_from,
        substitute=None if spec.substitute is None else spec.substitute.model_dump(),
    )


def _signature_of(
    *,
    name: str,
    version: str,
    runtime: str,
    engine: str,
    loader: str | None,
    loader_args: Mapping[str, Any],
    precision: str,
    preprocess: str | None,
    artifacts: Sequence[str],
    requires: Mapping[str, str],
    triton: tuple[str, int] | None,
    expected_digest: str | None,
    derived_from: Mapping[str, Any] | None = None,
    substitute: Mapping[str, Any] | None = None,
) -> str:
    """The signature recipe on plain values: a spec's (:func:`model_signature`) or a
    stamped entry's own (:func:`check_stamps` checks an entry against itself)."""
    payload: dict[str, Any] = {
        "format": _SIGNATURE_FORMAT,
        "name": name,
        "version": version,
        "runtime": runtime,
        "engine": engine,
        "loader": loader,
        "loader_args": loader_args,
        "precision": precision,
        "preprocess": preprocess,
        "artifacts": list(artifacts),
        "requires": dict(sorted(requires.items())),
        "triton": None,
    }
    if triton is not None:
        payload["triton"] = {
            "model_name": triton[0],
            "model_version": triton[1],
            # the recipe's key since its first format: the digest the deployment must serve
            "served_weights_digest": expected_digest,
        }
    if derived_from is not None:  # only then: every other signature stays as it was
        payload["derived_from"] = {
            "name": derived_from.get("name"),
            "weights_digest": derived_from.get("weights_digest"),
        }
    if substitute is not None:  # a fake root's stand-in never signs as the model it replaces
        payload["substitute"] = dict(substitute)
    return _sha(_canonical(payload))


def _present(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in entries if e.get("status", "ok") == "ok"]


def _input_lines(inputs: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    # "@" starts no spec name, so an input's line is never taken for a model's
    return [f"@input {link.get(key)}\n" for link in inputs]


def combined_signature(
    entries: Sequence[Mapping[str, Any]], inputs: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The artifact-level ``model_signature``: order-independent, over models that ran and
    the ``model_signature`` of each input (``inputs_used``) it was computed from."""
    lines = [f"{e['name']} {e['model_signature']}\n" for e in _present(entries)]
    return _sha("".join(sorted(lines + _input_lines(inputs, "model_signature"))).encode())


def combined_weights_digest(
    entries: Sequence[Mapping[str, Any]], inputs: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The artifact-level ``weights_digest``: order-independent, over models that ran and
    the ``weights_digest`` of each input (``inputs_used``) it was computed from."""
    lines = [f"{e['name']} {e.get('weights_digest')}\n" for e in _present(entries)]
    return _sha("".join(sorted(lines + _input_lines(inputs, "weights_digest"))).encode())


def stamp(
    meta: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    *,
    inputs: Sequence[Mapping[str, Any]] = (),
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """A copy of ``meta`` with the three stamp keys, ``inputs_used`` when ``inputs``
    (links, as :func:`input_links` makes them) are given and ``catalog_used`` (the
    :class:`CatalogIdentity` of ``catalog``) when a catalog is. Stamps already in ``meta``
    must be the same: different ones raise :class:`ProvenanceError` instead of being
    overwritten."""
    stamps: dict[str, Any] = {
        "models_used": [dict(e) for e in entries],
        "model_signature": combined_signature(entries, inputs),
        "weights_digest": combined_weights_digest(entries, inputs),
    }
    if inputs:
        stamps[INPUTS_KEY] = [dict(link) for link in inputs]
    if catalog is not None:
        stamps[CATALOG_KEY] = CatalogIdentity.of(catalog).to_json()
    for key in (*STAMP_KEYS, INPUTS_KEY, CATALOG_KEY):
        if key in meta and meta[key] != stamps.get(key):
            raise ProvenanceError(
                f"metadata already carries a different {key!r}: it was produced with other "
                "models, inputs or catalog than these. Stamp a fresh copy of the metadata, "
                "or drop the old stamps deliberately before stamping.",
                key=key,
            )
    return {**meta, **stamps}


def select_models(
    entries: Sequence[Mapping[str, Any]], names: Iterable[str] | None
) -> list[dict[str, Any]]:
    """The ``models_used`` entries of the models ``names`` (all of them for None) and of the
    specs they require, in their order. A name with no entry raises
    :class:`ProvenanceError` (``.key`` ``"models"``) listing those there are."""
    if names is None:
        return [dict(e) for e in entries]
    if isinstance(names, str):
        raise TypeError(f"models must be a list of spec names, not the string {names!r}")
    wanted = list(dict.fromkeys(names))
    known = list(dict.fromkeys(e["name"] for e in entries))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ProvenanceError(
            f"stamp(models=...) names {', '.join(map(repr, unknown))}, which this manager "
            "did not hand out, so it cannot have produced this output; it handed out: "
            f"{', '.join(known) or 'nothing'} (a model is recorded when `mm.get` or "
            "`mm.load` hands it out)",
            key="models",
        )
    keep = set(wanted)
    todo = list(wanted)
    while todo:  # what the named models require ran with them, and is recorded with them
        name = todo.pop()
        for e in entries:
            for dep in e.get("requires", ()) if e["name"] == name else ():
                if dep not in keep:
                    keep.add(dep)
                    todo.append(dep)
    return [dict(e) for e in entries if e["name"] in keep]


def input_links(
    inputs: Iterable[str | os.PathLike[str] | Mapping[str, Any]], catalog: Catalog
) -> list[dict[str, Any]]:
    """The ``inputs_used`` links of ``inputs``: paths of stamped ``.json`` / ``.npz`` files
    (read once: their stamps and the sha256 of their bytes) or stamps already read (a
    mapping holding the stamp keys; other keys are left out). Each input's stamps, with
    those of its own inputs, are checked against ``catalog`` first (:func:`check_stamps`);
    one that fails raises :class:`~dp_models._errors.LineageInputError` naming the input
    and every difference, so an output never carries stamps that do not verify."""
    if isinstance(inputs, (str, os.PathLike)):
        raise TypeError("inputs must be a list of paths or stamps, not one path")
    links: list[dict[str, Any]] = []
    for index, source in enumerate(inputs):
        if isinstance(source, Mapping):
            path, digest, base = None, None, None
            stamps = {k: source[k] for k in (*STAMP_KEYS, INPUTS_KEY, CATALOG_KEY) if k in source}
        else:
            p = Path(os.path.abspath(source))
            stamps, digest = _read_stamps(p, digest=True)
            path, base = str(p), p.parent
        try:
            report = check_stamps(stamps, catalog, base=base)
        except ProvenanceError as exc:
            label = f"inputs[{index}]" if path is None else f"inputs[{index}] ({path})"
            key = f"inputs[{index}]" if exc.key is None else f"inputs[{index}].{exc.key}"
            raise ProvenanceError(f"{label}: {exc}", key=key) from exc
        if not report.ok:
            found = report.all_differences
            label = f"lineage input {index}" + ("" if path is None else f" ({path})")
            shown = "; ".join(d.message for d in found[:3])
            more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
            how = (
                f"`dp-models verify-artifact {path}` shows each with its fix"
                if path is not None
                else "check_stamps(stamps, catalog) shows each with its fix"
            )
            raise LineageInputError(
                f"{label} fails verification against the catalog and lock, so an output "
                f"computed from it cannot carry its stamps: {shown}{more}. {how}; recompute "
                "the input with the models the catalog pins today, or stamp with the catalog "
                "and lock it was made with.",
                path=path,
                index=index,
                differences=[d.message for d in found],
            )
        links.append({"path": path, "sha256": digest, **stamps})
    return links


# -- files ----------------------------------------------------------------------------------


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` (already stamped with ``manager.stamp``) as JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write(path, text)


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
    return atomic_write(path, lambda f: np.savez(f, **payload))


@contextlib.contextmanager
def _open_npz(path: Path, digests: list[str] | None = None) -> Iterator[Any]:
    """An ``.npz`` opened from a regular file only (a FIFO or device is refused before a
    byte is read), never unpickling; the archive and the file are closed on exit. With
    ``digests``, the sha256 of the file's bytes is appended to it (the same open file)."""
    import numpy as np

    with os.fdopen(open_regular(path), "rb") as f:
        if digests is not None:
            digests.append(sha256_fd(f.fileno()))
        data = np.load(f, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ProvenanceError(f"{path} is not an .npz archive (a zip of arrays)", key=NPZ_KEY)
        with data:
            yield data


def _npz_stamps(data: Any, path: Path) -> dict[str, Any]:
    """The stamps held by an opened ``.npz``; their size is checked before they are read."""
    if NPZ_KEY not in data.files:
        raise ProvenanceError(f"{path} carries no dp_models stamps", key=NPZ_KEY)
    size = data.zip.getinfo(f"{NPZ_KEY}.npy").file_size
    if size > MAX_STAMP_BYTES:
        raise FileTooLargeError(
            f"{path}: its stamps ({NPZ_KEY}) are {size} bytes, more than the "
            f"{MAX_STAMP_BYTES} stamps may hold",
            path=path,
            limit=MAX_STAMP_BYTES,
        )
    value = data[NPZ_KEY]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise ProvenanceError(
            f"{path}: {NPZ_KEY} is not the stamps' JSON text (a 0-d string array)", key=NPZ_KEY
        )
    stamps = json.loads(str(value))
    if not isinstance(stamps, dict):
        raise ProvenanceError(f"{path}: {NPZ_KEY} holds no JSON object", key=NPZ_KEY)
    return stamps


def load_npz(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, stamps)`` of an ``.npz`` written by :func:`save_npz`; never unpickles.
    Only a regular file is opened (:class:`~dp_models._errors.NotRegularFileError`), and
    stamps over :data:`MAX_STAMP_BYTES` are refused (:class:`FileTooLargeError`)."""
    p = Path(path)
    with _open_npz(p) as data:
        stamps = _npz_stamps(data, p)
        arrays = {k: data[k] for k in data.files if k != NPZ_KEY}
    return arrays, stamps


#: What reading a hostile or broken file may raise besides a DPModelsError: a bad zip or
#: deflate stream, a truncated array, JSON nested too deep, a number too long.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)


def read_stamps(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The three stamp keys of a ``.json`` or ``.npz`` artifact, ``inputs_used`` when it
    carries lineage and ``catalog_used`` when it records its catalog (other metadata left
    out).

    Raises :class:`ProvenanceError` for a file that cannot be read or carries no stamps,
    :class:`~dp_models._errors.NotRegularFileError` for a FIFO, device or directory (never
    opened for reading, so never blocks) and :class:`~dp_models._errors.FileTooLargeError`
    for stamps over :data:`MAX_STAMP_BYTES` (a ``.json`` file, or the ``.npz`` stamps
    member; the arrays of an ``.npz`` are not read)."""
    return _read_stamps(Path(path), digest=False)[0]


def _read_stamps(p: Path, *, digest: bool) -> tuple[dict[str, Any], str | None]:
    """:func:`read_stamps`, and with ``digest`` the sha256 of the file's bytes, read
    through the same open file (the stamps are those of the bytes hashed)."""
    digests: list[str] = []
    try:
        if p.suffix == ".npz":
            with _open_npz(p, digests if digest else None) as npz:
                data: Any = _npz_stamps(npz, p)
        else:
            raw = read_regular(p, max_bytes=MAX_STAMP_BYTES)
            digests.append(_sha(raw))
            data = json.loads(raw)
    except DPModelsError:
        raise
    except RecursionError as exc:
        raise ProvenanceError(f"cannot read stamps from {p}: JSON nested too deeply") from exc
    except _READ_ERRORS as exc:
        raise ProvenanceError(f"cannot read stamps from {p}: {exc}") from exc
    missing = [k for k in STAMP_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ProvenanceError(
            f"{p} carries no dp_models stamps (expected the keys {', '.join(STAMP_KEYS)}; "
            f"missing: {', '.join(missing)})",
            key=missing[0],
        )
    stamps = {k: data[k] for k in (*STAMP_KEYS, INPUTS_KEY, CATALOG_KEY) if k in data}
    return stamps, digests[0] if digest else None


# -- checking -------------------------------------------------------------------------------

#: Keys of an entry with ``status: ok`` that :func:`check_stamps` recomputes from the
#: catalog and lock (or, for ``status``, checks against the spec) and fails on.
CHECKED_FIELDS = (
    "name",
    "version",
    "status",
    "optional",
    "runtime",
    "engine",
    "loader",
    "loader_args",
    "preprocess",
    "precision",
    "weights_digest",
    "artifacts",
    "model_signature",
    "requires",
    "triton",
    "derived_from",
    "substitute",
)
#: Keys of an entry with ``status: absent`` that are checked (the manager writes no others
#: but ``reason``).
ABSENT_FIELDS = ("name", "version", "status", "optional", "runtime", "engine")
#: Keys reported but never failed on: they differ between machines and runs and are not
#: part of the signature. Keys dp_models does not write are reported the same way.
INFORMATIONAL_FIELDS = (
    "device",
    "framework",
    "model_info",
    "reason",
    "triton.endpoint",
    "triton.served_digest_verified",
    "artifacts[].home",
    "artifacts[].location",
    "artifacts[].distribution",
)
#: Keys of an ``artifacts`` item that say where it was found (the home, the root, cache or
#: site directory, an installed distribution): informational, like ``device``.
ARTIFACT_INFO_FIELDS = ("home", "location", "distribution")
_TRITON_CHECKED = ("model_name", "model_version", "endpoint_name")
#: ``model_signature`` and ``weights_digest`` of a stamp made with no model at all.
EMPTY_DIGEST = _sha(b"")

_FIX_STAMP = (
    "the stamp contradicts itself, so it was edited after ModelManager.stamp wrote it; "
    "regenerate the artifact (run the models again)"
)
_FIX_REMOVED = (
    "`dp-models list` shows the catalog's specs; check the artifact against the catalog it "
    "was made with (--catalog DIR --lock FILE)"
)
_FIX_UNPINNED = "`dp-models lock` pins the provisioned artifacts; then verify again"


def _fix_spec(name: str) -> str:
    return (
        f"`dp-models show {name}` shows the spec as the catalog has it today; an artifact "
        "made by another version of the model is restamped by running it again"
    )


def _fix_pin(name: str) -> str:
    return (
        f"`dp-models show {name}` shows where each digest is pinned (spec or lock); "
        "`dp-models lock --check` compares the lock with MODELS_ROOT"
    )


@dataclass(frozen=True)
class Difference:
    """One field of a stamp that is not what it should be.

    ``field`` names it (``models_used[2].artifacts[0].sha256``), ``stamped`` is what the
    stamp says, ``expected`` what the catalog and lock (or the stamp's own entries) give,
    ``message`` says both, ``fix`` the command that fixes or explains it."""

    field: str
    stamped: Any
    expected: Any
    message: str
    fix: str

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "field": self.field,
            "stamped": _jsonable(self.stamped),
            "expected": _jsonable(self.expected),
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class ModelCheck:
    """How one ``models_used`` entry compares with the current catalog and lock.

    ``status``: ``unchanged`` (every checked field as the catalog gives it), ``changed``
    (the entry is consistent, but the catalog or lock says otherwise today: the model
    changed since), ``edited`` (the entry contradicts itself or the stamp: changed after
    it was written), ``removed`` (no spec of that name), ``unpinned`` (a digest cannot be
    recomputed: `dp-models lock`), ``absent`` (an optional model that was not provisioned).
    ``ok`` when there is no difference. ``info`` holds the informational fields."""

    name: str
    status: str
    differences: list[Difference] = field(default_factory=list)
    index: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences and self.status in ("unchanged", "absent")

    @property
    def changes(self) -> list[str]:
        """The differences as sentences."""
        return [d.message for d in self.differences]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "index": self.index,
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "note": self.note,
            "changes": self.changes,
            "differences": [d.as_dict() for d in self.differences],
            "info": {k: _jsonable(v) for k, v in self.info.items()},
        }


@dataclass
class StampReport:
    """What :func:`check_stamps` found: one :class:`ModelCheck` per entry (iterating the
    report yields them), the differences of the top-level stamps, one :class:`LinkCheck`
    per input (``inputs_used``), each holding its own report, and ``catalog``: the catalog
    and lock the stamp records (``catalog_used``) beside those checked against
    (:class:`CatalogCheck`; None for a stamp that records none). ``text(name)`` is the
    report as ``dp-models verify-artifact`` prints it."""

    models: list[ModelCheck]
    differences: list[Difference]
    model_signature: str
    weights_digest: str
    inputs: list[LinkCheck] = field(default_factory=list)
    catalog: CatalogCheck | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.differences
            and all(m.ok for m in self.models)
            and all(link.ok for link in self.inputs)
        )

    @property
    def all_differences(self) -> list[Difference]:
        """Every difference: the top-level ones, then each entry's, then each input's
        (its file's, then its stamps', named ``inputs_used[0]...``)."""
        found = [*self.differences, *(d for m in self.models for d in m.differences)]
        for link in self.inputs:
            found += [*link.differences, *link.report.all_differences]
        return found

    @property
    def links(self) -> list[LinkCheck]:
        """Every input of the chain, depth first: ``inputs_used[0]``, its own inputs, ..."""
        found: list[LinkCheck] = []
        for link in self.inputs:
            found += [link, *link.report.links]
        return found

    def __iter__(self) -> Iterator[ModelCheck]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "ok": self.ok,
            "model_signature": self.model_signature,
            "weights_digest": self.weights_digest,
            "differences": [d.as_dict() for d in self.all_differences],
            "stamp_differences": [d.as_dict() for d in self.differences],
            "models": [m.as_dict() for m in self.models],
            "inputs": [link.as_dict() for link in self.inputs],
            "catalog": None if self.catalog is None else self.catalog.as_dict(),
        }

    def text(self, name: str) -> str:
        """The report as ``dp-models verify-artifact`` prints it, for the file ``name``:
        each model with its status, every difference with its fix, each input indented by
        depth, a stamp made against another catalog or lock said first, and a last line
        saying whether everything verifies (and, if not, where it does not)."""
        lines: list[str] = [f"{name}: {_counts(self)}"]
        _show_report(self, "  ", lines)
        if self.ok:
            if self.inputs:
                lines.append(
                    "every model, and every input of its chain, is as the catalog and lock "
                    "describe it today"
                )
            else:
                lines.append(
                    "every model is as the catalog and lock describe it today"
                    if len(self)
                    else "no model: models_used is empty and the stamps are those of no model"
                )
            return "".join(f"{line}\n" for line in lines)
        where = [_show(c.name) for c in self if not c.ok]
        where += ["the combined stamps"] if self.differences else []
        where += [
            f"{link.where} {'(no file)' if link.path is None else _show(link.path)}"
            for link in self.links
            if link.differences or link.report.differences or not all(m.ok for m in link.report)
        ]
        files = ", or an input file changed since" if any(x.differences for x in self.links) else ""
        other = self.catalog is not None and not self.catalog.same
        elsewhere = "; the stamp was made against another catalog or lock (above)" if other else ""
        lines.append(
            f"{_plural(len(self.all_differences), 'difference')} ({', '.join(where)}): the "
            f"stamps are not what the catalog and lock give today{files}{elsewhere}"
        )
        return "".join(f"{line}\n" for line in lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counts(report: StampReport) -> str:
    inputs = f", {_plural(len(report.inputs), 'input')}" if report.inputs else ""
    return f"{_plural(len(report), 'model')}{inputs}, signature {report.model_signature[:16]}..."


def _show_differences(found: Sequence[Difference], pad: str, lines: list[str]) -> None:
    lines += [f"{pad}    {d.message}" for d in found]
    lines += [f"{pad}    fix: {fix}" for fix in dict.fromkeys(d.fix for d in found)]


def _show_report(report: StampReport, pad: str, lines: list[str]) -> None:
    """The body of :meth:`StampReport.text`, a link's indented below its artifact's."""
    if report.catalog is not None and not report.catalog.same:
        lines.append(f"{pad}{report.catalog.message}")
    for c in report:
        note = f"  ({c.note})" if c.note and c.status != "unchanged" else ""
        lines.append(f"{pad}{_show(c.name):<32} {c.status}{note}")
        _show_differences(c.differences, pad, lines)
        info = [f"{_show(k)}={_show(v)}" for k, v in c.info.items() if v is not None]
        if info:
            lines.append(f"{pad}    informational (not checked): {', '.join(info)}")
    if report.differences:
        lines.append(f"{pad}the combined stamps (model_signature, weights_digest)")
        _show_differences(report.differences, pad, lines)
    for link in report.inputs:
        path = "(stamps handed in, no file)" if link.path is None else _show(link.path)
        lines.append(f"{pad}{link.where} {path}: file {link.file}, {_counts(link.report)}")
        if link.note:
            lines.append(f"{pad}    {link.note}")
        _show_differences(link.differences, pad, lines)
        _show_report(link.report, pad + "  ", lines)


@dataclass
class LinkCheck:
    """How one input of an artifact (an ``inputs_used`` link) compares with its file, the
    catalog and the lock.

    ``where`` is its position in the chain (``inputs_used[0].inputs_used[1]``), ``path``
    the file it recorded (None for stamps handed in as a mapping), ``found`` where that
    file was found (the path, else a file of the same name beside the artifact that
    recorded it; None when neither exists). ``file``: ``unchanged`` (the file has the
    recorded sha256), ``changed`` (it does not: rewritten since), ``unreadable``, ``missing``
    (not found: not checked, not a failure; the stamps it recorded still are) or
    ``unrecorded`` (no file). ``differences`` are the file's; ``report`` checks the stamps
    the link recorded, its own inputs included."""

    where: str
    index: int
    path: str | None
    file: str
    report: StampReport
    differences: list[Difference] = field(default_factory=list)
    found: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences and self.report.ok

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "where": self.where,
            "index": self.index,
            "path": self.path,
            "found": self.found,
            "file": self.file,
            "ok": self.ok,
            "note": self.note,
            "differences": [d.as_dict() for d in self.differences],
            "report": self.report.as_dict(),
        }


@dataclass(frozen=True)
class CatalogIdentity:
    """Which catalog and lock: where they were (``path``, ``lock_path``: absolute,
    informative only) and what they held (``digest``: :attr:`Catalog.digest
    <dp_models._catalog.Catalog.digest>` of the specs; ``lock_digest``:
    :attr:`Catalog.lock_digest <dp_models._catalog.Catalog.lock_digest>` of the pins). A
    stamp's ``catalog_used`` is :meth:`to_json`:
    ``{"path", "digest", "lock": {"path", "digest"}}``."""

    path: str
    digest: str
    lock_path: str
    lock_digest: str

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogIdentity:
        """The identity of ``catalog`` and its lock, as they are now."""
        return cls(
            os.path.abspath(catalog.directory),
            catalog.digest,
            os.path.abspath(catalog.lock.path),
            catalog.lock_digest,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``catalog_used`` stamp key's value."""
        return {
            "path": self.path,
            "digest": self.digest,
            "lock": {"path": self.lock_path, "digest": self.lock_digest},
        }


_SHORT = 16


@dataclass(frozen=True)
class CatalogCheck:
    """The catalog and lock a stamp was made against (``stamped``, its ``catalog_used``)
    beside those it was checked against (``checked``).

    Only digests compare: the same specs and pins in another directory (a copy, another
    machine) are the same catalog. Another catalog is no failure by itself (a spec added
    to the catalog since changes its digest, not the models an artifact names); it says
    how to read the differences, if any: against a catalog the artifact was not made
    with, ``unpinned``, ``removed`` or ``changed`` may mean only that. ``message`` says
    which differs and the options that check against the stamp's own (``""`` when
    both are the same). dp_models never switches catalogs by itself."""

    stamped: CatalogIdentity
    checked: CatalogIdentity

    @property
    def same_specs(self) -> bool:
        return self.stamped.digest == self.checked.digest

    @property
    def same_lock(self) -> bool:
        return self.stamped.lock_digest == self.checked.lock_digest

    @property
    def same(self) -> bool:
        return self.same_specs and self.same_lock

    @property
    def message(self) -> str:
        s, c = self.stamped, self.checked
        if not self.same_specs:
            return (
                f"stamped against another catalog ({_show(s.path)}, digest "
                f"{s.digest[:_SHORT]}...) than the one checked against ({_show(c.path)}, digest "
                f"{c.digest[:_SHORT]}...); pass --catalog {shlex.quote(s.path)} --lock "
                f"{shlex.quote(s.lock_path)} to check against it"
            )
        if not self.same_lock:
            return (
                f"stamped against the same specs with another lock ({_show(s.lock_path)}, "
                f"digest {s.lock_digest[:_SHORT]}...) than the one checked against "
                f"({_show(c.lock_path)}, digest {c.lock_digest[:_SHORT]}...); pass --lock "
                f"{shlex.quote(s.lock_path)} to check against it"
            )
        return ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "same": self.same,
            "same_specs": self.same_specs,
            "same_lock": self.same_lock,
            "stamped": self.stamped.to_json(),
            "checked": self.checked.to_json(),
            "message": self.message,
        }


# -- showing values -------------------------------------------------------------------------


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that any JSON writer takes: a stamp handed in from Python may
    hold anything, and one read from a file may hold NaN or nest deeply. What JSON cannot
    hold, and anything nested deeper than 32 levels, becomes a short description."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= 32 and isinstance(value, (list, dict)):
        return f"<{_kind(value)} nested too deeply>"
    if isinstance(value, list):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return f"<{type(value).__name__}>"


def _show(value: Any) -> str:
    """A value for a message: plain strings bare, anything else (and strings with control
    characters or edge spaces) as JSON, cut at 200 characters."""
    if isinstance(value, str) and value and value.isprintable() and value.strip() == value:
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, ensure_ascii=True)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: ``1`` is not ``1.0`` nor ``true``, ``{"a": 2}`` not ``{"a": 2.0}``."""
    try:
        return _canonical(a) == _canonical(b)
    except (TypeError, ValueError, RecursionError):
        return False


def _differ(
    where: str, stamped: Any, expected: Any, source: str, fix: str, note: str = ""
) -> Difference:
    message = f"{where}: stamp says {_show(stamped)}, {source} {_show(expected)}"
    return Difference(where, stamped, expected, f"{message} ({note})" if note else message, fix)


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    kinds.update({int: "an integer", float: "a number", type(None): "null"})
    return kinds.get(type(value), f"a {type(value).__name__}")


# -- the shape of a stamp -------------------------------------------------------------------


def _malformed(where: str, expected: str, value: Any) -> ProvenanceError:
    return ProvenanceError(
        f"{where}: expected {expected}, got {_kind(value)}. The stamp is malformed: it was "
        "edited, or not written by dp_models; regenerate the artifact (run the models again)",
        key=where,
    )


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_str_or_null(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _need(
    data: Mapping[str, Any], key: str, where: str, expected: str, test: Callable[[Any], bool]
) -> Any:
    """``data[key]`` when it passes ``test``; else a :class:`ProvenanceError` naming it."""
    if key not in data:
        raise ProvenanceError(
            f"{where}.{key} is missing: dp_models writes it in every such entry. The stamp is "
            "malformed: it was edited, or not written by dp_models; regenerate the artifact",
            key=f"{where}.{key}",
        )
    value = data[key]
    if not test(value):
        raise _malformed(f"{where}.{key}", expected, value)
    return value


def _catalog_used(value: Any) -> CatalogIdentity:
    """The :class:`CatalogIdentity` a stamp's ``catalog_used`` records; a
    :class:`ProvenanceError` naming the field when it is not of that shape."""
    where = CATALOG_KEY
    if not isinstance(value, Mapping):
        raise _malformed(where, "an object with path, digest and lock", value)
    path = _need(value, "path", where, "a string (a directory)", _is_str)
    digest = _need(value, "digest", where, "a sha256 (64 lowercase hex digits)", is_sha256)
    lock = _need(value, "lock", where, "an object with path and digest", _is_mapping)
    at = f"{where}.lock"
    lock_path = _need(lock, "path", at, "a string (a file)", _is_str)
    lock_digest = _need(lock, "digest", at, "a sha256 (64 lowercase hex digits)", is_sha256)
    return CatalogIdentity(path, digest, lock_path, lock_digest)


def _is_mapping(v: Any) -> bool:
    return isinstance(v, Mapping)


def _validate_link(link: Any, where: str) -> None:
    """Refuse a link of the wrong shape; its own stamps are validated when it is checked."""
    if not isinstance(link, Mapping):
        raise _malformed(where, "an object (one input's path, sha256 and stamps)", link)
    path = _need(link, "path", where, "a string or null", _is_str_or_null)
    digest = _need(link, "sha256", where, "a string or null", _is_str_or_null)
    if (path is None) != (digest is None):
        raise _malformed(f"{where}.sha256", "a sha256 with a path, null without one", digest)
    for key in ("model_signature", "weights_digest"):
        _need(link, key, where, "a string (a sha256)", _is_str)


def _validate_entry(entry: Any, where: str) -> None:
    """Refuse an entry of the wrong shape: missing keys, wrong types (checked fields only)."""
    if not isinstance(entry, Mapping):
        raise _malformed(where, "an object (one models_used entry)", entry)
    _need(entry, "name", where, "a string", _is_str)
    status = _need(entry, "status", where, "'ok' or 'absent'", lambda v: v in ("ok", "absent"))
    for key in ("version", "runtime", "engine"):
        _need(entry, key, where, "a string", _is_str)
    _need(entry, "optional", where, "true or false", lambda v: isinstance(v, bool))
    if status == "absent":
        return
    for key in ("loader", "preprocess", "weights_digest"):
        _need(entry, key, where, "a string or null", _is_str_or_null)
    for key in ("precision", "model_signature"):
        _need(entry, key, where, "a string", _is_str)
    _need(entry, "loader_args", where, "an object", lambda v: isinstance(v, Mapping))
    _need(entry, "requires", where, "a list of spec names", _is_str_list)
    artifacts = _need(entry, "artifacts", where, "a list", lambda v: isinstance(v, list))
    for j, art in enumerate(artifacts):
        at = f"{where}.artifacts[{j}]"
        if not isinstance(art, Mapping):
            raise _malformed(at, "an object with path and sha256", art)
        _need(art, "path", at, "a string", _is_str)
        _need(art, "sha256", at, "a string", _is_str)
    triton = _need(
        entry, "triton", where, "an object or null", lambda v: v is None or isinstance(v, Mapping)
    )
    if triton is not None:
        at = f"{where}.triton"
        _need(triton, "model_name", at, "a string", _is_str)
        _need(triton, "model_version", at, "an integer", _is_int)
        _need(triton, "endpoint_name", at, "a string", _is_str)
    if "substitute" in entry:  # written only for a fake root's stand-in (dp_models.testing)
        at = f"{where}.substitute"
        sub = _need(entry, "substitute", where, "an object", lambda v: isinstance(v, Mapping))
        for key in ("replaces", "stand_in", "reason"):
            _need(sub, key, at, "a string", _is_str)


# -- recomputing ----------------------------------------------------------------------------


def _pinned(catalog: Catalog, spec: Spec) -> list[str | None]:
    """The digests the catalog and lock pin for ``spec``'s artifacts, None where unpinned;
    ``[]`` for a Triton spec (its entries list no artifacts)."""
    if spec.runtime != "inprocess":
        return []
    pins = [catalog.pin(a) for a in spec.artifacts]
    return [p.sha256 if p is not None else None for p in pins]


def _expected_digest(catalog: Catalog, spec: Spec) -> str | None:
    pin = catalog.expected_digest(spec)
    return pin.sha256 if pin is not None else None


def _catalog_signature(catalog: Catalog, name: str) -> tuple[str | None, list[str]]:
    """Today's signature of spec ``name`` at its own precision (how the manager resolves a
    required spec), and the unpinned artifact paths (its own or of what it requires) that
    keep it unknown: ``(None, paths)`` then."""
    spec = catalog[name]
    digests = _pinned(catalog, spec)
    unpinned = [a.path for a, d in zip(spec.artifacts, digests, strict=False) if d is None]
    requires: dict[str, str] = {}
    for dep in spec.requires:
        signature, missing = _catalog_signature(catalog, dep)
        unpinned += missing
        if signature is not None:
            requires[dep] = signature
    if unpinned:
        return None, unpinned
    signature = model_signature(
        spec,
        artifact_digests=[d for d in digests if d is not None],
        precision=spec.precision,
        expected_digest=_expected_digest(catalog, spec),
        requires=requires,
        derived_from=_catalog_derived(catalog, spec),
    )
    return signature, []


_FIX_EXPORT = (
    "the served model was exported from other weights than this output was made with: "
    "re-run it against the current deployment, or export the source again "
    "(`dp-models export onnx SOURCE --for SPEC`)"
)


def _catalog_derived(catalog: Catalog, spec: Spec) -> dict[str, Any] | None:
    """A derived Triton spec's ``derived_from`` entry as the catalog's lock records it."""
    if spec.derived_from is None:
        return None
    recorded = catalog.lineage(spec)
    known = recorded is not None and recorded.source == spec.derived_from
    return {
        "name": spec.derived_from,
        "weights_digest": recorded.weights_digest if known and recorded else None,
    }


def _own_signatures(entry: Mapping[str, Any], present: Sequence[Mapping[str, Any]]) -> set[str]:
    """The signatures ``entry``'s own fields give, with the signature of each required
    model taken from the stamp's entries of that name (one per combination, at most 64)."""
    triton = entry["triton"]
    choices: list[list[tuple[str, str]]] = []
    for dep in dict.fromkeys(entry["requires"]):
        found = dict.fromkeys(e["model_signature"] for e in present if e["name"] == dep)
        choices.append([(dep, s) for s in found][:4])
    own: set[str] = set()
    for combination in itertools.islice(itertools.product(*choices), 64):
        own.add(
            _signature_of(
                name=entry["name"],
                version=entry["version"],
                runtime=entry["runtime"],
                engine=entry["engine"],
                loader=entry["loader"],
                loader_args=entry["loader_args"],
                precision=entry["precision"],
                preprocess=entry["preprocess"],
                artifacts=[a["sha256"] for a in entry["artifacts"]],
                requires=dict(combination),
                triton=None if triton is None else (triton["model_name"], triton["model_version"]),
                expected_digest=entry["weights_digest"],
                derived_from=entry.get("derived_from"),
                substitute=entry.get("substitute"),
            )
        )
    return own


def _consistent(entry: Mapping[str, Any], present: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``entry`` agrees with itself: its ``model_signature`` is that of its own
    fields and (in-process) its ``weights_digest`` that of its artifact digests. An entry
    dp_models wrote always does, whatever the catalog says today."""
    try:
        if entry["model_signature"] not in _own_signatures(entry, present):
            return False
    except (TypeError, ValueError, RecursionError):
        return False
    if entry["triton"] is None:
        return _same(
            entry["weights_digest"], weights_digest([a["sha256"] for a in entry["artifacts"]])
        )
    return True


def _info(entry: Mapping[str, Any], checked: Sequence[str]) -> dict[str, Any]:
    """The entry's informational fields and any keys dp_models does not write."""
    from ._urls import redact_url

    info = {k: v for k, v in entry.items() if k not in checked and k not in CHECKED_FIELDS}
    triton = entry.get("triton")
    if isinstance(triton, Mapping):
        for key, value in triton.items():
            if key not in _TRITON_CHECKED:
                # a stamp written by hand may hold an unmasked URL: never shown as it is
                info[f"triton.{key}"] = redact_url(value) if isinstance(value, str) else value
    return info


def _check_absent(index: int, entry: Mapping[str, Any], catalog: Catalog) -> ModelCheck:
    where = f"models_used[{index}]"
    name = entry["name"]
    info = _info(entry, ABSENT_FIELDS)
    if name not in catalog:
        diff = _differ(
            f"{where}.name", name, None, "the catalog has no spec of this name:", _FIX_REMOVED
        )
        return ModelCheck(name, "removed", [diff], index, info)
    spec = catalog[name]
    diffs = [
        _differ(f"{where}.{key}", entry[key], getattr(spec, key), "catalog says", _fix_spec(name))
        for key in ("version", "runtime", "engine", "optional")
        if not _same(entry[key], getattr(spec, key))
    ]
    if not spec.optional:
        diffs.append(
            _differ(
                f"{where}.status",
                "absent",
                "ok",
                "but the spec is not optional, so dp_models never records it absent: expected",
                _fix_spec(name),
            )
        )
    ran = [k for k in CHECKED_FIELDS if k in entry and k not in ABSENT_FIELDS]
    ran += [k for k in ("device", "framework", "model_info") if k in entry]
    if ran:
        diffs.append(
            _differ(
                f"{where}.status",
                "absent",
                "ok",
                f"but the entry carries {', '.join(ran)}, which only a model that ran has: "
                "expected",
                _FIX_STAMP,
            )
        )
    note = "optional, not provisioned when the artifact was written"
    return ModelCheck(name, "absent", diffs, index, info, note)


def _check_entry(
    index: int, entry: Mapping[str, Any], present: Sequence[Mapping[str, Any]], catalog: Catalog
) -> ModelCheck:
    """Recompute every checked field of an entry with ``status: ok``."""
    where = f"models_used[{index}]"
    name = entry["name"]
    info = _info(entry, ())
    if name not in catalog:
        diff = _differ(
            f"{where}.name", name, None, "the catalog has no spec of this name:", _FIX_REMOVED
        )
        return ModelCheck(name, "removed", [diff], index, info)
    spec = catalog[name]
    fix = _fix_spec(name)
    diffs: list[Difference] = []
    edited: list[Difference] = []  # the stamp against itself, whatever the catalog says

    for key in ("version", "optional", "runtime", "engine", "loader", "loader_args", "preprocess"):
        if not _same(entry[key], getattr(spec, key)):
            diffs.append(
                _differ(f"{where}.{key}", entry[key], getattr(spec, key), "catalog says", fix)
            )
    substitute = None if spec.substitute is None else spec.substitute.model_dump()
    if not _same(entry.get("substitute"), substitute):
        diffs.append(
            _differ(f"{where}.substitute", entry.get("substitute"), substitute, "catalog says", fix)
        )
    if not _same(entry["requires"], list(spec.requires)):
        diffs.append(
            _differ(
                f"{where}.requires", entry["requires"], list(spec.requires), "catalog says", fix
            )
        )
    names = {e["name"] for e in present}
    for dep in entry["requires"]:
        if dep not in names:
            edited.append(
                _differ(
                    f"{where}.requires",
                    dep,
                    None,
                    "but models_used has no entry of that model (dp_models records what a "
                    "model requires before it):",
                    _FIX_STAMP,
                )
            )

    # triton
    expected_triton: dict[str, Any] | None = None
    if spec.triton is not None:
        expected_triton = {
            "model_name": spec.triton.model_name,
            "model_version": spec.triton.model_version,
            "endpoint_name": spec.triton.endpoint,
        }
    triton = entry["triton"]
    if triton is None or expected_triton is None:
        if triton is not None or expected_triton is not None:
            shown = None if triton is None else {k: triton[k] for k in _TRITON_CHECKED}
            diffs.append(_differ(f"{where}.triton", shown, expected_triton, "catalog says", fix))
    else:
        for key, value in expected_triton.items():
            if not _same(triton[key], value):
                diffs.append(
                    _differ(f"{where}.triton.{key}", triton[key], value, "catalog says", fix)
                )

    # artifacts, against the pins
    pins = _pinned(catalog, spec)
    stamped = entry["artifacts"]
    digests: list[str] = []
    unpinned: list[str] = []
    pin_fix = _fix_pin(name)
    if len(stamped) != len(pins):
        expected_paths = [a.path for a in spec.artifacts] if pins else []
        diffs.append(
            _differ(
                f"{where}.artifacts",
                [a["path"] for a in stamped],
                expected_paths,
                "catalog lists",
                fix,
                f"{len(stamped)} artifacts stamped, {len(pins)} expected",
            )
        )
    for j, pin in enumerate(pins):
        art = spec.artifacts[j]
        got = stamped[j] if j < len(stamped) else None
        at = f"{where}.artifacts[{j}]"
        if got is not None and got["path"] != art.path:
            diffs.append(_differ(f"{at}.path", got["path"], art.path, "catalog says", fix))
        if pin is None:
            unpinned.append(art.path)
            diffs.append(
                _differ(
                    f"{at}.sha256",
                    None if got is None else got["sha256"],
                    None,
                    f"catalog and lock pin nothing for {art.path}:",
                    _FIX_UNPINNED,
                )
            )
            digests.append(got["sha256"] if got is not None else "")
            continue
        if got is not None and got["sha256"] != pin:
            diffs.append(_differ(f"{at}.sha256", got["sha256"], pin, "catalog pins", pin_fix))
        digests.append(pin)

    # weights digest and signature, recomputed from the above
    expected = _expected_digest(catalog, spec)
    expected_weights = expected if spec.runtime != "inprocess" else weights_digest(digests)
    if not _same(entry["weights_digest"], expected_weights):
        source = "the catalog's pins give" if spec.runtime == "inprocess" else "catalog serves"
        diffs.append(
            _differ(
                f"{where}.weights_digest",
                entry["weights_digest"],
                expected_weights,
                source,
                pin_fix,
            )
        )
    requires: dict[str, str] = {}
    dep_unpinned: list[str] = []
    for dep in spec.requires:
        signature, missing = _catalog_signature(catalog, dep)
        dep_unpinned += missing
        if signature is not None:
            requires[dep] = signature

    derived = _catalog_derived(catalog, spec)
    if derived is not None and not _same(entry.get("derived_from"), derived):
        diffs.append(
            _differ(
                f"{where}.derived_from",
                entry.get("derived_from"),
                derived,
                "the lock records an export from",
                _FIX_EXPORT,
            )
        )

    def expected_signature(precision: str) -> str:
        return model_signature(
            spec,
            artifact_digests=digests,
            precision=precision,
            expected_digest=expected,
            requires=requires,
            derived_from=derived,
        )

    precision = entry["precision"]
    stamped_signature = entry["model_signature"]
    if precision not in PRECISIONS:
        diffs.append(
            _differ(
                f"{where}.precision",
                precision,
                list(PRECISIONS),
                "dp_models runs models in one of",
                fix,
            )
        )
    elif dep_unpinned:
        diffs.append(
            _differ(
                f"{where}.model_signature",
                stamped_signature,
                None,
                "it cannot be recomputed: nothing pins "
                f"{', '.join(dep_unpinned)} (of a spec it requires):",
                _FIX_UNPINNED,
            )
        )
    elif (signature := expected_signature(precision)) != stamped_signature:
        others = [
            p for p in PRECISIONS if p != precision and expected_signature(p) == stamped_signature
        ]
        if others:
            diffs.append(
                _differ(
                    f"{where}.precision",
                    precision,
                    others[0],
                    "but its model_signature is the one the catalog gives at",
                    _FIX_STAMP,
                )
            )
        else:
            changed = [
                dep
                for dep in spec.requires
                if dep in requires
                and not any(
                    e["name"] == dep and e["model_signature"] == requires[dep] for e in present
                )
            ]
            note = f"a spec it requires changed: {', '.join(changed)}" if changed else ""
            diffs.append(
                _differ(
                    f"{where}.model_signature",
                    stamped_signature,
                    signature,
                    "catalog gives",
                    fix,
                    note,
                )
            )

    consistent = _consistent(entry, present)
    diffs += edited
    if unpinned or dep_unpinned:
        status, note = "unpinned", "an artifact (or one of a spec it requires) is not pinned"
    elif not diffs:
        status, note = "unchanged", ""
    elif not consistent or edited:
        status = "edited"
        note = (
            "its model_signature or weights_digest is not that of its own fields: changed "
            "after dp_models wrote it"
            if not consistent
            else "it contradicts the rest of the stamp: changed after dp_models wrote it"
        )
    else:
        status, note = "changed", "the model changed since the artifact was written"
    return ModelCheck(name, status, diffs, index, info, note)


def _duplicates(entries: Sequence[Mapping[str, Any]]) -> dict[int, Difference]:
    """Entries dp_models would have recorded once: the same (name, device, precision), or
    the same model absent twice."""
    seen: dict[str, int] = {}
    found: dict[int, Difference] = {}
    for i, e in enumerate(entries):
        if e["status"] == "absent":
            key: Any = [e["name"], "absent"]
        else:
            key = [e["name"], e.get("device"), e["precision"]]
        try:
            text = _canonical(key).decode()
        except (TypeError, ValueError, RecursionError):
            continue
        if text in seen:
            found[i] = _differ(
                f"models_used[{i}]",
                f"a second entry of {e['name']}",
                f"models_used[{seen[text]}] only",
                "but dp_models records each (name, device, precision) once:",
                _FIX_STAMP,
            )
        else:
            seen[text] = i
    return found


def check_stamps(
    stamps: Mapping[str, Any],
    catalog: Catalog,
    *,
    base: str | os.PathLike[str] | None = None,
) -> StampReport:
    """Recompute every checked field of ``stamps`` from its entries, the catalog and the
    lock, and report each difference naming its field; then the same for each input it
    records (``inputs_used``), down the whole chain.

    Top level: ``model_signature`` and ``weights_digest`` must be what
    :func:`combined_signature` / :func:`combined_weights_digest` give for ``models_used``
    (and ``inputs_used``) as written. Each entry: see :data:`CHECKED_FIELDS`
    (``ABSENT_FIELDS`` for an absent one); :data:`INFORMATIONAL_FIELDS` are reported in
    ``info`` and never fail. A stamp with no entries and no inputs is ok only with both
    top-level digests :data:`EMPTY_DIGEST` (what ``stamp(meta, [])`` writes). Each input:
    its recorded stamps are checked the same way, and a recorded file must still have its
    recorded sha256 (looked for at its path, else by name in ``base``, the directory of the
    artifact that recorded it; one found nowhere is reported, not failed:
    :class:`LinkCheck`). A stamp that records its catalog (``catalog_used``) is told from
    one made against another catalog or lock (``report.catalog``, :class:`CatalogCheck`:
    said, never failed on). Raises :class:`ProvenanceError` (``.key`` names the field) for
    a malformed stamp: a missing key, a wrong type, an entry or artifact that is not an
    object, a ``catalog_used`` not of its shape, inputs nested deeper than
    :data:`MAX_LINEAGE_DEPTH`."""
    return _check_chain(stamps, catalog, None if base is None else Path(base), "", 0)


def check_artifact(path: str | os.PathLike[str], catalog: Catalog) -> StampReport:
    """``dp-models verify-artifact FILE``: :func:`check_stamps` of the stamps
    :func:`read_stamps` reads from ``path``, input files looked for beside it too."""
    p = Path(os.path.abspath(path))
    return check_stamps(read_stamps(p), catalog, base=p.parent)


_FIX_INPUT = (
    "the input was rewritten after this artifact was computed from it: compute this "
    "artifact again from the input as it is now (run it again), or restore the input"
)


def _check_chain(
    stamps: Mapping[str, Any], catalog: Catalog, base: Path | None, where: str, depth: int
) -> StampReport:
    """:func:`check_stamps` of the stamps at ``where`` in the chain (``""`` the artifact's
    own, ``"inputs_used[0]."`` its first input's): fields and errors named from the top."""
    try:
        report = _check_own(stamps, catalog)
    except ProvenanceError as exc:
        if not where:
            raise
        key = None if exc.key is None else f"{where}{exc.key}"
        raise ProvenanceError(f"{where}{exc}", key=key) from exc
    if where:
        report.differences = [_under(where, d) for d in report.differences]
        for check in report.models:
            check.differences = [_under(where, d) for d in check.differences]
    links = stamps.get(INPUTS_KEY) or []
    if links and depth >= MAX_LINEAGE_DEPTH:
        raise ProvenanceError(
            f"{where}{INPUTS_KEY}: inputs nested deeper than {MAX_LINEAGE_DEPTH} links; "
            "dp_models writes no such chain (a stamp that was edited, or not written by "
            "dp_models)",
            key=f"{where}{INPUTS_KEY}",
        )
    for i, link in enumerate(links):
        at = f"{where}{INPUTS_KEY}[{i}]"
        linked = _check_file(link, at, i, base)
        found = None if linked.found is None else Path(linked.found).parent
        linked.report = _check_chain(link, catalog, found or base, f"{at}.", depth + 1)
        report.inputs.append(linked)
    return report


def _under(where: str, d: Difference) -> Difference:
    """``d`` named from the top of the chain: ``inputs_used[0].models_used[1].version``."""
    return replace(d, field=f"{where}{d.field}", message=f"{where}{d.message}")


def _check_file(link: Mapping[str, Any], at: str, index: int, base: Path | None) -> LinkCheck:
    """The file of one link against its recorded sha256 (``report`` left empty)."""
    path, recorded = link["path"], link["sha256"]
    empty = StampReport([], [], link["model_signature"], link["weights_digest"])
    if path is None:
        note = "stamps handed in as read, no file recorded: only its stamps are checked"
        return LinkCheck(at, index, None, "unrecorded", empty, note=note)
    candidates = [Path(path)]
    name = candidates[0].name
    if base is not None and name not in ("", ".", "..") and base / name != candidates[0]:
        candidates.append(base / name)
    for candidate in candidates:
        if not os.path.lexists(candidate):
            continue
        beside = "" if candidate == candidates[0] else f"found beside the artifact: {candidate}"
        try:
            actual = sha256_file(candidate)
        except (OSError, ValueError) as exc:  # NotRegularFileError is an OSError
            unread = f"but {candidate} cannot be read ({exc}):"
            diff = _differ(f"{at}.sha256", recorded, None, unread, _FIX_INPUT)
            return LinkCheck(at, index, path, "unreadable", empty, [diff], str(candidate), beside)
        if actual == recorded:
            return LinkCheck(at, index, path, "unchanged", empty, [], str(candidate), beside)
        diff = _differ(
            f"{at}.sha256",
            recorded,
            actual,
            f"the file {candidate} now has",
            _FIX_INPUT,
            _what_changed(candidate, link),
        )
        note = "the input file changed since this artifact was computed from it"
        return LinkCheck(at, index, path, "changed", empty, [diff], str(candidate), note)
    note = (
        f"{path} is not there (nor beside the artifact): its digest is not checked, the "
        "stamps it recorded are"
    )
    return LinkCheck(at, index, path, "missing", empty, note=note)


def _what_changed(path: Path, link: Mapping[str, Any]) -> str:
    """What the stamps of an input file that changed say now, against those recorded."""
    try:
        now = read_stamps(path)
    except DPModelsError:
        return "it carries no readable dp_models stamps now"
    if all(_same(now.get(k), link.get(k)) for k in (*STAMP_KEYS, INPUTS_KEY)):
        return "its stamps are the same: its data changed"
    try:
        recorded = {e["name"]: e.get("model_signature") for e in link["models_used"]}
        current = {e["name"]: e.get("model_signature") for e in now["models_used"]}
    except (TypeError, KeyError):
        return "its stamps changed"
    names = sorted(n for n in recorded.keys() | current.keys() if recorded.get(n) != current.get(n))
    if names:
        return f"its stamps changed: other models ({', '.join(names)})"
    return "its stamps changed: other inputs"


def _check_own(stamps: Mapping[str, Any], catalog: Catalog) -> StampReport:
    """The artifact's own stamps (not its inputs' stamps) against the catalog and lock."""
    if not isinstance(stamps, Mapping):
        raise _malformed(
            "stamps", "an object with models_used, model_signature and weights_digest", stamps
        )
    for key in STAMP_KEYS:
        if key not in stamps:
            raise ProvenanceError(
                f"{key} is missing: the stamps were not written by ModelManager.stamp", key=key
            )
    entries = stamps["models_used"]
    if not isinstance(entries, list):
        raise _malformed("models_used", "a list of entries", entries)
    for key in ("model_signature", "weights_digest"):
        if not isinstance(stamps[key], str):
            raise _malformed(key, "a string (a sha256)", stamps[key])
    for i, entry in enumerate(entries):
        _validate_entry(entry, f"models_used[{i}]")
    links = stamps.get(INPUTS_KEY, [])
    if not isinstance(links, list):
        raise _malformed(INPUTS_KEY, "a list of inputs", links)
    for i, link in enumerate(links):
        _validate_link(link, f"{INPUTS_KEY}[{i}]")
    used = None
    if CATALOG_KEY in stamps:
        used = CatalogCheck(_catalog_used(stamps[CATALOG_KEY]), CatalogIdentity.of(catalog))

    top: list[Difference] = []
    source = "its models_used entries and inputs give" if links else "its models_used entries give"
    for key, recompute in (
        ("model_signature", combined_signature),
        ("weights_digest", combined_weights_digest),
    ):
        expected = recompute(entries, links)
        if stamps[key] != expected:
            top.append(_differ(key, stamps[key], expected, source, _FIX_STAMP))
    if not entries and not links and top:
        top.insert(
            0,
            _differ(
                "models_used",
                [],
                "entries",
                "but its model_signature and weights_digest are not those of no model "
                f"({EMPTY_DIGEST[:16]}...), so the entries were removed; expected",
                _FIX_STAMP,
            ),
        )

    present = _present(entries)
    duplicates = _duplicates(entries)
    models: list[ModelCheck] = []
    for i, entry in enumerate(entries):
        if entry["status"] == "absent":
            check = _check_absent(i, entry, catalog)
        else:
            check = _check_entry(i, entry, present, catalog)
        if i in duplicates:
            check.differences.append(duplicates[i])
            if check.status in ("unchanged", "changed"):
                check.status, check.note = "edited", "a duplicate entry"
        models.append(check)
    return StampReport(
        models, top, stamps["model_signature"], stamps["weights_digest"], catalog=used
    )
