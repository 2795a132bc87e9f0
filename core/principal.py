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
    HELPDESK = "helpdesk"
    """Help-desk advisors (and the phone system): look-ups, articles, contacts, the
    satisfaction calls. Bound to one client when the token names one, else every client
    of the centre."""

    @property
    def client_bound(self) -> bool:
        """The token must name a client company, and sees only that company."""
        return self in (Role.DSI, Role.LOGISTICS)

    @property
    def client_optional(self) -> bool:
        """The token may name a client company; if it does, it sees only that one."""
        return self is Role.HELPDESK


@dataclass(frozen=True)
class Principal:
    """A token's role and, for dsi/logistics (and a bound helpdesk token), its client
    company."""

    token_id: int
    name: str
    role: Role
    client_id: int | None

    @property
    def actor(self) -> str:
        """How the audit history names this caller."""
        return f"{self.role.value}:{self.name}"

    @property
    def bound(self) -> bool:
        """Whether this caller sees one client company only."""
        return self.role.client_bound or (self.role.client_optional and self.client_id is not None)

    @property
    def client_scope(self) -> int | None:
        """The only client this caller may see, or None for every client."""
        return self.client_id if self.bound else None

    def sees_client(self, client_id: int | None) -> bool:
        """Whether an object owned by ``client_id`` is visible to this caller."""
        if not self.bound:
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
