"""Console benchmark: the bench board and the wave dashboard over 100,000 laptops with
2,500 in flight, and how fast a change reaches 50 open boards, on SQLite and PostgreSQL,
against a real uvicorn server (a separate process, one worker: the embedded default).

    python -m bench.console [--backends sqlite,postgres] [--devices 100000]
                            [--in-flight 2500] [--boards 50]

- **board**: ``GET /console/benches/{id}`` of a full bench (64 occupied slots: imaging
  with progress, failures with their cause), sequential. **dashboard**: ``GET
  /console/waves`` for every client, one client, one delivery; then every client and
  one delivery again once a forecast is stored (the wave, the site, both clients, each
  of the ~100 deliveries, committed dates: the forecast panel's reads). Target: p95 ≤
  100 ms.
  Baseline: ``GET /console/account`` (session lookup, template, HTTP; no query of the
  pipeline), in the same run.
- **fan-out**: 50 browsers' worth of Server-Sent Events connections on one board; a
  laptop of that bench is quarantined through the API and the time until each of the 50
  connections has received the changed tile is recorded (the API call's own time
  included). Target: every update within 1 s (p99 ≤ 1000 ms). Baseline: the same with
  one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from bench.core import Row, backend_database, render, seed, uvicorn_server
from core.db import Database
from core.migrate import upgrade
from core.timeutil import utcnow
from inventory.models import Bench, Delivery, Device, DeviceEvent, Site
from provisioning.runs.models import ProvisioningRun, RunStepEvent

PAGE_P95_TARGET_MS = 100.0
FANOUT_TARGET_MS = 1000.0
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
                select(Bench.id).where(Bench.id != wall.id).order_by(Bench.id)
            ).scalars()
        ]
        ids = [
            int(i)
            for i in s.execute(
                select(Device.id)
                .where(Device.state == "expected")
                .order_by(Device.id)
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
                .where(Device.id == device_id)
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
            select(ProvisioningRun.id).where(ProvisioningRun.status == "failed")
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
            s.execute(update(Device).where(Device.id.in_(chunk)).values(state="ready"))  # type: ignore[union-attr]
            events = []
            for device_id in chunk:
                for state in ("received", "ready"):
                    events.append(
                        {
                            "device_id": device_id,
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


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    form = await client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text[:300]
    await client.post("/console/sign-in", data={"token": token, "nonce": nonce.group(1)})
    account = await client.get("/console/account")
    csrf = re.search(r'data-csrf="([^"]+)"', account.text)
    assert csrf, account.text[:300]
    return csrf.group(1)


async def time_pages(base: str, token: str, urls: dict[str, str], n: int) -> dict[str, Row]:
    out: dict[str, list[float]] = {name: [] for name in urls}
    errors: dict[str, dict[int, int]] = {name: {} for name in urls}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await sign_in(client, token)
        for url in urls.values():  # warm-up: first renders, pool
            await client.get(url)
        for _ in range(n):
            for name, url in urls.items():
                t0 = time.perf_counter()
                r = await client.get(url)
                out[name].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[name][r.status_code] = errors[name].get(r.status_code, 0) + 1
    return {name: Row("", name, samples, errors=errors[name]) for name, samples in out.items()}


async def fan_out(
    base: str, token: str, bench_id: int, victims: list[int], *, boards: int, rounds: int
) -> tuple[list[float], int]:
    """Seconds from the API call to each board's receipt of the changed tile."""
    cookies_client = httpx.AsyncClient(base_url=base, timeout=60)
    await sign_in(cookies_client, token)
    limits = httpx.Limits(max_connections=boards + 5)
    samples: list[float] = []
    missed = 0
    async with httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(60, read=120),
        limits=limits,
        cookies=cookies_client.cookies,
    ) as client:
        wanted: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in range(boards)]
        ready = asyncio.Event()
        opened = [0]

        async def board(i: int) -> None:
            async with client.stream("GET", f"/console/live/benches/{bench_id}") as r:
                name = ""
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name == "tiles":
                        if "first" not in getattr(board, f"seen{i}", ""):
                            setattr(board, f"seen{i}", "first")
                            opened[0] += 1
                            if opened[0] == boards:
                                ready.set()
                        for slot in re.findall(r'id="(slot-\d+)"', line):
                            wanted[i].put_nowait(slot)

        tasks = [asyncio.create_task(board(i)) for i in range(boards)]
        await asyncio.wait_for(ready.wait(), timeout=120)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as api:
            for device_id in victims[:rounds]:
                device = (await api.get(f"/devices/{device_id}")).json()
                slot = f"slot-{device['slot']}"
                for q in wanted:
                    while not q.empty():
                        q.get_nowait()
                t0 = time.perf_counter()
                r = await api.post(
                    f"/devices/{device_id}/events",
                    json={"event": "quarantine", "reason": "bench"},
                )
                assert r.status_code == 200, r.text

                results = await asyncio.gather(
                    *(asyncio.wait_for(_until(q, slot, t0), timeout=30) for q in wanted),
                    return_exceptions=True,
                )
                for res in results:
                    if isinstance(res, float):
                        samples.append(res)
                    else:
                        missed += 1
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await cookies_client.aclose()
    return samples, missed


