"""The Windows state of one lab laptop, kept in ``<laptop dir>/windows.json``.

The WinRM server (in the lab daemon) reads and rewrites it for every script; tests and
``masterline lab status`` read it. Writes are atomic and serialised by a file lock.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_SERVICES: dict[str, dict[str, str]] = {
    "WinRM": {"status": "Running", "start_type": "Automatic"},
    "Spooler": {"status": "Running", "start_type": "Automatic"},
    "BITS": {"status": "Stopped", "start_type": "Manual"},
    "wuauserv": {"status": "Stopped", "start_type": "Manual"},
    "RasMan": {"status": "Stopped", "start_type": "Manual"},
    "W32Time": {"status": "Stopped", "start_type": "Manual"},
}


class WindowsState:
    def __init__(self, laptop_dir: Path) -> None:
        self.path = laptop_dir / "windows.json"
        self._lock_path = laptop_dir / "windows.lock"

    def ensure(self, laptop_name: str) -> None:
        """Create the fresh-from-image state once (OEM-style computer name, no apps)."""
        with self.locked() as state:
            if not state:
                suffix = hashlib.sha256(laptop_name.encode()).hexdigest()[:7].upper()
                state.update(
                    computer_name=f"DESKTOP-{suffix}",
                    vpn={},
                    files={},
                    apps=[],
                    services={k: dict(v) for k, v in DEFAULT_SERVICES.items()},
                )

    def read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under the lock; the dict is saved when the block ends."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.read()
                before = json.dumps(state, sort_keys=True)
                yield state
                if json.dumps(state, sort_keys=True) != before:
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put_file(self, path: str, data: bytes) -> None:
        """Place a file on the laptop (e.g. an MSI the pipeline would have copied)."""
        with self.locked() as state:
            state.setdefault("files", {})[path.lower()] = {
                "path": path,
                "b64": base64.b64encode(data).decode(),
            }

    def put_files(self, files: dict[str, bytes]) -> None:
        """Place several files at once (what the PE wrote into the mounted C: drive)."""
        with self.locked() as state:
            placed = state.setdefault("files", {})
            for path, data in files.items():
                placed[path.lower()] = {"path": path, "b64": base64.b64encode(data).decode()}
