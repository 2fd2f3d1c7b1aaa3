"""loader open_clip (dp_models.loaders.open_clip): both CLIP specs of the catalog on fake
roots (tiny CLIPs saved as TorchScript archives, as OpenAI ships them), through the manager,
inside the network guard; open_clip-native safetensors; hostile archives and pickles."""

from __future__ import annotations

import pickle
import shutil
import warnings
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dp_models._errors import (
    LoaderArgsError,
    LoaderError,
    StateDictMismatchError,
    UnsafeCheckpointError,
)
from dp_models._settings import packaged_catalog_dir
from dp_models.loaders._checkpoint import read_torchscript_state_dict
from dp_models.loaders.open_clip import OpenClipModel
from dp_models.testing import fake_catalog_dir, fake_models_root

from .fakeroots import (
    RunsCode,
    catalog_problem,
    edit_spec,
    manager,
    needs_cuda,
    repin,
    rewrite_zip,
    save_writes_on_load,
)

B32, L14 = "clip_vit_b32", "clip_vit_l14_336"
SPEC_FILES = {B32: "visual/clip_vit_b32.yaml", L14: "visual/clip_vit_l14_336.yaml"}
WEIGHTS = {B32: "visual/clip/ViT-B-32.pt", L14: "visual/clip/ViT-L-14-336px.pt"}
PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a cat"]


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake root for the tests that only read it (a few MB)."""
    return fake_models_root(tmp_path_factory.mktemp("clip") / "root", names=[B32, L14])


@pytest.fixture
def root(shared_root: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that change files or specs."""
    return Path(shutil.copytree(shared_root, tmp_path / "root"))


# -- the catalog's specs on fakes, through the manager -------------------------------------


@pytest.mark.no_network
def test_both_specs_load_offline_with_their_preset_resolution(
    shared_root: Path, tmp_path: Path
) -> None:
    mm = manager(shared_root, tmp_path, device="cpu")
    for name, size in ((B32, 224), (L14, 336)):
        clip = mm.load(name)
        assert isinstance(clip, OpenClipModel)
        assert type(clip.model).__name__ == "CLIP" and not clip.model.training
        assert (clip.image_size, clip.context_length, clip.device) == (size, 77, "cpu")
        assert {p.device.type for p in clip.model.parameters()} == {"cpu"}
        assert {p.dtype for p in clip.model.parameters()} == {torch.float32}
        # weights are the archive's, not open_clip's random initialisation
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(str(shared_root / WEIGHTS[name]))  # type: ignore[no-untyped-call]
            archive = scripted.state_dict()
        for key, value in clip.model.state_dict().items():
            assert torch.equal(value, archive[key]), key
        # OpenAI CLIP was trained with QuickGELU; open_clip's config alone would use GELU
        assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        text = clip.text_embeddings(PROMPTS)
        assert text.shape == (3, 16) and text.dtype == torch.float32
        assert torch.allclose(text.norm(dim=-1), torch.ones(3))
        assert torch.equal(text[0], text[2]) and not torch.equal(text[0], text[1])
        assert torch.equal(clip.text_embeddings(PROMPTS), text)  # deterministic
        assert clip.text_embeddings([]).shape == (0, 16)
        pixels = clip.preprocess(Image.fromarray(np.full((300, 500, 3), 128, np.uint8)))
        assert pixels.shape == (3, size, size)
        image = clip.image_embeddings(torch.stack([pixels, pixels]))
        assert image.shape == (2, 16) and torch.allclose(image.norm(dim=-1), torch.ones(2))
        assert clip.tokenizer(["a cat"]).shape == (1, 77)
    used = {e["name"]: e for e in mm.models_used()}
    assert used[B32]["framework"] == {
        "name": "open_clip_torch",
        "version": metadata.version("open_clip_torch"),
    }
    assert used[L14]["preprocess"] == "openai_clip_336"


def test_the_fake_is_a_torchscript_archive_and_small(shared_root: Path) -> None:
    data = yaml.safe_load((fake_catalog_dir(shared_root) / SPEC_FILES[B32]).read_text())
    assert data["loader_args"]["model_name"] == "ViT-B-32"
    assert data["loader_args"]["model_kwargs"]["vision_cfg"]["image_size"] == 224
    for rel in WEIGHTS.values():
        assert (shared_root / rel).stat().st_size < 10_000_000
        with zipfile.ZipFile(shared_root / rel) as archive:
            assert any(n.endswith("/constants.pkl") for n in archive.namelist())


