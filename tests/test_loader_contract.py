"""The loader contract, checked the same way for every built-in loader, each on a fake root
of one spec (real frameworks, fake weights): it loads offline and records its framework;
CUDA is refused where there is none (never a quiet CPU run); a framework that is not
installed is a MissingExtraError naming the extra that installs it; a corrupt artifact is
a typed LoaderError naming spec and loader; a misspelt loader_args key is a CatalogError
(file and field) from the manager and from ``dp-models validate``; a precision it cannot
run is a PrecisionError. Loader-specific behaviour stays in tests/test_loader_<name>.py."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from dp_models._catalog import Catalog
from dp_models._cli import main as dp_models_cli
from dp_models._errors import (
    DeviceUnavailableError,
    LoaderError,
    MissingExtraError,
    PrecisionError,
)
from dp_models._guard import network_guard
from dp_models._registry import BUILTIN_LOADERS, default_loaders
from dp_models._spec import PRECISIONS
from dp_models.loaders import Loader
from dp_models.testing import FAKE_DIR, fake_catalog_dir, fake_models_root

from .conftest import close_native
from .fakeroots import catalog_problem, edit_spec, manager, repin, spacy_dir_catalog, spec_file

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One loader's spec in the contract catalog, the modules that make up its framework
    (hidden to stand for "not installed") and the file of its artifacts to corrupt."""

    spec: str
    hide: tuple[str, ...]
    corrupt: str  # path under the root


CASES: dict[str, Case] = {
    "torch_state_dict": Case("emonet_8", ("torch",), "visual/emonet/emonet_8.pth"),
    "torchscript": Case("contract_torchscript", ("torch",), "contract/torchscript/model.pt"),
    "onnxruntime": Case(
        "tiny_color_classifier", ("onnxruntime",), "demo/tiny_color_classifier/model.onnx"
    ),
    "open_clip": Case("clip_vit_b32", ("open_clip",), "visual/clip/ViT-B-32.pt"),
    "torchvision": Case(
        "resnet18_features", ("torchvision",), "visual/resnet/resnet18-f37072fd.pth"
    ),
    "slowfast": Case("slowfast_r50", ("torch",), "visual/slowfast/SLOWFAST_8x8_R50.pyth"),
    "ultralytics": Case("yolo11n_detector", ("ultralytics",), "visual/yolo/yolo11n.pt"),
    "ultralytics_tracker": Case(
        "bytetrack_tracker", ("ultralytics",), "visual/yolo/bytetrack.yaml"
    ),
    "mediapipe": Case(
        "mediapipe_face_detector",
        ("mediapipe",),
        "visual/mediapipe/blaze_face_short_range.tflite",
    ),
    "sentence_transformers": Case(
        "all_minilm_l6_v2",
        ("sentence_transformers",),
        "text/sentence_transformers/all-MiniLM-L6-v2/model.safetensors",
    ),
    "laion_clap": Case("laion_clap", ("laion_clap",), "audio/laion_clap/630k-audioset-best.pt"),
    "spacy": Case("spacy_en_core_web_sm", ("spacy",), "text/spacy/en_core_web_sm-3.8.0/meta.json"),
    "tokenizer": Case(
        "shared_tokenizer_v1", ("tokenizers",), "text/shared_tokenizer_v1/tokenizer.json"
    ),
    # a label list needs no framework: nothing to hide
    "labels": Case("places365_categories", (), "visual/places365/categories_places365.txt"),
}
LOADERS = sorted(CASES)
#: The loaders that run a framework (one that may be missing).
FRAMEWORK_LOADERS = [name for name in LOADERS if CASES[name].hide]

#: The one loader no packaged spec uses, in a spec of the contract catalog.
TORCHSCRIPT_SPEC = """\
name: contract_torchscript
version: "1"
family: test
role: test
users: [tests/test_loader_contract]
runtime: inprocess
engine: torchscript
loader: torchscript
loader_args: {trust_archive_code: true}
artifacts:
  - {path: contract/torchscript/model.pt, format: torchscript}
"""


