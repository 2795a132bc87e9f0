"""The FastAPI application: routers, and the one handler that renders errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import docs, openapi
from api.body import CloseUnreadBody
from api.deps import PrincipalCache
from core.db import Database, database_error, get_database
from core.errors import MasterlineError
from core.heap import freeze_long_lived
from core.logs import RequestIdMiddleware

log = logging.getLogger("masterline.api")

PROBLEM = "application/problem+json"

DESCRIPTION = """
Masterline tracks laptops from a vendor's ship notice to a teleworker's door.

**Authentication.** Every route needs `Authorization: Bearer <token>`. Tokens have a role:
`admin`, `technician` (any client), `dsi` or `logistics` (bound to one client company;
another company's objects answer 404), `helpdesk` (bound to one client when its token
names one, else every client).

**Errors** are `application/problem+json`: `type`, `title`, `status`, `detail`, and extra
fields such as `current_state` and `allowed_events` on an illegal lifecycle move.

**Pagination** is by cursor: pass `next_cursor` from one page as `cursor` to the next;
pages stay stable while rows are inserted.
"""


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _recover_uploads(db: Database) -> None:
    """Images a killed server left half-published are settled before serving (see
    ``images.publish``); a failure here is logged, never fatal to the start."""
    from images.publish import recover_interrupted
    from images.store import get_store

    try:
        settled = recover_interrupted(db, get_store())
    except Exception as e:  # e.g. a database not migrated yet: serve, and say why
        log.warning("could not check for interrupted uploads: %s", type(e).__name__)
        return
    if settled:
        log.warning("settled %d upload(s) interrupted by a server crash", len(settled))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from boot.netboot.fileserver import start_from_settings
    from inventory.intake_jobs import resume_in_background

    await anyio.to_thread.run_sync(_recover_uploads, app.state.db)
    # A large import that a crash interrupted is finished (or dropped, if it had not
    # begun to publish) once its lease runs out. Started here, not in ``create_app``:
    # building the app (importing ``api.main``) must start nothing, and a tool that only
    # imports it (the OpenAPI export, a test) has no import to resume.
    resume_in_background(app.state.db)
    # The process's long-lived objects out of the garbage collector's full passes: those
    # paused every request for 0.13 s and more (core.heap). The OpenAPI schema is built first
    # rather than at the first /docs visit, so that it is frozen with the rest.
    freeze_long_lived(warm=app.openapi)
    # The PE's files with sendfile on a port of their own, when the site asked for it
    # (boot.netboot.fileserver says why): in this loop, stopped with the app.
    boot_files = await start_from_settings(app.state.db)
    try:
        yield
    finally:
        if boot_files is not None:
            await boot_files.close()


def create_app(db: Database | None = None) -> FastAPI:
    from wiring import wire  # the composition root: above every domain, as this app is

    wire()
    app = FastAPI(
        lifespan=_lifespan,
        docs_url=None,  # served by api.docs, with local assets
        redoc_url=None,
        title="Masterline",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "inventory", "description": "Clients, sites, benches, hardware models."},
            {"name": "deliveries", "description": "Vendor ship notices and reconciliation."},
            {"name": "devices", "description": "Laptops, their history and lifecycle."},
            {"name": "scan", "description": "Bench scan-in."},
            {"name": "tokens", "description": "API tokens (admin)."},
            {"name": "images", "description": "The DSI image catalogue (see docs/images.md)."},
            {"name": "uploads", "description": "Image bytes: one PUT, or tus 1.0.0 (resumable)."},
            {"name": "configs", "description": "Client configurations; secrets write-only."},
            {"name": "forecast", "description": "Wave planning: dates, bottleneck, what-if."},
            {
                "name": "helpdesk",
                "description": "After dispatch: look-up, phone routing, articles, welcome "
                "sheets, contacts, satisfaction (see docs/helpdesk.md).",
            },
            {
                "name": "boot",
                "description": "PE self-registration, enrollment credentials, PE boots, "
                "hardware health policy (see docs/boot.md).",
            },
        ],
    )
    # Outermost of ours: sees every response, including those of the error handlers.
    app.add_middleware(CloseUnreadBody)
    # Around even that: a request id on every request and its log lines, and one access
    # line per request (core.logs).
    app.add_middleware(RequestIdMiddleware)
    app.state.db = db or get_database()
    app.state.principal_cache = PrincipalCache()

    @app.exception_handler(MasterlineError)
    async def _masterline_error(_: Request, exc: MasterlineError) -> JSONResponse:
        return JSONResponse(
            exc.to_problem(), status_code=exc.status_code, media_type=PROBLEM, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Echo where and what, never the submitted value: it may be a secret.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _problem(422, "Invalid input", f"{where}: {first['msg']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, "HTTP error", str(exc.detail))

    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: DataError) -> JSONResponse:
        # A value the column cannot hold (ids are 32-bit on PostgreSQL, so 2^31 passes
        # the 64-bit check at the edge): the caller's input, not our failure.
        log.info("data error on %s %s: %s", request.method, request.url.path, type(exc.orig))
        return _problem(422, "Invalid input", "a value is out of range or malformed")

    @app.exception_handler(IntegrityError)
    async def _constraint(request: Request, exc: IntegrityError) -> JSONResponse:
        # A duplicate or a reference to nothing that a route did not check first: the
        # database refused the write, nothing was written; say so instead of a 500.
        log.warning("integrity error on %s %s", request.method, request.url.path)
        return _problem(
            409,
            "Conflict",
            "conflicts with existing data (a duplicate, or a reference "
            "to something that does not exist); nothing was written",
        )

    @app.exception_handler(OperationalError)
    async def _db_error(request: Request, exc: OperationalError) -> JSONResponse:
        # Lock timeouts and lost connections (503: retry), or a full disk (507: free
        # space first); never a traceback.
        problem = database_error(exc)
        log.warning(
            "database error on %s %s: %s (%s)",
            request.method,
            request.url.path,
            problem.title,
            type(exc.orig).__name__,
        )
        return JSONResponse(
            problem.to_problem(),
            status_code=problem.status_code,
            media_type=PROBLEM,
            headers=problem.headers,  # Retry-After on a busy database
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _problem(500, "Internal error", "internal error; see the server log")

    from api.metrics import router as metrics_router
    from api.router import router as tokens_router
    from boot.router import router as boot_router
    from forecast.router import router as forecast_router
    from helpdesk.router import router as helpdesk_router
    from images.router import router as images_router
    from inventory.router import router as inventory_router
    from logistics.router import router as logistics_router
    from logistics.router_webhooks import router as webhooks_router
    from provisioning.runs.router import router as provisioning_router

    app.include_router(inventory_router)
    app.include_router(tokens_router)
    app.include_router(images_router)
    app.include_router(provisioning_router)
    app.include_router(logistics_router)
    app.include_router(webhooks_router)
    app.include_router(forecast_router)
    app.include_router(helpdesk_router)
    app.include_router(metrics_router)
    app.include_router(boot_router)

    # The web console (pages, live updates) on the same app: see docs/console.md.
    from console.app import mount as mount_console

    mount_console(app)
    openapi.install(app)
    docs.install(app)

    return app
