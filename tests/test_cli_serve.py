"""``masterline serve`` runs the API on uvloop (``api.app.SERVER_LOOP``): the PE's
download to many boots at once depends on it (docs/benchmarks.md), and uvicorn's
default would fall back to asyncio's loop without a word if uvloop went missing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from api.app import SERVER_LOOP
from core.db import Database
from tests.support.postgres import free_port
from tests.support.processes import running
from tests.support.waiting import eventually


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _loaded_libraries(pid: int) -> set[str]:
    return {
        line.split()[-1]
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if line.endswith(".so")
    }


@pytest.mark.skipif(SERVER_LOOP != "uvloop", reason="uvloop has no Windows build")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the loop, not the database
def test_serve_runs_the_api_on_uvloop(db: Database, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MASTERLINE_DATABASE_URL": db.url,
        "MASTERLINE_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-c", "import cli; cli.main()", "serve", "--port", str(port)]
    with running(argv, tmp_path / "serve.log", env=env) as proc:
        url = f"http://127.0.0.1:{port}/openapi.json"
        eventually(
            lambda: proc.poll() is not None or _answers(url),
            timeout=120,
            message="masterline serve did not answer",
        )
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        libraries = _loaded_libraries(proc.pid)
    # The server process runs its loop in uvloop's extension, loaded only when used.
    assert any("/uvloop/loop." in path for path in libraries), sorted(libraries)
