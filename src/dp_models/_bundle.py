"""Bundles for air-gapped sites (``dp-models bundle create`` / ``import``): the verified
files of some specs (and what they ``require``) in one tar, for a site no mirror reaches.

A bundle is an uncompressed tar. Its first member, :data:`MANIFEST`, is JSON: the
dp_models version and, for each artifact, its spec and lock entry (kind, sha256, size, and
a directory's manifest). Then each file under its artifact path (a directory artifact's
files under ``<artifact path>/<file>``), nothing else.

:func:`bundle_create` plans like :func:`~dp_models._pull.pull` (every artifact pinned, each
directory with its manifest in the lock), hashes every file while it streams into the tar
and refuses one that is not the pinned bytes
(:class:`~dp_models._errors.BundleMismatchError`); the tar is written to a temporary file
beside ``-o`` and renamed only when complete (:func:`~dp_models._io.atomic_write`).

:func:`bundle_import` never trusts the tar: the manifest must list exactly the artifacts and
pins the catalog and lock give for its specs (else ``BundleMismatchError``); member names
are only looked up in that manifest, never used as paths; only regular-file members, each
listed once, of the listed size, are read. Every file streams into a staging directory
inside the root (same file system), hashed as it goes, and is kept only when its size and
sha256 are the pinned ones. Only when the whole bundle checks is each artifact renamed into
place (a directory whole). Anything else (a link, device or FIFO member, an unsafe name, a
duplicate or unlisted member, a flipped byte, a truncated archive) raises
:class:`~dp_models._errors.BundleTamperedError`, the staging directory is removed and the
root is as it was. Artifacts that already verify in the root are skipped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from ._catalog import Catalog
from ._digest import DigestCache, Hasher
from ._errors import BundleError, BundleMismatchError, BundleTamperedError, JsonRejectedError
from ._io import atomic_write, fsync_directory, open_regular
from ._json import load_json
from ._paths import resolve_artifact_path
from ._pull import (
    _place,
    _plan,
    _Planned,
    _select,
    _settings_and_catalog,
    _verifies,
    make_writable_root,
)
from ._settings import Settings
from ._transfer import CHUNK_SIZE
from ._version import __version__

__all__ = ["MANIFEST", "BundleReport", "bundle_create", "bundle_import"]

#: The bundle's first member.
MANIFEST = "dp-models-bundle.json"
BUNDLE_FORMAT = 1
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_STAGE_PREFIX = ".dp-models-bundle."


@dataclass
class BundleReport:
    """What a bundle create or import did: the bundle, the root, and per artifact its
    spec, path, kind, sha256, size and status (``bundled``, ``imported``, ``present``)."""

    bundle: Path
    root: Path
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(a["size"] for a in self.artifacts if a["status"] != "present")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "bundle": str(self.bundle),
            "root": str(self.root),
            "bytes": self.bytes,
            "artifacts": self.artifacts,
        }


def _members(item: _Planned) -> list[tuple[str, str, int | None]]:
    """(member name, sha256, size) of each file of a planned artifact."""
    path = item.artifact.path
    return [(f"{path}/{rel}" if rel else path, sha, size) for rel, sha, size in item.files]


def _entry(item: _Planned, size: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "spec": item.spec,
        "kind": item.artifact.kind,
        "sha256": item.pin.sha256,
        "size": size,
    }
    if item.artifact.kind == "dir":
        entry["files"] = {rel: {"sha256": sha, "size": sz} for rel, sha, sz in item.files}
    return entry


# -- create --------------------------------------------------------------------------------


class _HashingReader:
    """Reads a file descriptor for tarfile, hashing what it hands out."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data


