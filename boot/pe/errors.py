"""Errors of the PE builder and catalogue."""

from __future__ import annotations

from core.errors import MasterlineError, NotFound


class PeBuildError(MasterlineError):
    """A build that cannot finish: a package apt cannot fetch, a library no package
    provides, a tool missing on the build host. Nothing is stored."""

    status_code = 500
    exit_code = 3
    title = "PE build failed"


class PeNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"PE {ref} not found: build one with `masterline pe build`")
