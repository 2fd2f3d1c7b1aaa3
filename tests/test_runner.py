"""One calling convention (dp_models._runner): a processor function written once runs
against an in-process spec and the Triton spec exported from it (a real tritonserver serving
the export, one for the module) and gets agreeing answers; batches beyond max_batch_size are
split; a batch or frames that do not fit the interface are a typed error before anything
runs; a spec that declares no interface says what to add."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from dp_models import (
    Catalog,
    ConfigurationError,
    ModelManager,
    Runner,
    RunnerInputError,
    RunnerOutputError,
    Spec,
)
from dp_models._export import export_onnx
from dp_models._spec import Interface, TritonTensor
from dp_models.loaders.open_clip import OpenClipModel
from dp_models.testing import fake_catalog_dir, fake_models_root

from .fakeroots import FAKE_CLIP_DIM, clip_embeds_in, manager

PLACES, PLACES_TRITON = "places365_resnet50", "places365_resnet50_224_triton"
CLIP, CLIP_TRITON = "clip_vit_b32", "clip_vit_b32_triton"
PAIRS = [(CLIP, CLIP_TRITON), (PLACES, PLACES_TRITON)]
RUNNERS = [CLIP, CLIP_TRITON, PLACES, PLACES_TRITON]


def embed(runner: Runner, frames: Any) -> np.ndarray[Any, Any]:
    """A processor function, written once for either runtime."""
    return runner(runner.preprocess(frames))["embedding"]


def classify(runner: Runner, frames: Any) -> np.ndarray[Any, Any]:
    return runner(runner.preprocess(frames))["logits"]


def _frames(count: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 256, (count, 240, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelManager]:
    """A fake root whose Triton specs' models are exported from the in-process ones and
    served by a real tritonserver; a manager that reaches it."""
    from dp_models.testing.triton import TritonServer, write_onnx_repository

    base = tmp_path_factory.mktemp("runner")
    logging.disable(logging.WARNING)  # open_clip's notice that it initialised randomly
    try:
        root = fake_models_root(base / "root", names=[PLACES, PLACES_TRITON, CLIP, CLIP_TRITON])
    finally:
        logging.disable(logging.NOTSET)
    clip_embeds_in(root)
    mm = manager(root, base / "export")
    for source, target in PAIRS:
        export_onnx(mm, source, target)
    catalog = Catalog.load(fake_catalog_dir(root))
    write_onnx_repository(catalog, root, base / "repo", [CLIP_TRITON, PLACES_TRITON])
    with TritonServer() as server:
        server.start(base / "repo")
        yield manager(root, base / "served", triton_endpoints={"default": server.url})


@pytest.fixture
def runner(served: ModelManager, request: pytest.FixtureRequest) -> Iterator[Runner]:
    name: str = request.param
    with served.runner(name, device=None if name.endswith("_triton") else "cpu") as r:
        yield r


def _cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_one_processor_function_gets_agreeing_embeddings_from_both_runtimes(
    served: ModelManager,
) -> None:
    frames = _frames(37)  # more than max_batch_size (32): two model calls on each runtime
    with served.runner(CLIP, device="cpu") as local, served.runner(CLIP_TRITON) as remote:
        assert (local.inputs, local.outputs) == (remote.inputs, remote.outputs)
        assert local.max_batch_size == remote.max_batch_size == 32
        assert np.array_equal(local.preprocess(frames), remote.preprocess(frames))
        in_process, on_triton = embed(local, frames), embed(remote, frames)
    assert in_process.shape == on_triton.shape == (37, FAKE_CLIP_DIM)
    assert in_process.dtype == on_triton.dtype == np.float32
    assert _cosine(in_process, on_triton).min() >= 0.9999
    stamps = served.stamp({})
    used = {e["name"] for e in stamps["models_used"]}
    assert {CLIP, CLIP_TRITON} <= used


def test_one_processor_function_gets_the_same_top5_from_both_runtimes(
    served: ModelManager,
) -> None:
    frames = _frames(6, seed=1)
    with served.runner(PLACES, device="cpu") as local, served.runner(PLACES_TRITON) as remote:
        in_process, on_triton = classify(local, frames), classify(remote, frames)
    assert in_process.shape == on_triton.shape == (6, 365)
    top5 = np.argsort(-in_process, axis=1)[:, :5]
    assert np.array_equal(top5, np.argsort(-on_triton, axis=1)[:, :5])


def test_one_image_is_a_batch_of_one(served: ModelManager) -> None:
    with served.runner(CLIP, device="cpu") as r:
        assert r.preprocess(_frames(1)[0]).shape == (1, 3, 224, 224)
        assert embed(r, _frames(1)[0]).shape == (1, FAKE_CLIP_DIM)


def test_a_batch_beyond_max_batch_size_is_split_and_concatenated(
    served: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = OpenClipModel.image_embeddings

    def spy(self: OpenClipModel, images: Any) -> Any:
        sizes.append(int(images.shape[0]))
        return original(self, images)

    monkeypatch.setattr(OpenClipModel, "image_embeddings", spy)
    handle = served.get(CLIP, device="cpu")
    interface = handle.spec.interface
    assert interface is not None
    small = interface.model_copy(update={"max_batch_size": 3})
    runner = _with_interface(handle, small).runner()
    batch = runner.preprocess(_frames(8, seed=2))
    whole = runner(batch)["embedding"]
    assert sizes == [3, 3, 2]
    one_by_one = np.concatenate([runner(batch[i : i + 1])["embedding"] for i in range(8)])
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)


def _with_interface(handle: Any, interface: Interface) -> Any:
    spec = handle.spec.model_copy(update={"interface": interface})
    return dataclasses.replace(handle, spec=spec)


def _bad_batches() -> list[tuple[str, Any, str]]:
    good = np.zeros((2, 3, 224, 224), np.float32)
    return [
        ("dtype", good.astype(np.float64), "has dtype float64"),
        ("channels", np.zeros((2, 1, 224, 224), np.float32), "shape [2, 1, 224, 224]"),
        ("size", np.zeros((2, 3, 200, 200), np.float32), "shape [2, 3, 200, 200]"),
        ("no batch dimension", good[0], "shape [3, 224, 224]"),
        ("empty batch", good[:0], "batch dimension of at least 1"),
        ("input name", {"pixels": good}, "unexpected input 'pixels'"),
        ("not an array", good.tolist(), "not a numpy array"),
    ]


@pytest.mark.parametrize("runner", RUNNERS, indirect=True)
@pytest.mark.parametrize(("case", "batch", "problem"), _bad_batches(), ids=lambda v: v)
def test_a_batch_that_does_not_fit_is_refused_before_anything_runs(
    runner: Runner, case: str, batch: Any, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(runner, "_run", ran.append)
    with pytest.raises(RunnerInputError, match="nothing ran") as info:
        runner(batch)
    assert ran == []
    assert (info.value.spec, info.value.runtime) == (runner.name, runner.runtime)
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("runner", RUNNERS, indirect=True)
@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        (np.zeros((2, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((2, 64, 64, 5), np.uint8), "RGBA"),
        ([np.zeros((64, 64, 2), np.uint8)], "RGBA"),
    ],
    ids=["dtype", "five channels", "two channels"],
)
def test_frames_the_preset_cannot_take_are_a_typed_error(
    runner: Runner, frames: Any, problem: str
) -> None:
    with pytest.raises(RunnerInputError, match=problem) as info:
        runner.preprocess(frames)
    assert info.value.spec == runner.name and info.value.__cause__ is not None


def test_outputs_that_differ_from_the_interface_are_a_typed_error(served: ModelManager) -> None:
    handle = served.get(CLIP, device="cpu")
    declared = Interface(
        call="image_embeddings",
        max_batch_size=32,
        inputs=[TritonTensor(name="image", datatype="FP32", shape=[3, 224, 224])],
        outputs=[TritonTensor(name="embedding", datatype="FP32", shape=[512])],
    )
    runner = _with_interface(handle, declared).runner()
    with pytest.raises(RunnerOutputError, match=r"shape \[2, 16\].*\[2, 512\]") as info:
        embed(runner, _frames(2))
    assert info.value.spec == CLIP
    wrong_call = _with_interface(handle, declared.model_copy(update={"call": "encode_video"}))
    with pytest.raises(ConfigurationError, match=r"'encode_video'.*fix interface\.call"):
        wrong_call.runner()


def test_a_spec_without_an_interface_says_what_to_add(served: ModelManager) -> None:
    with pytest.raises(ConfigurationError, match="add an 'interface' section") as info:
        served.runner("places365_categories")
    assert "docs/manager.md" in str(info.value)
    with pytest.raises(TypeError, match="no client options"):
        served.runner(CLIP, device="cpu", network_timeout_s=1.0)


def test_a_triton_spec_has_no_interface_section() -> None:
    data = Catalog.load()[CLIP_TRITON].model_dump(exclude_none=True)
    data["interface"] = Catalog.load()[CLIP].model_dump()["interface"]
    with pytest.raises(ValueError, match=r"its 'triton' section .* is its interface"):
        Spec.model_validate(data, strict=False)


def test_the_catalog_s_in_process_specs_declare_their_triton_twin_s_interface() -> None:
    """Each Triton spec exported from an in-process spec with an interface, at the same
    preset (places365_resnet50 is also exported at 336 and 448 px), takes and returns
    what that interface declares: switching runtime is switching the spec name."""
    catalog = Catalog.load()
    twins = [
        (catalog[s.derived_from], s)
        for s in catalog.values()
        if s.derived_from is not None
        and catalog[s.derived_from].interface is not None
        and catalog[s.derived_from].preprocess == s.preprocess
    ]
    assert {source.name for source, _ in twins} >= {CLIP, "clip_vit_l14_336", PLACES}
    for source, target in twins:
        interface, triton = source.interface, target.triton
        assert interface is not None and triton is not None
        assert (interface.inputs, interface.outputs) == (triton.inputs, triton.outputs)
        assert interface.max_batch_size == triton.max_batch_size
