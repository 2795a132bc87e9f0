"""Access errors."""

from __future__ import annotations

from core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated


class MissingToken(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("missing or malformed bearer token")


class BadToken(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("unknown or revoked token")


class RoleNotAllowed(Forbidden):
    def __init__(self, role: str, allowed: list[str]) -> None:
        super().__init__(f"role '{role}' may not do this (allowed: {', '.join(allowed)})")


class TokenNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"token {ref} not found")


class ClientRequired(InvalidInput):
    def __init__(self, role: str) -> None:
        super().__init__(f"role '{role}' tokens must be bound to a client company")
