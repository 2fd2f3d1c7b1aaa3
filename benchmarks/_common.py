"""What the benchmark harnesses share: a result row, progress on stderr, timing and
formatting helpers, random input files, the digest cache's racy window, the machine."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from dp_models._digest import DigestCache

MiB = 1 << 20
BLOCK = 64 * MiB
T = TypeVar("T")


@dataclass
class Row:
    key: str
    what: str
    measured: str
    goal: str
    ok: bool | None  # None: a reference number, with no target

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "reference"
        return "pass" if self.ok else "**MISS**"


def log(msg: str) -> None:
    print(f"[{Path(sys.argv[0]).stem}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each function's best time over ``repeats`` interleaved rounds (drift hits them
    alike), after one warm-up call each."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e9:.2f} GB/s"


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256 (hashlib, for checking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(BLOCK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())  # no writeback competing with the measurements
    return h.hexdigest()


def wait_until_not_racy(path: Path) -> None:
    """The default cache does not store a file changed in the last 2 s (racy rule)."""
    probe = DigestCache(None)
    while probe.is_racy(os.stat(path)):
        time.sleep(0.1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(
    title: str, script: str, elapsed: float, notes: Sequence[str], rows: Sequence[Row]
) -> str:
    """The markdown report: a title, the command and when, ``notes`` (one bullet each: the
    machine, the software, where the files were), then the table of rows."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"`{' '.join([f'benchmarks/{script}', *sys.argv[1:]])}` on {when}, {elapsed:.0f} s in all.",
        "",
        *(f"- {note}" for note in notes),
        "",
        "| # | what | measured | target | |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.key} | {r.what} | {r.measured} | {r.goal} | {r.verdict} |" for r in rows]
    return "\n".join(lines) + "\n"


def options(doc: str | None, *, sized: str, repeats: int = 3) -> argparse.ArgumentParser:
    """The options every file benchmark takes: ``--size-mb`` (of ``sized``), ``--repeats``,
    ``--dir`` and ``--out``; a script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument(
        "--size-mb", type=int, default=1024, help=f"size of {sized} in MiB (default 1024)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"interleaved rounds per measurement (default {repeats})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to create the temporary files (default: the system temp "
        "dir); put it on the disk that holds MODELS_ROOT",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the markdown report to this file"
    )
    return parser


def emit(report: str, rows: Sequence[Row], out: Path | None) -> int:
    """Print the report (and write it to ``out``); the exit status: 1 when a target is
    missed."""
    print(report, end="")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")
    return 0 if all(r.ok is not False for r in rows) else 1


@contextlib.contextmanager
def environment(*, drop: tuple[str, ...] = (), **values: str) -> Iterator[None]:
    """Set environment variables for the block (after removing those starting with a
    ``drop`` prefix); the whole environment is restored after (fake_models_root sets the
    frameworks' offline flags and cache variables too)."""
    saved = dict(os.environ)
    for name in [k for k in os.environ if drop and k.startswith(drop)]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def one_file_catalog(directory: Path, name: str, path: str, sha256: str, size: int) -> Path:
    """A catalog directory of one in-process spec ``name`` pinning the file at ``path``."""
    directory.mkdir()
    (directory / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
        name: {name}
        version: "1"
        family: bench
        role: bench
        users: [Bench/{name}]
        runtime: inprocess
        engine: torch
        loader: torch_state_dict
        loader_args: {{class_path: "torch.nn:Identity"}}
        artifacts:
          - {{path: {path}, format: pt, sha256: {sha256}, size: {size}}}
        """)
    )
    return directory
