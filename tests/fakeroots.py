"""Helpers the loader tests share: a manager on a fake root, re-pinning it after a change,
editing a spec of its fake catalog copy (dp_models.testing.fake_models_root), a hostile
pickle, and the CUDA markers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dp_models import ModelManager
from dp_models.cli import main as dp_models_cli
from dp_models.testing import fake_catalog_dir


def manager(root: Path, tmp_path: Path, **kwargs: Any) -> ModelManager:
    """A manager on ``root`` and its fake catalog as they are now, with a private cache."""
    return ModelManager(
        models_root=root, catalog=fake_catalog_dir(root), cache_dir=tmp_path / "cache", **kwargs
    )


def repin(root: Path) -> None:
    """Pin the root's files as they are now (what an operator does with `dp-models lock`)."""
    args = ["lock", "--catalog", str(fake_catalog_dir(root)), "--root", str(root), "--no-cache"]
    assert dp_models_cli(args) == 0


def private_copy(base_root: Path, tmp_path: Path) -> Path:
    """A copy of a module's fake root that one test may change."""
    return Path(shutil.copytree(base_root, tmp_path / "root"))


def spec_file(root: Path, name: str) -> Path:
    """The file of spec ``name`` in the fake catalog of ``root``."""
    [path] = [p for p in fake_catalog_dir(root).rglob(f"{name}.yaml")]
    return path


def edit_spec(root: Path, name: str, *, replace_loader_args: bool = False, **fields: Any) -> None:
    """Change top-level fields of spec ``name`` in the fake catalog. ``loader_args`` are
    merged into the spec's (a value of ``...`` removes that arg), or replace them with
    ``replace_loader_args``."""
    path = spec_file(root, name)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "loader_args" in fields:
        given = fields.pop("loader_args")
        args = given if replace_loader_args else {**data.get("loader_args", {}), **given}
        data["loader_args"] = {k: v for k, v in args.items() if v is not ...}
    data.update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def set_loader_args(root: Path, name: str, **args: Any) -> None:
    """Merge ``args`` into the loader_args of spec ``name`` in the fake catalog."""
    edit_spec(root, name, loader_args=args)


class RunsCode:
    """A hostile pickle: unpickling it calls ``os.system`` to create ``marker``, so a test
    can tell that nothing in a refused checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


#: The CUDA paths need a GPU; the CPU-only refusals need a machine without one.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks a machine without CUDA"
)
