"""Console errors."""

from __future__ import annotations

from core.errors import Forbidden, Unauthenticated


class SessionEnded(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("signed out, expired, or its token was revoked: sign in again")


class CsrfRejected(Forbidden):
    def __init__(self) -> None:
        super().__init__("missing or wrong CSRF token: reload the page and try again")
