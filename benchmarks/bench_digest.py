"""Digest benchmarks for dp_models: every target measured as a ratio, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_digest.py [--size-mb 1024] \\
        [--out benchmarks/results/digest.md]

Nothing here asserts an absolute time: each number is compared with a baseline measured
in the same run on the same machine (see benchmarks/README.md for what each row means).
The exit status is 1 when a target is missed, so CI can run it as a check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from _common import (
    BLOCK,
    MiB,
    Row,
    cpu_model,
    duration,
    emit,
    log,
    options,
    rate,
    render,
    timed,
    wait_until_not_racy,
    write_random,
)

import dp_models
from dp_models._catalog import Catalog
from dp_models._digest import DigestCache, FileDigest, Hasher, sha256_file
from dp_models._verify import Verifier


def split_copy(source: Path, directory: Path, count: int, each: int) -> list[tuple[Path, str]]:
    """``count`` files of ``each`` bytes cut from ``source`` (random bytes), with digests."""
    directory.mkdir()
    out = []
    with open(source, "rb") as f:
        for i in range(count):
            data = f.read(each)
            if len(data) < each:  # source smaller than count * each: pad with fresh bytes
                data += os.urandom(each - len(data))
            p = directory / f"part-{i:02d}.bin"
            with open(p, "wb") as out_file:
                out_file.write(data)
                out_file.flush()
                os.fsync(out_file.fileno())
            out.append((p, hashlib.sha256(data).hexdigest()))
    return out


def hashlib_file(path: Path) -> str:
    """The baseline: hashlib's own file reader (Python >= 3.11), else a plain read loop."""
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):
            return str(hashlib.file_digest(f, "sha256").hexdigest())
        h = hashlib.sha256()
        while chunk := f.read(MiB):
            h.update(chunk)
        return h.hexdigest()


def hashlib_in_memory(path: Path) -> tuple[float, str]:
    """Seconds spent in sha256 alone over the file's bytes (read in 64 MiB pieces, untimed)."""
    h = hashlib.sha256()
    spent = 0.0
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            start = time.perf_counter()
            h.update(chunk)
            spent += time.perf_counter() - start
    return spent, h.hexdigest()


