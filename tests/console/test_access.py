"""Every console page and action, every role, own and other company, with a real
browser session (cookie + CSRF), like tests/api/test_access.py does for the API.

The walk iterates the console's routes at collection time: a page added by any module of
console/pages is covered without touching this file. What it needs to know is how to
fill a path parameter (``tests.console.support.objects``: own and other company).
"""

from __future__ import annotations

import enum
import tempfile
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import SessionDep
from console.deps import AnyViewer, PageAllow, Public, StaffViewer
from console.pages._kit import page_router
from core.db import Database
from core.principal import Role
from inventory import repository
from tests.console.support import Objects, objects, sign_in
from tests.support.factories import World

CONSOLE = "/console/"
OWN, OTHER = "ACME", "GLOBEX"
UNKNOWN_ID = 999_999
REFUSED = {401, 403, 404}
FILLERS: dict[str, Any] = {"event": "retire", "action": "pause"}
"""Path parameters that are not objects: a value every route accepts."""


@dataclass(frozen=True)
class Page:
    path: str
    method: str
    dependant: Dependant

    @property
    def live(self) -> bool:
        return self.path.startswith("/console/live/")


def console_routes(app: FastAPI) -> list[Page]:
    out = []
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute) and str(ctx.path).startswith(CONSOLE):
            for method in sorted(ctx.methods or ()):
                out.append(Page(str(ctx.path), method, ctx.dependant))
    return out


def _collect() -> list[Page]:
    with tempfile.TemporaryDirectory() as tmp:
        return console_routes(create_app(Database(f"sqlite:///{Path(tmp) / 'unused.db'}")))


PAGES = _collect()


def _markers(dependant: Dependant) -> Iterator[object]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, PageAllow | Public):
            yield dep.call
        yield from _markers(dep)


def declared(page: Page) -> frozenset[Role] | None:
    """The roles the page admits (every role for a public page), None if undeclared."""
    found = list(_markers(page.dependant))
    if not found:
        return None
    roles = frozenset(Role)
    for marker in found:
        if isinstance(marker, PageAllow):
            roles &= marker.roles
    return roles


def is_public(page: Page) -> bool:
    return any(isinstance(m, Public) for m in _markers(page.dependant))


def test_every_page_declares_its_roles() -> None:
    missing = [f"{p.method} {p.path}" for p in PAGES if declared(p) is None]
    assert not missing, "console routes without PageAllow(...) or Public():\n  " + "\n  ".join(
        missing
    )


def test_the_walk_sees_the_pages() -> None:
    paths = {p.path for p in PAGES}
    assert {
        "/console/benches/{bench_id}",
        "/console/waves",
        "/console/laptops/{device_id}",
        "/console/deliveries/{delivery_id}",
        "/console/images",
        "/console/logistics",
        "/console/admin",
        "/console/live/benches/{bench_id}",
        "/console/helpdesk/laptops/{device_id}/contacts",
        "/console/kb/{article_id}",
        "/console/desk-reports/surveys/{month}",
        "/console/welcome",
        "/console/waves/what-if",
        "/console/waves/deliveries/{delivery_id}/commitment",
    } <= paths


def _form(page: Page, objs: Objects) -> dict[str, str]:
    """A value for each form field the route declares: the own company's object where
    the field names one, else a value of its type."""
    out: dict[str, str] = {}
    for field in page.dependant.body_params:
        if field.alias in objs.form:
            out[field.alias] = str(objs.form[field.alias])
            continue
        kind = field.field_info.annotation
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if args else kind
        if typing.get_origin(kind) is typing.Annotated:  # Int64 and friends
            kind = typing.get_args(kind)[0]
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            out[field.alias] = str(next(iter(kind)).value)
        elif kind is bool:
            out[field.alias] = "true"
        elif kind is int:
            out[field.alias] = "1"
        elif kind is date:
            out[field.alias] = "2030-01-15"
        elif field.alias == "email":
            out[field.alias] = "walk@example.com"
        else:
            out[field.alias] = "walk"
    return out


def _paths(page: Page, objs: Objects) -> tuple[str, str | None]:
    own, other = page.path, page.path
    has_other = False
    for param in page.dependant.path_params:
        mine, theirs = objs.values.get(param.name, (FILLERS.get(param.name, UNKNOWN_ID), None))
        own = own.replace("{" + param.name + "}", str(mine))
        if theirs is not None:
            has_other = True
        other = other.replace("{" + param.name + "}", str(theirs if theirs is not None else mine))
    return own, other if has_other else None


def _status(client: TestClient, page: Page, path: str, csrf: str | None, objs: Objects) -> int:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if page.method == "POST":
        kwargs["data"] = _form(page, objs)
    # Streamed: a live page answers with its status and is then closed.
    with client.stream(page.method, path, **kwargs) as response:
        return response.status_code


def _token(world: World, role: Role) -> str:
    return world.token(role, OWN if role.client_bound else None)


@pytest.fixture
def clients(db: Database, world: World) -> Iterator[dict[Role, tuple[TestClient, str]]]:
    app = create_app(db)
    out: dict[Role, tuple[TestClient, str]] = {}
    for role in Role:
        client = TestClient(app, raise_server_exceptions=False)
        out[role] = (client, sign_in(client, _token(world, role)))
    yield out
    for client, _ in out.values():
        client.close()


