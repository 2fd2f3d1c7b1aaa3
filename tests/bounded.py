"""Running a call that might hang: a test failure within a deadline, not a hung suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def bounded(
    fn: Callable[[], T], *, deadline_s: float = 30.0, unblock: Callable[[], None] = lambda: None
) -> T:
    """``fn()`` on a thread: its result, or its exception raised here, or a test failure
    when it runs past ``deadline_s``. ``unblock`` releases a thread stuck on a FIFO (or
    the like) before the failure is reported."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # reported in the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        unblock()
        pytest.fail(f"did not return within {deadline_s:g} s (blocked)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
