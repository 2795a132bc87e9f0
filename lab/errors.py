"""Errors of the device lab, rendered by the one CLI handler like every domain's."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, MasterlineError, NotFound, Unavailable


class LabError(MasterlineError):
    """Base of the lab's expected failures."""

    title = "Lab error"


class LaptopNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"lab laptop {name} not found")


class LaptopExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"lab laptop {name} already exists")


class InvalidLabInput(InvalidInput):
    """A bad spec, fault name or fault parameter."""


class LabStartFailed(Unavailable):
    """A lab process (sshd, the lab daemon) did not come up; the message says where to look."""
