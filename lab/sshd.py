"""One private OpenSSH ``sshd`` per lab laptop: its own config, host key, port and log.

The system sshd and its configuration are never touched. Each sshd daemonises itself
(no ``-D``) and writes its PID file; it is stopped by that PID and we wait until it is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabStartFailed


class PortInUse(LabStartFailed):
    """The port picked for an sshd was taken by another process in the meantime."""


SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PE_SHELL = Path(__file__).resolve().parent / "pe_shell.sh"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    sshd_dir: Path,
    *,
    port: int,
    host_key: Path,
    authorized_keys: Sequence[Path],
    env: dict[str, str],
) -> Path:
    """Write ``sshd_config`` for one laptop and return its path."""
    # SHLVL=1: Debian's bash sources ~/.bashrc for a command run by sshd only in a
    # top-level shell; a user's heavy .bashrc (pyenv init…) would cost ~0.5 s per command.
    set_env = " ".join(f"{k}={v}" for k, v in {"SHLVL": "1", **env}.items())
    lines = [
        "# Written by the Masterline lab (lab/sshd.py); one private sshd per lab laptop.",
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {sshd_dir / 'sshd.pid'}",
        "StrictModes no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile " + " ".join(str(p) for p in authorized_keys),
        "MaxStartups 100:30:200",
        "MaxSessions 50",
        "PrintMotd no",
        "LogLevel INFO",
        f"Subsystem sftp {SFTP_SERVER}",
        f"SetEnv {set_env}",
        # Disk faults act here; without one the command runs unchanged (docs/lab.md).
        f"ForceCommand /bin/sh {PE_SHELL}",
    ]
    path = sshd_dir / "sshd_config"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(sshd_dir: Path, port: int) -> int:
    """Start the sshd configured in ``sshd_dir`` and wait until ``port`` accepts.

    Returns its PID. Raises LabStartFailed (with the end of its log) if it does not come up.
    """
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    pid_file = sshd_dir / "sshd.pid"
    pid_file.unlink(missing_ok=True)
    log = sshd_dir / "sshd.log"
    # -E appends: only what this start writes tells whether it worked.
    offset = log.stat().st_size if log.exists() else 0
    proc = subprocess.run(
        [SSHD, "-f", str(sshd_dir / "sshd_config"), "-E", str(log)],
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        why = _tail(proc.stderr) or _tail_file(log, offset)
        if "Address already in use" in why:
            raise PortInUse(f"sshd in {sshd_dir}: port {port} is taken")
        raise LabStartFailed(f"sshd in {sshd_dir} failed to start: {why}")
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = read_pid(pid_file)
        if pid is not None and _accepts(port):
            return pid
        # sshd daemonises before it binds: a failed bind shows only in its log.
        if "Cannot bind any address" in _tail_file(log, offset):
            break
        time.sleep(0.01)
    pid = read_pid(pid_file)
    if pid is not None:
        stop_pid(pid)
    tail = _tail_file(log, offset)
    if "Address already in use" in tail:
        raise PortInUse(f"sshd in {sshd_dir}: port {port} is taken")
    raise LabStartFailed(f"sshd in {sshd_dir} did not listen on {port}: {tail}")


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_pid(pid: int) -> None:
    """SIGTERM the process, wait until it is gone, SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.01)


def stop(sshd_dir: Path) -> None:
    """Stop the sshd of ``sshd_dir`` and its live sessions, and wait until all are gone."""
    pid = read_pid(sshd_dir / "sshd.pid")
    if pid is not None and _is_our_sshd(pid, sshd_dir):
        # Sessions outlive a stopped listener; a stopped laptop keeps no connection open.
        children = descendants(pid)
        stop_pid(pid)
        for child in children:
            stop_pid(child)
    (sshd_dir / "sshd.pid").unlink(missing_ok=True)


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _is_our_sshd(pid: int, sshd_dir: Path) -> bool:
    # A stale PID file may name a recycled PID; only kill the sshd started with our config.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    # sshd rewrites its title to "sshd: /usr/sbin/sshd -f <config> … [listener]".
    return str(sshd_dir / "sshd_config").encode() in cmdline


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _tail_file(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return _tail(fh.read().decode(errors="replace"))
    except FileNotFoundError:
        return "(no log)"
