"""A real uvicorn server on 127.0.0.1 in a background thread, stopped when done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from core.db import Database
from tests.support.postgres import free_port


@contextmanager
def running_server(db: Database, *, wrap: Callable[[Any], Any] | None = None) -> Iterator[str]:
    """``wrap``: an ASGI middleware put around the app (a test's fault in the path)."""
    port = free_port()
    # A live page (server-sent events) left open must not hold the shutdown for long.
    config = uvicorn.Config(
        wrap(create_app(db)) if wrap else create_app(db),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError("test server did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)
