"""The PE agent run for real outside a VM: Debian's /usr/bin/python3 (not the project's
venv, no environment, no user site) runs the agent package copied as ``pe build`` lays
it out (``install_agent``), its output read line by line (``AgentRun``). Used by the
agent's end-to-end tests, the registered lab and ``bench.registered``."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
DEADLINE = 60.0  # bounds a hang only; every wait ends on a condition


def install_agent(dest: Path) -> Path:
    """``/opt/masterline/agent/`` as ``pe build`` lays it out."""
    shutil.copytree(
        REPO / "boot" / "agent", dest / "agent", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest


class AgentRun:
    def __init__(self, cwd: Path, root: Path, bin_dir: Path, *args: str) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-E", "-s", "-m", "agent", "--root", str(root), *args],
            cwd=cwd,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, needle: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(
            f"agent never printed {needle!r}; it printed:\n" + "\n".join(self.lines)
        )

    def exit_code(self) -> int:
        """Wait for the agent to end by itself (``--once``)."""
        return self.proc.wait(timeout=DEADLINE)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout=DEADLINE)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code
