"""The ``slowfast`` loader (dp_models.loaders.slowfast) and its in-house SlowFast network:
the catalog's slowfast_r50 on a fake root, the network's fidelity to PyTorchVideo's
checkpoint layout, device and precision, and the errors of corrupt artifacts."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dp_models._errors import LoaderArgsError, PrecisionError, StateDictMismatchError
from dp_models.loaders._slowfast_net import SlowFast
from dp_models.preprocess import preprocess
from dp_models.testing import fake_models_root
from dp_models.testing.fakes.torch import FAKE_SLOWFAST

from .fakeroots import catalog_problem, needs_cuda
from .test_loader_torchvision import edit_spec, manager, repin

NAME = "slowfast_r50"
WEIGHTS = "visual/slowfast/SLOWFAST_8x8_R50.pyth"
#: PyTorchVideo 0.1.5's ``slowfast_r50()`` state dict: the sha256 of its "key [shape]" lines
#: (computed with PyTorchVideo once; it is not a test dependency) and its parameter count.
PYTORCHVIDEO_R50_KEYS = "8c94cebf7413000a7bea924521ac9dbecb5aaba678c950a644b0459a7a90324d"
PYTORCHVIDEO_R50_PARAMS = 34_566_488
CLIP = torch.linspace(-1.0, 1.0, 2 * 3 * 32 * 32 * 32).reshape(2, 3, 32, 32, 32)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_models_root(tmp_path_factory.mktemp("pristine"), names=[NAME])


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    """A fake root of the test's own (a copy: tests change its files and its catalog)."""
    return Path(shutil.copytree(pristine, tmp_path / "root"))


@pytest.mark.no_network
def test_slowfast_r50_loads_from_a_fake_root_offline(tmp_path: Path) -> None:
    root = fake_models_root(tmp_path / "root", names=[NAME])  # inside the guard too
    mm = manager(root, tmp_path, device="cpu")
    handle = mm.get(NAME)
    assert handle.spec.loader_args == {
        "arch": "slowfast_r50",
        "num_classes": 400,
        "clip_frames": 32,
        "alpha": 4,
        **FAKE_SLOWFAST,
    }
    model = handle.load()
    assert isinstance(model, SlowFast)
    assert not model.training
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cpu", torch.float32)}
    assert (model.clip_frames, model.alpha) == (32, 4)
    slow, fast = model.pathways(CLIP)
    assert (slow.shape, fast.shape) == ((2, 3, 8, 32, 32), (2, 3, 32, 32, 32))
    assert torch.equal(slow[:, :, 0], CLIP[:, :, 0]) and torch.equal(slow[:, :, -1], CLIP[:, :, -1])
    with torch.no_grad():
        logits = model([slow, fast])
        assert logits.shape == (2, 400)
        assert torch.equal(model(model.pathways(CLIP)), logits)  # eval mode: deterministic
        big = torch.rand(1, 3, 32, 64, 64)  # larger crops than the fake's 32 work too
        assert model(model.pathways(big)).shape == (1, 400)
    entry = next(e for e in mm.models_used() if e["name"] == NAME)
    assert entry["framework"] == {"name": "torch", "version": metadata.version("torch")}
    assert entry["requires"] == ["kinetics400_categories"]
    assert (entry["loader"], entry["device"], entry["precision"]) == ("slowfast", "cpu", "fp32")


def test_the_fake_is_a_small_pytorchvideo_checkpoint(root: Path) -> None:
    assert (root / WEIGHTS).stat().st_size < 2_000_000  # the real one is 138 MB of weights
    checkpoint = torch.load(root / WEIGHTS, weights_only=True)
    assert list(checkpoint) == ["model_state"]
    assert "blocks.6.proj.weight" in checkpoint["model_state"]


def test_the_network_has_pytorchvideos_slowfast_r50_keys_and_shapes() -> None:
    with torch.device("meta"):  # shapes only: no 138 MB of memory
        model = SlowFast()
    state = model.state_dict()
    listing = "".join(f"{k} {list(v.shape)}\n" for k, v in state.items())
    assert len(state) == 662
    assert hashlib.sha256(listing.encode()).hexdigest() == PYTORCHVIDEO_R50_KEYS
    assert sum(p.numel() for p in model.parameters()) == PYTORCHVIDEO_R50_PARAMS
    assert state["blocks.0.multipathway_fusion.conv_fast_to_slow.weight"].shape == (16, 8, 7, 1, 1)
    assert state["blocks.6.proj.weight"].shape == (400, 2304)


def test_the_real_checkpoint_layout_loads_and_reproduces_the_reference(
    root: Path, tmp_path: Path
) -> None:
    """Weights with distinctive values (and batch-norm statistics), saved as PyTorchVideo
    saves them, give the reference network's exact outputs."""
    torch.manual_seed(0)
    reference = SlowFast(num_classes=400, layers=(1, 1, 1, 1), width=8, crop_size=32).eval()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save({"model_state": reference.state_dict(), "epoch": 196}, root / WEIGHTS)
    repin(root)
    model = manager(root, tmp_path, device="cpu").load(NAME)
    with torch.no_grad():
        assert torch.equal(model(model.pathways(CLIP)), reference(reference.pathways(CLIP)))