def bundle_create(
    names: Iterable[str] | None = None,
    *,
    output: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    users: str | None = None,
    all: bool = False,
    settings: Settings | None = None,
) -> BundleReport:
    """Write the bundle ``output`` (a tar) of ``names`` (and what they require; or the specs
    ``users`` names, or ``all``) from the verified files under ``root`` (module docs)."""
    settings, cat = _settings_and_catalog(root, catalog, lock, settings)
    base = settings.require_root()
    planned = _plan(cat, _select(cat, names, users, all))
    out = Path(output).expanduser()
    report = BundleReport(out, base)
    # sizes first: the manifest is the first member (a file pinned without a size: its own)
    sources: list[tuple[_Planned, list[tuple[str, str, int | None]], Path]] = []
    manifest: dict[str, Any] = {}
    for item in planned:
        dest = resolve_artifact_path(base, item.artifact.path, spec=item.spec)
        members = _members(item)
        if item.artifact.kind == "file" and members[0][2] is None:
            try:
                members = [(members[0][0], members[0][1], os.stat(dest).st_size)]
            except OSError:
                raise _missing(item.artifact.path, base) from None
            item.files = [("", members[0][1], members[0][2])]
        size = sum(s or 0 for _, _, s in members)
        manifest[item.artifact.path] = _entry(item, size)
        sources.append((item, members, dest))
        report.artifacts.append(
            {
                "spec": item.spec,
                "path": item.artifact.path,
                "kind": item.artifact.kind,
                "sha256": item.pin.sha256,
                "size": size,
                "status": "bundled",
            }
        )
    head = json.dumps(
        {"format": BUNDLE_FORMAT, "dp_models": __version__, "artifacts": manifest},
        indent=1,
        sort_keys=True,
    ).encode()

    def write(f: BinaryIO) -> None:
        with tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(head), 0o644
            tar.addfile(info, _BytesReader(head))
            for item, members, dest in sources:
                for name, sha256, size in members:
                    inner = (
                        name[len(item.artifact.path) + 1 :] if name != item.artifact.path else ""
                    )
                    path = dest / inner if inner else dest
                    _add(tar, name, path, sha256, size, base)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write, mode=0o644)
    return report


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        chunk, self.at = self.data[self.at : end], min(end, len(self.data))
        return chunk


def _missing(path: str, root: Path) -> BundleMismatchError:
    return BundleMismatchError(
        f"{path} is not in {root} as the lock pins it; a bundle is made from a verified "
        "root (`dp-models doctor` ok, or `dp-models pull` first). Nothing was written.",
        paths=[path],
    )


def _add(
    tar: tarfile.TarFile, name: str, path: Path, sha256: str, size: int | None, root: Path
) -> None:
    try:
        fd = open_regular(path)
    except OSError:
        raise _missing(name, root) from None
    with os.fdopen(fd, "rb") as f:
        actual = os.fstat(f.fileno()).st_size
        if size is not None and actual != size:
            raise BundleMismatchError(
                f"{name} in {root} has {actual} bytes, the lock pins {size}; nothing was written",
                paths=[name],
            )
        info = tarfile.TarInfo(name)
        info.size, info.mode = actual, 0o644
        reader = _HashingReader(f)
        tar.addfile(info, reader)
        if reader.count != actual or reader.hash.hexdigest() != sha256:
            raise BundleMismatchError(
                f"{name} in {root} has sha256 {reader.hash.hexdigest()}, the lock pins "
                f"{sha256}: the root holds other bytes. Nothing was written.",
                paths=[name],
            )


# -- import --------------------------------------------------------------------------------


def _read_manifest(tar: tarfile.TarFile, bundle: Path) -> dict[str, Any]:
    try:
        first = tar.next()
    except tarfile.TarError as exc:
        raise BundleTamperedError(f"{bundle} is not a readable tar ({exc})") from None
    if first is None or first.name != MANIFEST or not first.isreg():
        raise BundleTamperedError(
            f"{bundle}: the first member must be the regular file {MANIFEST}, not "
            f"{None if first is None else first.name!r}",
            member=None if first is None else first.name,
        )
    if first.size > _MAX_MANIFEST_BYTES:
        raise BundleTamperedError(f"{bundle}: {MANIFEST} is too large", member=MANIFEST)
    f = tar.extractfile(first)
    assert f is not None
    try:
        raw = f.read()
        if len(raw) != first.size:
            raise tarfile.ReadError("unexpected end of data")
        data = load_json(raw)
    except (tarfile.TarError, OSError, JsonRejectedError) as exc:
        raise BundleTamperedError(
            f"{bundle}: {MANIFEST} unreadable ({exc})", member=MANIFEST
        ) from None
    if (
        not isinstance(data, dict)
        or data.get("format") != BUNDLE_FORMAT
        or not isinstance(data.get("artifacts"), dict)
    ):
        raise BundleTamperedError(
            f"{bundle}: {MANIFEST} is not a format-{BUNDLE_FORMAT} bundle manifest", member=MANIFEST
        )
    artifacts: dict[str, Any] = data["artifacts"]
    return artifacts


