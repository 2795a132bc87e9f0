"""The processes on this machine, for tests that check what a run left running, and the
one way a test or a benchmark starts a process and stops it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def live_processes() -> Iterator[tuple[int, list[bytes]]]:
    """``(pid, argv)`` of every process that is not a zombie (those that vanish while
    being read are skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            yield int(entry.name), argv


def stop(proc: subprocess.Popen[bytes], *, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` is still there after ``grace`` seconds; returns
    once it is reaped (a process a test or a benchmark started never outlives it)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


@contextmanager
def running(
    argv: list[str], log: Path, *, grace: float = 30.0, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in a session of its own, its output appended to ``log``; stopped
    (``stop``) on the way out. ``popen``: more ``subprocess.Popen`` arguments (``env``,
    ``cwd``)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **popen,
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc, grace=grace)
