"""Kept true: changes mark the forecast out of date in their own transaction (hooks), and
the refresher recomputes it once they have been quiet, or after a steady stream of them,
or when it is old; never on a read. Times are passed in: nothing here waits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from core.db import Database
from core.principal import SYSTEM
from core.timeutil import utcnow
from forecast import repository
from forecast.models import ForecastChange
from forecast.refresher import Refresher
from inventory import service as inventory
from inventory.models import Device
from inventory.schemas import ScanRequest
from provisioning.runs import lifecycle
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.states import RunEvent
from tests.support.factories import World


def _marks(db: Database) -> list[str]:
    with db.session() as s:
        return [c.reason for c in s.exec(select(ForecastChange)).all()]


def _made_at(db: Database) -> object:
    with db.session() as s:
        wave = repository.snapshot(s, "wave", 0)
        return wave.made_at if wave else None


def test_a_scan_in_and_a_finished_run_mark_the_forecast_out_of_date(
    db: Database, world: World
) -> None:
    with db.session() as s:
        inventory.scan(s, ScanRequest(code="ACME0001", bench_id=world.bench.id or 0), SYSTEM)
    assert _marks(db) == ["laptop received"]
    with db.session() as s:
        inventory.scan(s, ScanRequest(code="ACME0002", bench_id=world.bench.id or 0), SYSTEM)
    assert _marks(db) == ["laptop received"]  # one mark waits; a burst adds no rows
    with db.session() as s:
        repository.clear_changes(s, up_to=10**9)
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        run = ProvisioningRun(device_id=device.id or 0, status=RunStatus.QUEUED)
        s.add(run)
        s.flush()
        lifecycle.claim(s, run, worker_id="w", lease_until=utcnow(), now=utcnow())
        lifecycle.finish(s, run, RunEvent.FAIL, step="stream", message="test", error="x")
    assert _marks(db) == ["run failed"]


def test_the_refresher_waits_for_quiet_then_recomputes_once(db: Database, world: World) -> None:
    now = utcnow()
    r = Refresher(db, quiet=10, max_wait=60, max_age=900)
    assert r.tick(now) is True  # no forecast yet: make one
    first = _made_at(db)
    assert r.tick(now + timedelta(seconds=1)) is False  # fresh, nothing changed
    with db.session() as s:
        repository.mark_changed(s, "laptop received")
    mark = _latest_mark(db)
    assert r.tick(mark + timedelta(seconds=5)) is False  # not quiet yet
    assert r.tick(mark + timedelta(seconds=11)) is True
    assert _made_at(db) != first and _marks(db) == []
    assert r.tick(mark + timedelta(seconds=12)) is False


def test_a_steady_stream_of_changes_is_recomputed_after_max_wait(
    db: Database, world: World
) -> None:
    r = Refresher(db, quiet=10, max_wait=60, max_age=900)
    r.tick(utcnow())
    with db.session() as s:
        repository.mark_changed(s, "run succeeded")
    first = _latest_mark(db)
    with db.session() as s:
        # Another mark 55 s later: never quiet for 10 s in a row.
        s.add(ForecastChange(at=first + timedelta(seconds=55), reason="run succeeded"))
    assert r.tick(first + timedelta(seconds=58)) is False
    assert r.tick(first + timedelta(seconds=61)) is True


def test_an_old_forecast_is_recomputed_without_changes(db: Database, world: World) -> None:
    now = utcnow()
    r = Refresher(db, quiet=10, max_wait=60, max_age=900)
    r.tick(now)
    assert r.tick(now + timedelta(seconds=899)) is False
    assert r.tick(now + timedelta(seconds=901)) is True


def _latest_mark(db: Database) -> datetime:
    with db.session() as s:
        return max(c.at for c in s.exec(select(ForecastChange)).all())
