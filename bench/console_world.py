"""The console benchmark's world: 2,500 laptops in flight over a seeded site (one full
bench of 64 slots among them, with progress and failures) and a stored forecast, written
with Core inserts so that seeding 100,000 laptops takes seconds, not the benchmark's
budget. ``bench.console`` measures pages and live updates over it."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import col

from core.db import Database
from core.timeutil import utcnow
from inventory.models import Bench, Delivery, Device, DeviceEvent, Site
from provisioning.runs.models import ProvisioningRun, RunStepEvent

BOARD_SLOTS = 64
MiB = 1024 * 1024

# In flight: (state, run status, step, share).
IN_FLIGHT = [
    ("queued", "queued", None, 0.30),
    ("imaging", "running", "stream", 0.40),
    ("configuring", "running", "configure", 0.15),
    ("verifying", "running", "gate", 0.05),
    ("failed_imaging", "failed", "stream", 0.07),
    ("failed_verifying", "failed", "gate", 0.03),
]


def put_in_flight(db: Database, *, in_flight: int, ready: int) -> tuple[int, list[int]]:
    """Move ``in_flight`` expected laptops onto benches (64 to the first: the board
    measured) with a run each, and ``ready`` more to READY with a day of history.
    Written in bulk: the staging of the scene is not what is measured. Returns the
    measured bench's id and the ids of its laptops that can be quarantined."""
    now = utcnow()
    rng = random.Random(11)
    with db.session() as s:
        from inventory import service as inventory
        from inventory.schemas import BenchCreate

        # The measured board: a bench of 64 slots, every one busy (the others, seeded
        # with 512 slots each, hold the rest of the wave).
        wall = inventory.create_bench(s, BenchCreate(site_code="PAR", code="WALL", slots=64))
        benches = [int(wall.id or 0)] + [
            int(b)
            for b in s.execute(
                select(col(Bench.id)).where(col(Bench.id) != wall.id).order_by(col(Bench.id))
            ).scalars()
        ]
        ids = [
            int(i)
            for i in s.execute(
                select(col(Device.id))
                .where(col(Device.state) == "expected")
                .order_by(col(Device.id))
                .limit(in_flight + ready)
            ).scalars()
        ]
    flight, done = ids[:in_flight], ids[in_flight:]
    plan: list[tuple[int, str, str, str | None]] = []
    k = 0
    for state, status, step, share in IN_FLIGHT:
        n = round(in_flight * share)
        plan += [(i, state, status, step) for i in flight[k : k + n]]
        k += n
    rng.shuffle(plan)
    board = benches[0]
    quarantinable: list[int] = []
    with db.session() as s:
        for n, (device_id, state, _status, _step) in enumerate(plan):
            bench = (
                board if n < BOARD_SLOTS else benches[1 + (n - BOARD_SLOTS) % (len(benches) - 1)]
            )
            slot = n + 1 if n < BOARD_SLOTS else 1 + (n - BOARD_SLOTS) // (len(benches) - 1)
            changed = now - timedelta(minutes=rng.randint(1, 240))
            s.execute(
                update(Device)
                .where(col(Device.id) == device_id)
                .values(state=state, bench_id=bench, slot=slot, state_changed_at=changed)
            )
            if bench == board and state in ("queued", "failed_imaging", "failed_verifying"):
                quarantinable.append(device_id)
        runs = []
        for device_id, _state, status, step in plan:
            # provisioning_run.progress_* are 32-bit integers on PostgreSQL (a stream of
            # more than 2 GiB overflows them: reported), so the scene stays under that.
            total = 2047 * MiB
            sent = rng.randint(0, total) if step == "stream" else 0
            runs.append(
                {
                    "device_id": device_id,
                    "client_id": 1,
                    "status": status,
                    "step_name": step,
                    "step_index": 2,
                    "failed_step": step if status == "failed" else None,
                    "last_error": f"{step}: bench failure" if status == "failed" else None,
                    "progress_bytes": sent,
                    "progress_total": total if step == "stream" else 0,
                    "rate_bps": 110.0 * MiB if step == "stream" else 0.0,
                    "eta_seconds": (total - sent) / (110 * MiB) if step == "stream" else None,
                    "context": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for i in range(0, len(runs), 1000):
            s.execute(insert(ProvisioningRun), runs[i : i + 1000])
        failed = s.execute(
            select(col(ProvisioningRun.id)).where(col(ProvisioningRun.status) == "failed")
        ).scalars()
        causes = ["ChecksumMismatch", "ConnectFailed", "GateFailed", "IdentityMismatch"]
        s.execute(
            insert(RunStepEvent),
            [
                {
                    "run_id": run_id,
                    "seq": 1,
                    "step": "stream",
                    "attempt": 0,
                    "kind": "failed",
                    "message": "bench failure",
                    "details": {"error": causes[run_id % len(causes)]},
                    "at": now,
                }
                for run_id in failed
            ],
        )
        for i in range(0, len(done), 1000):
            chunk = done[i : i + 1000]
            s.execute(update(Device).where(col(Device.id).in_(chunk)).values(state="ready"))
            # What the lifecycle writes with each event: the laptop's client and
            # delivery (these laptops have no bench, so no site).
            owners = s.execute(
                select(col(Device.id), col(Device.client_id), col(Device.delivery_id))
                .where(col(Device.id).in_(chunk))
                .order_by(col(Device.id))
            ).all()
            events: list[dict[str, Any]] = []
            for device_id, client_id, delivery_id in owners:
                for state in ("received", "ready"):
                    events.append(
                        {
                            "device_id": device_id,
                            "client_id": client_id,
                            "delivery_id": delivery_id,
                            "site_id": None,
                            "from_state": None,
                            "to_state": state,
                            "event": "bench",
                            "actor": "bench",
                            "at": now - timedelta(minutes=rng.randint(0, 24 * 60)),
                            "details": {},
                        }
                    )
            s.execute(insert(DeviceEvent), events)
    return board, quarantinable


def store_forecast(db: Database) -> None:
    """A forecast as the refresher stores it (the wave, the site, both clients, every
    delivery, a committed date on every tenth delivery): what the dashboard's forecast
    panel reads, without simulating 100,000 laptops."""
    from forecast.models import ForecastDelivery, ForecastSnapshot

    now = utcnow()

    def at(hours: float) -> str:
        return (now + timedelta(hours=hours)).isoformat()

    def figures(n: int, k: int) -> dict[str, Any]:
        return {
            "laptops": n,
            "dispatched": n // 20,
            "ready_or_gone": n // 10,
            "expected_aside": round(n * 0.003, 2),
            "ready_p50": at(50 + k),
            "ready_p90": at(70 + k),
            "dispatched_p50": at(60 + k),
            "dispatched_p90": at(80 + k),
            "throughput_per_hour": 42.5,
        }

    bottleneck = {
        "constraint": "slots",
        "label": "bench slots",
        "gain_hours_if_doubled": {"slots": 31.5, "streams": 2.0, "hours": 12.0},
        "evidence": {
            "laptops_not_delivered": 90_000,
            "hours_waiting_for_opening": 3.5,
            "hours_waiting_for_a_slot": 812.4,
            "hours_waiting_for_a_live_run": 40.2,
            "slots": 4096,
            "live_runs": 16,
            "open_hours_per_day": 10.0,
        },
    }
    with db.session() as s:
        deliveries = s.execute(select(col(Delivery.id), col(Delivery.client_id))).all()
        rows = [
            ForecastSnapshot(
                scope="wave",
                scope_id=0,
                made_at=now,
                figures={
                    **figures(100_000, 0),
                    "bottleneck": bottleneck,
                    "assumptions": ["…"] * 20,
                },
            ),
        ]
        site = s.execute(select(col(Site.id))).scalar_one()
        rows.append(
            ForecastSnapshot(
                scope="site",
                scope_id=site,
                made_at=now,
                figures={**figures(100_000, 0), "name": "Paris", "bottleneck": bottleneck},
            )
        )
        for client in sorted({c for _, c in deliveries}):
            rows.append(
                ForecastSnapshot(
                    scope="client",
                    scope_id=client,
                    client_id=client,
                    made_at=now,
                    figures=figures(50_000, client),
                )
            )
        for i, (delivery, client) in enumerate(deliveries):
            rows.append(
                ForecastSnapshot(
                    scope="delivery",
                    scope_id=delivery,
                    client_id=client,
                    made_at=now,
                    figures=figures(1_000, i),
                )
            )
            if i % 10 == 0:
                s.add(
                    ForecastDelivery(
                        delivery_id=delivery,
                        client_id=client,
                        committed_date=(now + timedelta(days=2)).date(),
                        at_risk_since=now if i % 20 == 0 else None,
                    )
                )
        s.add_all(rows)
