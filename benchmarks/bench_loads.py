"""Loads through the manager against the frameworks' own loads of the same file, as ratios
measured in one run (issue 14, loads).

For each net (the real architecture, random weights written in the real checkpoint
formats: a ``.pth`` state dict and safetensors), ``mm.load`` with the digests cached
(the model dropped with ``mm.unload`` before each round, so it is rebuilt and re-verified
through the digest cache) against the framework's own load: build the model the
framework's way (``torchvision.models.resnet50(weights=None)``, ``SlowFast(...)``), then
``load_state_dict`` of ``torch.load(path, weights_only=True)`` or of
``safetensors.torch.load_file(path)``. Targets: at most 0.25x for resnet50, 0.35x for
slowfast_r50. Outputs are checked equal, bit for bit, on one input.

    python benchmarks/bench_loads.py [--repeats 5] [--out FILE]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import best_of
from _report import Row, report
from safetensors.torch import load_file, save_file

from dp_models import ModelManager
from dp_models._lock import Lock, LockEntry
from dp_models._settings import Settings
from dp_models.loaders._slowfast_net import SlowFast
from dp_models.loaders.slowfast import SlowFastArgs, net_kwargs


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
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torchvision

    # the r50 network whole (every weight of the real checkpoint's shapes); a 64-pixel,
    # 8-frame clip only sizes the head's pooling, so the output check stays quick
    slowfast_kwargs = net_kwargs(SlowFastArgs(arch="slowfast_r50", crop_size=64, clip_frames=8))
    nets: dict[str, tuple[Callable[[], torch.nn.Module], str, str, float, Any]] = {
        "resnet50": (
            lambda: torchvision.models.resnet50(weights=None),
            "torchvision",
            "{arch: resnet50}",
            0.25,
            torch.randn(1, 3, 64, 64),
        ),
        "slowfast_r50": (
            lambda: SlowFast(**slowfast_kwargs),
            "slowfast",
            "{arch: slowfast_r50, crop_size: 64, clip_frames: 8, state_dict_key: null}",
            0.35,
            [torch.randn(1, 3, 2, 64, 64), torch.randn(1, 3, 8, 64, 64)],
        ),
    }
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, catalog = base / "root", base / "catalog"
        catalog.mkdir()
        entries: dict[str, LockEntry] = {}
        files: dict[tuple[str, str], Path] = {}
        for name, (build, loader, loader_args, _, _) in nets.items():
            state = _random_state(build())
            for fmt in ("pth", "safetensors"):
                path = root / "nets" / f"{name}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if fmt == "pth":
                    torch.save(state, path)
                else:
                    save_file(state, str(path))
                files[(name, fmt)] = path
                rel = path.relative_to(root).as_posix()
                import hashlib

                data = path.read_bytes()
                entries[rel] = LockEntry("file", hashlib.sha256(data).hexdigest(), len(data), None)
                spec = f"{name}_{fmt}".replace("-", "_")
                (catalog / f"{spec}.yaml").write_text(
                    textwrap.dedent(
                        f"""\
                        name: {spec}
                        version: "1"
                        family: bench
                        role: bench
                        users: [Bench/loads]
                        runtime: inprocess
                        engine: torch
                        loader: {loader}
                        loader_args: {loader_args}
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
        for name, (build, _, _, target, example) in nets.items():
            for fmt in ("pth", "safetensors"):
                spec = f"{name}_{fmt}"
                path = files[(name, fmt)]

                def own(build: Any = build, path: Path = path, fmt: str = fmt) -> Any:
                    model = build()
                    if fmt == "pth":
                        model.load_state_dict(torch.load(path, weights_only=True))
                    else:
                        model.load_state_dict(load_file(str(path)))
                    return model.eval()

                def ours(spec: str = spec) -> Any:
                    mm.unload(spec)
                    return mm.load(spec)

                with torch.no_grad():
                    equal = torch.equal(own()(example), ours()(example))
                t = best_of({"ours": ours, "own": own}, args.repeats)
                ratio = t["ours"] / t["own"]
                rows.append(
                    (
                        f"`mm.load` {name} ({fmt}, digests cached) vs the framework's own load"
                        + ("" if equal else " (**outputs differ**)"),
                        f"{t['ours'] * 1e3:.0f} ms vs {t['own'] * 1e3:.0f} ms: **{ratio:.2f}x**",
                        f"≤ {target:.2f}x, equal",
                        ratio <= target and equal,
                    )
                )
    how = f"best of {args.repeats} interleaved rounds, CPU, random weights."
    return report("bench_loads.py", "dp_models load benchmark", how, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
