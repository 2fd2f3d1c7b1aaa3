"""Loads that build the module without initialising its parameters and fill it from the
checkpoint: the model computes exactly what the framework's own load of the same file
computes (bit for bit), in both checkpoint formats; buffers computed at construction keep
their values; another thread's builds initialise as before."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from dp_models import ModelManager
from dp_models._lock import Lock, LockEntry

from .conftest import sha256


class BufferedNet(torch.nn.Module):
    """A net with a non-persistent buffer (computed at construction, in no state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)
        self.register_buffer("scale", torch.linspace(0.5, 2.0, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


class NormNet(torch.nn.Module):
    """Conv, batch norm (running statistics and an int64 counter), linear."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3)
        self.norm = torch.nn.BatchNorm2d(width)
        self.head = torch.nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x)).mean(dim=(2, 3)))


def _randomised(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``model``'s shapes with random values (running stats included)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            state[key] = torch.randn(value.shape, generator=gen)
            if key.endswith("running_var"):
                state[key] = state[key].abs() + 0.1
        else:
            state[key] = value.clone()
    return state


def _write(path: Path, state: dict[str, torch.Tensor]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return sha256(path.read_bytes())


def _spec(name: str, loader: str, args: str, path: str, fmt: str, engine: str = "torch") -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        version: "1"
        family: test
        role: test
        users: [VisualProcessor/test]
        runtime: inprocess
        engine: {engine}
        loader: {loader}
        loader_args: {args}
        artifacts:
          - {{path: {path}, format: {fmt}}}
        device: cpu
        """
    )


def _manager(
    tmp_path: Path, specs: dict[str, tuple[str, str, str, str]], root: Path, engine: str = "torch"
) -> Any:
    catalog = tmp_path / "catalog"
    catalog.mkdir(exist_ok=True)
    entries = {}
    for name, (loader, args, path, fmt) in specs.items():
        (catalog / f"{name}.yaml").write_text(_spec(name, loader, args, path, fmt, engine))
        data = (root / path).read_bytes()
        entries[path] = LockEntry("file", sha256(data), len(data), None)
    lock = Lock(tmp_path / "site.lock.json", entries, exists=False)
    lock.write()
    return ModelManager(
        models_root=root, catalog=catalog, lock=lock.path, cache_dir=tmp_path / "cache"
    )


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_torch_state_dict_computes_what_the_framework_load_computes(
    tmp_path: Path, fmt: str
) -> None:
    reference = NormNet()
    state = _randomised(reference, seed=1)
    root = tmp_path / "root"
    path = f"nets/norm.{fmt}"
    _write(root / path, state)
    args = "{class_path: 'tests.test_uninitialised_loads:NormNet'}"
    mm = _manager(tmp_path, {"norm": ("torch_state_dict", args, path, fmt)}, root)
    model = mm.load("norm")
    reference.load_state_dict(state)  # the framework's own load
    reference.eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    assert model.norm.num_batches_tracked.dtype == torch.int64


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``torch.nn.init`` initialised from now on: "parameter" or "tensor" per call."""
    calls: list[str] = []
    for name in ("kaiming_uniform_", "uniform_", "normal_"):
        original = getattr(torch.nn.init, name)

        def counted(tensor: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append("parameter" if isinstance(tensor, torch.nn.Parameter) else "tensor")
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, counted)
    return calls


class WaitingNet(NormNet):
    """A NormNet whose constructor waits until the test lets it finish."""

    started = threading.Event()
    release = threading.Event()

    def __init__(self) -> None:
        super().__init__()
        WaitingNet.started.set()
        WaitingNet.release.wait(30)


def test_the_build_initialises_no_parameter_and_other_threads_initialise_theirs(
    tmp_path: Path, init_calls: list[str]
) -> None:
    reference = NormNet()
    assert init_calls.count("parameter") == 4  # the counter sees the framework's build
    init_calls.clear()
    root = tmp_path / "root"
    state = _randomised(reference, seed=2)
    _write(root / "nets/norm.safetensors", state)
    args = "{class_path: 'tests.test_uninitialised_loads:WaitingNet'}"
    mm = _manager(
        tmp_path, {"norm": ("torch_state_dict", args, "nets/norm.safetensors", "safetensors")}, root
    )
    loaded: list[Any] = []
    loader = threading.Thread(target=lambda: loaded.append(mm.load("norm")))
    loader.start()
    try:
        assert WaitingNet.started.wait(30)
        assert init_calls == []  # the load's build, halfway: nothing initialised
        torch.nn.Linear(3, 2)  # this thread, meanwhile: initialised as usual
        assert init_calls == ["parameter", "parameter"]
    finally:
        WaitingNet.release.set()
        loader.join(30)
    assert init_calls == ["parameter", "parameter"] and len(loaded) == 1
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(7))
    reference.load_state_dict(state)
    reference.eval()
    with torch.no_grad():
        assert torch.equal(loaded[0](x), reference(x))


def test_a_checkpoint_in_another_dtype_is_cast_as_the_framework_casts_it(tmp_path: Path) -> None:
    reference = NormNet()
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in _randomised(reference, seed=3).items()
    }
    root = tmp_path / "root"
    _write(root / "nets/half.safetensors", state)
    args = "{class_path: 'tests.test_uninitialised_loads:NormNet'}"
    mm = _manager(
        tmp_path, {"half": ("torch_state_dict", args, "nets/half.safetensors", "safetensors")}, root
    )
    model = mm.load("half")
    reference.load_state_dict(state)
    reference.eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x = torch.randn(1, 3, 10, 10, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_a_module_with_non_persistent_buffers_keeps_them(
    tmp_path: Path, init_calls: list[str]
) -> None:
    """Its buffers are computed by its constructor; its parameters are left as allocated
    (the checkpoint fills them), and it computes what the framework's load computes."""
    reference = BufferedNet()
    assert init_calls.count("parameter") == 2  # the counter sees the framework's build
    init_calls.clear()
    state = _randomised(reference, seed=5)
    root = tmp_path / "root"
    _write(root / "nets/buffered.pth", state)
    args = "{class_path: 'tests.test_uninitialised_loads:BufferedNet'}"
    mm = _manager(
        tmp_path, {"buffered": ("torch_state_dict", args, "nets/buffered.pth", "pth")}, root
    )
    model = mm.load("buffered")
    assert init_calls == []
    assert model.scale.device.type == "cpu"
    torch.testing.assert_close(model.scale, torch.linspace(0.5, 2.0, 4), rtol=0, atol=0)
    reference.load_state_dict(state)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_torchvision_resnet_computes_what_torchvision_computes(tmp_path: Path, fmt: str) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None, num_classes=10)
    state = _randomised(reference, seed=8)
    root = tmp_path / "root"
    _write(root / f"nets/resnet18.{fmt}", state)
    args = "{arch: resnet18, num_classes: 10}"
    mm = _manager(tmp_path, {"r18": ("torchvision", args, f"nets/resnet18.{fmt}", fmt)}, root)
    model = mm.load("r18")
    reference.load_state_dict(state)
    reference.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_slowfast_computes_what_the_net_computes(tmp_path: Path, fmt: str) -> None:
    from dp_models.loaders._slowfast_net import SlowFast
    from dp_models.loaders.slowfast import SlowFastArgs, net_kwargs

    args_yaml = (
        "{arch: slowfast_r50, num_classes: 7, layers: [1, 1, 1, 1], width: 8, crop_size: 64, "
        "clip_frames: 8, state_dict_key: null}"
    )
    kwargs = net_kwargs(
        SlowFastArgs(
            arch="slowfast_r50",
            num_classes=7,
            layers=[1, 1, 1, 1],
            width=8,
            crop_size=64,
            clip_frames=8,
        )
    )
    reference = SlowFast(**kwargs)
    state = _randomised(reference, seed=10)
    root = tmp_path / "root"
    _write(root / f"nets/slowfast.{fmt}", state)
    mm = _manager(tmp_path, {"sf": ("slowfast", args_yaml, f"nets/slowfast.{fmt}", fmt)}, root)
    model = mm.load("sf")
    reference.load_state_dict(state)
    reference.eval()
    gen = torch.Generator().manual_seed(11)
    slow, fast = (
        torch.randn(1, 3, 2, 64, 64, generator=gen),
        torch.randn(1, 3, 8, 64, 64, generator=gen),
    )
    with torch.no_grad():
        assert torch.equal(model([slow, fast]), reference([slow, fast]))