@pytest.fixture
def bound_desk(db: Database, world: World) -> Iterator[tuple[TestClient, str]]:
    """A help-desk advisor whose token names the own company (helpdesk tokens may or
    may not name one: the role-wide walk uses one that names none)."""
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        yield client, sign_in(client, world.token(Role.HELPDESK, OWN))


def check_page(
    page: Page,
    *,
    objs: Objects,
    anonymous: TestClient,
    clients: dict[Role, tuple[TestClient, str]],
    bound_desk: tuple[TestClient, str] | None = None,
) -> list[str]:
    """Every access rule this page breaks, one line each (empty when it is sound)."""
    violations: list[str] = []
    where = f"{page.method} {page.path}"
    roles = declared(page)
    if roles is None:
        return [f"{where}: declares no roles"]
    own_path, other_path = _paths(page, objs)
    if is_public(page):
        got = _status(anonymous, page, own_path, None, objs)
        # A public form still checks its own nonce (sign-in): only GETs must answer.
        if got >= 500 or (page.method == "GET" and got in (401, 403)):
            violations.append(f"{where}: public page -> {got}")
        return violations
    got = _status(anonymous, page, own_path, None, objs)
    want = {303} if page.method == "GET" else {401}
    if got not in want:
        violations.append(f"{where}: no session -> {got} (want {want})")
    if page.method == "POST":
        client, _ = clients[next(iter(sorted(roles)))]
        got = _status(client, page, own_path, None, objs)
        if got != 403:
            violations.append(f"{where}: no CSRF token -> {got} (want 403)")
    for role in Role:
        if role not in roles:
            client, csrf = clients[role]
            got = _status(client, page, own_path, csrf, objs)
            if got != 403:
                violations.append(f"{where}: [{role}] not allowed -> {got} (want 403)")
    # Other company first: a caller's own call may change state (retire, revoke).
    for role in sorted(roles):
        client, csrf = clients[role]
        if other_path is not None and role.client_bound:
            got = _status(client, page, other_path, csrf, objs)
            if got != 404:
                violations.append(f"{where}: [{role}] other company -> {got} (want 404)")
    if bound_desk is not None and Role.HELPDESK in roles and other_path is not None:
        client, csrf = bound_desk
        got = _status(client, page, other_path, csrf, objs)
        if got != 404:
            violations.append(f"{where}: [helpdesk@{OWN}] other company -> {got} (want 404)")
        got = _status(client, page, own_path, csrf, objs)
        if got in REFUSED or got >= 500:
            violations.append(f"{where}: [helpdesk@{OWN}] own -> {got} (want allowed)")
    for role in sorted(roles):
        client, csrf = clients[role]
        got = _status(client, page, own_path, csrf, objs)
        if got in REFUSED or got >= 500:
            violations.append(f"{where}: [{role}] own -> {got} (want allowed)")
    return violations


@pytest.mark.slow  # every page x every role x own and other company
def test_every_page_enforces_access(
    db: Database,
    world: World,
    clients: dict[Role, tuple[TestClient, str]],
    bound_desk: tuple[TestClient, str],
) -> None:
    objs = objects(db, world)
    violations: list[str] = []
    # Pages that sign in/out or switch language change the session: walked last.
    ordered = sorted(PAGES, key=lambda p: p.path.startswith(("/console/sign-", "/console/lang")))
    with TestClient(create_app(db), raise_server_exceptions=False) as anonymous:
        for page in ordered:
            violations += check_page(
                page, objs=objs, anonymous=anonymous, clients=clients, bound_desk=bound_desk
            )
    assert not violations, f"{len(violations)} violation(s):\n  " + "\n  ".join(violations)


def test_the_walk_catches_faulty_pages(db: Database, world: World) -> None:
    """The walk itself, against pages that break each rule on purpose (their annotations
    are module-level names: FastAPI resolves them from the module's globals)."""
    router = page_router()

    @router.get("/console/walk/no-roles/{device_id}")
    def no_roles(device_id: int) -> PlainTextResponse:
        return PlainTextResponse(str(device_id))

    @router.get("/console/walk/leaky/{device_id}")
    def leaky(device_id: int, session: SessionDep, viewer: AnyViewer) -> PlainTextResponse:
        device = repository.get_device(session, device_id)  # no client check
        return PlainTextResponse(device.serial if device else "")

    @router.post("/console/walk/sound/{device_id}")
    def sound(device_id: int, request: Request, viewer: StaffViewer) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = create_app(db)
    app.include_router(router)
    found = {p.path: p for p in console_routes(app) if p.path.startswith("/console/walk/")}
    objs = objects(db, world)
    clients: dict[Role, tuple[TestClient, str]] = {}
    for role in Role:
        client = TestClient(app, raise_server_exceptions=False)
        clients[role] = (client, sign_in(client, _token(world, role)))
    with TestClient(app, raise_server_exceptions=False) as anonymous:
        results = {
            path: check_page(p, objs=objs, anonymous=anonymous, clients=clients)
            for path, p in found.items()
        }
    for client, _ in clients.values():
        client.close()
    assert results["/console/walk/no-roles/{device_id}"] == [
        "GET /console/walk/no-roles/{device_id}: declares no roles"
    ]
    leaky_found = results["/console/walk/leaky/{device_id}"]
    assert any("[dsi] other company -> 200" in v for v in leaky_found), leaky_found
    assert results["/console/walk/sound/{device_id}"] == []