async def _until(q: asyncio.Queue[str], slot: str, t0: float) -> float:
    while await q.get() != slot:
        pass
    return time.perf_counter() - t0


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
        deliveries = s.execute(select(Delivery.id, Delivery.client_id)).all()
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
        site = s.execute(select(Site.id)).scalar_one()
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


def run_backend(backend: str, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"masterline-bench-console-{backend}-"))
    try:
        with backend_database(backend, workdir) as url:
            upgrade(url)
            db = Database(url)
            t0 = time.perf_counter()
            seeded = seed(db, args.devices, n_benches=8)
            bench_id, victims = put_in_flight(db, in_flight=args.in_flight, ready=args.ready)
            print(f"[{backend}] scene staged in {time.perf_counter() - t0:.0f} s", flush=True)
            with uvicorn_server(url, workdir) as base:
                urls = {
                    "baseline: account page": "/console/account",
                    "bench board (64 busy slots)": f"/console/benches/{bench_id}",
                    "wave dashboard, every client": "/console/waves",
                    "wave dashboard, one client": "/console/waves?client=ACME",
                    "wave dashboard, one delivery": f"/console/waves?delivery={seeded.delivery_id}",
                }
                timed = asyncio.run(time_pages(base, seeded.admin, urls, args.requests))
                for name, row in timed.items():
                    row.backend = backend
                    if not name.startswith("baseline"):
                        row.target = ("p95", PAGE_P95_TARGET_MS)
                        row.baseline = "baseline: account page"
                    rows.append(row)
                store_forecast(db)
                with_forecast = {
                    "wave dashboard, every client, with a forecast": "/console/waves",
                    "wave dashboard, one delivery, with a forecast": (
                        f"/console/waves?delivery={seeded.delivery_id}"
                    ),
                }
                timed = asyncio.run(time_pages(base, seeded.admin, with_forecast, args.requests))
                for row in timed.values():
                    row.backend = backend
                    row.target = ("p95", PAGE_P95_TARGET_MS)
                    row.baseline = "baseline: account page"
                    rows.append(row)
                one, missed_one = asyncio.run(
                    fan_out(base, seeded.admin, bench_id, victims, boards=1, rounds=args.rounds)
                )
                rows.append(
                    Row(
                        backend,
                        "baseline: update to 1 open board",
                        one,
                        note=f"{missed_one} missed" if missed_one else "",
                    )
                )
                many, missed = asyncio.run(
                    fan_out(
                        base,
                        seeded.admin,
                        bench_id,
                        victims[args.rounds :],
                        boards=args.boards,
                        rounds=args.rounds,
                    )
                )
                rows.append(
                    Row(
                        backend,
                        f"update to {args.boards} open boards (SSE)",
                        many,
                        target=("p99", FANOUT_TARGET_MS),
                        baseline="baseline: update to 1 open board",
                        errors={0: missed} if missed else {},
                        note=f"max {max(many) * 1000:.0f} ms" if many else "",
                    )
                )
            db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=2_500)
    parser.add_argument("--ready", type=int, default=5_000)
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        rows += run_backend(backend, args)
        print(render(rows)[0], flush=True)  # each backend's figures as soon as they exist
    table, ok = render(rows)
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end, {args.devices:,} laptops, "
        f"{args.in_flight:,} in flight, {args.boards} boards"
    )
    print(table)
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0


__all__: list[Any] = ["main"]

if __name__ == "__main__":
    sys.exit(main())
