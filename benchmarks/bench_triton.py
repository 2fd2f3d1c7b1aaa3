"""Triton ``infer`` through dp_models' client against raw ``tritonclient``, as a ratio.

A real Triton server (``scripts/triton_env.sh``'s, on loopback) serves the stand-ins of
some Triton specs of the packaged catalog. The same inputs go through
``TritonClient.infer`` (inputs checked against the spec, deployment verified once) and
through the plain ``tritonclient.http`` calls a caller would write (``InferInput`` with
binary data, ``InferRequestedOutput`` binary, ``infer``, ``as_numpy``). Rounds are
interleaved; each side's time is the best round's median per call. Target (DESIGN.md):
within 5% (ratio at most 1.05).

    python benchmarks/bench_triton.py [--calls 40] [--rounds 5] [--out FILE]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from _report import report

from dp_models._catalog import Catalog
from dp_models.testing.triton import TritonServer, write_standin_repository
from dp_models.triton.client import TritonClient

#: (spec, batch, what): a large image batch and a short audio batch.
CASES = [
    ("midas_dpt_hybrid_triton", 8, "8 x 3x384x384 float32 in, 8 x 384x384 out (14 MiB each way)"),
    ("speaker_diarization_small_triton", 4, "4 x 16000 float32 in, 4 x 192 out (250 KiB in)"),
]
VARIABLE = 16000  # length given to a -1 input dimension


def _inputs(spec: Any, batch: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    return {
        t.name: rng.standard_normal(
            [batch, *(VARIABLE if d == -1 else d for d in t.shape)], dtype=np.float32
        )
        for t in spec.triton.inputs
    }


def _raw_infer(raw: Any, spec: Any, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """What a caller writes with tritonclient alone."""
    tensors = []
    for t in spec.triton.inputs:
        tensor = httpclient.InferInput(t.name, list(inputs[t.name].shape), t.datatype)
        tensor.set_data_from_numpy(inputs[t.name], binary_data=True)
        tensors.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput(t.name, binary_data=True) for t in spec.triton.outputs
    ]
    result = raw.infer(
        spec.triton.model_name,
        tensors,
        model_version=str(spec.triton.model_version),
        outputs=outputs,
    )
    return {t.name: result.as_numpy(t.name) for t in spec.triton.outputs}


def _median_call(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _best_medians(sides: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    """Per side, the best over interleaved rounds of the median call time; the side that
    goes first alternates between rounds."""
    best = dict.fromkeys(sides, float("inf"))
    order = list(sides)
    for _ in range(rounds):
        for name in order:
            best[name] = min(best[name], _median_call(sides[name], calls))
        order.reverse()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="calls per side and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)

    catalog = Catalog.load()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dp_models_bench_triton_") as tmp:
        names = [name for name, _, _ in CASES]
        digests = write_standin_repository(catalog, Path(tmp) / "repo", names)
        server = TritonServer().start(Path(tmp) / "repo")
        try:
            raw = httpclient.InferenceServerClient(server.address, network_timeout=120.0)
            for name, batch, what in CASES:
                spec = catalog[name]
                inputs = _inputs(spec, batch)
                ours = TritonClient(spec, server.url, expected_digest=digests[name])
                want = _raw_infer(raw, spec, inputs)
                got = ours.infer(inputs)  # also the one-time deployment check, untimed
                for key, value in want.items():
                    np.testing.assert_array_equal(got[key], value)
                best = _best_medians(
                    {
                        "raw": partial(_raw_infer, raw, spec, inputs),
                        "ours": partial(ours.infer, inputs),
                    },
                    args.rounds,
                    args.calls,
                )
                ratio = best["ours"] / best["raw"]
                rows.append(
                    (
                        f"`client.infer` vs raw tritonclient: {name} ({what})",
                        f"{best['ours'] * 1e3:.2f} ms vs {best['raw'] * 1e3:.2f} ms: "
                        f"**{ratio:.3f}**",
                        "≤ 1.05",
                        ratio <= 1.05,
                    )
                )
                ours.close()
            raw.close()
        finally:
            server.stop()
    how = (
        "a real Triton server on loopback (CPU, Python-backend stand-ins); per side the best "
        f"of {args.rounds} interleaved rounds' median of {args.calls} calls."
    )
    return report("bench_triton.py", "dp_models Triton client benchmark", how, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