def loader_of(name: str) -> Loader[Any]:
    return default_loaders().get(name)


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake root for one spec of every loader (made once: laion_clap's is 150 MB); the
    spaCy spec is a pipeline directory under the root, as a fake can be."""
    catalog_dir = tmp_path_factory.mktemp("contract_catalog")
    packaged = Catalog.load(spacy_dir_catalog(tmp_path_factory.mktemp("packaged") / "catalog"))
    for case in CASES.values():
        if case.spec in packaged:
            for spec in packaged.closure(case.spec):
                src = packaged.files[spec.name]
                shutil.copy(src, catalog_dir / src.name)
    shutil.copy(REPO / "examples/spec_catalog/demo/tiny_color_classifier.yaml", catalog_dir)
    (catalog_dir / "contract_torchscript.yaml").write_text(TORCHSCRIPT_SPEC)
    root = tmp_path_factory.mktemp("contract") / "root"
    # emonet_8's class is the processor's, not installed here: a TinyNet stands in
    return fake_models_root(
        root, [c.spec for c in CASES.values()], catalog=catalog_dir, substitute=["emonet_8"]
    )


@pytest.fixture
def root(shared_root: Path, tmp_path: Path) -> Path:
    """The test's own root: the artifacts hard-linked (replace a file, never write into
    it), the catalog copy copied (tests edit it)."""
    own = tmp_path / "root"
    shutil.copytree(
        shared_root, own, copy_function=os.link, ignore=shutil.ignore_patterns(FAKE_DIR)
    )
    shutil.copytree(shared_root / FAKE_DIR, own / FAKE_DIR)
    return own


def hide(monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    """``top`` and every submodule of it look not installed (an import raises
    ModuleNotFoundError, ``find_spec`` finds nothing) until the test ends."""
    for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, top, None)


def test_every_builtin_loader_is_in_the_contract() -> None:
    assert set(CASES) == set(BUILTIN_LOADERS)


@pytest.mark.no_network
@pytest.mark.parametrize("name", LOADERS)
def test_it_loads_offline_from_its_fake_and_records_its_framework(
    name: str, shared_root: Path, tmp_path: Path
) -> None:
    case, loader = CASES[name], loader_of(name)
    mm = manager(shared_root, tmp_path)
    with network_guard([f"contract {name}"]):
        model = mm.load(case.spec, device="cpu")
    assert model is not None
    close_native(model)
    entry = next(e for e in mm.models_used() if e["name"] == case.spec)
    assert (entry["loader"], entry["device"]) == (name, "cpu")
    assert entry["framework"]["name"] == loader.framework
    assert entry["framework"]["version"] is not None  # the distribution is installed


@pytest.mark.parametrize("name", LOADERS)
def test_cuda_is_refused_where_the_framework_has_none(
    name: str, shared_root: Path, tmp_path: Path
) -> None:
    """``device: cuda`` runs on CUDA or is an error at get, never a quiet CPU run; ``auto``
    is CUDA exactly where the loader says its framework can use it."""
    case, loader = CASES[name], loader_of(name)
    mm = manager(shared_root, tmp_path)
    has_cuda = loader.cuda_available()
    assert mm.get(case.spec, device="auto").device == ("cuda" if has_cuda else "cpu")
    if has_cuda:
        assert mm.get(case.spec, device="cuda").device == "cuda"
        return
    with pytest.raises(
        DeviceUnavailableError,
        match=rf"^spec '{case.spec}' asks for device 'cuda', but {re.escape(loader.framework)} "
        r"sees no CUDA device here\. dp_models never falls back to the CPU silently",
    ) as exc:
        mm.get(case.spec, device="cuda")
    assert isinstance(exc.value, RuntimeError)
    assert (exc.value.spec, exc.value.requested) == (case.spec, "cuda")
    assert [e["name"] for e in mm.models_used()] == [
        s.name for s in mm.catalog.closure(case.spec)
    ]  # only the device=auto get above was recorded


@pytest.mark.parametrize("name", FRAMEWORK_LOADERS)
def test_a_missing_framework_names_the_extra_that_installs_it(
    name: str, shared_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, loader = CASES[name], loader_of(name)
    assert loader.extra in metadata.metadata("dp-models").get_all("Provides-Extra")
    for module in case.hide:
        hide(monkeypatch, module)
    message = (
        rf"spec '{case.spec}' needs it\)\. Install it with: "
        rf"pip install 'dp-models\[{loader.extra}\]'"
    )
    with pytest.raises(MissingExtraError, match=message) as exc:
        manager(shared_root, tmp_path).get(case.spec, device="auto")  # asks the framework
    assert isinstance(exc.value, ImportError)
    assert (exc.value.extra, exc.value.spec) == (loader.extra, case.spec)
    with pytest.raises(MissingExtraError, match=message) as exc:
        manager(shared_root, tmp_path, device="cpu").load(case.spec)  # cpu: at load
    assert (exc.value.extra, exc.value.spec) == (loader.extra, case.spec)


@pytest.mark.parametrize("name", LOADERS)
def test_a_corrupt_artifact_is_a_typed_error_naming_spec_and_loader(
    name: str, root: Path, tmp_path: Path
) -> None:
    """Bytes of another kind, pinned (they pass the digest check): the framework's own
    failure never escapes untyped."""
    case = CASES[name]
    path = root / case.corrupt
    junk = path.with_name(path.name + ".junk")
    junk.write_bytes(b"\x00\x01 not what this file should be {[ \xff" * 40)
    os.replace(junk, path)  # a new file: the shared root keeps its own
    repin(root)
    with pytest.raises(LoaderError) as exc:
        manager(root, tmp_path, device="cpu").load(case.spec)
    err = exc.value
    assert (err.spec, err.loader) == (case.spec, name)
    assert str(err).startswith(f"spec '{case.spec}'")


@pytest.mark.parametrize("name", LOADERS)
def test_a_misspelt_loader_arg_is_a_catalog_error(
    name: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found when the catalog loads (every problem, with file and field), by the manager
    and by ``dp-models validate``; not a LoaderArgsError at load time."""
    case, loader = CASES[name], loader_of(name)
    edit_spec(root, case.spec, loader_args={"colour": "red"})
    shown = spec_file(root, case.spec).relative_to(fake_catalog_dir(root)).as_posix()
    problem = catalog_problem(root, tmp_path)
    known = ", ".join(sorted(loader.args_model.model_fields)) or "none"
    assert (problem.file, problem.field) == (shown, "loader_args.colour")
    assert problem.message.startswith(
        f"loader '{name}' does not take loader_args 'colour'; it takes {known}"
    )
    assert dp_models_cli(["validate", "--catalog", str(fake_catalog_dir(root))]) != 0
    out = capsys.readouterr()
    assert f"{shown}: loader_args.colour: loader '{name}' does not take" in out.out + out.err