def test_a_prompt_string_is_not_a_prompt_list(shared_root: Path, tmp_path: Path) -> None:
    clip = manager(shared_root, tmp_path, device="cpu").load(B32)
    with pytest.raises(TypeError, match="sequence of strings"):
        clip.text_embeddings("a photo of a cat")


@pytest.mark.no_network
def test_open_clip_native_safetensors(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "visual").mkdir(parents=True)
    data = yaml.safe_load((packaged_catalog_dir() / SPEC_FILES[B32]).read_text())
    data.update(name="clip_native")
    data["loader_args"]["pretrained_format"] = "open_clip"
    data["artifacts"] = [{"path": "visual/clip/native.safetensors", "format": "safetensors"}]
    (catalog / "visual" / "clip_native.yaml").write_text(yaml.safe_dump(data))
    root = fake_models_root(tmp_path / "root", ["clip_native"], catalog=catalog)
    clip = manager(root, tmp_path, device="cpu").load("clip_native")
    assert clip.image_size == 224
    # an open_clip-native ViT-B-32 keeps the config's GELU
    assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "GELU"
    assert clip.text_embeddings(PROMPTS).shape == (3, 16)


# -- device and precision --------------------------------------------------------------------


@needs_cuda
@pytest.mark.no_network
def test_fp16_on_cuda(shared_root: Path, tmp_path: Path) -> None:
    clip = manager(shared_root, tmp_path).load(B32, device="cuda", precision="fp16")
    assert clip.device == "cuda" and clip.input_dtype == torch.float16
    assert clip.model.visual.conv1.weight.dtype == torch.float16  # open_clip's mixed fp16
    pixels = torch.zeros(1, 3, 224, 224)
    assert clip.image_embeddings(pixels).dtype == torch.float32
    assert clip.text_embeddings(PROMPTS).device.type == "cuda"


# -- the preset and the architecture ---------------------------------------------------------


def test_a_preset_of_another_resolution_is_an_error(root: Path, tmp_path: Path) -> None:
    edit_spec(root, B32, preprocess="openai_clip_336")
    with pytest.raises(LoaderError, match=r"openai_clip_336' makes 336x336 images, but the mod"):
        manager(root, tmp_path, device="cpu").load(B32)


def test_a_preset_that_is_not_clip_is_an_error(root: Path, tmp_path: Path) -> None:
    edit_spec(root, B32, preprocess="imagenet_224")
    with pytest.raises(LoaderError, match="'imagenet_224' is not a CLIP preset") as exc:
        manager(root, tmp_path, device="cpu").load(B32)
    assert (exc.value.spec, exc.value.loader) == (B32, "open_clip")


