"""The ``labels`` loader (dp_models.loaders.labels): label lists as specs of their own,
shared through ``requires`` by the in-process models (``model.categories``) and the Triton
clients (``client.labels()``), read strictly, their counts checked against the models."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dp_models import ModelManager
from dp_models._catalog import Catalog
from dp_models._errors import ConfigurationError, LabelsError, LoaderArgsError, LoaderError
from dp_models._spec import Spec
from dp_models.loaders.labels import Labels, LabelsArgs, parse_labels
from dp_models.testing import fake_catalog_dir, fake_models_root
from dp_models.testing.fakes.labels import make_labels
from dp_models.triton.client import TritonClient

from .fakeroots import catalog_problem, edit_spec, manager, repin, spec_file

PLACES = "places365_resnet50"
PLACES_LABELS = "places365_categories"
PLACES_FILE = "visual/places365/categories_places365.txt"
KINETICS_LABELS = "kinetics400_categories"
KINETICS_FILE = "visual/slowfast/kinetics_classnames.json"
TRITON = [f"places365_resnet50_{n}_triton" for n in (224, 336, 448)]
#: The head of PyTorchVideo's kinetics_classnames.json, as it is written upstream: names
#: with spaces in quotes, numbered by their position in the checkpoint's head.
KINETICS_HEAD = {'"air drumming"': 1, "abseiling": 0, '"answering questions"': 2}


def labels_spec(fmt: str = "txt", **args: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "test_labels",
            "version": "1",
            "family": "test",
            "role": "labels",
            "users": ["tests"],
            "runtime": "inprocess",
            "engine": "python",
            "loader": "labels",
            "loader_args": args,
            "artifacts": [{"path": f"labels.{fmt}", "format": fmt}],
        }
    )


def parse(raw: bytes | str, fmt: str = "txt", **args: Any) -> Labels:
    data = raw.encode() if isinstance(raw, str) else raw
    return parse_labels(labels_spec(fmt, **args), data, fmt, LabelsArgs.model_validate(args))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("labels"), [PLACES, *TRITON, KINETICS_LABELS])


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "root"))


# -- reading a label list ----------------------------------------------------------------


def test_the_places365_layout_and_its_prefix() -> None:
    names = parse("/a/abbey 0\n/a/arena/hockey 1\n/b/bar 2\n", count=3, name_pattern="/[a-z]/(.+)")
    assert names == ("abbey", "arena/hockey", "bar") and names.spec == "test_labels"
    assert parse("/b/bar 1\n/a/abbey 0\n", count=2) == ("/a/abbey", "/b/bar")  # by index
    assert parse("\ufeffabbey\nair drumming\n\n", count=2) == ("abbey", "air drumming")


def test_pytorchvideos_kinetics_layout_and_its_quotes() -> None:
    raw = json.dumps(KINETICS_HEAD).encode()
    names = parse(raw, "json", count=3, name_pattern='"?([^"]+)"?')
    assert names == ("abseiling", "air drumming", "answering questions")
    assert parse(raw, "json", count=3)[1] == '"air drumming"'  # no pattern: kept as written
    assert parse('{"1": "b", "0": "a"}', "json", count=2) == ("a", "b")
    assert parse('["a", "b"]', "json", count=2) == ("a", "b")


@pytest.mark.parametrize(
    ("raw", "fmt", "args", "message"),
    [
        ("a\nb\n", "txt", {"count": 3}, r"names 2 classes, but loader_args\.count is 3"),
        ("a 0\nb 2\n", "txt", {"count": 2}, r"does not number its 2 classes 0 to 1 once each"),
        ("a\n\nb\n", "txt", {"count": 2}, r"has a blank line \(line 2\)"),
        (b"\xff\xfe a\n", "txt", {"count": 1}, r"is not UTF-8 text"),
        ("/a/abbey 0\nbar 1\n", "txt", {"count": 2, "name_pattern": "/[a-z]/(.+)"}, "'bar'"),
        ('"" 0\n', "txt", {"count": 1, "name_pattern": '"(.*)"'}, r"an empty name \(class 0\)"),
        ('{"a": 0, "b": 0}', "json", {"count": 2}, r"does not number its 2 classes"),
        ('{"a": 0, "b": 1', "json", {"count": 2}, r"cannot be read: not valid JSON"),
        ('["a", 1]', "json", {"count": 2}, r"entries that are not strings"),
        ('{"a": "b"}', "json", {"count": 1}, r"neither \{\"name\": index"),
        ('"abc"', "json", {"count": 1}, r"is a JSON str, not a list or an object"),
    ],
)
def test_what_does_not_fit_is_a_labels_error(
    raw: str | bytes, fmt: str, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(LabelsError, match=message) as exc:
        parse(raw, fmt, **args)
    err = exc.value
    assert isinstance(err, LoaderError) and isinstance(err, ValueError)
    assert (err.spec, err.loader, err.labels) == ("test_labels", "labels", "test_labels")
    assert str(err).startswith("spec 'test_labels': its label list ")


def test_a_count_error_carries_both_counts() -> None:
    with pytest.raises(LabelsError) as exc:
        parse("a\nb\n", count=3)
    assert (exc.value.expected, exc.value.actual) == (3, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"count": 0}, "greater than or equal to 1"),
        ({}, "Field required"),
        ({"count": 3, "name_pattern": "/[a-z]/.+"}, r"needs a group"),
        ({"count": 3, "name_pattern": "(unclosed"}, r"is not a regular expression"),
    ],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, args: dict[str, Any], message: str
) -> None:
    edit_spec(root, PLACES_LABELS, loader_args=args, replace_loader_args=True)
    problem = catalog_problem(root, tmp_path)
    assert problem.field.startswith("loader_args")
    assert re.search(message, problem.message), problem.message


def test_labels_pickle_with_their_spec() -> None:
    names = Labels(["a", "b"], spec="mine")
    copy = pickle.loads(pickle.dumps(names))
    assert copy == ("a", "b") and copy.spec == "mine" and type(copy) is Labels
    assert repr(names) == "Labels(2 from 'mine': 'a', 'b')"


# -- shared through requires ---------------------------------------------------------------


def test_the_catalog_shares_one_labels_spec_through_requires() -> None:
    catalog = Catalog.load()
    for name in (PLACES, *TRITON):
        assert catalog[name].requires == [PLACES_LABELS]
        assert not [a for a in catalog[name].artifacts if a.format in ("txt", "json")]
    assert catalog["slowfast_r50"].requires == [KINETICS_LABELS]
    files = {catalog[n].artifacts[0].path for n in (PLACES_LABELS, KINETICS_LABELS)}
    assert files == {PLACES_FILE, KINETICS_FILE}


@pytest.mark.no_network
def test_the_model_reads_its_categories_from_the_labels_spec(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    model = mm.load(PLACES)
    assert isinstance(model.categories, Labels) and model.categories.spec == PLACES_LABELS
    assert model.categories[:2] == ("fake_class_000", "fake_class_001")
    assert model.categories is mm.load(PLACES_LABELS)  # one load, shared
    used = {e["name"]: e for e in mm.models_used()}
    assert list(used) == [PLACES_LABELS, PLACES]
    assert used[PLACES]["requires"] == [PLACES_LABELS]
    labels = used[PLACES_LABELS]
    assert (labels["loader"], labels["device"], labels["framework"]["name"]) == (
        "labels",
        "cpu",
        "dp-models",
    )
    assert [a["path"] for a in labels["artifacts"]] == [PLACES_FILE]


def test_labels_of_another_count_than_the_model_are_refused(root: Path, tmp_path: Path) -> None:
    (root / PLACES_FILE).write_text("/a/abbey 0\n/b/bar 1\n")
    edit_spec(root, PLACES_LABELS, loader_args={"count": 2})
    repin(root)
    with pytest.raises(LabelsError, match=r"^spec 'places365_resnet50' has 365 classes") as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    err = exc.value
    assert (err.spec, err.loader, err.labels) == (PLACES, "torchvision", PLACES_LABELS)
    assert (err.expected, err.actual) == (365, 2)


def test_a_bad_label_file_fails_the_model_that_requires_it(root: Path, tmp_path: Path) -> None:
    (root / PLACES_FILE).write_text("/a/abbey 0\n/b/bar 2\n")
    repin(root)
    with pytest.raises(LabelsError, match="does not number its 2 classes") as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert (exc.value.spec, exc.value.loader) == (PLACES_LABELS, "labels")


def test_a_class_list_among_the_models_own_artifacts_is_refused(root: Path, tmp_path: Path) -> None:
    """The layout before labels were specs: refused, never silently ignored."""
    weights = {"path": "visual/places365/resnet50_places365.pth.tar", "format": "pth.tar"}
    labels = {"path": "visual/places365/mine.txt", "format": "txt"}
    edit_spec(root, PLACES, artifacts=[weights, labels])
    (root / labels["path"]).write_text("a\n")
    repin(root)
    with pytest.raises(LoaderArgsError, match=r"a class list is a labels spec of its own"):
        manager(root, tmp_path, device="cpu").load(PLACES)


def test_a_triton_client_gives_the_labels_its_spec_requires(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, triton_endpoints={"default": "http://127.0.0.1:9"})
    for name in TRITON:
        client = mm.get(name).client()
        names = client.labels()
        assert names is client.labels() and names.spec == PLACES_LABELS
        assert len(names) == 365 and names[0] == "fake_class_000"
    assert [e["name"] for e in mm.models_used()] == [PLACES_LABELS, *TRITON]
    depth = TritonClient(Catalog.load()["midas_dpt_hybrid_triton"], "http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="requires no labels"):
        depth.labels()


def test_a_triton_client_refuses_labels_of_another_count(root: Path, tmp_path: Path) -> None:
    path = spec_file(root, TRITON[0])
    spec = Catalog.load(fake_catalog_dir(root))[TRITON[0]].model_dump(exclude_defaults=True)
    spec["triton"]["outputs"][0]["shape"] = [364]
    spec.pop("derived_from", None)  # a Triton spec of its own: no in-process twin to match
    path.write_text(json.dumps(spec))  # JSON is YAML
    mm = manager(root, tmp_path, triton_endpoints={"default": "http://127.0.0.1:9"})
    client = mm.get(TRITON[0]).client()
    with pytest.raises(LabelsError, match=r"output 'logits'.*names 365") as exc:
        client.labels()
    err = exc.value
    assert (err.spec, err.labels, err.expected, err.actual) == (TRITON[0], PLACES_LABELS, 364, 365)


# -- fakes ---------------------------------------------------------------------------------


def test_the_fakes_write_the_upstream_layouts(pristine: Path) -> None:
    lines = (pristine / PLACES_FILE).read_text().splitlines()
    assert (len(lines), lines[0], lines[-1]) == (
        365,
        "/f/fake_class_000 0",
        "/f/fake_class_364 364",
    )
    kinetics = json.loads((pristine / KINETICS_FILE).read_text())
    assert len(kinetics) == 400 and kinetics['"fake_class_399"'] == 399
    mm = ModelManager(pristine, fake_catalog_dir(pristine), cache_dir=pristine.parent / "c")
    assert mm.load(KINETICS_LABELS)[-1] == "fake_class_399"


def test_a_fake_for_a_pattern_it_cannot_meet_drops_the_pattern(tmp_path: Path) -> None:
    spec = labels_spec("txt", count=2, name_pattern="x-(.+)")
    assert make_labels(spec, tmp_path) == {"name_pattern": None}
    assert (tmp_path / "labels.txt").read_text() == "fake_class_000 0\nfake_class_001 1\n"
