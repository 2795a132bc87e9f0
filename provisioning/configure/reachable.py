"""Waiting for a freshly rebooted laptop's installed OS to listen.

The reboot step returns once the laptop has left its PE; its installed OS then takes
from seconds (the lab) to many minutes (a Windows first boot running its setup passes)
before SSH or WinRM listens. Configure's own retries (three attempts, seconds apart)
were the only wait, which a real first boot does not survive. So configure first waits,
bounded, for the OS's port to accept a connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.errors import Aborted, ConnectFailed

OS_BOOT_SECONDS = 900.0
"""How long an installed OS may take to listen after its reboot (a Windows first boot
with its specialize pass takes minutes on a slow disk)."""
_POLL_SECONDS = 2.0


def wait_until_listening(
    target: OsTarget,
    *,
    timeout: float,
    cancelled: Callable[[], bool],
    poll: float = _POLL_SECONDS,
) -> None:
    """Return once ``target``'s SSH or WinRM port accepts a TCP connection.

    :raises ConnectFailed: still nothing after ``timeout`` seconds (retryable).
    :raises Aborted: a technician aborted the run meanwhile.
    """
    port = target.winrm_port if target.os_family is OsFamily.WINDOWS else target.ssh_port
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((target.host, port), timeout=max(0.1, min(5.0, left))):
                return
        except OSError as e:
            last = e.strerror or type(e).__name__
        if cancelled():
            raise Aborted("aborted by a technician")
        if time.monotonic() >= deadline:
            raise ConnectFailed(
                f"the installed OS did not listen on {target.host}:{port} within "
                f"{int(timeout)} s of its reboot ({last})"
            )
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