def test_safetensors_go_straight_into_the_module_and_their_keys_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct reader (one copy, from a map of the verified file) is what reads a
    safetensors file into a module built empty, prefix stripped; a key missing or of
    another shape is the same typed error as through load_state_dict."""
    from dp_models import StateDictMismatchError
    from dp_models.loaders import _safetensors

    calls: list[str] = []
    original = _safetensors.read_into

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("strip_prefix") or "")
        return original(*args, **kwargs)

    monkeypatch.setattr(_safetensors, "read_into", spy)
    reference = NormNet()
    state = _randomised(reference, seed=12)
    root = tmp_path / "root"
    _write(root / "nets/prefixed.safetensors", {f"module.{k}": v for k, v in state.items()})
    del state["head.bias"]
    _write(root / "nets/missing.safetensors", state)
    wrong = dict(_randomised(reference, seed=13), **{"head.bias": torch.zeros(3)})
    _write(root / "nets/wrong.safetensors", wrong)
    base = "{class_path: 'tests.test_uninitialised_loads:NormNet', strip_prefix: 'module.'}"
    mm = _manager(
        tmp_path,
        {
            name: ("torch_state_dict", base, f"nets/{name}.safetensors", "safetensors")
            for name in ("prefixed", "missing", "wrong")
        },
        root,
    )
    model = mm.load("prefixed")
    reference.load_state_dict(_randomised(NormNet(), seed=12))
    x = torch.randn(1, 3, 9, 9, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))
    assert calls == ["module."]
    with pytest.raises(StateDictMismatchError, match=r"1 missing key\(s\) \[head.bias\]") as e:
        mm.load("missing")
    assert list(e.value.missing) == ["head.bias"]
    with pytest.raises(StateDictMismatchError, match=r"other shapes for 1 key\(s\) \[head.bias\]"):
        mm.load("wrong")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_open_clip_computes_what_open_clips_own_load_computes(tmp_path: Path, fmt: str) -> None:
    """Built without initialising (its text tower's causal mask computed as open_clip
    computes it), filled from the file: the same embeddings as open_clip's own
    ``create_model_and_transforms(pretrained=FILE)``, bit for bit, and the same transform."""
    import logging

    import numpy as np
    import open_clip
    from PIL import Image

    from dp_models.testing.fakes.open_clip import tiny_model_kwargs

    kwargs = tiny_model_kwargs(224)
    logging.disable(logging.WARNING)  # open_clip's notice that it initialised randomly
    try:
        state = _randomised(open_clip.create_model("ViT-B-32", **kwargs), seed=12)
    finally:
        logging.disable(logging.NOTSET)
    root = tmp_path / "root"
    _write(root / f"clip/tiny.{fmt}", state)
    args = f"{{model_name: ViT-B-32, pretrained_format: open_clip, model_kwargs: {kwargs}}}"
    spec = ("open_clip", args, f"clip/tiny.{fmt}", fmt)
    mm = _manager(tmp_path, {"tiny_clip": spec}, root, engine="open_clip")
    clip = mm.load("tiny_clip")
    own, _, own_preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=str(root / f"clip/tiny.{fmt}"), **kwargs
    )
    own.eval()
    image = Image.fromarray(
        np.random.default_rng(13).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    )
    pixels = clip.preprocess(image)
    assert torch.equal(pixels, own_preprocess(image))
    tokens = clip.tokenizer(["a photo of a cat", "a dog"])
    with torch.no_grad():
        assert torch.equal(clip.model.encode_image(pixels[None]), own.encode_image(pixels[None]))
        assert torch.equal(clip.model.encode_text(tokens), own.encode_text(tokens))
    assert torch.equal(clip.model.attn_mask, own.attn_mask)
