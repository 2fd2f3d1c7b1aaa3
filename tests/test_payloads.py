"""A pickle payload as the weights of every packaged spec whose loader unpickles: refused,
typed, and the file the payload would write never appears.

The loaders' own test files hold the payloads specific to them: TorchScript archives
(test_loaders.py, test_loader_open_clip.py), a class-rebinding protocol 4 pickle
(test_loader_laion_clap.py), every pickle protocol (test_checkpoint.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dp_models._catalog import Catalog
from dp_models._errors import LoaderError, UnsafeCheckpointError
from dp_models.testing import fake_models_root

from .fakeroots import RunsCode, manager, repin

pytestmark = pytest.mark.adversarial

#: One packaged spec per loader that reads a pickle (open_clip and laion_clap: their own files).
SPECS = ["emonet_8", "places365_resnet50", "resnet18_features", "slowfast_r50", "yolo11n_detector"]
PICKLES = ("pt", "pth", "pth.tar", "pyth")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # emonet_8's class is the processor's, not installed here: a TinyNet stands in
    yield fake_models_root(
        tmp_path_factory.mktemp("payloads") / "root", names=SPECS, substitute=["emonet_8"]
    )


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_payload_is_refused_by_every_unpickling_loader(
    name: str, protocol: int, pristine: Path, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(pristine, tmp_path / "root"))
    spec = Catalog.load()[name]
    weights = root / next(a.path for a in spec.artifacts if a.format in PICKLES)
    marker = tmp_path / "pwned"
    weights.unlink()
    torch.save(
        {"state_dict": {"w": RunsCode(marker)}, "model": RunsCode(marker)},
        weights,
        pickle_protocol=protocol,
    )
    repin(root)
    # Ultralytics unpickles with its own weights-only loader, which stops at protocol 4's
    # first opcode: refused before anything ran, reported as an unreadable checkpoint
    unreadable = spec.loader == "ultralytics" and protocol > 2
    expected, match = (
        (LoaderError, "cannot load") if unreadable else (UnsafeCheckpointError, "nothing in it ran")
    )
    with pytest.raises(expected, match=match) as exc:
        manager(root, tmp_path, device="cpu").load(name)
    assert exc.value.spec == name and exc.value.loader == spec.loader
    assert not marker.exists()
