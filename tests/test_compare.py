"""Do a model's two runtimes agree at this site (dp_models._compare, ``dp-models doctor
--compare``): the bundled probe frames through the in-process model and through a real
tritonserver serving its export, on fake roots; a served file that is not the export, a
twin that cannot run, names that are no pair and probe files that are no images, each
reported or refused as such."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from dp_models import Catalog, ConfigurationError, DPModelsError, compare_runtimes
from dp_models import _compare as compare
from dp_models._cli import main
from dp_models._export import export_onnx
from dp_models.testing import fake_catalog_dir, fake_models_root

from .fakeroots import clip_embeds_in, manager

PLACES, CLIP, CLIP_TRITON = "places365_resnet50", "clip_vit_b32", "clip_vit_b32_triton"
P224, P336, P448 = (f"places365_resnet50_{n}_triton" for n in (224, 336, 448))


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logging.disable(logging.WARNING)  # open_clip's notice that it initialised randomly
    try:
        names = [PLACES, P224, P336, P448, CLIP, CLIP_TRITON]
        return fake_models_root(tmp_path_factory.mktemp("compare") / "root", names=names)
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture
def root(shared_root: Path, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(shared_root, tmp_path / "root"))
    clip_embeds_in(root)  # the fake CLIP embeds in 16 dimensions
    return root


def _argv(root: Path, tmp_path: Path, *names: str) -> list[str]:
    argv = ["doctor", "--root", str(root), "--catalog", str(fake_catalog_dir(root))]
    argv += ["--cache-dir", str(tmp_path / "c")]
    for name in names:
        argv += ["--compare", name]
    return argv


def test_both_runtimes_agree_and_a_swapped_served_file_does_not(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exports of CLIP and of Places365 at 224 and 336 px, served by a real tritonserver:
    the CLIP pair and the 224 px pair agree on the bundled probe; the 336 px model's file
    on the server was swapped for one whose class 7 always wins (its config still claims
    the pinned digest): DISAGREE, naming the frame and both top-5; the 448 px twin, which
    the server does not serve, is an error. The command exits 1 and says all of it."""
    import onnx
    from onnx import numpy_helper

    from dp_models.testing.triton import TritonServer, write_onnx_repository

    mm = manager(root, tmp_path)
    for source, target in ((CLIP, CLIP_TRITON), (PLACES, P224), (PLACES, P336)):
        export_onnx(mm, source, target)
    catalog = Catalog.load(fake_catalog_dir(root))
    repo = tmp_path / "repo"
    write_onnx_repository(catalog, root, repo, [CLIP_TRITON, P224, P336])
    served = repo / "places365_resnet50_336" / "1" / "model.onnx"
    model = onnx.load(str(served))
    [bias] = [t for t in model.graph.initializer if numpy_helper.to_array(t).shape == (365,)]
    values = numpy_helper.to_array(bias).copy()
    values[7] += 1e4
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(served))

    with TritonServer() as server:
        server.start(repo)
        argv = [*_argv(root, tmp_path, CLIP_TRITON), "--triton-url", server.url]
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert f"{CLIP} (in process) vs {CLIP_TRITON} (Triton at {server.url}): agree" in text
        assert "probe: bundled probe (4 frames, sha256 " in text
        assert "1 of 1 pair agree" in text

        argv = [*_argv(root, tmp_path, PLACES), "--triton-url", server.url, "--json"]
        assert main([*argv, "--triton-timeout", "2"]) == 1
        report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    by_target = {c["target"]: c for c in report["comparisons"]}
    assert list(by_target) == [P224, P336, P448]  # every twin of the in-process spec
    good, swapped, missing = by_target[P224], by_target[P336], by_target[P448]
    assert good["verdict"] == "agree" and good["frames"] == 4
    [logits] = good["outputs"]
    assert (logits["name"], logits["metric"], logits["value"]) == ("logits", "top5", 1.0)
    assert swapped["verdict"] == "DISAGREE" and not swapped["agree"]
    [logits] = swapped["outputs"]
    assert logits["value"] == 0.0  # class 7 tops every frame on the server only
    assert logits["detail"].startswith("frame 0: in process [") and "Triton [7," in logits["detail"]
    assert missing["verdict"] == "error" and not missing["outputs"]
    unavailable = "TritonUnavailableError: Triton model 'places365_resnet50_448'"
    assert missing["error"].startswith(unavailable)


