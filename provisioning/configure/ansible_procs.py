"""The processes and files around one ansible-runner run: the environment it gets (and
nothing else from ours), its SSH connection-sharing directory and the control masters in
it, and the stray ``ansible-playbook`` processes a killed worker can leave behind (found
by their private data directory, stopped before a new run of the same laptops)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ENV_ALLOWED = {"HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "TERM"}
"""What ansible-playbook may inherit from the worker's environment."""


def envvars(pdd: Path, cp_dir: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])
    return {
        "PATH": path,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_CONFIG": str(pdd / "ansible.cfg"),
        "ANSIBLE_HOME": str(pdd / "home"),
        "ANSIBLE_LOCAL_TEMP": str(pdd / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=30s",
        # Files go through the exec channel (dd): no sftp/scp subsystem round trips, and
        # it works where a ForceCommand (the lab's, a locked-down PE) rules sftp out.
        "ANSIBLE_SSH_TRANSFER_METHOD": "piped",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOWS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
        "ANSIBLE_LOG_PATH": "",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def restrict_env(config: Any) -> None:
    """Drop from ansible-playbook's environment what it did not need from ours."""
    ours = os.environ
    env: dict[str, str] = config.env
    for key in list(env):
        inherited = key in ours and env[key] == ours[key]
        if inherited and key not in _ENV_ALLOWED and not key.startswith(("ANSIBLE_", "RUNNER_")):
            del env[key]


def control_dir(pdd: Path) -> Path:
    """The ControlPersist sockets' directory of a private dir: short (a socket path must
    fit in 108 bytes), private (0700, ours, not a symlink) and stable, so that masters a
    killed worker left behind are found and stopped by the next run."""
    digest = hashlib.sha256(str(pdd.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"ml-cp-{digest}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise RuntimeError(f"{path} is not a private directory of ours") from None
        stop_control_masters(path, remove=False)
    return path


def stop_control_masters(cp_dir: Path, *, remove: bool = True) -> None:
    """Tell each ControlPersist master of this run to exit, then remove the directory."""
    try:
        sockets = [p for p in cp_dir.iterdir() if p.is_socket()]
    except FileNotFoundError:
        return
    for sock in sockets:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "masterline-cp"],
                capture_output=True,
                timeout=5,
                check=False,
            )
    if not remove:
        return
    # A master still starting (a run cancelled at once) may bind its socket while the
    # directory goes: try a few times; a stable name lets the next run finish the job.
    for _ in range(10):
        shutil.rmtree(cp_dir, ignore_errors=True)
        if not cp_dir.exists():
            return
        time.sleep(0.2)


def dirs_sharing_hosts(pdd: Path, aliases: set[str]) -> list[Path]:
    """The other private dirs (next to ``pdd``) with a playbook that may still run and
    that held one of ``aliases``: a laptop's own dir, or a wave's, which lists its
    laptops in ``hosts``. Only dirs with a pid file are read (a finished run removes
    it), so the thousands of laptops' dirs a site accumulates cost a directory scan."""
    found = []
    for pid_file in sorted(pdd.parent.glob("*/playbook.pid")):
        d = pid_file.parent
        if d == pdd:
            continue
        try:
            listed = set((d / "hosts").read_text().split())
        except OSError:
            listed = {d.name}  # a laptop's own dir is named after it
        if listed & aliases:
            found.append(d)
    return found


def kill_stray(pdd: Path) -> None:
    """Kill an ansible-playbook left running by a killed worker in this directory.

    It is a session leader (pexpect), so its process group holds its forks and ssh
    clients. The PID is trusted only if its command line names this directory.
    """
    pid_path = pdd / "playbook.pid"
    try:
        pid = int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        cmdline = ""
    if "ansible-playbook" in cmdline and str(pdd) in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
