"""What every page module uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import EVERYONE, STAFF, get_db
from console import render
from console.deps import PageRoute, Viewer, is_htmx
from console.live import Hub
from core.db import Database

__all__ = [
    "EVERYONE",
    "STAFF",
    "Database",
    "Viewer",
    "back",
    "done",
    "get_db",
    "go",
    "hub_of",
    "page",
    "page_router",
]


def page_router() -> APIRouter:
    """A router whose routes commit like the API's and render errors as pages; not in
    the API's OpenAPI document."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


page = render.page


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.live_hub
    return hub


def back(request: Request, fallback: str) -> str:
    """Where a plain (non-htmx) form post returns to: the page it came from."""
    referer = request.headers.get("referer", "")
    base = str(request.base_url).rstrip("/")
    if referer.startswith(base + "/console"):
        return referer[len(base) :]
    return fallback


def done(
    request: Request,
    viewer: Viewer,
    message: str,
    *,
    fallback: str,
    status_code: int = 200,
    **params: Any,
) -> Response:
    """The answer to an action: a message in place for htmx, a redirect otherwise.
    ``message`` is an ``N_()``-marked text with ``%(name)s`` placeholders for ``params``."""
    if is_htmx(request):
        body = render.render(
            "_message.html",
            {"message": message, "params": params, "kind": "ok"},
            language=viewer.language,
        )
        return HTMLResponse(body, status_code=status_code)
    return RedirectResponse(back(request, fallback), status_code=303)


def go(request: Request, url: str) -> Response:
    """After a successful form: to ``url`` (htmx follows ``HX-Redirect``; a plain form
    a 303)."""
    if is_htmx(request):
        return HTMLResponse("", headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
