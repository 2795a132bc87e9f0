"""Annotated dependencies: the session boundary and the caller's identity and role.

Every route declares who may call it with ``Allow(...)``; a test walks every route and
fails on one that does not.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.errors import MissingToken, RoleNotAllowed
from api.service import authenticate, hash_token
from core.db import Database
from core.principal import Principal, Role
from core.settings import get_settings

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
    """Commits the request's session in the endpoint's thread, as the endpoint returns.

    Why not in the dependency's teardown: FastAPI serialises a sync endpoint's response
    in the thread pool *before* that teardown, so the transaction (SQLite's write lock,
    PostgreSQL's row locks) would be held while waiting for a pool thread — and under 50
    concurrent scans every pool thread is a handler waiting for that very lock
    (measured: a deadlock broken only by the busy timeout). Committing here releases the
    locks before the response is built, and a failed commit still reaches the client
    as an error.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _commit_after(endpoint), **kwargs)


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


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise MissingToken()
    token = credentials.credentials
    cache = principal_cache(request)
    key = hash_token(token)
    principal = cache.get(key)
    if principal is None:
        principal = await anyio.to_thread.run_sync(_authenticate, get_db(request), token)
        cache.put(key, principal, get_settings().auth_cache_seconds)
    return principal


class Allow:
    """Dependency that admits only the listed roles (403 otherwise)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    # async: a pure check needs no trip through the thread pool.
    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in self.roles:
            raise RoleNotAllowed(principal.role.value, sorted(r.value for r in self.roles))
        return principal


EVERYONE = (Role.ADMIN, Role.TECHNICIAN, Role.DSI, Role.LOGISTICS)
STAFF = (Role.ADMIN, Role.TECHNICIAN)

AdminOnly = Annotated[Principal, Depends(Allow(Role.ADMIN))]
Staff = Annotated[Principal, Depends(Allow(*STAFF))]
AnyRole = Annotated[Principal, Depends(Allow(*EVERYONE))]
"""Every role that works on laptops before they leave (not the help desk's)."""
Anyone = Annotated[Principal, Depends(Allow(*Role))]
"""Every role at all (``GET /me``)."""
