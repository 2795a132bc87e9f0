"""``masterline tokens create|list|revoke``: server-side commands against the test
database, as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.settings import get_settings
from tests.conftest import auth
from tests.support.factories import World
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # runs the masterline command as a subprocess

REPO = Path(__file__).resolve().parents[2]


def tokens_cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MASTERLINE_DATABASE_URL": db.url, "COLUMNS": "200"}
    env.pop("MASTERLINE_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "tokens", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_create_list_revoke(db: Database, world: World, app_client: TestClient) -> None:
    created = tokens_cli(db, "create", "--name", "bench-7", "--role", "technician")
    assert created.returncode == 0, created.stderr
    clear = created.stdout.strip().splitlines()[-1]
    assert clear.startswith("mlt_")
    me = app_client.get("/me", headers=auth(clear))
    assert me.status_code == 200 and me.json()["role"] == "technician"

    bound = tokens_cli(
        db, "create", "--name", "acme-it", "--role", "dsi", "--client", "ACME", "--json"
    )
    assert bound.returncode == 0, bound.stderr
    bound_row = json.loads(bound.stdout)
    assert bound_row["client_id"] == world.acme.id

    listed = tokens_cli(db, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    by_name = {r["name"]: r for r in rows}
    assert clear[:12] == by_name["bench-7"]["prefix"]
    # The clear token and its hash never appear in a listing.
    assert clear not in listed.stdout and bound_row["token"] not in listed.stdout
    assert "hash" not in listed.stdout
    table = tokens_cli(db, "list")
    assert "bench-7" in table.stdout and clear not in table.stdout

    revoked = tokens_cli(db, "revoke", str(by_name["bench-7"]["id"]))
    assert revoked.returncode == 0, revoked.stderr
    # Revoked by another process: this server may reuse its check of the token for
    # auth_cache_seconds, and not longer (bounded wait, not a timing assert).
    status = eventually(
        lambda: (code := app_client.get("/me", headers=auth(clear)).status_code) != 200 and code,
        timeout=get_settings().auth_cache_seconds + 30,
        every=0.2,
        message="a revoked token still works past the cache TTL",
    )
    assert status == 401


def test_bad_input_is_one_line_and_a_nonzero_exit(db: Database, world: World) -> None:
    unbound = tokens_cli(db, "create", "--name", "x", "--role", "dsi")
    assert unbound.returncode == 2
    assert unbound.stderr.strip() == "error: role 'dsi' tokens must be bound to a client company"
    unknown_client = tokens_cli(db, "create", "--name", "x", "--role", "dsi", "--client", "NOPE")
    assert unknown_client.returncode == 4
    assert "NOPE" in unknown_client.stderr and "Traceback" not in unknown_client.stderr
    missing = tokens_cli(db, "revoke", "999999")
    assert missing.returncode == 4
    assert missing.stderr.strip() == "error: token 999999 not found"
    bad_role = tokens_cli(db, "create", "--name", "x", "--role", "wizard")
    assert bad_role.returncode == 2 and "Traceback" not in bad_role.stderr
