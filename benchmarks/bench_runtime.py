"""Runtime overheads of dp_models, as ratios measured in one run.

1. ``import dp_models`` against ``import huggingface_hub`` (fresh interpreters, the bare
   interpreter start subtracted): target at most 0.5.
2. Loading through the manager (digests cached) against the framework's own load call on
   the same file: ONNX Runtime ``InferenceSession`` and ``torch.load`` +
   ``load_state_dict``; target within 5% (ratio at most 1.05).
3. Loading with ``verify: always`` (every byte hashed at every load, while the load reads
   it) against the naive way to get the same guarantee: sha256 of the file, then the
   framework's own load; target within 5% (ratio at most 1.05).

    python benchmarks/bench_runtime.py [--mb 64] [--repeats 7] [--out FILE]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _report import report

# Byte-code caching on, as in any deployment (this machine's shell may switch it off).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _interp(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_ENV)
    return time.perf_counter() - start


def import_ratio(repeats: int) -> tuple[float, float, float]:
    """(dp_models s, huggingface_hub s, ratio), each the median over fresh interpreters."""
    rounds: dict[str, list[float]] = {"pass": [], "dp_models": [], "huggingface_hub": []}
    for name in rounds:  # warm-up: write byte-code caches, fill the page cache
        _interp("pass" if name == "pass" else f"import {name}")
    for _ in range(repeats):  # interleaved, so drift hits all alike
        for name in rounds:
            rounds[name].append(_interp("pass" if name == "pass" else f"import {name}"))
    base = statistics.median(rounds["pass"])
    ours = max(statistics.median(rounds["dp_models"]) - base, 1e-6)
    theirs = max(statistics.median(rounds["huggingface_hub"]) - base, 1e-6)
    return ours, theirs, ours / theirs


def _best(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _catalog(
    tmp: Path, name: str, loader: str, engine: str, path: str, data_path: Path, args: str = ""
) -> None:
    digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
    spec = (
        f'name: {name}\nversion: "1"\nfamily: bench\nrole: bench\nusers: [bench]\n'
        f"runtime: inprocess\nengine: {engine}\nloader: {loader}\n{args}"
        f"artifacts:\n  - {{path: {path}, format: {path.rsplit('.', 1)[1]}, sha256: {digest}}}\n"
        "device: cpu\n"
    )
    (tmp / "catalog" / "bench").mkdir(parents=True, exist_ok=True)
    (tmp / "catalog" / "bench" / f"{name}.yaml").write_text(spec)


def load_ratios(tmp: Path, mb: int, repeats: int) -> dict[str, tuple[float, float, float]]:
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from dp_models import ModelManager

    root = tmp / "root"
    root.mkdir()
    side = int((mb * 2**20 / 4) ** 0.5)
    weight = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, side])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, root / "m.onnx")
    _catalog(tmp, "bench_onnx", "onnxruntime", "onnx", "m.onnx", root / "m.onnx")

    module_dir = tmp / "mods"
    module_dir.mkdir()
    (module_dir / "bench_net.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n"
        "    def __init__(self, n):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(n, n, bias=False)\n"
    )
    sys.path.insert(0, str(module_dir))
    from bench_net import Net  # type: ignore[import-not-found]

    torch.save({"fc.weight": torch.from_numpy(weight)}, root / "m.pt")
    _catalog(
        tmp,
        "bench_torch",
        "torch_state_dict",
        "torch",
        "m.pt",
        root / "m.pt",
        f'loader_args: {{class_path: "bench_net:Net", kwargs: {{n: {side}}}}}\n',
    )

    mm = ModelManager(models_root=root, catalog=tmp / "catalog", cache_dir=tmp / "cache")
    always = ModelManager(
        models_root=root, catalog=tmp / "catalog", cache_dir=tmp / "cache", verify="always"
    )
    time.sleep(2.1)  # past the digest cache's racy window, as a provisioned file would be
    mm.get("bench_onnx")
    mm.get("bench_torch")  # digests now cached

    def raw_onnx() -> Any:
        return ort.InferenceSession(str(root / "m.onnx"), providers=["CPUExecutionProvider"])

    def raw_torch() -> Any:
        net = Net(side)
        net.load_state_dict(torch.load(root / "m.pt", map_location="cpu", weights_only=True))
        return net.eval()

    def hash_then(load: Callable[[], Any], path: Path) -> Callable[[], Any]:
        def run() -> Any:  # what verifying before a load costs done naively: two passes
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return load()

        return run

    def via(name: str, manager: ModelManager = mm) -> Callable[[], Any]:
        def run() -> Any:
            manager.close()  # drop the loaded object, keep the digest cache
            return manager.load(name)

        return run

    results: dict[str, tuple[float, float, float]] = {}
    for label, raw, ours in (
        ("onnxruntime", raw_onnx, via("bench_onnx")),
        ("torch_state_dict", raw_torch, via("bench_torch")),
        (
            "onnxruntime, verify: always",
            hash_then(raw_onnx, root / "m.onnx"),
            via("bench_onnx", always),
        ),
        (
            "torch_state_dict, verify: always",
            hash_then(raw_torch, root / "m.pt"),
            via("bench_torch", always),
        ),
    ):
        raw_t, ours_t = [], []
        for _ in range(repeats):  # interleaved rounds
            raw_t.append(_best(raw, 1))
            ours_t.append(_best(ours, 1))
        results[label] = (min(ours_t), min(raw_t), min(ours_t) / min(raw_t))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="weight size of the load benchmarks")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    ours, theirs, ratio = import_ratio(args.repeats)
    rows = [
        (
            "import dp_models vs import huggingface_hub (fresh interpreter, start subtracted)",
            f"{ours * 1e3:.1f} ms vs {theirs * 1e3:.1f} ms: **{ratio:.2f}**",
            "≤ 0.50",
            ratio <= 0.5,
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, (mine, raw, r) in load_ratios(Path(tmp), args.mb, args.repeats).items():
            if "always" in label:
                what = (
                    f"`mm.load` with `verify: always` (every byte hashed, once per load, from "
                    f"the open file) vs sha256 of the file then the framework's own load "
                    f"({label.split(',')[0]}, {args.mb} MiB)"
                )
            else:
                what = (
                    f"`mm.load` vs the framework's own load ({label}, {args.mb} MiB, "
                    "digests cached)"
                )
            rows.append(
                (
                    what,
                    f"{mine * 1e3:.1f} ms vs {raw * 1e3:.1f} ms: **{r:.3f}**",
                    "≤ 1.05",
                    r <= 1.05,
                )
            )
    how = f"best of {args.repeats} interleaved rounds."
    return report("bench_runtime.py", "dp_models runtime benchmark", how, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
