"""The ``torchvision`` loader (dp_models.loaders.torchvision): the catalog's ResNet and
Places365 specs on fake roots, a real ResNet checkpoint in the Places365 layout, feature
extraction, class lists, device and precision, and the errors of corrupt artifacts."""

from __future__ import annotations

import hashlib
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision  # type: ignore[import-untyped]

from dp_models._catalog import Catalog
from dp_models._errors import (
    LabelsError,
    LoaderArgsError,
    LoaderError,
    StateDictMismatchError,
    UnsafeCheckpointError,
)
from dp_models.loaders import LoadContext
from dp_models.loaders.torchvision import _remove_classifier
from dp_models.testing import fake_models_root
from dp_models.testing.fakes.torch import FAKE_ARCH

from .fakeroots import catalog_problem, edit_spec, manager, needs_cuda, repin

SPECS = ["places365_resnet50", "resnet18_features", "resnet50_features"]
PLACES = "places365_resnet50"
PLACES_WEIGHTS = "visual/places365/resnet50_places365.pth.tar"
PLACES_LABELS = "visual/places365/categories_places365.txt"
#: What the fake's MobileNetV3-small (width 0.25) gives in feature-extractor mode.
FAKE_FEATURES = 256
IMAGES = torch.linspace(-1.0, 1.0, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)

# -- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("pristine"), names=SPECS)


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    """A fake root of the test's own (a copy: tests change its files and its catalog)."""
    return Path(shutil.copytree(pristine, tmp_path / "root"))


