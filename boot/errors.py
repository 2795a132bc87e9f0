"""Errors both halves of the boot domain (registration, hardware) raise."""

from __future__ import annotations

from core.errors import NotFound


class SiteNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"site {ref} not found")
