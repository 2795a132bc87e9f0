"""``eventually``: wait for a condition, the one way tests wait.

The deadline only bounds a hang (generous: the CI machine is shared and busy); the
condition, never the time, decides. No test sleeps and then asserts that something did
not happen: it waits for the thing that proves it, or checks a state it can read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    every: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``check`` until it returns something truthy, and return that; raise
    ``AssertionError`` (with ``message``) if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g} s)")
        time.sleep(every)
