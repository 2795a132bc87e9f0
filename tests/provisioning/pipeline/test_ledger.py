"""The bandwidth ledger on a real database, no lab: each worker re-rates its own
streams from every worker's recorded shares, and the sum never passes the site's cap."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from core.db import Database
from core.timeutil import utcnow
from inventory.models import Site
from provisioning.errors import Aborted
from provisioning.pipeline.bandwidth import SHARE_KEY, SiteShares
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent
from tests.support.factories import World, create_devices

CAP = 1_000_000


def _streaming(db: Database, world: World, worker: str, serials: list[str]) -> list[int]:
    with db.session() as s:
        site = s.get(Site, world.bench.site_id)
        assert site is not None
        site.max_bytes_per_second = CAP
        s.add(site)
        runs = [
            ProvisioningRun(
                device_id=d.id or 0,
                site_id=world.bench.site_id,
                status=RunStatus.RUNNING,
                step_index=2,
                step_name="stream",
                worker_id=worker,
                lease_until=utcnow() + timedelta(hours=1),
            )
            for d in create_devices(s, delivery=world.acme_delivery, serials=serials)
        ]
        s.add_all(runs)
        s.flush()
        return [r.id or 0 for r in runs]


def _shares(db: Database, worker: str) -> SiteShares:
    stopped = threading.Event()
    stopped.set()  # no background loop: the test re-rates by hand
    return SiteShares(
        db,
        interval=1.0,
        stop=stopped,
        owns=lambda run: run is not None and run.worker_id == worker,
    )


def _recorded(db: Database) -> dict[int, int]:
    with db.session(write=False) as s:
        rows = s.exec(select(ProvisioningRun)).all()
        return {r.id or 0: int(r.context.get(SHARE_KEY) or 0) for r in rows}


def test_two_workers_share_a_site_rate_without_ever_granting_more(
    db: Database, world: World
) -> None:
    a_runs = _streaming(db, world, "a", ["S0001", "S0002"])
    b_runs = _streaming(db, world, "b", ["S0003"])
    a, b = _shares(db, "a"), _shares(db, "b")
    buckets = {run_id: a.register(run_id, world.bench.site_id or 0) for run_id in a_runs}
    buckets |= {run_id: b.register(run_id, world.bench.site_id or 0) for run_id in b_runs}
    a.rebalance()
    assert sum(_recorded(db).values()) <= CAP
    b.rebalance()
    a.rebalance()
    shares = _recorded(db)
    assert shares == {run_id: CAP // 3 for run_id in a_runs + b_runs}
    assert all(buckets[r].rate == CAP // 3 for r in shares)
    with db.session(write=False) as s:
        events = s.exec(select(RunStepEvent).where(RunStepEvent.kind == "bandwidth")).all()
    assert events and all(e.details["site_granted_bps"] <= CAP for e in events)


def test_a_run_taken_by_another_worker_stops_its_stream(db: Database, world: World) -> None:
    (run_id,) = _streaming(db, world, "a", ["S0001"])
    shares = _shares(db, "somebody-else")
    bucket = shares.register(run_id, world.bench.site_id or 0)
    shares.rebalance()
    assert bucket.rate == 0 and _recorded(db) == {run_id: 0}
    with pytest.raises(Aborted):  # the stream's next chunk stops it
        bucket.take(1)
