"""dp_models.testing: fake roots that the real frameworks load, and the pytest plugin."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import dp_models
from dp_models import Catalog, ModelManager
from dp_models._spec import Spec
from dp_models.loaders import LoadContext, Loader, NoArgs
from dp_models.testing import FakeWeightsError, fake_catalog_dir, fake_models_root, fakes

from .conftest import close_native

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


class Bare(Loader[NoArgs]):
    """A loader of its own, from no package: no fake maker is registered for it."""

    name = "bare_testing_tests"
    framework = "pytest"
    extra = "test"

    def load(self, ctx: LoadContext) -> bytes:
        return ctx.read_bytes()


def bare_catalog(tmp_path: Path) -> Path:
    catalog_dir = tmp_path / "catalog" / "visual"
    catalog_dir.mkdir(parents=True)
    (catalog_dir / "bare.yaml").write_text(
        'name: bare\nversion: "1"\nfamily: t\nrole: t\nusers: [t]\nruntime: inprocess\n'
        f"engine: python\nloader: {Bare.name}\nartifacts: [{{path: b.bin, format: pt}}]\n"
    )
    return tmp_path / "catalog"


def test_a_loader_without_fakes_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FakeWeightsError, match=r"no fake maker for loader 'bare_testing_tests'"):
        fake_models_root(tmp_path / "root", catalog=bare_catalog(tmp_path))


def make_bare(spec: Spec, root: Path) -> dict[str, Any] | None:
    for art in spec.artifacts:
        (root / art.path).write_bytes(b"fake bare weights")
    return None


def test_a_third_party_loader_ships_its_fakes_by_loader_name(tmp_path: Path) -> None:
    """What the dp_models.fakes entry-point group gives, passed directly: the fake maker is
    found by the loader's name; the catalog copy is validated with the manager's loaders."""
    loaders = {Bare.name: Bare}
    root = fake_models_root(
        tmp_path / "root",
        catalog=bare_catalog(tmp_path),
        fakes={Bare.name: make_bare},
        loaders=loaders,
    )
    mm = ModelManager(
        models_root=root, catalog=fake_catalog_dir(root), cache_dir=tmp_path / "c", loaders=loaders
    )
    assert mm.load("bare") == b"fake bare weights"


def test_fake_makers_from_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pymods = tmp_path / "pymods"
    dist = pymods / "bare_fakes-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bare-fakes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[dp_models.fakes]\n{Bare.name} = bare_fakes:make\n")
    (pymods / "bare_fakes.py").write_text(
        "def make(spec, root):\n"
        "    for art in spec.artifacts:\n"
        "        (root / art.path).write_bytes(b'from the entry point')\n"
    )
    monkeypatch.syspath_prepend(str(pymods))
    importlib.invalidate_caches()
    fresh = fakes.default_fakes().extended({})  # entry points are read when a name is asked
    assert Bare.name in fresh.names()
    root = fake_models_root(tmp_path / "root", catalog=bare_catalog(tmp_path), fakes=fresh)
    assert (root / "b.bin").read_bytes() == b"from the entry point"
    monkeypatch.delitem(sys.modules, "bare_fakes", raising=False)


def test_no_loader_imports_dp_models_testing() -> None:
    """Fakes live in dp_models.testing; production code (the loaders) never imports it."""
    import ast

    loaders_dir = Path(dp_models.__file__).parent / "loaders"
    for path in loaders_dir.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                assert "testing" not in target, f"{path.name} imports {target}"
            elif isinstance(node, ast.Import):
                assert not any("dp_models.testing" in a.name for a in node.names), path.name


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
    and fast. A spec of a pip-installed distribution (the spaCy pipelines) is not under the
    root, so it gets no fake: where it is not installed, its optional spec is absent."""
    from importlib import metadata

    from dp_models._guard import network_guard

    start = time.perf_counter()
    root = fake_models_root(tmp_path / "root")
    mm = manager(root, tmp_path)
    specs = [s for s in Catalog.load().values() if s.runtime == "inprocess"]
    installed = [s for s in specs if any(a.installed for a in s.artifacts)]
    assert installed and all(s.optional for s in installed)
    names = [s.name for s in specs if s not in installed]
    with network_guard(["every in-process spec"]):
        for name in names:
            model = mm.load(name, device="cpu")
            assert model is not None, name
            close_native(model)
        for spec in installed:
            (name, _), *_ = [a.requirement for a in spec.artifacts if a.requirement]
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                assert mm.get_optional(spec.name) is None, spec.name
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
    from dp_models._errors import NetworkBlockedError
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


PLUGIN_THIRD_PARTY_TEST = """
import tempfile
from pathlib import Path

import pytest

from dp_models.loaders import Loader, NoArgs

CATALOG = Path(tempfile.mkdtemp()) / "catalog"
(CATALOG / "visual").mkdir(parents=True)
(CATALOG / "visual" / "bare.yaml").write_text(
    'name: bare\\nversion: "1"\\nfamily: t\\nrole: t\\nusers: [t]\\nruntime: inprocess\\n'
    "engine: python\\nloader: plugin_bare\\nartifacts: [{path: b.bin, format: pt}]\\n"
)


class Bare(Loader[NoArgs]):
    name = "plugin_bare"
    framework = "pytest"
    extra = "test"

    def load(self, ctx):
        return ctx.read_bytes()


def make_bare(spec, root):
    (root / "b.bin").write_bytes(b"fake")


@pytest.mark.dp_models(
    catalog=CATALOG, fakes={"plugin_bare": make_bare}, loaders={"plugin_bare": Bare}
)
def test_marker(dp_models_manager):
    assert dp_models_manager.load("bare") == b"fake"


def test_factory(dp_models_fake_root_factory):
    root = dp_models_fake_root_factory(
        catalog=CATALOG, fakes={"plugin_bare": make_bare}, loaders={"plugin_bare": Bare}
    )
    assert (root / "b.bin").read_bytes() == b"fake"
"""


def test_the_plugin_takes_a_third_party_loader_and_its_fakes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_THIRD_PARTY_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_the_plugin_registers_its_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.no_network:*", "@pytest.mark.dp_models(*"])