def check(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise SystemExit(f"bench_digest: wrong digest from {what}: {actual} != {expected}")


# -- 1: cold sha256_file vs hashlib ------------------------------------------------------


def bench_cold_rate(big: Path, size: int, expected: str, repeats: int) -> list[Row]:
    ours: list[float] = []
    theirs: list[float] = []
    memory: list[float] = []
    for i in range(repeats):  # interleaved, so drift hits every method alike
        log(f"1: cold rate, round {i + 1}/{repeats}")
        t, d = timed(lambda: sha256_file(big))
        check(d, expected, "sha256_file")
        ours.append(t)
        t, d = timed(lambda: hashlib_file(big))
        check(d, expected, "hashlib.file_digest")
        theirs.append(t)
        t, d = hashlib_in_memory(big)
        check(d, expected, "hashlib in memory")
        memory.append(t)
    best_ours, best_theirs, best_mem = min(ours), min(theirs), min(memory)
    vs_file = best_theirs / best_ours
    vs_mem = best_mem / best_ours
    return [
        Row(
            "1",
            f"cold `sha256_file` vs `hashlib.file_digest` on the same {size // MiB} MiB "
            "file (single core, best of each)",
            f"{rate(size, best_ours)} vs {rate(size, best_theirs)}: **{vs_file:.2f}**",
            "≥ 0.90",
            vs_file >= 0.90,
        ),
        Row(
            "1b",
            "cold `sha256_file` vs hashlib hashing the same bytes already in memory "
            "(hash only, no reads)",
            f"{rate(size, best_ours)} vs {rate(size, best_mem)}: **{vs_mem:.2f}**",
            "none: the price of reading from the page cache",
            None,
        ),
    ]


# -- 2: warm (digest cache hit) vs cold --------------------------------------------------


def _catalog(directory: Path, relpath: str, sha: str, size: int) -> Catalog:
    directory.mkdir()
    (directory / "bench_big.yaml").write_text(
        textwrap.dedent(f"""\
        name: bench_big
        version: "1"
        family: bench
        role: bench
        users: [Bench/bench_digest]
        runtime: inprocess
        engine: torch
        loader: torch_state_dict
        loader_args: {{class_path: "torch.nn:Identity"}}
        artifacts:
          - {{path: {relpath}, format: pt, sha256: {sha}, size: {size}}}
        """)
    )
    return Catalog.load(directory)


def bench_warm(
    work: Path, root: Path, big: Path, size: int, expected: str, repeats: int, warm_calls: int
) -> list[Row]:
    wait_until_not_racy(big)
    cold_h: list[float] = []
    warm_h: list[float] = []
    for i in range(repeats):
        log(f"2: Hasher cold vs warm, round {i + 1}/{repeats}")
        cache_dir = work / f"cache-hasher-{i}"
        t, res = timed(lambda: Hasher(DigestCache(cache_dir)).file(big))  # noqa: B023
        check(res.sha256, expected, "Hasher cold")
        if res.cached:
            raise SystemExit("bench_digest: the cold run hit a cache")
        cold_h.append(t)
        for _ in range(warm_calls):
            t, res = timed(lambda: Hasher(DigestCache(cache_dir)).file(big))  # noqa: B023
            if not res.cached:
                raise SystemExit("bench_digest: the warm run missed the cache")
            warm_h.append(t)
    hasher_ratio = min(cold_h) / statistics.median(warm_h)

    catalog = _catalog(work / "catalog", big.relative_to(root).as_posix(), expected, size)
    spec = catalog["bench_big"]
    cold_v: list[float] = []
    warm_v: list[float] = []
    for i in range(repeats):
        log(f"2b: Verifier cold vs warm, round {i + 1}/{repeats}")
        cache_dir = work / f"cache-verifier-{i}"

        def verify(cache_dir: Path = cache_dir) -> bool:
            (report,) = Verifier(catalog, root, Hasher(DigestCache(cache_dir))).verify(spec)
            return report.cached

        t, cached = timed(verify)
        if cached:
            raise SystemExit("bench_digest: the cold verification hit a cache")
        cold_v.append(t)
        for _ in range(warm_calls):
            t, cached = timed(verify)
            if not cached:
                raise SystemExit("bench_digest: the warm verification missed the cache")
            warm_v.append(t)
    verifier_ratio = min(cold_v) / statistics.median(warm_v)
    return [
        Row(
            "2",
            f"warm `Hasher.file` (fresh Hasher, digest-cache hit) vs cold, {size // MiB} MiB file",
            f"cold {duration(min(cold_h))}, warm {duration(statistics.median(warm_h))} "
            f"(median of {len(warm_h)}): **{hasher_ratio:,.0f}x**",
            "≥ 100x",
            hasher_ratio >= 100,
        ),
        Row(
            "2b",
            "warm `Verifier.verify` of a spec pinning that file vs cold "
            "(path checks, size, digest)",
            f"cold {duration(min(cold_v))}, warm {duration(statistics.median(warm_v))} "
            f"(median of {len(warm_v)}): **{verifier_ratio:,.0f}x**",
            "≥ 100x",
            verifier_ratio >= 100,
        ),
    ]


# -- 3: many artifacts in parallel -------------------------------------------------------


def bench_parallel(parts: Sequence[tuple[Path, str]], repeats: int) -> list[Row]:
    paths = [p for p, _ in parts]
    expected = [d for _, d in parts]
    workers = Hasher().max_workers
    serial: list[float] = []
    parallel: list[float] = []

    def run(max_workers: int | None) -> list[FileDigest | BaseException]:
        return Hasher(DigestCache(None), max_workers=max_workers).files(paths)

    for i in range(repeats):
        log(f"3: {len(paths)} files, 1 worker vs {workers}, round {i + 1}/{repeats}")
        for max_workers, times in ((1, serial), (None, parallel)):
            t, results = timed(lambda: run(max_workers))  # noqa: B023
            got = [r.sha256 if isinstance(r, FileDigest) else repr(r) for r in results]
            if got != expected:
                raise SystemExit(f"bench_digest: wrong digests with max_workers={max_workers}")
            times.append(t)
    total = sum(p.stat().st_size for p in paths)
    speedup = min(serial) / min(parallel)
    ideal = min(os.cpu_count() or 1, len(paths))
    goal = 0.75 * ideal
    return [
        Row(
            "3",
            f"{len(paths)} files x {parts[0][0].stat().st_size // MiB} MiB: default "
            f"workers ({workers}) vs `max_workers=1`",
            f"{rate(total, min(serial))} vs {rate(total, min(parallel))}: **{speedup:.2f}x** "
            f"({speedup / ideal:.0%} of {ideal} cores)",
            f"≥ {goal:.2f}x (75% of min(cores, files))",
            speedup >= goal,
        ),
    ]


# -- 4: memory ---------------------------------------------------------------------------

# VmHWM, the peak RSS of this process's own memory map; ru_maxrss would do elsewhere, but on
# Linux it carries the parent's peak across fork and exec, which could hide the growth.
_RSS_PROBE = """
import json, resource, sys
from dp_models._digest import sha256_file

def peak_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

sha256_file(sys.argv[2])  # warm up imports, allocator and the buffer on a small file
before = peak_kib()
sha256_file(sys.argv[1])
after = peak_kib()
print(json.dumps({"before_kib": before, "after_kib": after}))
"""


def traced_peak(path: Path) -> int:
    tracemalloc.start()
    try:
        sha256_file(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rss_growth(path: Path, small: Path) -> tuple[int, int]:
    """(growth of the peak RSS while hashing ``path``, the peak RSS after), in bytes."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path), str(small)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    return int(data["after_kib"] - data["before_kib"]) * 1024, int(data["after_kib"]) * 1024


def bench_memory(big: Path, size: int, small: Path) -> list[Row]:
    log("4: memory while hashing")
    peak_big = traced_peak(big)
    peak_small = traced_peak(small)
    rss_big, rss_peak = rss_growth(big, small)
    small_mib = small.stat().st_size // MiB
    return [
        Row(
            "4",
            f"peak traced Python memory while `sha256_file` hashes {size // MiB} MiB "
            f"(vs a {small_mib} MiB file)",
            f"**{peak_big / MiB:.2f} MiB** ({peak_small / MiB:.2f} MiB)",
            "≤ 4 MiB, independent of file size",
            peak_big <= 4 * MiB and peak_big <= peak_small + MiB,
        ),
        Row(
            "4b",
            f"growth of the process's peak RSS while hashing {size // MiB} MiB "
            "(fresh process, after a warm-up hash)",
            f"**{rss_big / MiB:.2f} MiB** (peak RSS {rss_peak / MiB:.0f} MiB)",
            "≤ 8 MiB",
            rss_big <= 8 * MiB,
        ),
    ]


# -- report ------------------------------------------------------------------------------


def sha_extensions() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "yes" if " sha_ni" in flags else "no"


def notes(args: argparse.Namespace, work: Path) -> list[str]:
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} cores visible, SHA extensions: "
        f"{sha_extensions()}; {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"dp_models {dp_models.__version__}",
        f'files in {work.parent} (in the page cache: "cold" means no digest cache, '
        f"not a cold disk); best of {args.repeats} interleaved rounds unless stated",
    ]


# -- 5: the whole packaged catalog, warm ---------------------------------------------------


def bench_catalog(work: Path, repeats: int, warm_calls: int) -> list[Row]:
    """Warm verification of every in-process spec of the packaged catalog, on a root of
    fake weights (dp_models.testing.fake_models_root; Triton specs have nothing local)."""
    from dp_models.testing import fake_catalog_dir, fake_models_root

    log("5: making fake weights for every in-process spec of the packaged catalog")
    root = fake_models_root(work / "fake-root", substitute=["emonet_8"])  # EmoNet is not here
    catalog = Catalog.load(fake_catalog_dir(root))
    specs = [s for s in catalog.values() if s.runtime == "inprocess"]
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        wait_until_not_racy(path)
    cold: list[float] = []
    warm: list[float] = []
    for i in range(repeats):
        log(f"5: whole catalog cold vs warm, round {i + 1}/{repeats}")
        cache_dir = work / f"cache-catalog-{i}"

        def verify(cache_dir: Path = cache_dir) -> list[bool]:
            reports = Verifier(catalog, root, Hasher(DigestCache(cache_dir))).check(specs)
            if not all(r.ok for r in reports):
                raise SystemExit(f"bench_digest: the fake root does not verify: {reports}")
            return [r.cached for r in reports]

        t, cached = timed(verify)
        if any(cached):
            raise SystemExit("bench_digest: the cold catalog verification hit a cache")
        cold.append(t)
        for _ in range(warm_calls):
            t, cached = timed(verify)
            if not all(cached):
                raise SystemExit("bench_digest: the warm catalog verification missed the cache")
            warm.append(t)
    artifacts = sum(len(s.artifacts) for s in specs)
    nbytes = sum(p.stat().st_size for p in files)
    median = statistics.median(warm)
    return [
        Row(
            "5",
            f"warm `dp-models doctor`-style verification of the whole packaged catalog: "
            f"{len(specs)} in-process specs, {artifacts} artifacts, {len(files)} files, "
            f"{nbytes / MiB:.0f} MiB of fake weights (fresh Verifier and cache object per call)",
            f"cold {duration(min(cold))}, warm {duration(median)} (median of {len(warm)})",
            "≤ 100 ms (milliseconds)",
            median <= 0.1,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = options(__doc__, sized="the large file")
    parser.add_argument(
        "--files", type=int, default=16, help="number of files for the parallel row (default 16)"
    )
    parser.add_argument(
        "--file-mb", type=int, default=64, help="size of each of those files in MiB (default 64)"
    )
    parser.add_argument(
        "--warm-calls",
        type=int,
        default=50,
        help="warm (cache hit) calls timed per round (default 50)",
    )
    args = parser.parse_args(argv)
    if min(args.size_mb, args.files, args.file_mb, args.repeats, args.warm_calls) < 1:
        parser.error("sizes, counts and repeats must be positive")

    start = time.perf_counter()
    size = args.size_mb * MiB
    with tempfile.TemporaryDirectory(prefix="dp-models-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        big = root / "big.bin"
        log(f"writing {args.size_mb} MiB of random bytes to {big}")
        expected = write_random(big, size)
        log(f"cutting {args.files} files of {args.file_mb} MiB")
        parts = split_copy(big, work / "parts", args.files, args.file_mb * MiB)

        rows = bench_cold_rate(big, size, expected, args.repeats)
        rows += bench_warm(work, root, big, size, expected, args.repeats, args.warm_calls)
        rows += bench_parallel(parts, args.repeats)
        rows += bench_memory(big, size, parts[0][0])
        rows += bench_catalog(work, args.repeats, min(args.warm_calls, 20))
        shutil.rmtree(work / "parts")
        report = render(
            "dp_models digest benchmark",
            "bench_digest.py",
            time.perf_counter() - start,
            notes(args, work),
            rows,
        )

    return emit(report, rows, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
