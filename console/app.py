"""Mount the console on the API app: its pages, its static files, its live hub, and the
browser-session way into the API (for the scripts the pages run: tus uploads)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.cache import TtlCache
from console.deps import cookie_principal
from console.live import Hub
from core.settings import get_settings

STATIC = Path(__file__).resolve().parent / "static"
PAGES = Path(__file__).resolve().parent / "pages"


def page_modules() -> list[ModuleType]:
    """Every module of ``console/pages`` (a new page is a new module there)."""
    return [
        importlib.import_module(f"console.pages.{m.name}")
        for m in sorted(pkgutil.iter_modules([str(PAGES)]), key=lambda m: m.name)
        if not m.name.startswith("_")
    ]


async def _to_console(_: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


def mount(app: FastAPI) -> None:
    app.state.cookie_principal = cookie_principal
    app.state.live_hub = Hub(app.state.db)
    figures: TtlCache[object] = TtlCache(ttl=get_settings().console_figures_seconds)
    app.state.figures_cache = figures
    # Dashboards told "stale" reload figures computed after the change, not kept ones.
    app.state.live_hub.on_stale(figures.clear)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for module in page_modules():
        app.include_router(module.router)
    # A person who opens the server's address in a browser lands on the console.
    app.router.add_route("/", _to_console, methods=["GET"], include_in_schema=False)
