"""The homes an artifact can live in besides a MODELS_ROOT: a Hugging Face hub cache
snapshot, and an installed distribution.

Both only *locate* files here; :mod:`dp_models._verify` hashes them through the digest
cache and checks them against their pins exactly like files under a root:

- :func:`hub_snapshot`: the files an artifact's ``huggingface`` section selects from the
  snapshot of one commit in the hub cache (``models--ORG--NAME/snapshots/<revision>/``),
  found with huggingface_hub's own offline cache API (``try_to_load_from_cache``,
  ``scan_cache_dir``, ``filter_repo_objects``), never a download. Every file must resolve
  to a regular file inside the cache (snapshot entries are links into ``blobs/``).
- :func:`installed_distribution`: the files of an installed distribution
  (``en_core_web_sm==3.8.0``) from ``importlib.metadata``, each with the sha256 its wheel's
  ``RECORD`` gives; the artifact's digest is the sha256 of that RECORD, so the lock pins the
  RECORD and the RECORD pins every file.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._digest import directory_files
from ._errors import (
    ArtifactMissingError,
    ArtifactUnreadableError,
    DistributionVersionError,
    UnsafePathError,
)
from ._io import read_regular
from ._spec import Artifact, HubSnapshot

__all__ = [
    "HOMES",
    "Located",
    "hub_snapshot",
    "hub_snapshot_present",
    "installed_distribution",
    "pip_line",
]

#: Where an artifact can be found: a MODELS_ROOT, a hub cache snapshot, an installed package.
HOMES = ("root", "huggingface", "installed")


@dataclass
class Located:
    """Where one artifact was found outside the roots, and the files it is made of."""

    #: ``"huggingface"`` or ``"installed"`` (:data:`HOMES`).
    home: str
    #: The hub cache, or the installation's site directory.
    location: Path
    #: The artifact as a loader sees it: the snapshot directory (a file artifact: the
    #: snapshot file), or the installed pipeline's data directory.
    path: Path
    #: (name relative to the artifact, regular file to hash) for every file; an installed
    #: artifact's names are its RECORD's (relative to the site directory), RECORD included.
    files: list[tuple[str, Path]]
    #: installed: the sha256 (hex) and size RECORD gives each file, by name.
    record: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: installed: the name of the RECORD file among ``files``.
    record_name: str | None = None
    #: installed: the sha256 of the RECORD bytes that ``record`` was parsed from.
    record_sha256: str | None = None
    #: installed: the distribution's name and installed version.
    distribution: tuple[str, str] | None = None


# -- Hugging Face hub cache ---------------------------------------------------------------


def _repo_folder(snapshot: HubSnapshot) -> str:
    """The cache folder of a model repository (huggingface_hub's naming)."""
    return "models--" + snapshot.repo.replace("/", "--")


def _revision_dir(cache: Path, snapshot: HubSnapshot) -> Path:
    return cache / _repo_folder(snapshot) / "snapshots" / snapshot.revision


def hub_snapshot_present(cache: Path | None, art: Artifact) -> bool:
    """Whether the cache holds anything of the artifact's snapshot (its revision's folder),
    even a broken one: what decides "absent" for an optional spec."""
    assert art.huggingface is not None
    return cache is not None and os.path.lexists(_revision_dir(cache, art.huggingface))


def _other_revisions(cache: Path, snapshot: HubSnapshot, name: str | None) -> list[str]:
    """The revisions the cache holds for the repository (those holding ``name`` when given)."""
    snapshots = cache / _repo_folder(snapshot) / "snapshots"
    try:
        entries = sorted(os.listdir(snapshots))
    except OSError:
        return []
    found = []
    for rev in entries:
        if rev == snapshot.revision:
            continue
        if name is None or os.path.lexists(snapshots / rev / name):
            found.append(rev)
    return found


def hub_snapshot(
    cache: Path | None, art: Artifact, *, spec: str, roots: Sequence[Path] = ()
) -> Located:
    """The files ``art.huggingface`` selects in ``cache``, each a regular file inside it, or
    a typed error: :class:`ArtifactMissingError` (no cache, no snapshot of that revision, a
    file missing from it: the message names the revisions that are cached instead),
    :class:`UnsafePathError` (an entry that resolves outside the cache),
    :class:`ArtifactUnreadableError` (a cache entry huggingface_hub cannot list, or one that
    redirects the commit). ``roots``, the roots searched first, are named by the messages
    of a missing artifact."""
    snapshot = art.huggingface
    assert snapshot is not None
    where = f"{snapshot.repo}@{snapshot.revision}"
    nowhere = f"spec {spec!r}: artifact {art.path!r} is in no root" + (
        f" ({', '.join(str(r) for r in roots)})" if roots else ""
    )
    if cache is None or not cache.is_dir():
        raise ArtifactMissingError(
            f"{nowhere}, and there is no Hugging Face hub cache at {cache} to read the "
            f"snapshot {where} from. Set $DP_MODELS_HF_CACHE (or $HF_HUB_CACHE) to the cache "
            "that holds it, or provision the artifact under a root (`dp-models pull`).",
            spec=spec,
            path=art.path,
        )
    real_cache = Path(os.path.realpath(cache))
    revision_dir = _revision_dir(cache, snapshot)
    if not os.path.isdir(revision_dir):
        others = _other_revisions(cache, snapshot, None)
        held = (
            f"; the cache holds revision(s) {', '.join(others)} of it, not the pinned one"
            if others
            else ""
        )
        raise ArtifactMissingError(
            f"{nowhere}, and the hub cache {cache} has no snapshot {where}{held}. Fetch "
            "that revision into the cache where a network is allowed "
            f"(huggingface_hub.snapshot_download({snapshot.repo!r}, revision="
            f"{snapshot.revision!r})), or provision the artifact under a root.",
            spec=spec,
            path=revision_dir,
        )
    from huggingface_hub import try_to_load_from_cache

    names = snapshot.files if snapshot.files is not None else _matching(cache, snapshot, spec)
    files: list[tuple[str, Path]] = []
    for name in names:
        entry = revision_dir / name
        found = try_to_load_from_cache(
            snapshot.repo, name, cache_dir=cache, revision=snapshot.revision
        )
        if not isinstance(found, str):
            others = _other_revisions(cache, snapshot, name)
            mixed = (
                f" (revision(s) {', '.join(others)} of the cache hold it: a snapshot of one "
                "revision is never completed from another)"
                if others
                else ""
            )
            # not None: the hub's marker that the file does not exist at that commit
            recorded = " (the cache records it as absent: .no_exist)" if found is not None else ""
            raise ArtifactMissingError(
                f"{nowhere}, and its file {name!r} is not in the cached snapshot {where} "
                f"under {cache}{recorded}{mixed}. Fetch that revision's file into the cache, "
                "or provision the artifact under a root.",
                spec=spec,
                path=entry,
            )
        if Path(found) != entry:
            # try_to_load_from_cache follows refs/<revision> when such a file exists: a ref
            # named like the commit would serve another snapshot's file as this one's
            raise ArtifactUnreadableError(
                f"spec {spec!r}: artifact {art.path!r}: the hub cache {cache} answers for file "
                f"{name!r} of {where} with {found}, outside that revision's snapshot (a "
                f"refs/{snapshot.revision} file redirects the commit). A commit is never a ref: "
                "remove that file from the cache entry's refs/.",
                spec=spec,
                path=entry,
            )
        files.append((name, _inside_cache(real_cache, entry, spec=spec, art=art, name=name)))
    path = revision_dir / names[0] if art.kind == "file" else revision_dir
    return Located("huggingface", cache, path, sorted(files))


def _matching(cache: Path, snapshot: HubSnapshot, spec: str) -> list[str]:
    """The snapshot's files that ``snapshot.patterns`` select (huggingface_hub's scan and
    pattern filter)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.utils._paths import filter_repo_objects

    info = scan_cache_dir(cache)
    for repo in info.repos:
        if repo.repo_type != "model" or repo.repo_id != snapshot.repo:
            continue
        for revision in repo.revisions:
            if revision.commit_hash != snapshot.revision:
                continue
            base = revision.snapshot_path
            names = [f.file_path.relative_to(base).as_posix() for f in revision.files]
            chosen = sorted(filter_repo_objects(names, allow_patterns=snapshot.patterns))
            if chosen:
                return chosen
            raise ArtifactMissingError(
                f"spec {spec!r}: the cached snapshot {snapshot.repo}@{snapshot.revision} under "
                f"{cache} holds no file matching {snapshot.patterns}.",
                spec=spec,
                path=base,
            )
    problems = [str(w) for w in info.warnings if _repo_folder(snapshot) in str(w)]
    raise ArtifactUnreadableError(
        f"spec {spec!r}: the hub cache {cache} cannot list the snapshot "
        f"{snapshot.repo}@{snapshot.revision}"
        + (f": {'; '.join(problems)}" if problems else "")
        + ". Repair the cache entry (or fetch the revision again).",
        spec=spec,
        path=_revision_dir(cache, snapshot),
    )


def _inside_cache(real_cache: Path, entry: Path, *, spec: str, art: Artifact, name: str) -> Path:
    """The regular file a snapshot entry resolves to, which must stay inside the cache."""
    real = Path(os.path.realpath(entry))
    if not real.is_relative_to(real_cache):
        raise UnsafePathError(
            f"spec {spec!r}: artifact {art.path!r}: snapshot file {name!r} ({entry}) resolves "
            f"to {real}, outside the hub cache {real_cache}. A snapshot entry links to a blob "
            "of the same cache: remove the entry and fetch the file again.",
            spec=spec,
            path=entry,
        )
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise ArtifactMissingError(
            f"spec {spec!r}: artifact {art.path!r}: snapshot file {name!r} ({entry}) points to "
            f"a blob that cannot be read ({exc.strerror or exc}). Fetch the file again.",
            spec=spec,
            path=entry,
        ) from None
    if not stat.S_ISREG(mode):
        raise ArtifactUnreadableError(
            f"spec {spec!r}: artifact {art.path!r}: snapshot file {name!r} ({entry}) is not a "
            "regular file.",
            spec=spec,
            path=entry,
        )
    return real


# -- installed distributions --------------------------------------------------------------

_UNHASHED = (".dist-info/RECORD", ".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")
#: A RECORD larger than this is refused unread (a pipeline's lists a few hundred files).
_MAX_RECORD_BYTES = 16 * 1024 * 1024


def pip_line(art: Artifact, *, reinstall: bool = False) -> str:
    """The pip command that installs ``art.installed``: the wheel its ``source`` names
    (spaCy pipelines are GitHub release wheels, not on PyPI), else ``name==version`` from
    the package index.

    >>> pip_line(Artifact(installed="en_core_web_sm==3.8.0", kind="dir", format="spacy_pipeline"))
    'pip install en_core_web_sm==3.8.0'
    """
    assert art.installed is not None
    target = art.source if isinstance(art.source, str) else art.installed
    return f"pip install {'--force-reinstall ' if reinstall else ''}{target}"


def _whence(art: Artifact) -> str:
    if isinstance(art.source, str):
        return "the release wheel the spec names, or that wheel from the site's mirror"
    return "from the site's package index, or a wheel file"


def installed_distribution(art: Artifact, *, spec: str) -> Located:
    """The installed distribution ``art.installed`` names: every file its RECORD lists with
    the sha256 RECORD gives it, or a typed error (:class:`ArtifactMissingError` when it is
    not installed, :class:`DistributionVersionError` for another version,
    :class:`UnsafePathError` for a RECORD entry that leaves the installation,
    :class:`ArtifactUnreadableError` for a RECORD that cannot be used)."""
    requirement = art.requirement
    assert requirement is not None
    name, version = requirement
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise ArtifactMissingError(
            f"spec {spec!r}: the distribution {name}=={version} is not installed in this "
            "environment (the artifact is that pip-installed package, never a directory under "
            f"a root). Install it: `{pip_line(art)}` ({_whence(art)}; loads never "
            "download).",
            spec=spec,
            path=art.path,
        ) from None
    if dist.version != version:
        raise DistributionVersionError(
            f"spec {spec!r}: the distribution {name} is installed at version {dist.version}, "
            f"but the spec needs {version}. Install the version the spec names: "
            f"`{pip_line(art)}` (or change the spec deliberately).",
            spec=spec,
            path=art.path,
            installed=dist.version,
            required=version,
        )
    site = Path(os.path.realpath(str(dist.locate_file(""))))
    entries = dist.files

    def unreadable(why: str) -> ArtifactUnreadableError:
        return ArtifactUnreadableError(
            f"spec {spec!r}: the installed distribution {name}=={version} ({site}) {why}. "
            f"Reinstall it: `{pip_line(art, reinstall=True)}`.",
            spec=spec,
            path=site,
        )

    record_name = next(
        (e.as_posix() for e in entries or () if e.as_posix().endswith(".dist-info/RECORD")), None
    )
    if record_name is None:
        raise unreadable("has no RECORD listing its files")
    record_path = _inside_site(site, record_name, spec=spec, art=art)
    try:  # read once: these bytes are parsed here, and their digest is what the pin holds
        raw = read_regular(record_path, max_bytes=_MAX_RECORD_BYTES)
    except (OSError, ValueError) as exc:
        raise unreadable(f"has a RECORD that cannot be read ({exc})") from exc
    files: list[tuple[str, Path]] = [(record_name, record_path)]
    record: dict[str, tuple[str, int | None]] = {}
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise unreadable(f"has a RECORD that is not UTF-8 CSV ({exc})") from exc
    for row in rows:
        if not row:
            continue
        rel, hashed, size = [*row, "", ""][:3]
        if rel.endswith(_UNHASHED):
            continue
        if not hashed:
            if rel.endswith(".pyc"):
                continue  # compiled by the installer or at import; no pipeline data
            raise unreadable(f"lists {rel!r} in its RECORD without a hash")
        mode, _, value = hashed.partition("=")
        if mode != "sha256":
            raise unreadable(f"hashes {rel!r} with {mode}, not sha256")
        if ".." in rel.split("/"):
            continue  # a script or data file installed beside the site directory: no model
        try:
            digest = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError:
            raise unreadable(f"gives {rel!r} a malformed hash") from None
        if len(digest) != 32 or (size and not size.isdigit()):
            raise unreadable(f"gives {rel!r} a malformed hash or size")
        record[rel] = (digest.hex(), int(size) if size else None)
        files.append((rel, _inside_site(site, rel, spec=spec, art=art)))
    package = name.replace("-", "_").replace(".", "_")
    data = site / package / f"{package}-{version}"  # spaCy's layout for pipeline packages
    path = data if data.is_dir() else site / package
    if not path.is_dir():
        raise unreadable(f"has no package directory {path}")
    listed = set(record)
    prefix = path.relative_to(site).as_posix() + "/"
    for rel, _ in directory_files(path):
        full = prefix + rel
        if full not in listed and not full.endswith(".pyc"):
            raise unreadable(
                f"holds {full!r}, a file its RECORD does not list (added after the install, "
                "so it was never verified)"
            )
    return Located(
        "installed",
        site,
        path,
        sorted(files),
        record=record,
        record_name=record_name,
        record_sha256=hashlib.sha256(raw).hexdigest(),
        distribution=(dist.metadata["Name"] or name, dist.version),
    )


def _inside_site(site: Path, rel: str, *, spec: str, art: Artifact) -> Path:
    real = Path(os.path.realpath(site / rel))
    if not real.is_relative_to(site):
        raise UnsafePathError(
            f"spec {spec!r}: installed artifact {art.installed}: RECORD entry {rel!r} resolves "
            f"to {real}, outside the installation {site}. Reinstall the distribution.",
            spec=spec,
            path=site / rel,
        )
    return real
