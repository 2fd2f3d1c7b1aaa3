"""dp_models.testing: fake roots that the real frameworks load, and the pytest plugin."""

from __future__ import annotations

import copy
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import dp_models
from dp_models import (
    ArtifactMissingError,
    Catalog,
    ConfigurationError,
    ModelManager,
    SpecNotFoundError,
    check_stamps,
)
from dp_models._provenance import model_signature
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


# -- a stand-in only on request ------------------------------------------------------------

EMONET_CLASS = "emotion_face.emonet:EmoNet"  # the packaged spec's class: not installed here
TINYNET = "dp_models.testing.nets:TinyNet"


def test_a_class_that_does_not_import_is_an_error_naming_the_import_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(FakeWeightsError) as exc:
        fake_models_root(tmp_path / "root", ["emonet_8"])
    message = str(exc.value)
    for words in (
        "spec 'emonet_8'",
        EMONET_CLASS,
        "ModuleNotFoundError: No module named 'emotion_face'",
        "make the class importable",
        "substitute=['emonet_8']",
    ):
        assert words.lower() in message.lower(), words
    assert isinstance(exc.value.__cause__, ModuleNotFoundError)
    assert not (tmp_path / "root" / "visual" / "emonet").exists()  # nothing stood in


def test_a_stand_in_on_request_is_logged_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dp_models.testing"):
        root = fake_models_root(tmp_path / "root", ["emonet_8"], substitute=["emonet_8"])
    [record] = [r for r in caplog.records if "stand-in" in r.getMessage()]
    assert record.levelno == logging.WARNING
    for words in ("'emonet_8'", TINYNET, EMONET_CLASS, "No module named 'emotion_face'"):
        assert words in record.getMessage(), words

    data = yaml.safe_load((fake_catalog_dir(root) / "visual" / "emonet_8.yaml").read_text())
    assert data["loader_args"]["class_path"] == TINYNET and data["loader_args"]["kwargs"] == {}
    substitute = {
        "replaces": EMONET_CLASS,
        "stand_in": TINYNET,
        "reason": "ModuleNotFoundError: No module named 'emotion_face'",
    }
    assert data["substitute"] == substitute

    mm = manager(root, tmp_path)
    model = mm.load("emonet_8")
    assert type(model).__name__ == "TinyNet" and not model.training
    [entry] = mm.models_used()
    assert entry["substitute"] == substitute
    # the stand-in never signs as the model it stands in for, with the same everything else
    handle = mm.get("emonet_8")
    plain = handle.spec.model_copy(update={"substitute": None})
    assert handle.model_signature != model_signature(
        plain, artifact_digests=handle.artifact_digests, precision=handle.precision
    )
    # verify-artifact takes the entry against the fake catalog, and sees an edit of it
    stamped = mm.stamp({"video_id": "v"})
    assert check_stamps(stamped, mm.catalog).ok
    edited = copy.deepcopy(stamped)
    edited["models_used"][0]["substitute"]["replaces"] = "other.module:Net"
    report = check_stamps(edited, mm.catalog)
    assert not report.ok
    assert any(d.field == "models_used[0].substitute" for d in report.all_differences)
    dropped = copy.deepcopy(stamped)
    del dropped["models_used"][0]["substitute"]
    assert not check_stamps(dropped, mm.catalog).ok


def test_substitute_true_allows_a_stand_in_for_every_spec(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", ["emonet_8"], substitute=True)
    assert Catalog.load(fake_catalog_dir(root))["emonet_8"].substitute is not None


def test_a_spec_that_builds_gets_no_stand_in_even_when_allowed(tmp_path: Path) -> None:
    root = fake_models_root(
        tmp_path / "root",
        ["tiny_color_classifier"],
        catalog=EXAMPLE_CATALOG,
        substitute=["tiny_color_classifier"],
    )
    assert Catalog.load(fake_catalog_dir(root))["tiny_color_classifier"].substitute is None
    assert (
        "substitute" not in manager(root, tmp_path).get("tiny_color_classifier").models_used_entry
    )


def test_substitute_and_absent_name_specs_of_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(SpecNotFoundError, match="emonet_9"):
        fake_models_root(tmp_path / "a", ["emonet_8"], substitute=["emonet_9"])
    with pytest.raises(SpecNotFoundError, match="resnet18_feature"):
        fake_models_root(tmp_path / "b", ["places365_resnet50"], absent=["resnet18_feature"])
    with pytest.raises(ConfigurationError, match=r"places365_resnet50 named both"):
        fake_models_root(tmp_path / "c", ["places365_resnet50"], absent=["places365_resnet50"])
    # one name is one name, not its letters
    root = fake_models_root(tmp_path / "d", "places365_categories", absent="resnet18_features")
    assert Catalog.load(fake_catalog_dir(root)).lock.artifacts.keys() == {
        "visual/places365/categories_places365.txt"
    }


# -- every spec in the fake catalog, the unnamed ones unprovisioned ------------------------


@pytest.fixture(scope="module")
def places_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("places") / "root", ["places365_resnet50"])


