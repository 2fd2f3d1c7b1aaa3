"""The markdown report of bench_runtime.py and bench_triton.py: a table of ratios with
their targets, printed and optionally written to a file."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: (what, measured, target, met; None: a reference number, no target)
Row = tuple[str, str, str, bool | None]


def report(script: str, title: str, how: str, rows: Sequence[Row], out: Path | None) -> int:
    """Print the report (and write it to ``out``); return the exit status: 1 when a target
    is missed."""
    lines = [
        f"# {title}",
        "",
        f"`benchmarks/{script}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f", Python {sys.version.split()[0]}, {how}",
        "",
        "| what | measured | target | |",
        "|---|---|---|---|",
    ]
    verdicts = {True: "pass", False: "MISS", None: "reference"}
    lines += [f"| {w} | {m} | {t} | {verdicts[ok]} |" for w, m, t, ok in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
    return 0 if all(ok is not False for *_, ok in rows) else 1