def _expected(
    cat: Catalog, listed: dict[str, Any], bundle: Path
) -> tuple[list[_Planned], dict[str, tuple[_Planned, str, str, int]]]:
    """The catalog's plan for the bundle's specs, checked against its manifest; and each
    member name -> (artifact, path inside it, sha256, size)."""
    names = []
    for entry in listed.values():
        spec = entry.get("spec") if isinstance(entry, dict) else None
        if not isinstance(spec, str) or spec not in cat:
            raise BundleMismatchError(
                f"{bundle} holds artifacts of the spec {spec!r}, which the catalog "
                f"{cat.lock.path.parent} does not have; it was made for another catalog",
                paths=[str(p) for p in listed],
            )
        names.append(spec)
    planned = _plan(cat, _select(cat, names, None, False)) if names else []
    wrong: list[str] = []
    members: dict[str, tuple[_Planned, str, str, int]] = {}
    for item in planned:
        entry = listed.get(item.artifact.path)
        ok = (
            isinstance(entry, dict)
            and entry.get("kind") == item.artifact.kind
            and entry.get("sha256") == item.pin.sha256
        )
        if ok and item.artifact.kind == "dir":
            want = {rel: {"sha256": sha, "size": sz} for rel, sha, sz in item.files}
            ok = entry.get("files") == want  # type: ignore[union-attr]
        if ok and item.artifact.kind == "file":
            size = entry.get("size")  # type: ignore[union-attr]
            ok = isinstance(size, int) and size >= 0 and item.size in (None, size)
            if ok:
                item.files = [("", item.pin.sha256, size)]
                item.size = size
        if not ok:
            wrong.append(item.artifact.path)
            continue
        for rel, sha, sz in item.files:
            name = f"{item.artifact.path}/{rel}" if rel else item.artifact.path
            assert sz is not None
            members[name] = (item, rel, sha, sz)
    extra = sorted(set(listed) - {i.artifact.path for i in planned})
    if wrong or extra:
        raise BundleMismatchError(
            f"{bundle} was made for other pins than the lock {cat.lock.path}: "
            + ", ".join(wrong + extra)
            + " differ. Import it with the catalog and lock it was made with, or make a "
            "bundle for this lock. Nothing was written.",
            paths=wrong + extra,
        )
    return planned, members


def _copy(src: IO[bytes], f: BinaryIO, *, name: str, sha256: str, size: int, bundle: Path) -> None:
    digest, got = hashlib.sha256(), 0
    try:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            f.write(chunk)
            got += len(chunk)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleTamperedError(
            f"{bundle} is truncated or corrupt inside {name} ({exc}); nothing was imported",
            member=name,
        ) from None
    if got != size:
        raise BundleTamperedError(
            f"{bundle} is truncated: {name} has {got} of its {size} bytes; nothing was imported",
            member=name,
        )
    if digest.hexdigest() != sha256:
        raise BundleTamperedError(
            f"{bundle}: {name} has sha256 {digest.hexdigest()}, the lock pins {sha256}: the "
            "bundle was altered. Nothing was imported.",
            member=name,
        )


