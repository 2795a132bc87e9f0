"""A run's log lines written from several threads at once (a relay wave's events, the
run's own steps, Ansible's events) are all kept: on PostgreSQL two writers read the same
last line number, one insert fails on ``(run_id, seq)``, and that line is numbered again
instead of being lost (it was: the relay's address line of a wave's run, in CI)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from sqlmodel import select

from core.db import Database
from provisioning.pipeline.context import ContextBuilder
from provisioning.runs.models import ProvisioningRun, RunStepEvent
from tests.support.factories import World, create_devices

THREADS = 8
LINES = 25


def test_lines_written_at_once_by_many_threads_are_all_kept(db: Database, world: World) -> None:
    with db.session() as s:
        (device,) = create_devices(s, delivery=world.acme_delivery, serials=["ACME0009"])
        assert device.id is not None
        run = ProvisioningRun(device_id=device.id, client_id=world.acme.id)
        s.add(run)
        s.flush()
        run_id = run.id
    assert run_id is not None
    # The recorder reads nothing of the builder but its database.
    builder = SimpleNamespace(db=db)
    start = threading.Barrier(THREADS)

    def write(n: int) -> None:
        record = ContextBuilder._event_recorder(builder, run_id, "stream")  # type: ignore[arg-type]
        start.wait(timeout=60)
        for i in range(LINES):
            record({"event": "relay_progress", "message": f"thread {n} line {i}"})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    with db.session(write=False) as s:
        rows = s.exec(select(RunStepEvent).where(RunStepEvent.run_id == run_id)).all()
    assert sorted(r.message for r in rows) == sorted(
        f"thread {n} line {i}" for n in range(THREADS) for i in range(LINES)
    )
    assert sorted(r.seq for r in rows) == list(range(1, THREADS * LINES + 1))