def test_the_fake_catalog_holds_every_spec_and_pins_the_provisioned_ones(
    places_root: Path,
) -> None:
    packaged, fake = Catalog.load(), Catalog.load(fake_catalog_dir(places_root))
    assert set(fake) == set(packaged)
    provisioned = ("places365_resnet50", "places365_categories")  # and what it requires
    assert set(fake.lock.artifacts) == {a.path for n in provisioned for a in fake[n].artifacts}
    assert all(a.sha256 is None for s in fake.values() for a in s.artifacts)
    assert not (places_root / fake["clip_vit_b32"].artifacts[0].path).exists()


def test_an_unnamed_spec_is_missing_and_an_unnamed_optional_one_absent(
    places_root: Path, tmp_path: Path
) -> None:
    mm = manager(places_root, tmp_path)
    assert mm.get_optional("resnet18_features") is None  # the SpecNotFoundError
    with pytest.raises(ArtifactMissingError, match="clip_vit_b32"):
        mm.get("clip_vit_b32")
    with pytest.raises(ArtifactMissingError):  # required: get_optional raises as get does
        mm.get_optional("clip_vit_b32")
    mm.get("places365_resnet50")
    assert [(e["name"], e["status"]) for e in mm.models_used()] == [
        ("resnet18_features", "absent"),
        ("places365_categories", "ok"),
        ("places365_resnet50", "ok"),
    ]


def test_absent_specs_are_in_the_catalog_but_never_provisioned(tmp_path: Path) -> None:
    root = fake_models_root(
        tmp_path / "root",
        ["places365_resnet50", "resnet18_features"],
        absent=["places365_categories", "resnet50_features"],
    )
    fake = Catalog.load(fake_catalog_dir(root))
    assert {"places365_categories", "resnet50_features"} <= set(fake)
    for name in ("places365_categories", "resnet50_features"):
        assert not any((root / a.path).exists() for a in fake[name].artifacts), name
    mm = manager(root, tmp_path)
    with pytest.raises(ArtifactMissingError, match="places365_categories"):
        mm.get("places365_resnet50")  # what it requires is not there
    assert mm.get_optional("resnet50_features") is None
    assert mm.get_optional("resnet18_features") is not None  # named: provisioned


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
    for dep in catalog[needs[0]].requires:
        assert {a.path for a in fake[dep].artifacts} <= set(fake.lock.artifacts), dep
    manager(root, tmp_path).get(needs[0])


def test_every_inprocess_spec_of_the_catalog_loads_from_a_fake_root_offline(
    tmp_path: Path,
) -> None:
    """The issue's promise: every in-process spec, real frameworks, fake weights, no network,
    and fast. A spec of a pip-installed distribution (the spaCy pipelines) is not under the
    root, so it gets no fake: where it is not installed, its optional spec is absent."""
    from importlib import metadata

    from dp_models._guard import network_guard

    start = time.perf_counter()
    root = fake_models_root(tmp_path / "root", substitute=["emonet_8"])  # the class is not here
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
import logging
import socket
import pytest

from dp_models import ArtifactMissingError, FakeWeightsError

@pytest.mark.dp_models(names=["places365_resnet50"])
def test_manager_fixture(dp_models_manager):
    model = dp_models_manager.load("places365_resnet50", device="cpu")
    assert not model.training
    assert dp_models_manager.get_optional("resnet18_features") is None  # not named: absent
    with pytest.raises(ArtifactMissingError):
        dp_models_manager.get("clip_vit_b32")
    assert [(e["name"], e["status"]) for e in dp_models_manager.models_used()] == [
        ("places365_categories", "ok"),
        ("places365_resnet50", "ok"),
        ("resnet18_features", "absent"),
    ]

@pytest.mark.dp_models(names=["emonet_8"])
def test_no_stand_in_unasked(dp_models_fake_root):
    pass  # the fixture fails: an error at setup

def test_no_stand_in_unasked_from_the_factory(dp_models_fake_root_factory):
    with pytest.raises(FakeWeightsError, match="No module named 'emotion_face'"):
        dp_models_fake_root_factory(["emonet_8"])

@pytest.mark.dp_models(names=["emonet_8"], substitute=["emonet_8"])
def test_stand_in_on_request(dp_models_manager, caplog):
    model = dp_models_manager.load("emonet_8")
    assert type(model).__name__ == "TinyNet"
    [entry] = dp_models_manager.models_used()
    assert entry["substitute"]["replaces"] == "emotion_face.emonet:EmoNet"
    [logged] = [r for r in caplog.get_records("setup") if "stand-in" in r.getMessage()]
    assert logged.levelno == logging.WARNING and "emonet_8" in logged.getMessage()

@pytest.mark.dp_models(names=["places365_resnet50"], absent=["places365_categories"])
def test_absent(dp_models_manager):
    with pytest.raises(ArtifactMissingError, match="places365_categories"):
        dp_models_manager.get("places365_resnet50")

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
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_no_stand_in_unasked*",
            "*FakeWeightsError: spec 'emonet_8': no fake of emotion_face.emonet:EmoNet*",
        ]
    )


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