def bundle_import(
    bundle: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
) -> BundleReport:
    """Take the bundle ``bundle`` into ``root`` (created when missing), every file checked
    against the catalog's pins before anything is visible (module docs)."""
    make_writable_root(root)
    settings, cat = _settings_and_catalog(root, catalog, lock, settings)
    base = settings.require_root()
    path = Path(bundle).expanduser()
    report = BundleReport(path, base)
    try:
        fd = open_regular(path)
    except OSError as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc}") from None
    hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
    with os.fdopen(fd, "rb") as raw:
        try:
            tar = tarfile.open(fileobj=raw, mode="r|")
        except tarfile.TarError as exc:
            raise BundleTamperedError(f"{path} is not a readable tar ({exc})") from None
        with tar:
            listed = _read_manifest(tar, path)
            planned, members = _expected(cat, listed, path)
            present = {i.artifact.path for i in planned if _verifies(base, i, hasher)}
            stage = Path(tempfile.mkdtemp(dir=base, prefix=_STAGE_PREFIX, suffix=".part"))
            try:
                _extract(tar, path, members, present, stage)
                for item in planned:
                    status = "present" if item.artifact.path in present else "imported"
                    report.artifacts.append(
                        {
                            "spec": item.spec,
                            "path": item.artifact.path,
                            "kind": item.artifact.kind,
                            "sha256": item.pin.sha256,
                            "size": sum(s or 0 for _, _, s in item.files),
                            "status": status,
                        }
                    )
                    if status == "imported":
                        _install(base, stage, item)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    return report


def _extract(
    tar: tarfile.TarFile,
    bundle: Path,
    members: dict[str, tuple[_Planned, str, str, int]],
    present: set[str],
    stage: Path,
) -> None:
    seen: set[str] = set()
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as exc:
            raise BundleTamperedError(
                f"{bundle} is truncated or corrupt ({exc}); nothing was imported"
            ) from None
        if member is None:
            break
        name = member.name
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise BundleTamperedError(
                f"{bundle}: the member {name!r} has an unsafe name; nothing was imported",
                member=name,
            )
        if not member.isreg():
            raise BundleTamperedError(
                f"{bundle}: the member {name!r} is not a regular file (a link, directory, "
                "device or FIFO); nothing was imported",
                member=name,
            )
        if name in seen:
            raise BundleTamperedError(
                f"{bundle}: the member {name!r} appears twice; nothing was imported", member=name
            )
        seen.add(name)
        found = members.get(name)
        if found is None:
            raise BundleTamperedError(
                f"{bundle}: the member {name!r} is not in its manifest; nothing was imported",
                member=name,
            )
        item, rel, sha256, size = found
        if member.size != size:
            raise BundleTamperedError(
                f"{bundle}: the member {name!r} has {member.size} bytes, its manifest and the "
                f"lock {size}; nothing was imported",
                member=name,
            )
        if item.artifact.path in present:
            continue  # tarfile skips its data
        src = tar.extractfile(member)
        assert src is not None
        # the staging name comes from the lock's artifact path and manifest, never the tar
        target = stage / item.artifact.path / rel if rel else stage / item.artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)

        atomic_write(
            target,
            functools.partial(_copy, src, name=name, sha256=sha256, size=size, bundle=bundle),
            mode=0o644,
        )
    missing = sorted(set(members) - seen)
    if missing:
        raise BundleTamperedError(
            f"{bundle} is truncated or incomplete: {len(missing)} listed file(s) missing "
            f"({', '.join(missing[:3])}); nothing was imported",
            member=missing[0],
        )


def _install(root: Path, stage: Path, item: _Planned) -> None:
    dest = resolve_artifact_path(root, item.artifact.path, spec=item.spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = stage / item.artifact.path
    if item.artifact.kind == "file":
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise BundleError(
                f"{dest} is a directory where the spec wants a file; remove it, then import again",
                path=item.artifact.path,
            )
        # staged by atomic_write (flushed to disk, verified); rename over a wrong file is
        # atomic on POSIX, so a reader sees the old file or the new one
        os.rename(staged, dest)
        fsync_directory(dest.parent)
        return
    for directory, _, _ in os.walk(staged):
        os.chmod(directory, 0o755)
    _place(staged, dest)