def places_checkpoint(net: torch.nn.Module) -> dict[str, Any]:
    """The layout of CSAIL's resnet50_places365.pth.tar: DataParallel keys under state_dict."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    return {"epoch": 90, "arch": "resnet50", "state_dict": state, "best_prec1": 54.65}


def reference_resnet18(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    with torch.no_grad():  # eval-mode batch norm that is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    result: torch.nn.Module = net.eval()
    return result


# -- every catalog spec, offline -----------------------------------------------------------


@pytest.mark.no_network
def test_every_torchvision_spec_loads_from_a_fake_root_offline(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", names=SPECS)  # inside the guard too
    mm = manager(root, tmp_path, device="cpu")
    for name in SPECS:
        assert mm.get(name).spec.loader_args["arch"] == FAKE_ARCH["arch"]  # the fake's override

    places = mm.load(PLACES)
    assert type(places).__name__ == "MobileNetV3"
    assert not places.training
    assert {p.device.type for p in places.parameters()} == {"cpu"}
    assert {p.dtype for p in places.parameters()} == {torch.float32}
    assert len(places.categories) == 365
    assert places.categories[:2] == ("fake_class_000", "fake_class_001")  # /f/ prefix removed
    with torch.no_grad():
        logits = places(IMAGES)
        assert logits.shape == (2, 365)
        assert torch.equal(places(IMAGES), logits)  # eval mode: deterministic

    for name in ("resnet18_features", "resnet50_features"):
        features = mm.load(name)
        assert not features.training
        assert isinstance(features.classifier[-1], torch.nn.Identity)
        assert not hasattr(features, "categories")  # no class list in the spec
        with torch.no_grad():
            assert features(IMAGES).shape == (2, FAKE_FEATURES)

    used = {e["name"]: e for e in mm.models_used()}
    assert set(used) == {*SPECS, "places365_categories"}  # the labels places365 requires
    assert used[PLACES]["requires"] == ["places365_categories"]
    for entry in (used[name] for name in SPECS):
        assert entry["framework"] == {
            "name": "torchvision",
            "version": metadata.version("torchvision"),
        }
        assert (entry["device"], entry["precision"], entry["loader"]) == (
            "cpu",
            "fp32",
            "torchvision",
        )


def test_the_fake_weights_are_small_and_in_the_specs_layout(root: Path) -> None:
    sizes = [p.stat().st_size for p in root.glob("visual/**/*") if p.is_file()]
    assert len(sizes) == 4
    assert sum(sizes) < 5_000_000  # the real three are 245 MB
    checkpoint = torch.load(root / PLACES_WEIGHTS, weights_only=True)
    assert list(checkpoint) == ["state_dict"]
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    lines = (root / PLACES_LABELS).read_text().splitlines()
    assert (len(lines), lines[0], lines[-1]) == (
        365,
        "/f/fake_class_000 0",
        "/f/fake_class_364 364",
    )


# -- the real architectures ----------------------------------------------------------------


@pytest.mark.no_network
def test_a_real_resnet_in_the_places365_layout_loads_with_its_categories(
    root: Path, tmp_path: Path
) -> None:
    """A real ResNet-18 (ResNet-50 is the same code at 98 MB) saved the way CSAIL saves
    Places365: pickled checkpoint, ``state_dict`` key, ``module.`` prefix, 365 classes."""
    reference = reference_resnet18(365)
    torch.save(places_checkpoint(reference), root / PLACES_WEIGHTS)
    names = ["/a/abbey", "/a/airfield", "/a/arena/hockey"] + [f"/z/zone_{i}" for i in range(362)]
    (root / PLACES_LABELS).write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    edit_spec(root, PLACES, loader_args={"arch": "resnet18", "kwargs": ...})
    repin(root)
    mm = manager(root, tmp_path, device="cpu")

    model = mm.load(PLACES)
    assert type(model) is torchvision.models.ResNet
    assert model.categories[:3] == ("abbey", "airfield", "arena/hockey")
    with torch.no_grad():
        assert torch.equal(model(IMAGES), reference(IMAGES))

    edit_spec(root, PLACES, loader_args={"feature_extractor": True})
    features = manager(root, tmp_path, device="cpu").load(PLACES)
    assert isinstance(features.fc, torch.nn.Identity)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        out = features(IMAGES)
        assert out.shape == (2, 512)
        assert torch.equal(out, reference(IMAGES))


@pytest.mark.parametrize(("arch", "width"), [("resnet18", 512), ("resnet50", 2048)])
def test_feature_extractor_mode_gives_pooled_resnet_features(arch: str, width: int) -> None:
    model = torchvision.models.get_model(arch, weights=None).eval()
    spec = Catalog.load()[f"{arch}_features"]
    ctx = LoadContext(spec, {}, "cpu", "fp32", spec.loader_args)
    headless = _remove_classifier(ctx, torch, model, arch)
    assert isinstance(headless.fc, torch.nn.Identity)
    with torch.no_grad():
        assert headless(IMAGES).shape == (2, width)


# -- device and precision ------------------------------------------------------------------


def test_bf16_where_the_spec_allows_it_on_the_cpu(root: Path, tmp_path: Path) -> None:
    edit_spec(root, PLACES, allow_half_on_cpu=True)
    model = manager(root, tmp_path, device="cpu").load(PLACES, precision="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert model(IMAGES.bfloat16()).dtype == torch.bfloat16


@needs_cuda
@pytest.mark.no_network
def test_cuda_fp16(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    assert mm.get(PLACES).device == "cuda"  # auto
    model = mm.load(PLACES, precision="fp16")
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cuda", torch.float16)}
    with torch.no_grad():
        assert model(IMAGES.cuda().half()).shape == (2, 365)
    assert mm.models_used()[-1]["device"] == "cuda"


# -- errors --------------------------------------------------------------------------------


def test_a_truncated_checkpoint_is_a_loader_error(root: Path, tmp_path: Path) -> None:
    data = (root / PLACES_WEIGHTS).read_bytes()
    (root / PLACES_WEIGHTS).write_bytes(data[: len(data) // 2])
    repin(root)
    with pytest.raises(
        LoaderError, match=r"^spec 'places365_resnet50': loader 'torchvision' failed"
    ) as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert exc.value.spec == PLACES
    assert exc.value.__cause__ is not None  # torch's error, chained


def test_a_pickle_that_would_run_code_is_refused(root: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "extra": hashlib.sha256}, root / PLACES_WEIGHTS)
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match=r"unpickling it could run code") as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert (exc.value.spec, exc.value.loader) == (PLACES, "torchvision")


def test_weights_of_another_shape_are_a_mismatch(root: Path, tmp_path: Path) -> None:
    edit_spec(root, PLACES, loader_args={"num_classes": 10})
    with pytest.raises(
        StateDictMismatchError,
        match=r"^spec 'places365_resnet50': the weights do not fit "
        r"torchvision mobilenet_v3_small: .*size mismatch for classifier\.3\.weight.*Check arch, "
        r"num_classes",
    ) as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert exc.value.loader == "torchvision"


def test_missing_and_unexpected_keys_are_listed(root: Path, tmp_path: Path) -> None:
    edit_spec(root, PLACES, loader_args={"strip_prefix": ...})
    with pytest.raises(
        StateDictMismatchError, match=r"\d+ missing key\(s\) \[features\.0\.0"
    ) as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert exc.value.missing and all(k.startswith("module.") for k in exc.value.unexpected)


def test_a_class_list_that_does_not_fit(root: Path, tmp_path: Path) -> None:
    """The class list is the labels spec places365_resnet50 requires (tests/test_loader_labels.py
    reads them in detail): one of another count than num_classes is refused at load."""
    (root / PLACES_LABELS).write_text("/a/abbey 0\n/b/bar 1\n")
    edit_spec(root, "places365_categories", loader_args={"count": 2})
    repin(root)
    with pytest.raises(LabelsError, match=r"has 365 classes \(loader_args\.num_classes\), but th"):
        manager(root, tmp_path, device="cpu").load(PLACES)
    (root / PLACES_LABELS).write_text("/a/abbey 0\n/b/bar 2\n")
    repin(root)
    with pytest.raises(LoaderError, match=r"does not number its 2 classes 0 to 1 once each") as exc:
        manager(root, tmp_path, device="cpu").load(PLACES)
    assert (exc.value.spec, exc.value.loader) == ("places365_categories", "labels")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"arch": "resnet5O"},
            r"loader_args.arch 'resnet5O' is not a torchvision model; did you "
            r"mean resnet50",
        ),
        (
            {"arch": "resnet18", "kwargs": {"colour": 1}},
            r"torchvision cannot build 'resnet18' with",
        ),
        (
            {"arch": "fcn_resnet50", "feature_extractor": True},
            r"feature_extractor works on image "
            r"and video classifiers; 'fcn_resnet50' is not one",
        ),
    ],
)
def test_loader_args_this_torchvision_refuses_at_load(
    args: dict[str, Any], message: str, root: Path, tmp_path: Path
) -> None:
    """What only the installed torchvision can tell (its model names, what a builder
    takes) is checked when the model is built."""
    edit_spec(root, "resnet18_features", loader_args=args)
    with pytest.raises(LoaderArgsError, match=message) as exc:
        manager(root, tmp_path, device="cpu").load("resnet18_features")
    assert (exc.value.spec, exc.value.loader) == ("resnet18_features", "torchvision")


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (
            {"kwargs": {"weights": "DEFAULT"}},
            "kwargs",
            r"may not set weights: the loader builds the model without weights",
        ),
        ({"num_classes": "365"}, "num_classes", r"valid integer \(got '365'\)"),
        ({"num_classes": 0}, "num_classes", r"greater than or equal to 1"),
        ({"feature_extractor": "yes"}, "feature_extractor", r"valid boolean \(got 'yes'\)"),
        ({"weights_only": "no"}, "weights_only", r"valid boolean \(got 'no'\)"),
        ({"arch": None}, "arch", r"valid string"),
    ],
)
def test_loader_args_the_catalog_refuses(
    args: dict[str, Any], field: str, message: str, root: Path, tmp_path: Path
) -> None:
    edit_spec(root, "resnet18_features", loader_args=args)
    problem = catalog_problem(root, tmp_path, device="cpu")
    assert problem.field == f"loader_args.{field}"
    assert re.search(message, problem.message), problem.message
