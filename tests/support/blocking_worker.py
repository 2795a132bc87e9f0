"""``python -m tests.support.blocking_worker MARKER``: a ``masterline worker`` whose
``registered`` boot control, once it has rebooted a laptop (the reboot issued and the
laptop seen leaving its PE), appends to MARKER and then blocks forever, so that a test
can SIGKILL the worker at that very point: after the reboot, before the step's result
is committed. Test-only: production code has no such hook."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from provisioning.bootcontrol.base import PeAccess
from provisioning.bootcontrol.registered import RegisteredBootControl
from provisioning.transports.base import Transport


def main(argv: list[str]) -> None:
    marker = Path(argv[1])
    original = RegisteredBootControl.reboot_into_os

    def reboot_into_os(
        self: RegisteredBootControl,
        pe: PeAccess,
        connect: Callable[[], Transport],
        *,
        timeout: float,
    ) -> None:
        original(self, pe, connect, timeout=timeout)
        with marker.open("a") as f:
            f.write("x")
        threading.Event().wait()  # until killed

    RegisteredBootControl.reboot_into_os = reboot_into_os  # type: ignore[method-assign]
    import cli

    sys.argv = ["masterline", "worker"]
    cli.main()


if __name__ == "__main__":
    main(sys.argv)
