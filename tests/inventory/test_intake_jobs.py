"""A large ship notice is written without making scan-in wait, and stays all or nothing
when the importing process dies (a real SIGKILL-like exit, both backends)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, func, select

from api.app import create_app
from core.db import Database
from core.principal import Role
from core.timeutil import utcnow
from inventory import intake_jobs
from inventory.models import Device, DeviceEvent, IntakeJob, IntakeJobChunk
from tests.conftest import auth
from tests.inventory.test_intake_bulk import ship_notice
from tests.support.factories import World, create_devices
from tests.support.server import running_server

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # imports thousands of rows, in subprocesses

# Runs the import in a process of its own and ends that process, without any cleanup,
# at a chosen point: after `at` rows of phase `phase` are committed.
_CRASHING_IMPORT = """
import os, sys
from core.db import Database
from core.principal import SYSTEM
from inventory import intake_publish
url, delivery_id, path, phase, at = sys.argv[1:]

def crash(done_phase, done, total):
    if done_phase == phase and done >= int(at):
        os._exit(9)

intake_publish.import_ship_notice(
    Database(url), int(delivery_id), open(path, "rb").read(), SYSTEM, on_progress=crash
)
os._exit(0)
"""


def _bulk_counts(db: Database) -> tuple[int, int]:
    with db.session(write=False) as s:
        devices = s.exec(
            select(func.count()).select_from(Device).where(col(Device.serial).like("BULK%"))
        ).one()
        events = s.exec(
            select(func.count())
            .select_from(DeviceEvent)
            .join(Device, col(Device.id) == col(DeviceEvent.device_id))
            .where(col(Device.serial).like("BULK%"))
        ).one()
    return int(devices), int(events)


def _crash_import(db: Database, world: World, tmp_path: Path, phase: str, at: int) -> None:
    notice = tmp_path / "notice.csv"
    notice.write_bytes(ship_notice(4500))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CRASHING_IMPORT,
            db.url,
            str(world.acme_delivery.id),
            str(notice),
            phase,
            str(at),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 9, done.stderr[-2000:]


def _expire_leases(db: Database) -> None:
    with db.session() as s:
        s.exec(update(IntakeJob).values(lease_until=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]


def test_a_crash_while_staging_leaves_nothing_visible(
    db: Database, world: World, tmp_path: Path
) -> None:
    _crash_import(db, world, tmp_path, "staged", 1)
    with db.session(write=False) as s:
        (job,) = s.exec(select(IntakeJob)).all()
        assert job.status == "staging"
        assert s.exec(select(func.count()).select_from(IntakeJobChunk)).one() >= 1
    assert _bulk_counts(db) == (0, 0)
    _expire_leases(db)
    assert intake_jobs.resume_interrupted(db) == 1
    with db.session(write=False) as s:
        assert s.exec(select(IntakeJob)).all() == []
        assert s.exec(select(func.count()).select_from(IntakeJobChunk)).one() == 0
    assert _bulk_counts(db) == (0, 0)


def test_a_crash_while_publishing_is_finished_exactly_once(
    db: Database, world: World, tmp_path: Path
) -> None:
    _crash_import(db, world, tmp_path, "published", 300)
    with db.session(write=False) as s:
        (job,) = s.exec(select(IntakeJob)).all()
        assert job.status == "publishing" and 300 <= job.published < 4500
    partial = _bulk_counts(db)
    assert partial[0] == job.published and partial[1] == job.published
    # The importer is dead but its lease runs: nothing is resumed under a live lease.
    assert intake_jobs.resume_interrupted(db) == 0
    _expire_leases(db)
    assert intake_jobs.resume_interrupted(db) == 1
    assert _bulk_counts(db) == (4500, 4500)
    with db.session(write=False) as s:
        assert s.exec(select(IntakeJob)).all() == []
        assert s.exec(select(func.count()).select_from(IntakeJobChunk)).one() == 0


def test_scans_succeed_while_a_large_notice_is_written(database_url: str, world: World) -> None:
    """A short busy timeout (1 s): the whole import under one write lock made every
    scan meanwhile fail with 503; now a scan waits for one batch at most."""
    db = Database(database_url, busy_timeout_ms=1000)
    serials = [f"LIVE{i:04d}" for i in range(30)]
    with db.session() as s:
        create_devices(s, delivery=world.acme_delivery, serials=serials)
    tls = ssl.create_default_context()
    answer: dict[str, object] = {}
    try:
        with running_server(db) as base, httpx.Client(base_url=base, timeout=120, verify=tls) as c:

            def run_import() -> None:
                with httpx.Client(base_url=base, timeout=600, verify=tls) as own:
                    r = own.post(
                        f"/deliveries/{world.acme_delivery.id}/import",
                        content=ship_notice(6000),
                        headers={
                            **auth(world.token(Role.LOGISTICS, "ACME")),
                            "Content-Type": "text/csv",
                        },
                    )
                    answer["status"], answer["body"] = r.status_code, r.json()

            importer = threading.Thread(target=run_import)
            importer.start()
            # Scan while the import job is live (staging or publishing).
            seen_live = threading.Event()
            give_up = 600
            while importer.is_alive() and give_up:
                with db.session(write=False) as s:
                    if s.exec(select(IntakeJob)).first() is not None:
                        seen_live.set()
                        break
                importer.join(timeout=0.05)
                give_up -= 1
            statuses = []
            for serial in serials:
                r = c.post(
                    "/scan",
                    json={"code": serial, "bench_id": world.bench.id},
                    headers=auth(world.token(Role.TECHNICIAN)),
                )
                statuses.append((r.status_code, r.text[:200]))
            importer.join(timeout=600)
        assert seen_live.is_set(), "the import finished before it could be observed"
        assert [s for s, _ in statuses] == [200] * len(serials), statuses
        assert answer["status"] == 200, json.dumps(answer)[:500]
        assert isinstance(answer["body"], dict) and answer["body"]["created"] == 6000
        assert _bulk_counts(db) == (6000, 6000)
    finally:
        db.dispose()


def test_a_second_import_while_one_is_written_is_a_409(db: Database, world: World) -> None:
    with db.session() as s:
        s.add(
            IntakeJob(
                delivery_id=world.acme_delivery.id or 0,
                actor="test",
                format="generic",
                status="publishing",
                rows=1,
                lease_until=utcnow() + timedelta(minutes=5),
            )
        )
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        r = client.post(
            f"/deliveries/{world.acme_delivery.id}/import",
            content=b"serial,model\nSECOND-1,Latitude 7450\n",
            headers={**auth(world.token(Role.LOGISTICS, "ACME")), "Content-Type": "text/csv"},
        )
    assert r.status_code == 409 and "another ship-notice import" in r.json()["detail"]
