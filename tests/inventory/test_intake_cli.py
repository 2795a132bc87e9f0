"""``masterline deliveries …`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import Database
from core.principal import Role
from tests.support.factories import World
from tests.support.server import running_server

pytestmark = pytest.mark.slow  # runs the masterline command as a subprocess

MASTERLINE = str(Path(sys.executable).parent / "masterline")


def _run(base_url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MASTERLINE_API_URL": base_url,
        "MASTERLINE_TOKEN": token,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [MASTERLINE, "deliveries", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_deliveries_create_import_and_reconcile(db: Database, world: World, tmp_path: Path) -> None:
    good = tmp_path / "notice.csv"
    good.write_bytes(
        "serial;model;macs\nCLI-1;Latitude 7450;aa:bb:cc:00:00:01\nCLI-2;Latitude 7450;\n".encode(
            "utf-8-sig"
        )
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("serial,model,macs\nCLI-3,Latitude 7450,nope\n,Latitude 7450,\n")
    token = world.token(Role.LOGISTICS, "ACME")
    with running_server(db) as base:
        made = _run(
            base,
            token,
            "create",
            "--vendor",
            "Dell",
            "--order",
            "PO-CLI-1",
            "--carrier",
            "DHL",
            "--expected-date",
            "2026-12-01",
            "--json",
        )
        assert made.returncode == 0, made.stderr
        delivery = json.loads(made.stdout)
        assert (delivery["client_id"], delivery["expected_date"]) == (world.acme.id, "2026-12-01")
        did = str(delivery["id"])

        rejected = _run(base, token, "import", did, str(bad))
        assert rejected.returncode == 2
        assert rejected.stderr.splitlines() == [
            "bad.csv rejected, nothing written: 2 error(s)",
            "line 2, column macs: 'nope' is not a MAC address",
            "line 3, column serial: serial is empty",
        ]
        assert "Traceback" not in rejected.stderr

        dry = _run(base, token, "import", did, str(good), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "2 created" in dry.stdout and "dry run, nothing written" in dry.stdout

        # A dry run of a file that would be rejected says so, and counts nothing: not
        # "1 created" beside "would be rejected".
        half = tmp_path / "half.csv"
        half.write_text("serial,model\nCLI-8,Latitude 7450\nCLI-9,Latitude 7450\n,Latitude\n")
        dry_bad = _run(base, token, "import", did, str(half), "--dry-run")
        assert dry_bad.returncode == 2
        assert "created" not in dry_bad.stdout and "updated" not in dry_bad.stdout
        assert "3 row(s) (generic): rejected whole" in dry_bad.stdout
        assert dry_bad.stderr.splitlines() == [
            "half.csv would be rejected: 1 error(s)",
            "line 4, column serial: serial is empty",
        ]

        done = _run(base, token, "import", did, str(good), "--format", "generic", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["created"] == 2

        rec = _run(base, token, "reconcile", did, "--csv")
        assert rec.returncode == 0, rec.stderr
        rows = list(csv.DictReader(io.StringIO(rec.stdout)))
        assert [(r["serial"], r["status"]) for r in rows] == [
            ("CLI-1", "missing"),
            ("CLI-2", "missing"),
        ]

        listing = _run(base, token, "list")
        assert listing.returncode == 0, listing.stderr
        assert "PO-CLI-1" in listing.stdout and "PO-GLOBEX-1" not in listing.stdout

        other = _run(base, token, "reconcile", str(world.globex_delivery.id))
        assert other.returncode == 4
        assert "not found" in other.stderr
