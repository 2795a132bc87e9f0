"""Relay waves of real processes on 127.0.0.1: one ``relay.py`` per laptop, run by
Debian's ``python3 -S`` (standard library only, as in the PE), writing files as disks."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.manifest import Manifest, compute
from provisioning.relay.wave import RELAY_SCRIPT, Outcome, Wave

CHUNK = 256 * 1024
PYTHON = "/usr/bin/python3"
FAULTY = Path(__file__).with_name("faulty_relay.py")


def relay_argv(fault: str | None = None) -> list[str]:
    if fault is None:
        return [PYTHON, "-S", str(RELAY_SCRIPT)]
    return [PYTHON, "-S", str(FAULTY), str(RELAY_SCRIPT), fault]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Gate:
    """The source's pace: lets ``first`` chunks through, then holds the wave until the
    test opens it (so a test acts at a known point of the stream, not at a time)."""

    def __init__(self, first: int) -> None:
        self.left = first
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self.left > 0:
                self.left -= 1
                return
        if not self.opened.wait(timeout=300):
            raise OSError("the test never opened the gate")


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Manifest]:
    """About 6 MiB of data with zero runs (free space) and a short last chunk."""
    path = tmp_path / "image.raw"
    with open(path, "wb") as f:
        for i in range(12):
            f.write(os.urandom(CHUNK + 1000) if i % 3 else bytes(2 * CHUNK))
        f.write(b"end")
    return path, compute(path, chunk_size=CHUNK)


class Running:
    """A wave whose event loop runs in a thread while the test acts on it."""

    def __init__(self, wave: Wave) -> None:
        self.wave = wave
        self.outcomes: dict[str, Outcome] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        self.outcomes = self.wave.wait(deadline=time.monotonic() + 240)

    def start(self) -> Running:
        self._thread.start()
        return self

    def join(self) -> dict[str, Outcome]:
        self._thread.join(timeout=300)
        assert not self._thread.is_alive(), "the wave never finished"
        return self.outcomes


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disks"
    folder.mkdir()
    yield folder
