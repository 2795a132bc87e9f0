"""The processes on this machine, for tests that check what a run left running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


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
