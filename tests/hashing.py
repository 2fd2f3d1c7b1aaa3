"""Counting what dp_models._digest hashes (shared by the digest and verify tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dp_models import _digest as digest


def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the path of every file dp_models._digest hashes from now on (it hashes open
    descriptors; the path is the descriptor's, as /proc tells it)."""
    calls: list[Path] = []
    original = digest.sha256_fd

    def counting(fd: int, progress: object = None, **kwargs: object) -> str:
        calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        return original(fd, progress, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(digest, "sha256_fd", counting)
    return calls