def test_precision(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    with pytest.raises(PrecisionError, match=r"fp16 on the CPU is not allowed"):
        mm.get(NAME, precision="fp16")
    edit_spec(root, NAME, allow_half_on_cpu=True)
    model = manager(root, tmp_path, device="cpu").load(NAME, precision="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@needs_cuda
@pytest.mark.no_network
def test_cuda_fp16(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path)
    model = mm.load(NAME, precision="fp16")
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cuda", torch.float16)}
    with torch.no_grad():
        assert model(model.pathways(CLIP.cuda().half())).shape == (2, 400)


def test_a_plain_state_dict_needs_state_dict_key_null(root: Path, tmp_path: Path) -> None:
    state = torch.load(root / WEIGHTS, weights_only=True)["model_state"]
    torch.save(state, root / WEIGHTS)
    repin(root)
    with pytest.raises(
        LoaderArgsError,
        match=r"^spec 'slowfast_r50': the checkpoint has no key 'model_state' "
        r"\(loader_args.state_dict_key\); its top-level keys are \['blocks\.0\.",
    ) as exc:
        manager(root, tmp_path, device="cpu").load(NAME)
    assert exc.value.loader == "slowfast"
    edit_spec(root, NAME, loader_args={"state_dict_key": None})
    assert isinstance(manager(root, tmp_path, device="cpu").load(NAME), SlowFast)


def test_weights_of_another_architecture_are_a_mismatch(root: Path, tmp_path: Path) -> None:
    edit_spec(root, NAME, loader_args={"layers": [1, 2, 1, 1]})
    with pytest.raises(
        StateDictMismatchError,
        match=r"^spec 'slowfast_r50': the weights do not fit SlowFast "
        r"slowfast_r50: 30 missing key\(s\) \[blocks\.2\.multipathway_blocks\.0\.res_blocks\.1\.",
    ) as exc:
        manager(root, tmp_path, device="cpu").load(NAME)
    assert exc.value.unexpected == ()
    edit_spec(root, NAME, loader_args={"layers": [1, 1, 1, 1], "num_classes": 10})
    with pytest.raises(StateDictMismatchError, match=r"size mismatch for blocks\.6\.proj\.weight"):
        manager(root, tmp_path, device="cpu").load(NAME)


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"arch": "slowfast_r18"}, "arch", r"'slowfast_r50' or 'slowfast_r101' \(got 'slowf"),
        ({"clip_frames": 30}, "", r"clip_frames \(30\) must be a multiple of alpha \(4\)"),
        ({"crop_size": 100}, "", r"crop_size must be a multiple of 32, got 100"),
        ({"layers": [1, 1]}, "layers", r"at least 4 items"),
        ({"layers": [1, 1, 0, 1]}, "layers[2]", r"greater than or equal to 1"),
        ({"num_classes": 0}, "num_classes", r"greater than or equal to 1"),
        ({"width": 12}, "", r"width must be a multiple of 8, got 12"),
        ({"weights_only": "no"}, "weights_only", r"valid boolean \(got 'no'\)"),
    ],
)
def test_loader_args_the_catalog_refuses(
    args: dict[str, Any], field: str, message: str, root: Path, tmp_path: Path
) -> None:
    edit_spec(root, NAME, loader_args=args)
    problem = catalog_problem(root, tmp_path, device="cpu")
    assert problem.field == f"loader_args.{field}".rstrip(".")
    assert re.search(message, problem.message), problem.message


def test_the_network_refuses_a_single_pathway() -> None:
    model = SlowFast(layers=(1, 1, 1, 1), width=8, crop_size=32)
    with pytest.raises(ValueError, match=r"^SlowFast takes \[slow, fast\] clips, got 1 tensor"):
        model([CLIP])


def test_the_kinetics_labels_it_requires_become_categories(root: Path, tmp_path: Path) -> None:
    """PyTorchVideo's kinetics_classnames.json as upstream writes it (names with spaces in
    quotes, an object of name: index) through the kinetics400_categories spec."""
    names = ["abseiling", "air drumming", *(f"action {i}" for i in range(398))]
    upstream = {(f'"{n}"' if " " in n else n): i for i, n in enumerate(names)}
    (root / "visual/slowfast/kinetics_classnames.json").write_text(json.dumps(upstream))
    repin(root)
    model = manager(root, tmp_path, device="cpu").load(NAME)
    assert model.categories[:3] == ("abseiling", "air drumming", "action 0")
    assert len(model.categories) == 400 and model.categories.spec == "kinetics400_categories"


def test_the_specs_preset_makes_the_clips_the_model_takes(root: Path, tmp_path: Path) -> None:
    mm = manager(root, tmp_path, device="cpu")
    spec = mm.get(NAME).spec
    frames = np.random.default_rng(0).integers(0, 256, (40, 60, 80, 3), dtype=np.uint8)
    slow, fast = preprocess(spec.preprocess or "", frames)
    assert (slow.shape, fast.shape) == ((3, 8, 256, 256), (3, 32, 256, 256))
    model = mm.load(NAME)
    with torch.no_grad():
        logits = model([torch.from_numpy(slow)[None], torch.from_numpy(fast)[None]])
    assert logits.shape == (1, 400)
