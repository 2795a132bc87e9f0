"""Annotated dependencies: the session boundary and the caller's identity and role.

Every route declares who may call it with ``Allow(...)``; a test walks every route and
fails on one that does not.
"""

from __future__ import annotations

import email.message
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response, params
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.auth import authenticate, hash_token
from api.body import declared_length, read_capped
from api.errors import MissingToken, RoleNotAllowed
from core.db import Database
from core.principal import Principal, Role
from core.settings import get_settings
from core.values import bounded_ints

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="Masterline API token (mlt_…)")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


# Teardown (rollback of a failed request, close) runs on its own small thread budget so
# it never waits behind handlers that are themselves waiting for a lock.
_TEARDOWN_LIMITER = anyio.CapacityLimiter(16)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request.

    Reads use a plain BEGIN; anything else a write transaction (``BEGIN IMMEDIATE`` on
    SQLite), so concurrent writers queue instead of failing. The commit itself happens
    inside the endpoint's own thread (see ``TransactionalRoute``); this only rolls back
    and closes.
    """
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    session = get_db(request).new_session(write=write)
    try:
        yield session
    finally:
        if session.in_transaction():
            # A failed request: the rollback may do I/O, so not on the event loop.
            await anyio.to_thread.run_sync(session.close, limiter=_TEARDOWN_LIMITER)
        else:
            # Committed (or never used): the connection is already back in the pool
            # and closing is bookkeeping; a trip to the thread pool would cost more.
            session.close()


async def in_transaction(session: Session, work: Callable[[], T]) -> T:
    """Run ``work`` and commit ``session``, in one trip to the thread pool.

    For the hot routes (scan-in): a sync endpoint costs FastAPI up to three trips (the
    endpoint, the response's validation, the commit); an ``async`` endpoint that does
    its database work here costs one, and builds its response on the event loop.
    """

    def run() -> T:
        result = work()
        session.commit()
        return result

    return await anyio.to_thread.run_sync(run)


def _commit_sessions(values: dict[str, Any]) -> None:
    for value in values.values():
        if isinstance(value, Session):
            value.commit()


def _commit_after(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            result = await endpoint(*args, **kwargs)
            # Nothing to commit when the endpoint used ``in_transaction`` (or no
            # database at all): skip the trip to the thread pool.
            if any(isinstance(v, Session) and v.in_transaction() for v in kwargs.values()):
                await anyio.to_thread.run_sync(_commit_sessions, kwargs)
            return result

        return run_async

    @functools.wraps(endpoint)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        _commit_sessions(kwargs)
        return result

    return run_sync


class TransactionalRoute(APIRoute):
    """Commits the request's session in the endpoint's thread, as the endpoint returns;
    checks the caller before any body is read; reads a JSON body with a cap.

    Why commit here rather than in the dependency's teardown: FastAPI serialises a sync
    endpoint's response in the thread pool *before* that teardown, so the transaction
    (SQLite's write lock, PostgreSQL's row locks) would be held while waiting for a pool
    thread — and under 50 concurrent scans every pool thread is a handler waiting for
    that very lock (measured: a deadlock broken only by the busy timeout). Committing
    here releases the locks before the response is built, and a failed commit still
    reaches the client as an error.

    Why check the caller here: FastAPI reads and parses the whole body before it solves
    any dependency, so without this a request with no token had its 200 MiB of JSON read
    and parsed (1.2 GiB of server memory, the event loop stalled for seconds) before it
    got its 401. The token and the route's roles (its ``Allow``) are checked first; the
    ``Allow`` dependency then finds the principal already there.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _bounded(endpoint, _commit_after(endpoint)), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_token, allows = _guards(self.dependant)
        field = self.body_field
        json_body = field is not None and not isinstance(field.field_info, params.Form)
        if not needs_token and not json_body:
            return handler

        async def guarded(request: Request) -> Response:
            if needs_token:
                principal = await principal_of(request)
                for allow in allows:
                    allow.check(principal)
            if json_body:
                await read_json_body(request)
            return await handler(request)

        return guarded


def _bounded(endpoint: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``wrapper`` the endpoint's signature with every integer parameter (path and
    query: ids, cursors) bounded to 64 bits, so that 2^63 is a 422 on every route, old
    and new, without each one having to say so (``core.values``)."""
    try:
        signature = inspect.signature(endpoint, eval_str=True)
    except NameError:  # an annotation only known to type checkers: leave it as it is
        return wrapper
    params_ = [
        p.replace(annotation=bounded_ints(p.annotation)) for p in signature.parameters.values()
    ]
    wrapper.__signature__ = signature.replace(parameters=params_)  # type: ignore[attr-defined]
    return wrapper


def _guards(dependant: Dependant) -> tuple[bool, list[Allow]]:
    """Whether a route needs a token, and the role checks it declares."""
    needs_token = False
    allows: list[Allow] = []
    stack = [dependant]
    while stack:
        dep = stack.pop()
        if dep.call is get_principal:
            needs_token = True
        elif isinstance(dep.call, Allow):
            allows.append(dep.call)
        stack.extend(dep.dependencies)
    return needs_token, allows


PARSE_ON_LOOP_MAX = 64 * 1024
"""A JSON body up to this size is parsed on the event loop (microseconds); a larger one
in a worker thread, so that one big request does not stall every other."""


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def read_json_body(request: Request) -> None:
    """Read the body with the ``max_json_body`` cap and parse a large one off the event
    loop; FastAPI then finds both cached on the request.

    :raises TooLarge: over the cap (nothing more is read).
    :raises RequestValidationError: not JSON.
    """
    body = await read_capped(
        request.stream(),
        limit=get_settings().max_json_body,
        declared=declared_length(request.headers),
        what="the JSON body",
    )
    request._body = body
    if len(body) <= PARSE_ON_LOOP_MAX or not _is_json(request.headers.get("content-type")):
        return
    try:
        request._json = await anyio.to_thread.run_sync(json.loads, body)
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ]
        ) from e


def new_router(**kwargs: Any) -> APIRouter:
    """The APIRouter every domain uses, so that its routes commit as described above."""
    return APIRouter(route_class=TransactionalRoute, **kwargs)


SessionDep = Annotated[Session, Depends(get_session)]


class PrincipalCache:
    """Tokens this server process checked recently: token hash -> (expiry, principal).

    Every request authenticates; without this, each one pays a database read and a trip
    to the thread pool before its own work starts (a third of a bare ``GET /me``). The
    entry lives ``auth_cache_seconds`` (2 s by default, like the TTL caches of
    Kubernetes' webhook token authenticator, only much shorter); revoking a token
    through the API drops it at once in this process.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key: str) -> Principal | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: str, principal: Principal, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # bounded; a refill costs one read per token
        self._entries[key] = (time.monotonic() + ttl, principal)

    def forget_token(self, token_id: int) -> None:
        for key, (_, principal) in list(self._entries.items()):
            if principal.token_id == token_id:
                self._entries.pop(key, None)


def principal_cache(request: Request) -> PrincipalCache:
    cache: PrincipalCache = request.app.state.principal_cache  # made by create_app
    return cache


def _authenticate(db: Database, token: str) -> Principal:
    with db.session(write=False) as session:
        return authenticate(session, token)


_PRINCIPAL_KEY = "masterline.principal"


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingToken()
    return token


async def principal_of(request: Request) -> Principal:
    """The caller, from its bearer token (checked once per request).

    :raises MissingToken, BadToken: 401.
    """
    known: Principal | None = request.scope.get(_PRINCIPAL_KEY)
    if known is not None:
        return known
    token = _bearer_token(request)
    cache = principal_cache(request)
    key = hash_token(token)
    principal = cache.get(key)
    if principal is None:
        principal = await anyio.to_thread.run_sync(_authenticate, get_db(request), token)
        cache.put(key, principal, get_settings().auth_cache_seconds)
    request.scope[_PRINCIPAL_KEY] = principal
    return principal


async def get_principal(
    request: Request,
    # Declared for the OpenAPI security scheme; the header is read by ``principal_of``.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await principal_of(request)


class Allow:
    """Dependency that admits only the listed roles (403 otherwise)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    # async: a pure check needs no trip through the thread pool.
    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        self.check(principal)
        return principal

    def check(self, principal: Principal) -> None:
        """:raises RoleNotAllowed: 403."""
        if principal.role not in self.roles:
            raise RoleNotAllowed(principal.role.value, sorted(r.value for r in self.roles))


EVERYONE = (Role.ADMIN, Role.TECHNICIAN, Role.DSI, Role.LOGISTICS)
STAFF = (Role.ADMIN, Role.TECHNICIAN)

AdminOnly = Annotated[Principal, Depends(Allow(Role.ADMIN))]
Staff = Annotated[Principal, Depends(Allow(*STAFF))]
AnyRole = Annotated[Principal, Depends(Allow(*EVERYONE))]
"""Every role that works on laptops before they leave (not the help desk's)."""
Anyone = Annotated[Principal, Depends(Allow(*Role))]
"""Every role at all (``GET /me``)."""
