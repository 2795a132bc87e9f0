"""The routes an app serves, walked as FastAPI resolves them, and the roles each admits
(for tests/api/test_access.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.deps import Allow
from boot.registration.auth import DeviceAuth
from core.principal import Role


@dataclass(frozen=True)
class WalkedRoute:
    """One route as the app serves it (prefixes and router-level dependencies applied)."""

    path: str
    methods: frozenset[str]
    dependant: Dependant
    include_in_schema: bool


def walk_routes(app: FastAPI, *, skipped: frozenset[str] = frozenset()) -> list[WalkedRoute]:
    """Every FastAPI route of ``app``, included routers flattened, but ``skipped``."""
    out: list[WalkedRoute] = []
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, APIRoute) or ctx.path in skipped:
            continue
        out.append(
            WalkedRoute(
                path=str(ctx.path),
                methods=frozenset(ctx.methods or ()),
                dependant=ctx.dependant,
                include_in_schema=bool(ctx.include_in_schema),
            )
        )
    return out


def _allows(dependant: Dependant) -> Iterator[Allow]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Allow):
            yield dep.call
        yield from _allows(dep)


def allowed_roles(route: WalkedRoute) -> frozenset[Role] | None:
    """The roles every ``Allow`` on the route admits, or None when it declares none."""
    found = list(_allows(route.dependant))
    if not found:
        return None
    roles = frozenset(Role)
    for allow in found:
        roles &= allow.roles
    return roles


def device_auth(route: WalkedRoute) -> DeviceAuth | None:
    """The PE secret (enrollment credential, agent token) a route takes instead of an
    API token, if it is such a route (``boot.registration.auth``)."""

    def walk(dependant: Dependant) -> Iterator[DeviceAuth]:
        for dep in dependant.dependencies:
            if isinstance(dep.call, DeviceAuth):
                yield dep.call
            yield from walk(dep)

    return next(walk(route.dependant), None)
