"""The bench side's HTTP client (``core.client``), which every API-client command shares:
a busy answer (503 + Retry-After) is retried, a bounded number of times, then one clear
line; a real server whose SQLite write lock the test holds gives that answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from core.db import Database
from core.principal import Role
from inventory.models import Delivery
from tests.support.factories import World
from tests.support.server import running_server

pytestmark = pytest.mark.slow  # runs the masterline command as a subprocess

REPO = Path(__file__).resolve().parents[2]


def _masterline(*args: str, url: str, token: str, retries: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MASTERLINE_API_URL": url,
        "MASTERLINE_TOKEN": token,
        "MASTERLINE_API_RETRIES": retries,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_another_command_gives_up_on_a_busy_database_in_one_line(
    database_url: str, world: World
) -> None:
    busy = Database(database_url, busy_timeout_ms=200)
    create = ("deliveries", "create", "--vendor", "Dell", "--order", "PO-BUSY", "--client", "ACME")
    held = False
    try:
        with running_server(busy) as url:
            held = busy.write_lock.acquire(timeout=10)
            assert held
            no_retry = _masterline(*create, url=url, token=world.token(Role.ADMIN), retries="0")
            bad_setting = _masterline(
                *create, url=url, token=world.token(Role.ADMIN), retries="many"
            )
    finally:
        if held:
            busy.write_lock.release()
    try:
        assert no_retry.returncode == 7, no_retry
        assert no_retry.stdout == ""
        assert no_retry.stderr.strip().count("\n") == 0, no_retry.stderr
        assert "database busy" in no_retry.stderr and "still busy after 0 retries" in (
            no_retry.stderr
        )
        assert bad_setting.returncode == 2, bad_setting
        assert bad_setting.stderr.strip().count("\n") == 0, bad_setting.stderr
        assert "MASTERLINE_API_RETRIES must be a whole number" in bad_setting.stderr
        with busy.session(write=False) as s:
            assert s.exec(select(Delivery).where(Delivery.order_reference == "PO-BUSY")).all() == []
    finally:
        busy.dispose()


def test_an_error_longer_than_the_terminal_is_one_line() -> None:
    """Rule 5's one line holds on a narrow terminal: the error console does not wrap."""
    url = "http://127.0.0.1:9/" + "a-long-path-that-makes-the-error-line-long-" * 3
    done = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "admin", "clients", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "MASTERLINE_API_URL": url, "MASTERLINE_TOKEN": "x", "COLUMNS": "40"},
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 7, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and url in done.stderr, done.stderr