@pytest.mark.parametrize("name", LOADERS)
def test_a_precision_it_cannot_run_is_refused(name: str, shared_root: Path, tmp_path: Path) -> None:
    """Every precision the loader does not declare is refused at get; int8, which no
    built-in loader builds, is refused by the load at the latest (ONNX Runtime runs the
    precision a model was exported in)."""
    case, loader = CASES[name], loader_of(name)
    mm = manager(shared_root, tmp_path)
    refused = [p for p in PRECISIONS if p not in loader.precisions]
    for precision in refused:
        with pytest.raises(
            PrecisionError, match=rf"^spec '{case.spec}': loader '{name}' runs models in "
        ) as exc:
            mm.get(case.spec, device="cpu", precision=precision)
        assert (exc.value.spec, exc.value.precision, exc.value.device) == (
            case.spec,
            precision,
            "cpu",
        )
    with pytest.raises(PrecisionError) as exc:
        mm.load(case.spec, device="cpu", precision="int8")
    assert (exc.value.spec, exc.value.precision) == (case.spec, "int8")


def test_the_contract_catalog_is_what_the_cases_say(shared_root: Path) -> None:
    fake = Catalog.load(fake_catalog_dir(shared_root))
    for name, case in CASES.items():
        assert fake[case.spec].loader == name
        assert (shared_root / case.corrupt).is_file()
