"""Loads through the manager against the frameworks' own loads of the same file, as ratios
measured in one run (issue 14, loads).

For each net (the real architecture, random weights written in the real checkpoint
formats: a ``.pth``/``.pt`` state dict and safetensors), ``mm.load`` with the digests
cached (the model dropped with ``mm.unload`` before each round, so it is rebuilt and
re-verified through the digest cache) against the framework's own load of the same file:

- resnet50, slowfast_r50 and an EmoNet-size net (``_fan.py``; ``torch_state_dict``):
  build the model the framework's way (``torchvision.models.resnet50(weights=None)``,
  ``SlowFast(...)``, the class), then ``load_state_dict`` of ``torch.load(path,
  weights_only=True)`` or of ``safetensors.torch.load_file(path)``;
- open_clip ViT-B-32: ``open_clip.create_model_and_transforms("ViT-B-32",
  pretrained=path)``.

Targets: at most 0.25x for resnet50, 0.1x for open_clip ViT-B-32, 0.35x for slowfast_r50
and the EmoNet-size net. Outputs are checked equal, bit for bit, on one input.

    python benchmarks/bench_loads.py [--repeats 5] [--only NAME] [--out FILE]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _common import best_of
from _fan import FanEmotionNet
from _report import Row, report
from safetensors.torch import load_file, save_file

from dp_models import ModelManager
from dp_models._lock import Lock, LockEntry
from dp_models._settings import Settings
from dp_models.loaders._slowfast_net import SlowFast
from dp_models.loaders.slowfast import SlowFastArgs, net_kwargs


@dataclass
class Net:
    """One benchmarked net: how the framework builds it with random weights, its spec's
    loader and arguments, the framework's own load of a file, the target, and how one
    output is computed."""

    build: Callable[[], Any]
    engine: str
    loader: str
    loader_args: str
    own: Callable[[Path], Any]
    target: float
    output: Callable[[Any], Any]
    formats: tuple[str, str] = ("pth", "safetensors")


def _state_dict_load(build: Callable[[], Any]) -> Callable[[Path], Any]:
    def own(path: Path) -> Any:
        model = build()
        if path.suffix == ".safetensors":
            model.load_state_dict(load_file(str(path)))
        else:
            model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    return own


def _nets() -> dict[str, Net]:
    import open_clip
    import torchvision

    # the r50 network whole (every weight of the real checkpoint's shapes); a 64-pixel,
    # 8-frame clip only sizes the head's pooling, so the output check stays quick
    slowfast_kwargs = net_kwargs(SlowFastArgs(arch="slowfast_r50", crop_size=64, clip_frames=8))
    clips = [torch.randn(1, 3, 2, 64, 64), torch.randn(1, 3, 8, 64, 64)]
    image, face = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 128, 128)
    pixels, tokens = torch.randn(1, 3, 224, 224), open_clip.tokenize(["a photo of a cat"])

    def resnet50() -> Any:
        return torchvision.models.resnet50(weights=None)

    def slowfast() -> Any:
        return SlowFast(**slowfast_kwargs)

    def clip() -> Any:
        return open_clip.create_model("ViT-B-32", pretrained=None)

    def clip_own(path: Path) -> Any:
        return open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(path))[0].eval()

    def clip_out(loaded: Any) -> Any:
        model = getattr(loaded, "model", loaded)
        return torch.cat([model.encode_image(pixels), model.encode_text(tokens)], dim=1)

    return {
        "resnet50": Net(
            resnet50, "torch", "torchvision", "{arch: resnet50}", _state_dict_load(resnet50),
            0.25, lambda m: m(image),
        ),
        "slowfast_r50": Net(
            slowfast, "torch", "slowfast",
            "{arch: slowfast_r50, crop_size: 64, clip_frames: 8, state_dict_key: null}",
            _state_dict_load(slowfast), 0.35, lambda m: m(clips),
        ),
        "emonet_size": Net(
            FanEmotionNet, "torch", "torch_state_dict", "{class_path: '_fan:FanEmotionNet'}",
            _state_dict_load(FanEmotionNet), 0.35, lambda m: m(face),
        ),
        "open_clip_vit_b32": Net(
            clip, "open_clip", "open_clip",
            "{model_name: ViT-B-32, pretrained_format: open_clip}",
            clip_own, 0.10, clip_out, formats=("pt", "safetensors"),
        ),
    }  # fmt: skip


def _random_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            out[key] = torch.randn(value.shape, generator=gen) * 0.01
            if key.endswith("running_var"):
                out[key] = out[key].abs() + 1.0
        else:
            out[key] = value.clone()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", action="append", help="benchmark only this net (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # open_clip's notice that it initialised randomly
    nets = {k: v for k, v in _nets().items() if not args.only or k in args.only}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, catalog = base / "root", base / "catalog"
        catalog.mkdir()
        entries: dict[str, LockEntry] = {}
        files: dict[tuple[str, str], Path] = {}
        for name, net in nets.items():
            state = _random_state(net.build())
            for fmt in net.formats:
                path = root / "nets" / f"{name}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if fmt == "safetensors":
                    save_file(state, str(path))
                else:
                    torch.save(state, path)
                files[(name, fmt)] = path
                rel = path.relative_to(root).as_posix()
                data = path.read_bytes()
                entries[rel] = LockEntry("file", hashlib.sha256(data).hexdigest(), len(data), None)
                (catalog / f"{name}_{fmt}.yaml").write_text(
                    textwrap.dedent(
                        f"""\
                        name: {name}_{fmt}
                        version: "1"
                        family: bench
                        role: bench
                        users: [Bench/loads]
                        runtime: inprocess
                        engine: {net.engine}
                        loader: {net.loader}
                        loader_args: {net.loader_args}
                        artifacts:
                          - {{path: {rel}, format: {fmt}}}
                        device: cpu
                        """
                    )
                )
        lock = Lock(base / "lock.json", entries, exists=False)
        lock.write()
        settings = Settings.resolve(
            models_root=root, catalog=catalog, lock=lock.path, cache_dir=base / "cache"
        )
        mm = ModelManager(settings=settings)
        time.sleep(2.1)  # past the digest cache's racy window: digests are cached, as deployed
        for name, net in nets.items():
            for fmt in net.formats:
                spec, path = f"{name}_{fmt}", files[(name, fmt)]

                def own(net: Net = net, path: Path = path) -> Any:
                    return net.own(path)

                def ours(spec: str = spec) -> Any:
                    mm.unload(spec)
                    return mm.load(spec)

                with torch.no_grad():
                    equal = torch.equal(net.output(own()), net.output(ours()))
                t = best_of({"ours": ours, "own": own}, args.repeats)
                ratio = t["ours"] / t["own"]
                rows.append(
                    (
                        f"`mm.load` {name} ({fmt}, digests cached) vs the framework's own load"
                        + ("" if equal else " (**outputs differ**)"),
                        f"{t['ours'] * 1e3:.0f} ms vs {t['own'] * 1e3:.0f} ms: **{ratio:.2f}x**",
                        f"≤ {net.target:.2f}x, equal",
                        ratio <= net.target and equal,
                    )
                )
    how = f"best of {args.repeats} interleaved rounds, CPU, random weights."
    return report("bench_loads.py", "dp_models load benchmark", how, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
