"""A Hugging Face hub cache written in the hub's own layout, for tests of ``huggingface``
artifacts (read offline from a cache, never downloaded).

>>> from dp_models.testing import make_hub_snapshot
>>> snapshot = make_hub_snapshot(                                  # doctest: +SKIP
...     tmp_path / "hub", "org/name", "0123456789abcdef0123456789abcdef01234567",
...     {"config.json": b"{}", "model.safetensors": Path("model.safetensors")},
... )
>>> monkeypatch.setenv("DP_MODELS_HF_CACHE", str(tmp_path / "hub"))  # doctest: +SKIP
>>> mm = ModelManager(models_root=empty_root, lock=lock)           # doctest: +SKIP

An artifact with ``huggingface: {repo: org/name, revision: 0123...4567, files: [...]}``
that no root holds is then read from that snapshot.

What :func:`make_hub_snapshot` writes is what ``huggingface_hub.snapshot_download`` leaves
behind (``scan_cache_dir`` and ``try_to_load_from_cache`` read it as their own)::

    <cache>/models--ORG--NAME/
        blobs/<sha256 of the file>                   the bytes, once per distinct content
        snapshots/<revision>/<file>                  relative links: ../../blobs/<sha256>
        snapshots/<revision>/sub/<file>              one more ../ per folder
        refs/main                                    the revision (no newline)

The hub names a blob by its git object id: the sha256 for LFS files (weights), the git
blob sha1 for small text files; here every blob is named by its sha256, which the hub's
readers accept (they follow the links, never recompute a name).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

__all__ = ["make_hub_snapshot"]

_CHUNK = 1 << 20


def _repo_folder(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


def _write_blob(blobs: Path, content: bytes | os.PathLike[str]) -> str:
    """Store ``content`` (bytes, or a file to copy) as a blob; return its sha256 (hex)."""
    blobs.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        digest = hashlib.sha256(content).hexdigest()
        if not (blobs / digest).exists():
            (blobs / digest).write_bytes(content)
        return digest
    h = hashlib.sha256()
    with open(content, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if not (blobs / digest).exists():
        tmp = blobs / f"{digest}.incomplete"  # the hub's own name for a partial blob
        shutil.copyfile(content, tmp)
        os.replace(tmp, blobs / digest)
    return digest


def make_hub_snapshot(
    cache_dir: str | os.PathLike[str],
    repo: str,
    revision: str,
    files: Mapping[str, bytes | os.PathLike[str]],
) -> Path:
    """Write ``files`` (name relative to the repository, ``/``-separated -> bytes, or a
    file whose bytes to copy) as the snapshot of ``repo`` at ``revision`` in the hub cache
    ``cache_dir``, in huggingface_hub's layout (see the module docs), and point
    ``refs/main`` at ``revision``. Returns the snapshot directory
    (``<cache_dir>/models--ORG--NAME/snapshots/<revision>``).

    Calling it again for another revision of the same repository adds that snapshot
    beside the first (blobs shared by content), and moves ``refs/main`` to it, as a later
    download of a newer commit does. A file name that would leave the snapshot is refused
    (ValueError)."""
    if "/" in revision or revision in ("", ".", ".."):
        raise ValueError(f"revision {revision!r} is not a folder name")
    repo_dir = Path(cache_dir) / _repo_folder(repo)
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
            raise ValueError(f"file name {name!r} is not a path inside the snapshot")
        digest = _write_blob(repo_dir / "blobs", content)
        link = snapshot.joinpath(*rel.parts)
        link.parent.mkdir(parents=True, exist_ok=True)
        # snapshots/<revision>/<parents...>/<file> -> ../../<one ../ per parent>blobs/<sha>
        target = Path(*[".."] * (len(rel.parts) + 1), "blobs", digest)
        if os.path.lexists(link):
            link.unlink()
        os.symlink(target, link)
    refs = repo_dir / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(revision, encoding="utf-8")
    return snapshot
