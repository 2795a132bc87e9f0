"""Who is acting: roles and the principal that services scope their queries by."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar


class Owned(Protocol):
    """A row that belongs to one client company (or to none)."""

    @property
    def client_id(self) -> int | None: ...


_Row = TypeVar("_Row", bound=Owned)


class Role(StrEnum):
    ADMIN = "admin"
    """The staging centre's administrators: everything, every client."""
    TECHNICIAN = "technician"
    """Bench technicians: scan, lifecycle actions, runs; every client's laptops."""
    DSI = "dsi"
    """A client's IT department: its images and configuration, its own devices."""
    LOGISTICS = "logistics"
    """A client's logistics: deliveries, status, dispatch; its own company only."""

    @property
    def client_bound(self) -> bool:
        return self in (Role.DSI, Role.LOGISTICS)


@dataclass(frozen=True)
class Principal:
    """A token's role and, for dsi/logistics, its client company."""

    token_id: int
    name: str
    role: Role
    client_id: int | None

    @property
    def actor(self) -> str:
        """How the audit history names this caller."""
        return f"{self.role.value}:{self.name}"

    @property
    def client_scope(self) -> int | None:
        """The only client this caller may see, or None for staff (every client)."""
        return self.client_id if self.role.client_bound else None

    def sees_client(self, client_id: int | None) -> bool:
        """Whether an object owned by ``client_id`` is visible to this caller."""
        if not self.role.client_bound:
            return True
        return client_id is not None and client_id == self.client_id

    def visible(self, row: _Row | None, missing: Exception) -> _Row:
        """``row`` if it exists and this caller may see it; else raise ``missing`` (a
        not-found error: another company's object must look exactly like no object)."""
        if row is None or not self.sees_client(row.client_id):
            raise missing
        return row


SYSTEM = Principal(token_id=0, name="system", role=Role.ADMIN, client_id=None)
"""The principal of server-side commands and the worker."""
