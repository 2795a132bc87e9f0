"""Every route, every role, own and other company.

The walk is generic: it iterates the routes of ``create_app`` at collection time, so a
route added by any domain is covered without touching this file. What it needs to know
about a domain is how to fill a path parameter (``PARAM_FACTORIES``: a parameter name to
a function returning the id of an object of the caller's own company and one of the other
company) and, for the few routes whose body must be precise, ``BODY_OVERRIDES``. Bodies
of other routes are synthesised from the OpenAPI schema. Where a parameter cannot be
filled, the route is still checked for 401/403 and for 404 on an id nobody owns.

Client-bound callers (dsi, logistics) hold ACME tokens; GLOBEX is "the other company".
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.deps import AnyRole, SessionDep, Staff, new_router
from core.db import Database
from core.principal import Role
from inventory import repository
from tests.api.access_params import (
    BODY_OVERRIDES,
    OTHER,
    OWN,
    PARAM_FACTORIES,
    SYNTHETIC_FACTORIES,
)
from tests.conftest import auth
from tests.support.factories import World
from tests.support.openapi_bodies import (
    Pair,
    Synth,
    from_schema,
    json_body_schema,
)
from tests.support.routes import WalkedRoute, allowed_roles, device_auth, walk_routes

SKIPPED_PATHS = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
SIGNED_LINK_PATHS = {
    "/help/{link}",
    "/boot/ipxe/{link}",
    "/boot/ipxe/{link}/ipxe.efi",
    "/boot/ipxe/{link}/pe/{version}/{name}",
}
"""Routes that take no token: the link itself is signed (a welcome sheet's QR code, read
by a teleworker's phone; a bench's netboot link, fetched by a laptop's iPXE) and answers
404 unless its signature is genuine; checked by
``test_signed_link_routes_refuse_forged_links`` instead of the walk (and the netboot
links further by tests/boot/netboot/test_netboot.py)."""
UNKNOWN_ID = 999_999
# 404 on another company's object; 422 only if the caller's own object gets it too
# (validation ran before any lookup, so nothing about the object leaks).
FORBIDDEN_FOR_OWN = {401, 403, 404}


def _collect_routes() -> list[WalkedRoute]:
    with tempfile.TemporaryDirectory() as tmp:
        # The database is never opened: the app is built only to list its routes.
        app = create_app(Database(f"sqlite:///{Path(tmp) / 'unused.db'}"))
        # Console pages are walked with a browser session by tests/console/test_access.py.
        return [
            r
            for r in walk_routes(app, skipped=frozenset(SKIPPED_PATHS | SIGNED_LINK_PATHS))
            if not r.path.startswith("/console/")
        ]


ROUTES = _collect_routes()


ROUTE_CASES = [(route, method) for route in ROUTES for method in sorted(route.methods)]


def test_every_route_declares_its_roles() -> None:
    missing = [
        f"{','.join(sorted(r.methods))} {r.path}"
        for r in ROUTES
        if allowed_roles(r) is None and device_auth(r) is None
    ]
    assert not missing, "routes without an Allow(...) dependency:\n  " + "\n  ".join(missing)


def test_signed_link_routes_refuse_forged_links(app_client: TestClient, world: World) -> None:
    """The routes without ``Allow``: exactly the known signed-link ones, and each
    answers 404 to a made-up link, with or without a token."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Database(f"sqlite:///{Path(tmp) / 'unused.db'}"))
        every = walk_routes(app, skipped=frozenset(SKIPPED_PATHS))
    # Console pages declare theirs with PageAllow (tests/console/test_access.py); the PE's
    # routes authenticate a device (its enrollment credential or agent token).
    api_only = [r for r in every if not r.path.startswith("/console/")]
    unguarded = {r.path for r in api_only if allowed_roles(r) is None and device_auth(r) is None}
    assert unguarded == SIGNED_LINK_PATHS
    for path in SIGNED_LINK_PATHS:
        for link in (
            "64238719-fr-AAAAAAAAAAAAAAAAAAAAAA",
            "x",
            "64238719-fr",
            f"{world.bench.id}-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ):
            url = path.replace("{link}", link).replace("{version}", "6.1.0-1-amd64-0")
            for headers in ({}, auth(_token_for(world, Role.ADMIN))):
                got = app_client.get(url.replace("{name}", "vmlinuz"), headers=headers)
                assert got.status_code == 404, (path, link, got.status_code)


def test_the_walk_sees_the_core_routes() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/devices", "/devices/{device_id}", "/scan", "/tokens", "/me"} <= paths


# The walk.
@dataclass
class Call:
    path: str
    body: Any
    confident: bool
    """Every parameter and body field was filled from a known factory."""
    synthetic: bool = False
    """A path parameter points at a row made up by ``_synthetic_row``."""


@dataclass
class Plan:
    own: Call
    other: Call | None


def _plan(
    route: WalkedRoute, method: str, session: Session, world: World, spec: dict[str, Any]
) -> Plan:
    params = [p.name for p in route.dependant.path_params]
    values: dict[str, Pair] = {}
    for name, factory in PARAM_FACTORIES.items():
        values[name] = factory(session, world)
    for name in params:
        if name in SYNTHETIC_FACTORIES:
            values[name] = SYNTHETIC_FACTORIES[name](session, world)
    own_path, other_path = route.path, route.path
    confident, has_other = True, False
    for name in params:
        own, other = values.get(name, from_schema(spec, route.path, method, name))
        if own is None or name in SYNTHETIC_FACTORIES:
            confident = False
        if other is not None:
            has_other = True
        own_path = own_path.replace("{" + name + "}", str(own if own is not None else UNKNOWN_ID))
        other_path = other_path.replace(
            "{" + name + "}", str(other if other is not None else own or UNKNOWN_ID)
        )
    if not params or not has_other:
        other_path = own_path
    own_body: Any = None
    other_body: Any = None
    override = BODY_OVERRIDES.get((method, route.path))
    schema = json_body_schema(spec, route.path, method)
    if override is not None:
        own_body, other_body = override(values, world)
    elif schema is not None:
        own_synth = Synth(spec, values, side=0)
        own_body = own_synth.value(schema, None)
        other_synth = Synth(spec, values, side=1)
        other_body = other_synth.value(schema, None)
        confident = confident and not own_synth.guessed_reference
        if not other_synth.company_bound:
            other_body = None
    if other_body is not None:
        has_other = True
    other = None
    if has_other:
        other = Call(other_path, other_body if other_body is not None else own_body, confident)
    if not params:
        # Without a path parameter the only way to point at the other company is the body.
        other = other if other_body is not None else None
    synthetic = any(name in SYNTHETIC_FACTORIES and values[name][0] is not None for name in params)
    return Plan(Call(own_path, own_body, confident, synthetic), other)


def _status(client: TestClient, method: str, call: Call, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if call.body is not None:
        kwargs["json"] = call.body
    elif method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    # Streamed, so that a live (server-sent events) route answers with its status and
    # is then closed, instead of holding the walk forever.
    with client.stream(method, call.path, **kwargs) as response:
        return response.status_code


@dataclass(frozen=True, order=True)
class Caller:
    """A role and whether its token names a client company (the caller's own, ACME).
    ``helpdesk`` tokens may or may not: both are walked."""

    role: Role
    bound: bool

    def __str__(self) -> str:
        return f"{self.role}@{OWN}" if self.bound and self.role.client_optional else str(self.role)


CALLERS = sorted(
    [Caller(r, r.client_bound) for r in Role] + [Caller(r, True) for r in Role if r.client_optional]
)


def _token_for(world: World, role: Role | Caller) -> str:
    caller = role if isinstance(role, Caller) else Caller(role, role.client_bound)
    return world.token(caller.role, OWN if caller.bound else None)


def check_route(
    route: WalkedRoute, method: str, *, db: Database, world: World, client: TestClient
) -> list[str]:
    """Every access rule this route breaks, one line each (empty when it is sound)."""
    where = f"{method} {route.path}"
    if device_auth(route) is not None:
        return _check_device_route(route, method, world=world, client=client)
    roles = allowed_roles(route)
    if roles is None:
        return [f"{where}: declares no roles (no Allow(...) dependency)"]
    spec = client.app.openapi()  # type: ignore[attr-defined]
    with db.session() as session:
        plan = _plan(route, method, session, world, spec)
    violations: list[str] = []

    def expect(ok: bool, what: str, got: int, want: str) -> None:
        if not ok:
            violations.append(f"{where}: {what} -> {got} (want {want})")

    got = _status(client, method, plan.own, {})
    expect(got == 401, "no token", got, "401")
    got = _status(client, method, plan.own, auth("mlt_not-a-real-token"))
    expect(got == 401, "bad token", got, "401")

    callers = [c for c in CALLERS if c.role in roles]
    for caller in CALLERS:
        if caller.role not in roles:
            got = _status(client, method, plan.own, auth(_token_for(world, caller)))
            expect(got == 403, f"[{caller}] role not allowed", got, "403")

    # Other company first: a caller's own call may change state (e.g. quarantine).
    for role in callers:
        headers = auth(_token_for(world, role))
        if plan.other is not None and role.bound:
            got = _status(client, method, plan.other, headers)
            if got == 422:
                own_got = _status(client, method, plan.own, headers)
                expect(
                    own_got == 422,
                    f"[{role}] other company's object",
                    got,
                    "404; 422 only when its own object gets 422 too",
                )
            else:
                expect(got == 404, f"[{role}] other company's object", got, "404")
        elif plan.other is not None and plan.other.confident:
            got = _status(client, method, plan.other, headers)
            expect(
                got not in FORBIDDEN_FOR_OWN and got < 500,
                f"[{role}] other company (staff see every company)",
                got,
                "not 401/403/404/5xx",
            )

    for role in callers:
        got = _status(client, method, plan.own, auth(_token_for(world, role)))
        if plan.own.confident:
            expect(
                got not in FORBIDDEN_FOR_OWN and got < 500,
                f"[{role}] own object",
                got,
                "not 401/403/404/5xx",
            )
        elif plan.own.synthetic:
            # A made-up row may lack what its domain sets (a decryptable secret, a stored
            # file): only "not refused" is asserted; its other-company twin proved 404.
            expect(got not in (401, 403), f"[{role}] own made-up object", got, "not 401/403")
        else:
            # A parameter this walk cannot fill: only "no server error" and "not refused".
            expect(
                got not in (401, 403) and got < 500,
                f"[{role}] unknown-id object",
                got,
                "not 401/403/5xx",
            )
            if role.bound and plan.other is None and route.dependant.path_params:
                # 422: the placeholder id is not even of the right shape; leaks nothing.
                expect(got in (404, 422), f"[{role}] id nobody owns", got, "404")
    return violations


def _check_device_route(
    route: WalkedRoute, method: str, *, world: World, client: TestClient
) -> list[str]:
    """A route a PE calls with its own secret: no API token of any role opens it."""
    where = f"{method} {route.path}"
    call = Call(route.path, {}, confident=False)
    violations = []
    for label, headers in [
        ("no token", {}),
        ("bad token", auth("mlt_not-a-real-token")),
        *[(f"[{role}] API token", auth(_token_for(world, role))) for role in Role],
    ]:
        got = _status(client, method, call, headers)
        if got != 401:
            violations.append(f"{where}: {label} -> {got} (want 401)")
    return violations


@pytest.mark.slow  # every route x every role x own and other company
def test_every_route_enforces_access(db: Database, world: World, app_client: TestClient) -> None:
    """One walk over every route and method, listing every violation at once (one world
    per backend: building one per route made the walk take minutes)."""
    violations: list[str] = []
    for route, method in ROUTE_CASES:
        violations += check_route(route, method, db=db, world=world, client=app_client)
    assert not violations, f"{len(violations)} access violation(s):\n  " + "\n  ".join(violations)


@pytest.mark.slow  # walks a second app
def test_the_walk_catches_faulty_routes(db: Database, world: World) -> None:
    """The walk itself, against routes that break each rule on purpose."""
    router = new_router()

    @router.get("/walk/no-roles/{device_id}")
    def no_roles(device_id: int) -> dict[str, int]:
        return {"id": device_id}

    @router.get("/walk/leaky/{device_id}")
    def leaky(device_id: int, session: SessionDep, _: AnyRole) -> dict[str, int]:
        device = repository.get_device(session, device_id)
        return {"id": device.id if device and device.id else 0}

    @router.get("/walk/telling/{device_id}")
    def telling(device_id: int, session: SessionDep, principal: AnyRole) -> dict[str, int]:
        device = repository.get_device(session, device_id)
        if device is None:
            raise HTTPException(404)
        if not principal.sees_client(device.client_id):
            raise HTTPException(403)  # says "it exists"
        return {"id": device_id}

    @router.get("/walk/sound/{device_id}")
    def sound(device_id: int, session: SessionDep, principal: Staff) -> dict[str, int]:
        return {"id": device_id}

    app = create_app(db)
    app.include_router(router)
    found = {r.path: r for r in walk_routes(app) if r.path.startswith("/walk/")}
    with TestClient(app, raise_server_exceptions=False) as client:
        results = {
            path: check_route(route, "GET", db=db, world=world, client=client)
            for path, route in found.items()
        }
    assert results["/walk/no-roles/{device_id}"] == [
        "GET /walk/no-roles/{device_id}: declares no roles (no Allow(...) dependency)"
    ]
    assert any(
        "[dsi] other company's object -> 200" in v for v in results["/walk/leaky/{device_id}"]
    )
    assert any(
        "[logistics] other company's object -> 403" in v
        for v in results["/walk/telling/{device_id}"]
    )
    assert results["/walk/sound/{device_id}"] == []


def test_client_bound_listings_show_only_their_company(
    app_client: TestClient, world: World
) -> None:
    for role in (Role.DSI, Role.LOGISTICS):
        headers = auth(_token_for(world, role))
        devices = app_client.get("/devices", headers=headers).json()["items"]
        assert devices and {d["client_id"] for d in devices} == {world.acme.id}
        deliveries = app_client.get("/deliveries", headers=headers).json()["items"]
        assert {d["client_id"] for d in deliveries} == {world.acme.id}
        clients = app_client.get("/clients", headers=headers).json()
        assert [c["code"] for c in clients] == [OWN]
        other = app_client.get("/devices", params={"client": OTHER}, headers=headers)
        assert other.status_code == 404
    staff = app_client.get("/devices", headers=auth(_token_for(world, Role.TECHNICIAN)))
    assert {d["client_id"] for d in staff.json()["items"]} == {world.acme.id, world.globex.id}


def test_revoked_token_is_refused_at_once(app_client: TestClient, world: World) -> None:
    admin = auth(_token_for(world, Role.ADMIN))
    created = app_client.post(
        "/tokens", json={"name": "temp", "role": "technician"}, headers=admin
    ).json()
    assert app_client.get("/me", headers=auth(created["token"])).status_code == 200
    assert app_client.delete(f"/tokens/{created['id']}", headers=admin).status_code == 200
    assert app_client.get("/me", headers=auth(created["token"])).status_code == 401
