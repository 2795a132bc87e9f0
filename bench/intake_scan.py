"""Scan-in while a 100,000-line ship notice imports, and a 200-scan storm on one bench,
on SQLite and PostgreSQL, against a real uvicorn server (one worker process).

    python -m bench.intake_scan [--backends sqlite,postgres] [--rows 100000]
                                [--clients 20] [--pace 0.5] [--trace [--no-freeze] [--gc-default]]

- **baseline**: ``--clients`` technicians, each at its own bench, each scanning every
  ``--pace`` s (random phase), nothing else running.
- **during import**: the same load while ``POST /deliveries/{id}/import`` writes a
  ``--rows``-line notice; only scans that started while the import ran are counted.
  Target (issue #12): p99 ≤ 50 ms. The import must answer 200 with every row created.
- **storm**: 200 scans sent at once, each on its own connection, at one bench of 512
  slots: distinct slots and errors are counted (target: 200 distinct, 0 errors).

Ratios are to the baseline measured in the same run. ``--trace`` serves an instrumented
API (``bench.scan_trace``) and prints, per phase, where the slowest scans' time went.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from api import service as tokens
from bench.core import Row, backend_database, render, uvicorn_server
from bench.scan_trace_report import report
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM, Role
from inventory import lifecycle
from inventory import service as inventory
from inventory.models import Device
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, SiteCreate
from inventory.states import Event

SCAN_P99_TARGET_MS = 50.0
STORM = 200


def ship_notice(rows: int) -> bytes:
    lines = ["serial,vendor,model,macs,order_reference,carton_id"]
    models = ("Latitude 5440", "Latitude 7450", "Precision 3581")
    for i in range(rows):
        lines.append(
            f"BULK{i:07d},Dell,{models[i % 3]},{i:012x}|{(i + 1 << 24):012x},PO-BULK,"
            f"CTN-{i // 20:05d}"
        )
    return ("\n".join(lines) + "\n").encode()


def seed(db: Database, n_clients: int, serials_each: int) -> dict[str, Any]:
    with db.session() as s:
        acme = inventory.create_client(s, ClientCreate(code="ACME", name="Acme"))
        inventory.create_site(s, SiteCreate(code="PAR", name="Paris"))
        benches = [
            inventory.create_bench(s, BenchCreate(site_code="PAR", code=f"B{i:02d}", slots=512)).id
            for i in range(n_clients + 1)
        ]
        scans = inventory.create_delivery(
            s, DeliveryCreate(client_code="ACME", vendor="Dell", order_reference="PO-SCAN"), SYSTEM
        )
        bulk = inventory.create_delivery(
            s, DeliveryCreate(client_code="ACME", vendor="Dell", order_reference="PO-BULK"), SYSTEM
        )
        model = inventory.get_or_create_hardware_model(s, "Dell", "Latitude 5440")
        _, tech = tokens.create_token(s, name="bench-tech", role=Role.TECHNICIAN)
        _, logistics = tokens.create_token(
            s, name="bench-logistics", role=Role.LOGISTICS, client_code="ACME"
        )
        serials = [f"SCAN{i:06d}" for i in range((n_clients * serials_each) + STORM)]
        lifecycle.create(
            s,
            [
                Device(
                    serial=serial,
                    vendor="Dell",
                    hardware_model_id=model.id,
                    client_id=acme.id,
                    delivery_id=scans.id,
                    order_reference="PO-SCAN",
                    mac_addresses=[],
                )
                for serial in serials
            ],
            Event.EXPECT,
            actor="bench",
        )
    return {
        "benches": benches,
        "tech": tech,
        "logistics": logistics,
        "bulk_delivery": bulk.id,
        "serials": serials,
    }


async def technicians(
    base: str,
    seeded: dict[str, Any],
    *,
    n_clients: int,
    pace: float,
    serials: list[str],
    count: int | None,
    until: threading.Event | None,
) -> tuple[list[float], dict[int, int]]:
    """Paced scans: ``count`` each, or until ``until`` is set (then only the scans that
    started before it count)."""
    latencies: list[float] = []
    errors: Counter[int] = Counter()
    tls = ssl.create_default_context()
    headers = {"Authorization": f"Bearer {seeded['tech']}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(
            base_url=base, headers=headers, timeout=120, limits=limits, verify=tls, trust_env=False
        )
        for _ in range(n_clients)
    ]
    per = len(serials) // n_clients

    async def one(i: int, client: httpx.AsyncClient) -> None:
        await asyncio.sleep(random.uniform(0, pace))
        loop = asyncio.get_running_loop()
        due = loop.time()
        k = 0
        while (count is None or k < count) and not (until is not None and until.is_set()):
            code = serials[i * per + (k % per)]
            t0 = time.perf_counter()
            r = await client.post("/scan", json={"code": code, "bench_id": seeded["benches"][i]})
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                latencies.append(dt)
            else:
                errors[r.status_code] += 1
            k += 1
            due += pace
            await asyncio.sleep(max(0.0, due - loop.time()))

    try:
        await asyncio.gather(*(c.get("/me") for c in clients))
        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return latencies, dict(errors)


async def storm(base: str, seeded: dict[str, Any]) -> tuple[list[float], dict[int, int], int]:
    tls = ssl.create_default_context()
    headers = {"Authorization": f"Bearer {seeded['tech']}"}
    clients = [
        httpx.AsyncClient(base_url=base, headers=headers, timeout=120, verify=tls, trust_env=False)
        for _ in range(STORM)
    ]
    bench = seeded["benches"][-1]
    codes = seeded["serials"][-STORM:]
    latencies: list[float] = []
    errors: Counter[int] = Counter()
    slots: list[int] = []

    async def one(client: httpx.AsyncClient, code: str) -> None:
        t0 = time.perf_counter()
        r = await client.post("/scan", json={"code": code, "bench_id": bench})
        dt = time.perf_counter() - t0
        if r.status_code == 200:
            latencies.append(dt)
            slots.append(int(r.json()["device"]["slot"]))
        else:
            errors[r.status_code] += 1

    try:
        await asyncio.gather(*(c.get("/me") for c in clients))
        await asyncio.gather(*(one(c, code) for c, code in zip(clients, codes, strict=True)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return latencies, dict(errors), len(set(slots))


def run_backend(backend: str, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"masterline-bench-intake-{backend}-"))
    try:
        with backend_database(backend, workdir) as url:
            upgrade(url)
            db = Database(url)
            seeded = seed(db, args.clients, args.serials_each)
            db.dispose()
            notice = ship_notice(args.rows)
            scan_serials = seeded["serials"][:-STORM]
            trace = workdir / "trace.jsonl"
            server = (
                {
                    "app": "bench.scan_trace:app",
                    "env_extra": {
                        "MASTERLINE_BENCH_TRACE": str(trace),
                        **({"MASTERLINE_BENCH_NO_FREEZE": "1"} if args.no_freeze else {}),
                        **({"MASTERLINE_BENCH_GC_DEFAULT": "1"} if args.gc_default else {}),
                    },
                }
                if args.trace
                else {}
            )
            windows: dict[str, tuple[float, float]] = {}
            with uvicorn_server(url, workdir, **server) as base:  # type: ignore[arg-type]
                t_base = time.time()
                lat, err = asyncio.run(
                    technicians(
                        base,
                        seeded,
                        n_clients=args.clients,
                        pace=args.pace,
                        serials=scan_serials,
                        count=args.baseline_scans,
                        until=None,
                    )
                )
                windows["baseline"] = (t_base, time.time())
                baseline = f"POST /scan, {args.clients} clients, no import (baseline)"
                rows.append(Row(backend, baseline, lat, errors=err))
                done = threading.Event()
                answer: dict[str, Any] = {}

                def run_import() -> None:
                    t0 = time.perf_counter()
                    try:
                        with httpx.Client(base_url=base, timeout=1800) as http:
                            r = http.post(
                                f"/deliveries/{seeded['bulk_delivery']}/import",
                                content=notice,
                                headers={
                                    "Authorization": f"Bearer {seeded['logistics']}",
                                    "Content-Type": "text/csv",
                                },
                            )
                        answer["status"], answer["body"] = r.status_code, r.json()
                    finally:
                        answer["seconds"] = time.perf_counter() - t0
                        done.set()

                importer = threading.Thread(target=run_import)
                t_import = time.time()
                importer.start()
                lat, err = asyncio.run(
                    technicians(
                        base,
                        seeded,
                        n_clients=args.clients,
                        pace=args.pace,
                        serials=scan_serials,
                        count=None,
                        until=done,
                    )
                )
                importer.join()
                windows["during import"] = (t_import, time.time())
                created = answer.get("body", {}).get("created")
                rows.append(
                    Row(
                        backend,
                        f"POST /scan, {args.clients} clients, during a {args.rows:,}-line import",
                        lat,
                        target=("p99", SCAN_P99_TARGET_MS),
                        baseline=baseline,
                        errors=err,
                        note=f"import: HTTP {answer.get('status')}, {created} created, "
                        f"{answer.get('seconds', 0):.1f} s",
                    )
                )
                t_storm = time.time()
                lat, err, distinct = asyncio.run(storm(base, seeded))
                windows["storm"] = (t_storm, time.time())
                rows.append(
                    Row(
                        backend,
                        f"POST /scan, {STORM} at once on one bench (storm)",
                        lat,
                        baseline=baseline,
                        errors=err,
                        note=f"{distinct} distinct slots for {len(lat)} laptops received",
                    )
                )
            if args.trace:  # the server has stopped: its trace is written
                print(f"\n{backend}, where the scans' time went (ms, server side):")
                print(report(trace, windows))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.intake_scan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.5)
    parser.add_argument("--baseline-scans", type=int, default=30)
    parser.add_argument("--serials-each", type=int, default=400)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="serve an instrumented API (bench.scan_trace) and report where the slowest "
        "scans' time went: write-lock wait, SQL, COMMIT, CPU, run-queue wait, GC",
    )
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="with --trace: the API and the import child do not freeze their long-lived "
        "objects out of the garbage collector (core.heap), to measure what that changes",
    )
    parser.add_argument(
        "--gc-default",
        action="store_true",
        help="with --trace: the import child keeps Python's automatic full collections "
        "(core.heap.no_automatic_full_collections off), to measure what that changes",
    )
    args = parser.parse_args(argv)
    if (args.no_freeze or args.gc_default) and not args.trace:
        parser.error("--no-freeze and --gc-default need --trace")
    random.seed(7)
    rows: list[Row] = []
    load_start = os.getloadavg()[0]
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        rows += run_backend(backend, args)
    table, ok = render(rows)
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"{args.rows:,}-line import, "
        f"{args.clients} technicians scanning every {args.pace} s"
    )
    print(table)
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
