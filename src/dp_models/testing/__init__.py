"""Testing support: MODELS_ROOTs with small fake weights that the real frameworks load.

>>> from dp_models.testing import fake_models_root, fake_catalog_dir
>>> root = fake_models_root(tmp_path, names=["places365_resnet50"])  # doctest: +SKIP
>>> mm = ModelManager(models_root=root, catalog=fake_catalog_dir(root))  # doctest: +SKIP

For each loader, a fake maker (:mod:`dp_models.testing.fakes`, one module per framework;
a third-party loader ships its own through the ``dp_models.fakes`` entry-point group)
writes artifacts its framework accepts: tiny configurations where the real models are
hundreds of MB. Because fake weights cannot have
the digests upstream publishes, the fake root carries its own copy of the catalog (under
``<root>/.dp_models/catalog``) with the specs' digests removed and a lock that pins the
fake files: the manager verifies them exactly as it verifies real ones. Where a loader
needs a smaller architecture than the spec names, its fake also rewrites the spec's
``loader_args`` in that copy (documented per loader in docs/loaders.md), validated
against the loader's ``args_model`` like every catalog. The copy holds every spec of the
catalog, the ones not provisioned without files, as a real site's catalog does.

Nothing stands in for a model silently: where a maker cannot build what a spec names (a
class that does not import in the test process), that is a
:class:`~dp_models._errors.FakeWeightsError` unless the test asked for a stand-in
(``substitute=``); a stand-in is logged and recorded in the spec's ``models_used`` entry.

The pytest plugin (``dp_models.testing.plugin``, registered under ``pytest11``) offers
fixtures around this; see docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .._catalog import Catalog
from .._digest import Hasher
from .._errors import ConfigurationError, FakeWeightsError
from .._lock import Lock, LockEntry
from .._offline import OFFLINE_FLAGS, cache_dirs, enforce_offline
from .._pinning import lock_entry
from .._registry import LoaderRegistry, Registry, loader_set
from .._settings import LOCK_FILENAME, packaged_catalog_dir
from .._spec import Spec
from .._verify import Verifier
from .fakes import FakeMaker, fake_set, register_fake, substituting
from .hub import make_hub_snapshot
from .provenance import assert_stamps_verify

__all__ = [
    "OFFLINE_FLAGS",
    "FakeMaker",
    "FakeWeightsError",
    "assert_stamps_verify",
    "cache_dirs",
    "fake_catalog_dir",
    "fake_models_root",
    "make_hub_snapshot",
    "packaged_catalog_dir",
    "register_fake",
    "run_cli",
]

FAKE_DIR = ".dp_models"


def run_cli(argv: list[str]) -> int:
    """The ``dp-models`` command line run in this process (``argv`` without the program
    name); returns its exit status. For tests that pin or check a fake root."""
    from .._cli import main

    return main(argv)


def fake_catalog_dir(root: str | os.PathLike[str]) -> Path:
    """The catalog copy that :func:`fake_models_root` writes inside ``root``."""
    return Path(root) / FAKE_DIR / "catalog"


def _provisioned(catalog: Catalog, names: Iterable[str], absent: Collection[str]) -> list[Spec]:
    """``names`` and what they require, dependencies first, each once; an ``absent`` spec
    is left out, and so is what only it requires."""
    seen: dict[str, Spec] = {}

    def visit(name: str) -> None:
        if name in seen or name in absent:
            return
        spec = catalog[name]
        for dep in spec.requires:
            visit(dep)
        seen.setdefault(name, spec)

    for name in names:
        visit(name)
    return list(seen.values())


def _known(catalog: Catalog, names: str | Iterable[str]) -> list[str]:
    """``names`` (one name, or several), each checked to be a spec of ``catalog`` (a
    SpecNotFoundError, with close names, for one that is not)."""
    return [catalog[name].name for name in ([names] if isinstance(names, str) else names)]


def fake_models_root(
    path: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    fakes: Registry[FakeMaker] | Mapping[str, FakeMaker] | None = None,
    loaders: LoaderRegistry | Mapping[str, object] | None = None,
    substitute: bool | Iterable[str] = False,
    absent: Iterable[str] = (),
) -> Path:
    """Make ``path`` a MODELS_ROOT with fake weights for ``names`` (every spec of the
    catalog when None) and what they require, plus a matching catalog copy and lock in
    :func:`fake_catalog_dir`. Returns the root. Sets the offline flags (enforce_offline).

    The copy holds every spec of the catalog: one that is not provisioned is there without
    files or pins, so ``get`` raises :class:`~dp_models._errors.ArtifactMissingError` for
    it and ``get_optional`` of an optional one returns None, as on a real root. Triton
    specs get no artifacts. ``absent`` names specs to leave unprovisioned even where
    ``names`` (or what they require) would pull them in: the root of a site without them.

    ``substitute`` (a spec name or names, or True for all) lets a fake maker build a stand-in where
    it cannot build what the spec names (a ``torch_state_dict`` class that does not import
    here): the stand-in is logged as a warning and recorded in the copy's spec, so its
    ``models_used`` entry says ``substitute``. Without it that is a
    :class:`~dp_models._errors.FakeWeightsError` naming the import error.

    ``fakes`` adds fake makers (loader name -> ``make(spec, root)``) to the registered ones
    (:mod:`dp_models.testing.fakes`); ``loaders`` adds loaders (name -> loader) to the ones
    the catalog and its copy are validated with, as ``ModelManager(loaders=...)`` does."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    registry = loader_set(loaders)
    makers = fake_set(fakes)
    if isinstance(catalog, Catalog):
        source = catalog
    else:
        source = Catalog.load(catalog, loaders=registry)
    left_out = set(_known(source, absent))
    wanted = _known(source, names) if names is not None else list(source)
    both = sorted(left_out.intersection(wanted)) if names is not None else []
    if both:
        raise ConfigurationError(
            f"fake_models_root: {', '.join(both)} named both to provision (names) and to "
            "leave absent (absent); name each spec in one of them"
        )
    allowed = substitute if isinstance(substitute, bool) else frozenset(_known(source, substitute))
    enforce_offline(root)  # making fakes never needs the network either
    specs = [s for s in _provisioned(source, wanted, left_out) if s.runtime == "inprocess"]
    overrides: dict[str, Mapping[str, Any]] = {}
    with substituting(allowed) as stand_ins:
        for spec in specs:
            assert spec.loader is not None
            make = makers.find(spec.loader)
            if make is None:
                raise FakeWeightsError(
                    f"spec {spec.name!r}: no fake maker for loader {spec.loader!r} (makers "
                    f"exist for {', '.join(makers.names())}); register one "
                    "(fake_models_root(fakes=...), register_fake, or the dp_models.fakes "
                    "entry-point group: docs/testing.md), or provision small real artifacts "
                    "for this test instead"
                )
            args = make(spec, root)
            if args:
                overrides[spec.name] = args
    out = fake_catalog_dir(root)
    substitutes = {s.spec: s.as_field() for s in stand_ins.made}
    _write_catalog(source, overrides, substitutes, out)
    fake = Catalog.load(out, check_lock=False, loaders=registry)
    # pin the fake artifacts the way `dp-models lock` pins provisioned ones (the specs not
    # provisioned, Triton specs among them, have no local artifacts and stay unpinned); an
    # installed distribution is no fake and stays unpinned: its optional spec is absent
    # when it is not installed
    local = [fake[s.name] for s in specs]
    reports = Verifier(fake, root, Hasher()).check(local, hash_unpinned=True)
    artifacts: dict[str, LockEntry] = {}
    for r in reports:
        if r.artifact.installed is not None:
            continue
        if r.sha256 is None or r.size is None:
            raise FakeWeightsError(
                f"spec {r.spec!r}: the fake artifact {r.artifact.path!r} was not written "
                f"({r.status}): {r.error}"
            )
        artifacts[r.artifact.path] = lock_entry(r)  # a directory with its manifest
    Lock(out / LOCK_FILENAME, artifacts).write()
    return root


def _write_catalog(
    source: Catalog,
    overrides: Mapping[str, Mapping[str, Any]],
    substitutes: Mapping[str, Mapping[str, str]],
    out: Path,
) -> None:
    """Every spec of ``source`` under ``out``, without digests (the fake lock pins what is
    provisioned), with a maker's loader_args overrides and the stand-ins made."""
    for name in source:
        data = yaml.safe_load(source.files[name].read_text(encoding="utf-8"))
        for art in data.get("artifacts", []):
            art.pop("sha256", None)
            art.pop("size", None)
        if name in overrides:
            data["loader_args"] = {**data.get("loader_args", {}), **overrides[name]}
        if name in substitutes:
            data["substitute"] = dict(substitutes[name])
        rel = source.files[name].relative_to(source.directory)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "# A fake-weights copy written by dp_models.testing.fake_models_root.\n"
            + yaml.safe_dump(data, sort_keys=False),
            encoding="utf-8",
        )
