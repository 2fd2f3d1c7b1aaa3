"""Writing and checking the lock from a provisioned root (``dp-models lock [--check]``).

The lock pins what the specs do not: every artifact without a ``sha256`` in its spec.
``plan_lock`` hashes the root: artifacts pinned by their spec are verified (a mismatch
is an error and nothing is written), the others get the digest and size found in the
root; each directory artifact's entry records its manifest (its files' digests and
sizes), also for a directory its spec pins, for ``dp-models pull``. An unpinned artifact
absent from the root keeps the pin it had, so a lock can be refreshed from a root that
holds part of the catalog; entries that no spec needs any more are dropped.
``check_lock`` writes nothing and lists every disagreement between catalog, lock and
root, for CI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ._catalog import Catalog
from ._errors import ArtifactError, LockError
from ._lock import Lock, LockEntry, ManifestFile
from ._verify import ArtifactReport, Verifier

__all__ = ["LockPlan", "check_lock", "lock_entry", "plan_lock", "write_lock"]


@dataclass
class LockPlan:
    """The lock ``dp-models lock`` would write, how it differs from the one on disk, and
    the artifacts that stop it from being written."""

    lock: Lock
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept_absent: list[str] = field(default_factory=list)
    unpinned_absent: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    errors: list[ArtifactError] = field(default_factory=list)


def plan_lock(catalog: Catalog, root_verifier: Verifier) -> LockPlan:
    """Hash the root and work out the new lock; artifact problems land in ``plan.errors``."""
    old = catalog.lock.artifacts
    # Verify against spec pins only: the lock is what is being recomputed.
    bare = Catalog(catalog, catalog.files, catalog.directory, Lock(catalog.lock.path))
    verifier = Verifier(
        bare, root_verifier.roots, root_verifier.hasher, hf_cache=root_verifier.hf_cache
    )
    reports = verifier.check(list(catalog.values()), hash_unpinned=True)
    plan = LockPlan(catalog.lock)
    entries: dict[str, LockEntry] = {}
    seen: set[str] = set()
    for r in reports:
        rel = r.artifact.path
        if rel in seen:
            continue
        seen.add(rel)
        spec_pinned = bare.pin(r.artifact) is not None  # by this spec or another one
        absent = r.status == "missing" and not os.path.lexists(r.path)
        if r.status == "unpinned" and r.sha256 is not None and r.size is not None:
            entry = _with_origin(lock_entry(r), old.get(rel))
            entries[rel] = entry
            if rel not in old:
                plan.added.append(rel)
            elif old[rel] != entry:
                plan.changed.append(rel)
        elif absent and not spec_pinned:
            if rel in old:
                entries[rel] = old[rel]
                plan.kept_absent.append(rel)
            else:
                plan.unpinned_absent.append(rel)
        elif spec_pinned and r.status == "ok" and r.artifact.kind == "dir":
            # pinned by its spec; the lock keeps its manifest
            entries[rel] = _with_origin(lock_entry(r), old.get(rel))
        elif spec_pinned and absent and rel in old and old[rel].files is not None:
            entries[rel] = old[rel]
        elif spec_pinned and (r.status == "ok" or absent):
            pass  # pinned by its spec: nothing for the lock
        elif r.error is not None:
            plan.errors.append(r.error)
    plan.dropped = sorted(set(old) - set(entries))
    plan.lock = Lock(catalog.lock.path, entries, exists=catalog.lock.exists)
    return plan


def _with_origin(entry: LockEntry, old: LockEntry | None) -> LockEntry:
    """``entry``, keeping where the old entry says it came from while the digest is the
    same (``dp-models pull --pin`` recorded it, or ``dp-models export onnx`` its lineage):
    a file of other bytes has none of it."""
    if old is None or old.sha256 != entry.sha256:
        return entry
    return replace(entry, source=old.source, revision=old.revision, derived=old.derived)


def lock_entry(r: ArtifactReport) -> LockEntry:
    """The lock entry for what the root holds: a directory with its manifest (an installed
    distribution has none: its RECORD, whose digest is pinned, lists its files)."""
    assert r.sha256 is not None and r.size is not None
    files = None
    if r.artifact.kind == "dir" and r.artifact.installed is None:
        files = {rel: ManifestFile(digest, size) for rel, digest, size in r.manifest}
    return LockEntry(r.artifact.kind, r.sha256, r.size, files)


def write_lock(catalog: Catalog, verifier: Verifier) -> LockPlan:
    """Plan the lock and write it atomically. Raises :class:`LockError`, writing nothing,
    when an artifact in the root disagrees with its spec or cannot be read."""
    plan = plan_lock(catalog, verifier)
    if plan.errors:
        raise LockError(
            "not writing the lock: the root disagrees with the catalog:\n"
            + "\n".join(f"  - {e}" for e in plan.errors),
            path=catalog.lock.path,
        )
    plan.lock.write()
    return plan


def check_lock(catalog: Catalog, verifier: Verifier) -> list[str]:
    """Every disagreement between catalog, lock and root, as sentences; empty when in sync."""
    plan = plan_lock(catalog, verifier)
    problems = [str(e) for e in plan.errors]
    problems += [
        f"{p}: present in the root but not pinned in the lock; run `dp-models lock`"
        for p in plan.added
    ]
    problems += [
        f"{p}: the root's digest differs from the lock's; run `dp-models lock` if "
        "the new file is intended, else re-provision it"
        for p in plan.changed
    ]
    problems += [
        f"{p}: pinned in the lock but no spec needs a lock pin for it; run `dp-models lock`"
        for p in plan.dropped
    ]
    problems += [
        f"{p}: not pinned, and absent from {verifier.root}; provision it, then run `dp-models lock`"
        for p in plan.unpinned_absent
    ]
    return problems
