"""A real uvicorn server on 127.0.0.1 in a background thread, stopped when done."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from api.app import create_app
from core.db import Database
from tests.support.postgres import free_port
from tests.support.waiting import eventually


@contextmanager
def running_server(db: Database) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(base + "/openapi.json", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        eventually(answers, timeout=60, message="test server did not start")
    except AssertionError:
        server.should_exit = True
        raise
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)
