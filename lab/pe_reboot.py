"""``reboot`` typed in a lab laptop's PE (``lab/pe_bin/reboot``): the laptop boots its
installed OS, as a real PE's ``reboot`` does, so a boot control that reboots through the
PE (``registered``, ``static``) works on lab laptops unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lab import sshd
from lab.lab import Lab

_DETACH_DEADLINE_S = 10.0


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def reboot_from_pe(laptop_dir: str) -> None:
    """Reboot the lab laptop whose directory is ``laptop_dir`` into its installed OS.

    Run detached (``setsid -f``): it first waits until it is no longer below the laptop's
    sshd, which the reboot stops together with every process below it.
    """
    directory = Path(laptop_dir).resolve()
    listener = sshd.read_pid(directory / "sshd" / "sshd.pid")
    deadline = time.monotonic() + _DETACH_DEADLINE_S
    while listener is not None and listener in _ancestors(os.getppid()):
        if time.monotonic() > deadline:
            raise SystemExit("reboot: still inside the laptop's sshd session; not rebooted")
        time.sleep(0.05)
    Lab(directory.parent.parent, keep_running=True).reboot_into_os(directory.name)
