"""The navigation: each page module declares its entry (``NAV = NavItem(...)``)."""

from __future__ import annotations

from dataclasses import dataclass

from core.principal import Principal, Role


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    """An ``N_()``-marked message, translated when rendered."""
    path: str
    roles: frozenset[Role]
    order: int


_ITEMS: list[NavItem] = []


def register(item: NavItem) -> NavItem:
    if all(i.key != item.key for i in _ITEMS):
        _ITEMS.append(item)
        _ITEMS.sort(key=lambda i: i.order)
    return item


def visible_items(principal: Principal) -> list[NavItem]:
    return [i for i in _ITEMS if principal.role in i.roles]


def home_of(principal: Principal) -> str:
    """Where a role lands after signing in: its first page."""
    items = visible_items(principal)
    return items[0].path if items else "/console/account"
