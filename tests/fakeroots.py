"""Helpers the loader tests share: a manager on a fake root, re-pinning it after a change,
editing a spec of its fake catalog copy (dp_models.testing.fake_models_root), the packaged
catalog with its spaCy pipelines as directories, a hostile pickle, and the CUDA markers."""

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
from dp_models._cli import main as dp_models_cli
from dp_models._errors import CatalogError, CatalogProblem
from dp_models.testing import fake_catalog_dir, packaged_catalog_dir


def manager(root: Path, tmp_path: Path, **kwargs: Any) -> ModelManager:
    """A manager on ``root`` and its fake catalog as they are now, with a private cache."""
    return ModelManager(
        models_root=root, catalog=fake_catalog_dir(root), cache_dir=tmp_path / "cache", **kwargs
    )


def catalog_problem(root: Path, tmp_path: Path, **kwargs: Any) -> CatalogProblem:
    """The one problem of the CatalogError that a manager on ``root`` raises."""
    with pytest.raises(CatalogError) as exc:
        manager(root, tmp_path, **kwargs)
    [problem] = exc.value.problems
    return problem


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


#: The fake CLIP embeds in 16 dimensions (the real one in 512).
FAKE_CLIP_DIM = 16


def clip_embeds_in(root: Path, dim: int = FAKE_CLIP_DIM) -> None:
    """Declare ``dim``-dimensional embeddings for the fake catalog's CLIP ViT-B/32 pair: the
    in-process spec's interface and its Triton twin's section, alike (the catalog holds a
    derived pair to one calling convention)."""
    embedding = [{"name": "embedding", "datatype": "FP32", "shape": [dim]}]
    for name, section in (("clip_vit_b32", "interface"), ("clip_vit_b32_triton", "triton")):
        data = yaml.safe_load(spec_file(root, name).read_text(encoding="utf-8"))
        data[section]["outputs"] = embedding
        edit_spec(root, name, **{section: data[section]})


#: The packaged spaCy specs name installed distributions; :func:`spacy_dir_catalog` gives
#: them these pipeline directories under the root instead (the data directory inside the
#: release wheel, which `dp-models pull --upstream` extracts), for the tests of the loader
#: on a directory and of pulling, pushing and bundling a directory artifact.
SPACY_DIRS = {
    "spacy_en_core_web_sm": "text/spacy/en_core_web_sm-3.8.0",
    "spacy_ru_core_news_sm": "text/spacy/ru_core_news_sm-3.8.0",
}


def spacy_dir_catalog(dest: Path) -> Path:
    """A copy of the packaged catalog at ``dest`` whose spaCy specs are pipeline
    directories under the root (:data:`SPACY_DIRS`), pulled from the folder inside their
    release wheel; returns ``dest``."""
    shutil.copytree(packaged_catalog_dir(), dest)
    for name, rel in SPACY_DIRS.items():
        [path] = dest.rglob(f"{name}.yaml")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        [art] = data["artifacts"]
        package = art.pop("installed").split("==")[0]
        art["path"] = rel
        art["source"] = {"url": art["source"], "member": f"{package}/{rel.rsplit('/', 1)[1]}"}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dest


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


def rewrite_zip(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite the members of the zip at ``path`` whose names end with a key of ``replace``,
    as a new file renamed over ``path`` (a file hard-linked from a shared root stays as
    it was)."""
    import zipfile

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            for suffix, new in replace.items():
                if item.filename.endswith(suffix):
                    data = new
            zout.writestr(item, data)
    os.replace(tmp, path)


def _unicode4(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


#: A protocol 4 pickle that sets ``collections.Counter.update = builtins.set`` through
#: pickle's BUILD step (``setattr`` on an allowed *class*) and returns the class. A type is
#: not bound as a method, so every ``counter.update(...)`` of the process would then do
#: nothing, the network guard's bookkeeping included.
REBINDS_COUNTER_UPDATE = (
    b"\x80\x04"
    + _unicode4("collections")
    + b"\x94"
    + _unicode4("Counter")
    + b"\x94\x93\x94N}"
    + _unicode4("update")
    + _unicode4("builtins")
    + _unicode4("set")
    + b"\x93s\x86b."
)


def save_writes_on_load(path: Path, marker: Path) -> None:
    """Save a :class:`WritesOnLoad` archive at ``path`` whose load would create ``marker``."""
    import warnings

    from .torchscript_payload import WritesOnLoad

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript
        torch.jit.save(torch.jit.script(WritesOnLoad(str(marker))), str(path))
    assert not marker.exists()


#: The CUDA paths need a GPU; the CPU-only refusals need a machine without one.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks a machine without CUDA"
)
