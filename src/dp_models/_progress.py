"""A byte-count progress bar for long hashing, shown on a terminal only.

Nothing is drawn during the first second (most verifications hit the digest cache and
finish long before), nor when the stream is not a terminal (CI logs stay clean).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["TerminalProgress"]


class TerminalProgress:
    """Implements :class:`dp_models._digest.Progress`; thread-safe."""

    def __init__(
        self,
        label: str = "hashing",
        stream: TextIO | None = None,
        *,
        delay_s: float = 1.0,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.delay_s = delay_s
        self.total = 0
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._lock = threading.Lock()

    def add_total(self, nbytes: int) -> None:
        with self._lock:
            self.total += nbytes

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if not self.enabled or now - self._start < self.delay_s or now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        total = max(self.total, 1)
        frac = min(self.done / total, 1.0)
        width = 30
        filled = int(frac * width)
        rate = self.done / max(now - self._start, 1e-9) / 2**20
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
            f"{self.done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB {rate:,.0f} MiB/s"
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        with self._lock:
            if self._drawn:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
