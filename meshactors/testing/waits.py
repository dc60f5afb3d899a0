"""Waiting in tests: poll a condition until it holds or a deadline passes, failing loudly with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """`condition()` once it is truthy (its value); AssertionError naming `what` if it is not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (got := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} (not within {timeout_s:g} s)")
        time.sleep(every_s)
    return got
