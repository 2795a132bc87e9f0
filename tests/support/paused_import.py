"""An import that stops half-way, at a point the test chooses, until the test lets it go:
for tests that must observe what happens *while* an import runs without depending on
how long anything takes.

``pause_after_first_published_batch(directory)`` is a child initializer
(``core.child.CHILD_INITIALIZERS``, with ``functools.partial``): in the import's child
process, after the first published batch has committed (the write lock given back), it
writes ``directory/paused`` and waits for ``directory/resume`` to exist. Test-only: the
product has no such hook.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# Bounds a test that never resumes (it failed): the child then goes on by itself.
_MAX_WAIT_SECONDS = 600.0


def pause_after_first_published_batch(directory: str) -> None:
    from inventory import intake_jobs

    original = intake_jobs._report
    state = {"paused": False}

    def report(on_progress: Any, phase: str, done: int, total: int) -> None:
        if phase == "published" and not state["paused"]:
            state["paused"] = True
            wait_for_resume(Path(directory))
        original(on_progress, phase, done, total)

    intake_jobs._report = report


def wait_for_resume(directory: Path) -> None:
    (directory / "paused").touch()
    deadline = time.monotonic() + _MAX_WAIT_SECONDS
    while not (directory / "resume").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
