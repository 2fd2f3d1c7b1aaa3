"""The dp_models pytest plugin (entry point ``pytest11``), active wherever dp_models is
installed. It imports no framework until a fixture is used.

Fixtures
    ``dp_models_fake_root``: a MODELS_ROOT with fake weights (every in-process spec, or the
    names given by ``@pytest.mark.dp_models(names=[...])``), made once per test; its fake
    catalog holds every spec, the others unprovisioned.
    ``dp_models_manager``: a :class:`~dp_models.ModelManager` bound to that root and its
    fake catalog, with a per-test digest cache (and the marker's ``loaders``).
    ``dp_models_fake_root_factory``: ``make(names, catalog=None, fakes=None, loaders=None,
    substitute=False, absent=()) -> Path`` for several roots
    (:func:`~dp_models.testing.fake_models_root`).
    ``dp_models_triton_server`` (session): a real :class:`~dp_models.testing.triton.TritonServer`
    on loopback serving a stand-in for every Triton spec of the catalog.
    ``dp_models_triton_catalog`` (session): the catalog copy whose Triton specs expect the
    digests those stand-ins serve.

Markers
    ``@pytest.mark.no_network``: the test runs inside the network guard; any connection or
    DNS lookup raises :class:`~dp_models._errors.NetworkBlockedError`.
    ``@pytest.mark.dp_models(names=None, catalog=None, fakes=None, loaders=None,
    substitute=False, absent=())``: what ``dp_models_fake_root`` provisions; ``substitute``
    (spec names, or True) allows a logged, recorded stand-in where a spec's model cannot be
    built here, ``absent`` leaves specs unprovisioned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._manager import ModelManager
    from .triton import TritonServer

__all__ = [
    "dp_models_fake_root",
    "dp_models_fake_root_factory",
    "dp_models_manager",
    "dp_models_triton_catalog",
    "dp_models_triton_server",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "no_network: run the test inside the dp_models network guard"
    )
    config.addinivalue_line(
        "markers",
        "dp_models(names=None, catalog=None, fakes=None, loaders=None, substitute=False, "
        "absent=()): what dp_models_fake_root provisions (fakes: loader name -> fake maker; "
        "loaders: name -> loader, also given to dp_models_manager; substitute: spec names, or "
        "True, that may get a logged stand-in where their model cannot be built here; absent: "
        "specs left unprovisioned)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    if item.get_closest_marker("no_network") is None:
        return (yield)
    from .._guard import network_guard

    with network_guard([f"test {item.nodeid}"]):
        return (yield)


@pytest.fixture
def dp_models_fake_root_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Path]:
    """``make(names=None, catalog=None, fakes=None, loaders=None, substitute=False,
    absent=()) -> Path``: a new fake MODELS_ROOT per call."""
    from . import fake_models_root

    def make(
        names: Iterable[str] | None = None,
        catalog: Any = None,
        fakes: Any = None,
        loaders: Any = None,
        substitute: bool | Iterable[str] = False,
        absent: Iterable[str] = (),
    ) -> Path:
        return fake_models_root(
            tmp_path_factory.mktemp("models_root"),
            names,
            catalog=catalog,
            fakes=fakes,
            loaders=loaders,
            substitute=substitute,
            absent=absent,
        )

    return make


@pytest.fixture
def dp_models_fake_root(
    request: pytest.FixtureRequest, dp_models_fake_root_factory: Callable[..., Path]
) -> Path:
    return dp_models_fake_root_factory(**_marker_options(request))


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("dp_models")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def dp_models_manager(
    request: pytest.FixtureRequest,
    dp_models_fake_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelManager]:
    from .._manager import ModelManager
    from . import fake_catalog_dir

    manager = ModelManager(
        models_root=dp_models_fake_root,
        catalog=fake_catalog_dir(dp_models_fake_root),
        cache_dir=tmp_path_factory.mktemp("digest_cache"),
        loaders=_marker_options(request).get("loaders"),
    )
    yield manager
    manager.close()


@pytest.fixture(scope="session")
def _dp_models_triton_standins(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, str | None]]:
    from .._catalog import Catalog
    from .triton import write_standin_repository

    repo = tmp_path_factory.mktemp("triton_standins")
    return repo, write_standin_repository(Catalog.load(), repo)


@pytest.fixture(scope="session")
def dp_models_triton_server(
    _dp_models_triton_standins: tuple[Path, dict[str, str | None]],
) -> Iterator[TritonServer]:
    """A real Triton server on loopback (``scripts/triton_env.sh`` installs it; an error, never
    a skip, when it is missing) serving a stand-in for every Triton spec of the catalog."""
    from .triton import TritonServer

    server = TritonServer().start(_dp_models_triton_standins[0])
    yield server
    server.kill()


@pytest.fixture(scope="session")
def dp_models_triton_catalog(
    _dp_models_triton_standins: tuple[Path, dict[str, str | None]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A copy of the catalog whose Triton specs expect the digests the stand-ins serve."""
    from .._catalog import Catalog
    from .triton import write_standin_catalog

    out = tmp_path_factory.mktemp("triton_catalog")
    return write_standin_catalog(Catalog.load(), out, _dp_models_triton_standins[1])
