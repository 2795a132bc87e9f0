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
  pipeline), in the same run. The figures are kept 2 s per scope and filter
  (``console/cache.py``), so sequential requests mostly read kept figures; the same
  dashboards are measured again on a second server with the cache off
  (``MASTERLINE_CONSOLE_FIGURES_SECONDS=0``, "no cache"): every request computes.
  After staging, the database is settled (``VACUUM ANALYZE``; SQLite ``ANALYZE``), as
  one that has been running a while is.
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
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.console_world import put_in_flight, store_forecast
from bench.core import Row, backend_database, render, seed, uvicorn_server
from core.db import Database
from core.migrate import upgrade

PAGE_P95_TARGET_MS = 100.0
FANOUT_TARGET_MS = 1000.0


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


def settle(db: Database) -> None:
    """What a database that has been running a while has and a bulk-loaded one has
    not: planner statistics and (PostgreSQL) the visibility map that lets an index
    answer alone. Without it, the first minutes after staging measure autovacuum's
    first pass over 100,000 fresh rows (it starts in the middle of the run)."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def uncached(
    backend: str, url: str, workdir: Path, seeded: Any, args: argparse.Namespace
) -> list[Row]:
    """The dashboards with their figures computed on every request (a server with
    ``console_figures_seconds = 0``): what one viewer alone, or the first of a wall of
    screens after a change, waits for."""
    with uvicorn_server(
        url, workdir, env_extra={"MASTERLINE_CONSOLE_FIGURES_SECONDS": "0"}
    ) as base:
        urls = {
            "baseline: account page (no cache)": "/console/account",
            "wave dashboard, every client, forecast, no cache": "/console/waves",
            "wave dashboard, one client, forecast, no cache": "/console/waves?client=ACME",
            "wave dashboard, one delivery, forecast, no cache": (
                f"/console/waves?delivery={seeded.delivery_id}"
            ),
        }
        timed = asyncio.run(time_pages(base, seeded.admin, urls, args.requests))
    out = []
    for name, row in timed.items():
        row.backend = backend
        if not name.startswith("baseline"):
            row.target = ("p95", PAGE_P95_TARGET_MS)
            row.baseline = "baseline: account page (no cache)"
        out.append(row)
    return out


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
            settle(db)
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
                settle(db)
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
            rows += uncached(backend, url, workdir, seeded, args)
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
