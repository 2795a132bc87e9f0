"""A large ship notice is written without making scan-in wait, and stays all or nothing
when the importing process dies (a real SIGKILL-like exit, both backends)."""

from __future__ import annotations

import functools
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
from core.child import CHILD_INITIALIZERS
from core.db import Database
from core.principal import Role
from core.timeutil import utcnow
from inventory import intake_jobs
from inventory.models import Device, DeviceEvent, IntakeJob, IntakeJobChunk
from tests.conftest import auth
from tests.inventory.test_intake_bulk import ship_notice
from tests.support.factories import World, create_devices
from tests.support.paused_import import pause_after_first_published_batch
from tests.support.server import running_server
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # imports thousands of rows, in subprocesses

# Runs the import in a process of its own and ends that process, without any cleanup,
# at a chosen point: after `at` rows of phase `phase` are committed.
_CRASHING_IMPORT = """
import os, sys
from core.child import CHILD_INITIALIZERS
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
        s.exec(update(IntakeJob).values(lease_until=utcnow() - timedelta(seconds=1)))


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


def test_scans_succeed_while_a_large_notice_is_written(
    database_url: str, world: World, tmp_path: Path
) -> None:
    """The import is stopped half-way (after its first published batch, in its child
    process) until every scan has answered: scans are served between the import's
    transactions, not after the import. The whole import under one write lock made every
    scan meanwhile wait for the end (or fail with 503 when the busy timeout ran out);
    here, whatever the machine's speed, a scan waits for one batch at most and the
    import is still half-way when they have all answered."""
    db = Database(database_url)
    serials = [f"LIVE{i:04d}" for i in range(30)]
    with db.session() as s:
        create_devices(s, delivery=world.acme_delivery, serials=serials)
    tls = ssl.create_default_context()
    answer: dict[str, object] = {}
    pause = functools.partial(pause_after_first_published_batch, str(tmp_path))
    CHILD_INITIALIZERS.append(pause)
    importer: threading.Thread | None = None
    try:
        with running_server(db) as base, httpx.Client(base_url=base, timeout=600, verify=tls) as c:

            def run_import() -> None:
                with httpx.Client(base_url=base, timeout=900, verify=tls) as own:
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
            try:
                eventually(
                    lambda: (tmp_path / "paused").exists() or not importer.is_alive(),
                    timeout=600,
                    message="the import did not reach its first published batch",
                )
                assert (tmp_path / "paused").exists(), json.dumps(answer)[:500]
                half_way = _live_job_progress(db)
                statuses = []
                for serial in serials:
                    r = c.post(
                        "/scan",
                        json={"code": serial, "bench_id": world.bench.id},
                        headers=auth(world.token(Role.TECHNICIAN)),
                    )
                    statuses.append((r.status_code, r.text[:200]))
                # Still where it stopped: the scans did not wait for the import.
                assert _live_job_progress(db) == half_way
            finally:
                (tmp_path / "resume").touch()
                importer.join(timeout=900)
        assert half_way is not None and 0 < half_way[0] < half_way[1] == 6000, half_way
        assert [s for s, _ in statuses] == [200] * len(serials), statuses
        assert answer["status"] == 200, json.dumps(answer)[:500]
        assert isinstance(answer["body"], dict) and answer["body"]["created"] == 6000
        assert _bulk_counts(db) == (6000, 6000)
    finally:
        CHILD_INITIALIZERS.remove(pause)
        db.dispose()


def _live_job_progress(db: Database) -> tuple[int, int] | None:
    """(published, rows) of the live import job, if any."""
    with db.session(write=False) as s:
        job = s.exec(select(IntakeJob)).first()
        return (job.published, job.rows) if job is not None else None


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
