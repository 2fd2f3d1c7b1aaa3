"""dp_models.testing: fake roots that the real frameworks load, and the pytest plugin."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from dp_models import Catalog, ModelManager
from dp_models.testing import FakeWeightsError, fake_catalog_dir, fake_models_root

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CATALOG = REPO / "examples" / "spec_catalog"
pytest_plugins = ["pytester"]


def manager(root: Path, tmp_path: Path) -> ModelManager:
    return ModelManager(models_root=root, catalog=fake_catalog_dir(root), cache_dir=tmp_path / "c")


def test_fake_root_for_named_specs(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", ["tiny_color_classifier"], catalog=EXAMPLE_CATALOG)
    assert (root / "demo/tiny_color_classifier/model.onnx").stat().st_size < 10_000
    fake = Catalog.load(fake_catalog_dir(root))
    assert list(fake) == ["tiny_color_classifier"]
    assert all(a.sha256 is None for a in fake["tiny_color_classifier"].artifacts)  # lock pins
    assert set(fake.lock.artifacts) == {a.path for a in fake["tiny_color_classifier"].artifacts}
    session = manager(root, tmp_path).load("tiny_color_classifier")
    assert [i.name for i in session.get_inputs()] == ["x"]


def test_a_class_that_does_not_import_gets_a_stand_in(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", ["emonet_8"])
    data = yaml.safe_load((fake_catalog_dir(root) / "visual" / "emonet_8.yaml").read_text())
    assert data["loader_args"]["class_path"] == "dp_models.testing.nets:TinyNet"
    model = manager(root, tmp_path).load("emonet_8")
    assert type(model).__name__ == "TinyNet" and not model.training


def test_a_loader_without_fakes_is_a_clear_error(tmp_path: Path) -> None:
    from dp_models.loaders import register_loader

    class Bare:
        name = "bare_testing_tests"
        framework = "pytest"
        extra = "test"

        def cuda_available(self) -> bool:
            return False

        def load(self, ctx: object) -> object:
            return None

    register_loader(Bare.name, Bare, replace=True)
    catalog_dir = tmp_path / "catalog" / "visual"
    catalog_dir.mkdir(parents=True)
    (catalog_dir / "bare.yaml").write_text(
        'name: bare\nversion: "1"\nfamily: t\nrole: t\nusers: [t]\nruntime: inprocess\n'
        f"engine: python\nloader: {Bare.name}\nartifacts: [{{path: b.bin, format: pt}}]\n"
    )
    with pytest.raises(FakeWeightsError, match=r"cannot make fake weights \(it has no make_fake\)"):
        fake_models_root(tmp_path / "root", catalog=tmp_path / "catalog")


def test_fake_root_includes_what_specs_require(tmp_path: Path) -> None:
    catalog = Catalog.load()
    needs = [s.name for s in catalog.values() if s.requires and s.runtime == "inprocess"]
    assert needs, "the packaged catalog has an in-process spec that requires another"
    root = fake_models_root(tmp_path / "root", needs[:1])
    fake = Catalog.load(fake_catalog_dir(root))
    assert set(catalog[needs[0]].requires) <= set(fake)


def test_every_inprocess_spec_of_the_catalog_loads_from_a_fake_root_offline(
    tmp_path: Path,
) -> None:
    """The issue's promise: every in-process spec, real frameworks, fake weights, no network,
    and fast."""
    from dp_models.guard import network_guard

    start = time.perf_counter()
    root = fake_models_root(tmp_path / "root")
    mm = manager(root, tmp_path)
    names = [s.name for s in Catalog.load().values() if s.runtime == "inprocess"]
    with network_guard(["every in-process spec"]):
        for name in names:
            assert mm.load(name, device="cpu") is not None, name
    elapsed = time.perf_counter() - start
    assert {e["name"] for e in mm.models_used()} >= set(names)
    print(f"made and loaded {len(names)} fake models in {elapsed:.1f} s")


PLUGIN_TEST = """
import socket
import pytest

@pytest.mark.dp_models(names=["emonet_8"])
def test_manager_fixture(dp_models_manager):
    model = dp_models_manager.load("emonet_8")
    assert not model.training
    assert [e["name"] for e in dp_models_manager.models_used()] == ["emonet_8"]

@pytest.mark.no_network
def test_blocked(listener_port):
    from dp_models.errors import NetworkBlockedError
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("127.0.0.1", listener_port), timeout=5)

def test_not_blocked_without_marker(listener_port):
    socket.create_connection(("127.0.0.1", listener_port), timeout=5).close()

@pytest.fixture
def listener_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()
"""


def test_the_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)


def test_the_plugin_registers_its_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.no_network:*", "@pytest.mark.dp_models(*"])
