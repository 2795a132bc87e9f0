"""Errors of network boot."""

from __future__ import annotations

from core.errors import MasterlineError, NotFound


class BadNetbootLink(NotFound):
    """A netboot link that is not genuine, is stale (the bench's credential changed) or
    comes from outside the bench networks: the same answer for all, as for a made-up
    help link, so that nothing about benches leaks."""

    def __init__(self) -> None:
        super().__init__("no such netboot link")


class NetbootNotWired(MasterlineError):
    """A process that computes netboot links without the kernel-argument providers
    registered would hand out links the server refuses."""

    status_code = 500
    exit_code = 3
    title = "Network boot not wired"

    def __init__(self) -> None:
        super().__init__(
            "network boot has no kernel-argument providers: wiring.wire() was not called"
        )


class BootFilesPortTaken(MasterlineError):
    """The boot-file server cannot listen where the settings say: laptops would be sent
    to a port nobody serves, so the API does not start."""

    status_code = 500
    exit_code = 3
    title = "Boot-file server cannot start"

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(
            f"the boot-file server cannot listen on {host}:{port} "
            f"(MASTERLINE_NETBOOT_FILES_PORT): {reason}"
        )


class MethodNotAllowed(MasterlineError):
    """The boot-file server answers GET and HEAD only."""

    status_code = 405
    title = "Method not allowed"