def test_a_pair_is_compared_from_python_on_the_callers_frames(root: Path, tmp_path: Path) -> None:
    """compare_runtimes on frames of the caller's (two, any size the preset takes): the
    in-process model runs as the export did; an unreachable endpoint is the pair's error,
    never a skip."""
    mm = manager(root, tmp_path, triton_endpoints={"default": "http://127.0.0.1:9"})
    export_onnx(mm, CLIP, CLIP_TRITON)
    frames = [np.full((90, 160, 3), v, dtype=np.uint8) for v in (30, 200)]
    [result] = compare_runtimes(CLIP_TRITON, mm, frames=frames, ready_timeout_s=0.5)
    assert (result.source, result.target, result.frames) == (CLIP, CLIP_TRITON, 2)
    assert not result.agree and result.verdict == "error"
    assert result.error is not None and "TritonUnavailableError" in result.error
    assert result.probe == "2 frames given"
    assert "error" in repr(result) and CLIP_TRITON in result._repr_html_()


def test_names_that_are_no_pair_are_refused_with_the_names_that_are(
    root: Path, tmp_path: Path
) -> None:
    catalog = Catalog.load(fake_catalog_dir(root))
    assert [t.name for _, t in compare.runtime_pairs(catalog, PLACES)] == [P224, P336, P448]
    assert [(s.name, t.name) for s, t in compare.runtime_pairs(catalog, P336)] == [(PLACES, P336)]
    packaged = Catalog.load()
    with pytest.raises(ConfigurationError, match="declares no derived_from") as info:
        compare.runtime_pairs(packaged, "clip_rn50x64_triton")
    assert CLIP_TRITON in str(info.value)
    with pytest.raises(ConfigurationError, match="no Triton spec is derived_from it"):
        compare.runtime_pairs(packaged, "emonet_8")


def test_the_command_refuses_what_does_not_go_with_compare(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(root, tmp_path, CLIP_TRITON)
    assert main([*argv, "--no-triton"]) == 1
    assert "drop NAMES, --users and --no-triton" in capsys.readouterr().err
    assert main([*argv[:-2], "--probe", str(tmp_path)]) == 1
    assert "go with --compare" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a frame", encoding="utf-8")
    assert main([*argv, "--probe", str(tmp_path / "notes.txt")]) == 1
    err = capsys.readouterr().err
    assert "notes.txt is not an image Pillow can read" in err and "PNG or JPEG" in err
    assert main([*argv, "--probe", str(tmp_path / "absent")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_the_bundled_probe_is_checked_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = compare.probe_frames()
    assert len(frames) == len(compare.PROBE_FRAMES) == 4
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert len({f.tobytes() for f in frames}) == 4
    first = next(iter(compare.PROBE_FRAMES))
    monkeypatch.setitem(compare.PROBE_FRAMES, first, "0" * 64)
    with pytest.raises(DPModelsError, match=f"probe frame {first} has sha256 .* reinstall"):
        compare.probe_frames()


def test_the_measures_say_which_frame_disagrees_and_never_round_up() -> None:
    a = np.eye(4, 8, dtype=np.float32)
    b = a.copy()
    b[2, 3] = 0.02  # frame 2 turns slightly
    result = compare._cosine("embedding", a, b, 0.9999)
    assert not result.agree and result.detail.startswith("frame 2: cosine 0.9998")
    same = compare._cosine("embedding", a, a, 0.9999)
    assert same.agree and same.summary() == "embedding cosine >= 1 (needs 0.9999)"
    assert (compare._floor(0.99999987), compare._floor(0.99995)) == ("0.9999998", "0.99995")
    logits = np.arange(24, dtype=np.float32).reshape(2, 12)
    swapped = logits.copy()
    swapped[1, [11, 10]] = swapped[1, [10, 11]]
    top = compare._top_k("logits", logits, swapped)
    assert (top.value, top.agree) == (0.5, False)
    assert top.detail.startswith("frame 1: in process [11, 10, 9, 8, 7], Triton [10, 11,")
    ids = np.array([[1, 2], [3, 4]])
    assert compare._equal("ids", ids, ids).agree
    assert compare._equal("ids", ids, ids[:, :1]).detail.startswith("shapes differ")
