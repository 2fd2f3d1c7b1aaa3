"""Artifact paths that can never leave MODELS_ROOT.

Spec paths are checked twice: by the schema (relative, no ``..``, no absolute path) and
here, against the file system, where a symlink anywhere on the way could still lead out
of the root. Every file of a directory artifact is checked the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import UnsafePathError
from ._spec import check_relative_path

__all__ = ["ensure_inside", "resolve_artifact_path"]


def ensure_inside(root: Path, path: Path, *, spec: str, shown: str) -> Path:
    """``path`` with every symlink resolved, or :class:`UnsafePathError` when that leaves ``root``.

    ``root`` must be absolute and already resolved (see ``resolve_models_root``).
    ``shown`` is the path as the spec names it, for the message.
    """
    real = Path(os.path.realpath(path))
    if real != root and not real.is_relative_to(root):
        raise UnsafePathError(
            f"spec {spec!r}: artifact {shown!r} resolves to {real}, outside MODELS_ROOT "
            f"{root}. Artifacts must live inside the root: replace the symlink by the file "
            "itself (or a link to a place inside the root).",
            spec=spec,
            path=path,
        )
    return real


def resolve_artifact_path(root: Path, relative: str, *, spec: str) -> Path:
    """``root / relative`` after checking that it is a safe relative path that stays inside
    ``root`` once symlinks are resolved. The returned path keeps the spec's spelling (it is
    not the resolved target), so messages show what the spec says."""
    problem = check_relative_path(relative)
    if problem:
        raise UnsafePathError(
            f"spec {spec!r}: artifact path {relative!r} {problem}.", spec=spec, path=relative
        )
    path = root / relative
    ensure_inside(root, path, spec=spec, shown=relative)
    return path
