"""A real uvicorn server on 127.0.0.1 (in a background thread, or a process of its own),
stopped when done."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from core.db import Database
from tests.support.postgres import free_port
from tests.support.processes import stop
from tests.support.waiting import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]


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

    def answers() -> bool:
        try:
            httpx.get(base + "/openapi.json", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        eventually(answers, timeout=180, message="test server did not start")
    except AssertionError:
        server.should_exit = True
        raise
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def server_process(
    database_url: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The API in a process of its own (``tests/support/serve.py``) on 127.0.0.1;
    yields its base URL and process, and stops it (SIGKILL if it must) when done."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.serve", database_url, str(port), *extra],
        cwd=str(REPO_ROOT),
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"test server exited with {proc.returncode}")
            try:
                httpx.get(base + "/openapi.json", timeout=2)
            except httpx.HTTPError:
                return False
            return True

        eventually(started, timeout=180, message="test server did not start")
        yield base, proc
    finally:
        stop(proc, grace=20)
