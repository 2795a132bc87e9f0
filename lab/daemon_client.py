"""Start, reach and stop the lab daemon (lab/daemon.py) of one lab directory.

The daemon writes ``daemon.json`` (its PID and the 127.0.0.1 port of its control
socket); a request is one JSON line, answered by one JSON line once it has been applied.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab import sshd
from lab.errors import LabStartFailed

_START_TIMEOUT_S = 20.0
# Daemons started by this process, reaped when stopped (no zombie, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_REQUEST_TIMEOUT_S = 30.0


def _info(root: Path) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((root / "daemon.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return info


def running_pid(root: Path) -> int | None:
    """PID of this lab's daemon if it runs (checked against /proc, never a recycled PID)."""
    info = _info(root)
    if info is None:
        return None
    pid = int(info["pid"])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None
    if b"lab.daemon" not in cmdline or str(root).encode() not in cmdline:
        return None
    return pid if sshd.alive(pid) else None


def ensure_running(root: Path, owner_pid: int | None = None) -> int:
    """Start the daemon unless it runs; wait until it answers. Raises LabStartFailed.

    With ``owner_pid`` the daemon stops the lab by itself if that process dies.
    """
    pid = running_pid(root)
    if pid is not None:
        return pid
    (root / "daemon.json").unlink(missing_ok=True)
    log = open(root / "daemon.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.daemon",
                str(root),
                *(["--owner", str(owner_pid)] if owner_pid else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _info(root) is not None:
            try:
                request(root, {"op": "ping"})
                return proc.pid
            except OSError:
                pass
        time.sleep(0.02)
    if proc.poll() is None:
        sshd.stop_pid(proc.pid)
    _reap(proc.pid)
    tail = (root / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
    raise LabStartFailed(f"lab daemon did not start: {' | '.join(tail) or 'no output'}")


def request(root: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return the answer. Raises OSError if the daemon is unreachable."""
    info = _info(root)
    if info is None:
        raise ConnectionRefusedError("lab daemon not running")
    with socket.create_connection(
        ("127.0.0.1", int(info["port"])), timeout=_REQUEST_TIMEOUT_S
    ) as s:
        s.sendall(json.dumps(body).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data or b"{}")
    if not answer.get("ok"):
        raise LabStartFailed(f"lab daemon: {answer.get('error', 'no answer')}")
    return answer


def sync(root: Path) -> dict[str, str]:
    """Make the daemon apply lab.json and the fault files now (no-op if it is not running).

    Returns the laptops whose port was taken meanwhile ({name: "ssh" | "winrm"}).
    Raises LabStartFailed if the daemon could not apply them.
    """
    if running_pid(root) is None:
        return {}
    failed: dict[str, str] = request(root, {"op": "sync"}).get("bind_failed", {})
    return failed


def stop(root: Path) -> None:
    """Stop the daemon and wait until it is gone."""
    pid = running_pid(root)
    if pid is None:
        return
    with contextlib.suppress(OSError, LabStartFailed):
        request(root, {"op": "stop"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sshd.alive(pid):
        time.sleep(0.01)
    if sshd.alive(pid):
        sshd.stop_pid(pid)
    _reap(pid)
    (root / "daemon.json").unlink(missing_ok=True)


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
