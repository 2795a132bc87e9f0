"""``api.main`` (what ``uvicorn api.main:app`` imports) builds the app and nothing else:
work that needs the database (finishing an import a crash interrupted) starts with the
server, in the app's start-up, not at import."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from core.db import Database
from core.timeutil import utcnow
from inventory.intake_jobs import STAGING
from inventory.models import IntakeJob, IntakeJobChunk
from tests.support.factories import World
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]

# Every thread started while the module is imported is recorded; any that was started is
# then waited for (bounded), so that what it would print reaches stderr before the end.
_IMPORT_MAIN = """
import json, threading
started = []
_start = threading.Thread.start
def start(self):
    started.append(self.name)
    _start(self)
threading.Thread.start = start
import api.main
for t in threading.enumerate():
    if t is not threading.main_thread():
        t.join(10)
print(json.dumps(started))
"""


def test_importing_api_main_on_an_empty_database_starts_nothing_and_prints_nothing(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.db"  # no tables: never migrated
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_MAIN],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "MASTERLINE_DATA_DIR": str(tmp_path),
            "MASTERLINE_DATABASE_URL": f"sqlite:///{empty}",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_start_up_drops_an_import_a_crash_left_staging(db: Database, world: World) -> None:
    with db.session() as s:
        job = IntakeJob(
            delivery_id=world.acme_delivery.id or 0,
            actor="test",
            format="generic",
            status=STAGING,
            rows=1,
            lease_until=utcnow() - timedelta(seconds=1),  # its importer is gone
        )
        s.add(job)
        s.flush()
        s.add(IntakeJobChunk(job_id=job.id or 0, n=0, first_row=0, payload=[{"kind": "x"}]))
    app = create_app(db)

    def no_job() -> bool:
        with db.session(write=False) as s:
            return s.exec(select(IntakeJob)).first() is None

    assert not no_job()  # building the app resumed nothing
    with TestClient(app):  # runs the start-up, as uvicorn does
        eventually(no_job, timeout=60, message="the start-up did not drop the dead import")
    with db.session(write=False) as s:
        assert s.exec(select(IntakeJobChunk)).first() is None
