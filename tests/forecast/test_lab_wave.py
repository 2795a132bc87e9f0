"""A small lab wave: the forecast is made while laptops are staged, and kept true as
their runs finish (the refresher, fed by the hooks), learning the lab's seconds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.timeutil import utcnow
from forecast import repository, service
from forecast.refresher import Refresher
from inventory.states import DeviceState
from provisioning.runs.models import RunStatus
from tests.support.harness import Bench, engine_config, running_engine


def _wave(bench: Bench) -> dict[str, Any]:
    with bench.db.session() as s:
        wave = repository.snapshot(s, "wave", 0)
        assert wave is not None
        return dict(wave.figures) | {"made_at": wave.made_at}


def test_the_forecast_follows_a_lab_wave(bench: Bench) -> None:
    for slot, serial in enumerate(("ACME0001", "ACME0002"), start=1):
        bench.plug(serial, slot=slot)
    runs = [bench.scan(serial, slot=i) for i, serial in enumerate(("ACME0001", "ACME0002"), 1)]
    assert all(r is not None and r.status == RunStatus.QUEUED for r in runs)
    refresher = Refresher(bench.db, quiet=0.0, max_wait=0.0, max_age=3600)
    assert refresher.tick() is True
    before = _wave(bench)
    assert before["laptops"] == 3 and before["ready_or_gone"] == 0
    with running_engine(bench.db, engine_config(bench.tmp)):
        for run in runs:
            assert run is not None and run.id is not None
            assert bench.wait(run.id).status == RunStatus.SUCCEEDED
    assert bench.device("ACME0001").state == DeviceState.READY
    # The runs' ends marked the forecast out of date; the refresher picks that up.
    with bench.db.session() as s:
        assert repository.pending_changes(s) is not None
    assert refresher.tick(utcnow() + timedelta(seconds=1)) is True
    after = _wave(bench)
    assert after["made_at"] > before["made_at"]
    assert after["ready_or_gone"] == 2
    learned = after["learned"]
    # The lab's own step times now stand in for the defaults.
    assert any("this model" in v for per in learned.values() for v in per.values())
    with bench.db.session() as s:
        acme = repository.snapshot(s, "delivery", bench.world.acme_delivery.id or 0)
        assert acme is not None
        ready = acme.figures["ready_p50"]
    # Both ACME laptops are ready: the "all ready" date is the last one's, not a guess.
    assert ready == acme.figures["ready_p90"]
    assert datetime.fromisoformat(ready) <= utcnow()
    with bench.db.session() as s:
        assert service.has_forecast(s)
