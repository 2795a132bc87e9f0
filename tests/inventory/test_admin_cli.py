"""``masterline admin``: clients, sites, benches, hardware models through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import Database
from core.principal import Role
from tests.conftest import BACKENDS
from tests.support.factories import World
from tests.support.server import running_server

pytestmark = pytest.mark.slow  # runs the masterline command as a subprocess

REPO = Path(__file__).resolve().parents[2]


def admin(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MASTERLINE_API_URL": url, "MASTERLINE_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "admin", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


# The commands are a thin HTTP layer over routes that the access walk and the inventory
# tests already run on both databases; one backend keeps these 14 subprocesses cheap.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_admin_creates_and_lists(db: Database, world: World) -> None:
    token = world.token(Role.ADMIN)
    with running_server(db) as url:
        steps = [
            admin(url, token, "clients", "create", "--code", "INITECH", "--name", "Initech"),
            admin(
                url,
                token,
                "sites",
                "create",
                "--code",
                "LYS",
                "--name",
                "Lyon",
                "--max-streams",
                "4",
                "--max-bps",
                "125000000",
            ),
            admin(
                url,
                token,
                "benches",
                "create",
                "--site",
                "LYS",
                "--code",
                "B2",
                "--slots",
                "24",
                "--json",
            ),
            admin(
                url,
                token,
                "models",
                "create",
                "--vendor",
                "Lenovo",
                "--model",
                "ThinkPad T14",
                "--disk-rule",
                "nvme0n1",
            ),
        ]
        clients = admin(url, token, "clients", "list", "--json")
        sites = admin(url, token, "sites", "list", "--json")
        benches = admin(url, token, "benches", "list")
        models = admin(url, token, "models", "list", "--json")
        duplicate = admin(url, token, "clients", "create", "--code", "INITECH", "--name", "x")
        bad_site = admin(url, token, "benches", "create", "--site", "NOPE", "--code", "B3")
        bad_code = admin(url, token, "clients", "create", "--code", "has space", "--name", "x")
        as_technician = admin(
            url, world.token(Role.TECHNICIAN), "clients", "create", "--code", "T1", "--name", "x"
        )
        bench_list_as_tech = admin(url, world.token(Role.TECHNICIAN), "benches", "list", "--json")
    for step in steps:
        assert step.returncode == 0, step.stderr
    assert "client INITECH created" in steps[0].stdout
    bench = json.loads(steps[2].stdout)
    assert bench["slots"] == 24 and bench["code"] == "B2"
    assert [c["code"] for c in json.loads(clients.stdout)] == ["ACME", "GLOBEX", "INITECH"]
    lyon = {s["code"]: s for s in json.loads(sites.stdout)}["LYS"]
    assert lyon["max_imaging_streams"] == 4 and lyon["max_bytes_per_second"] == 125_000_000
    assert "B2" in benches.stdout and "24" in benches.stdout
    thinkpad = [m for m in json.loads(models.stdout) if m["model"] == "ThinkPad T14"]
    assert thinkpad and thinkpad[0]["disk_rule"] == "nvme0n1"
    assert duplicate.returncode == 5
    assert duplicate.stderr.strip() == "error: client company INITECH already exists"
    assert bad_site.returncode == 2 and "site NOPE not found" in bad_site.stderr
    assert bad_code.returncode == 2 and "code" in bad_code.stderr
    assert as_technician.returncode == 6 and "may not" in as_technician.stderr
    assert {b["id"] for b in json.loads(bench_list_as_tech.stdout)} >= {world.bench.id, bench["id"]}
    for done in (duplicate, bad_site, bad_code, as_technician):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