def test_weights_of_another_size_are_a_state_dict_mismatch(root: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((fake_catalog_dir(root) / SPEC_FILES[B32]).read_text())
    kwargs = data["loader_args"]["model_kwargs"]
    kwargs["vision_cfg"]["width"] = 64
    edit_spec(root, B32, loader_args={"model_kwargs": kwargs})
    with pytest.raises(StateDictMismatchError, match="do not fit open_clip 'ViT-B-32'") as exc:
        manager(root, tmp_path, device="cpu").load(B32)
    assert exc.value.spec == B32


@pytest.mark.parametrize(
    ("loader_args", "message"),
    [
        ({"model_name": "ViT-B-33"}, "no architecture config 'ViT-B-33'.*close names: ViT-B-32"),
        ({"model_name": "xlm-roberta-base-ViT-B-32"}, "Hugging Face text tower"),
        ({"model_kwargs": {"no_such": 1}}, "cannot build 'ViT-B-32'"),
    ],
)
def test_loader_args_this_open_clip_refuses_at_load(
    root: Path, tmp_path: Path, loader_args: dict[str, Any], message: str
) -> None:
    """What only the installed open_clip knows (its architectures, what they take)."""
    edit_spec(root, B32, loader_args=loader_args)
    with pytest.raises(LoaderArgsError, match=message) as exc:
        manager(root, tmp_path, device="cpu").load(B32)
    assert (exc.value.spec, exc.value.loader) == (B32, "open_clip")


@pytest.mark.parametrize(
    ("loader_args", "field", "message"),
    [
        ({"model_name": None}, "model_name", "valid string"),
        ({"model_name": ""}, "model_name", "at least 1 character"),
        ({"model_name": "hf-hub:laion/CLIP-ViT-B-32"}, "model_name", "names a schema"),
        ({"model_name": "local-dir:/tmp/x"}, "model_name", "names a schema"),
        ({"pretrained_format": "laion"}, "pretrained_format", "'openai' or 'open_clip'"),
        ({"model_kwargs": [1, 2]}, "model_kwargs", "valid dictionary"),
    ],
)
def test_loader_args_the_catalog_refuses(
    root: Path, tmp_path: Path, loader_args: dict[str, Any], field: str, message: str
) -> None:
    edit_spec(root, B32, loader_args=loader_args)
    problem = catalog_problem(root, tmp_path, device="cpu")
    assert problem.field == f"loader_args.{field}"
    assert message in problem.message


def test_an_openai_archive_declared_open_clip_is_named(root: Path, tmp_path: Path) -> None:
    edit_spec(root, B32, loader_args={"pretrained_format": "open_clip"})
    with pytest.raises(
        LoaderArgsError, match=r"is a TorchScript archive \(an OpenAI CLIP release\), not"
    ):
        manager(root, tmp_path, device="cpu").load(B32)


# -- corrupt and hostile files ---------------------------------------------------------------


@pytest.mark.adversarial
def test_a_pickle_payload_in_a_torchscript_archive_never_runs(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    rewrite_zip(root / WEIGHTS[B32], {"/data.pkl": pickle.dumps(RunsCode(marker), protocol=2)})
    repin(root)
    with pytest.raises(UnsafeCheckpointError, match=r"refused and nothing in it ran") as exc:
        manager(root, tmp_path, device="cpu").load(B32)
    assert (exc.value.spec, exc.value.loader) == (B32, "open_clip")
    assert "posix.system" in str(exc.value)
    assert not marker.exists()


@pytest.mark.adversarial
def test_an_archive_whose_setstate_writes_files_is_read_as_data(root: Path, tmp_path: Path) -> None:
    # torch.jit.load runs an archive's __setstate__, and aten::from_file creates files:
    # the OpenAI-format reader must never run it
    marker = tmp_path / "written-by-the-archive"
    save_writes_on_load(root / WEIGHTS[B32], marker)
    repin(root)
    with pytest.raises(LoaderError, match=r"spec 'clip_vit_b32': .* not a TorchScript archive"):
        manager(root, tmp_path, device="cpu").load(B32)
    assert not marker.exists()


def test_the_archive_reader_gives_what_torchscript_would(shared_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript
        reference = torch.jit.load(str(shared_root / WEIGHTS[B32])).state_dict()
    with open(shared_root / WEIGHTS[B32], "rb") as f:
        read = read_torchscript_state_dict(f)
    assert list(read) == list(reference)
    assert all(torch.equal(read[k], reference[k]) for k in reference)


@pytest.mark.adversarial
def test_python_code_in_a_torchscript_archive_is_never_compiled(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = f"import os\nos.system('touch {marker}')\n".encode()
    with zipfile.ZipFile(root / WEIGHTS[B32]) as archive:
        name = next(
            n for n in archive.namelist() if n.endswith("/code/__torch__/open_clip/model.py")
        )
        source = archive.read(name)
    rewrite_zip(root / WEIGHTS[B32], {"/code/__torch__/open_clip/model.py": code + source})
    repin(root)
    clip = manager(root, tmp_path, device="cpu").load(B32)  # the code is read as text only
    assert clip.image_size == 224
    assert not marker.exists()


def test_a_pickle_payload_in_a_state_dict_is_refused(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"visual.proj": RunsCode(marker)}, root / WEIGHTS[B32])
    repin(root)
    edit_spec(root, B32, loader_args={"pretrained_format": "open_clip"})
    with pytest.raises(UnsafeCheckpointError, match="refused and nothing in it ran") as exc:
        manager(root, tmp_path, device="cpu").load(B32)
    assert (exc.value.spec, exc.value.loader) == (B32, "open_clip")
    assert not marker.exists()
