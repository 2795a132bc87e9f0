"""Help-desk benchmark: the phone menu's routing endpoint with 100,000 laptops, against a
real uvicorn server, on SQLite and PostgreSQL.

    python -m bench.helpdesk [--backends sqlite,postgres] [--devices 100000]

What is measured, and against what (both in the same run):

- **route**: ``GET /helpdesk/route?number=…`` latency p50/p95/p99 from the phone system's
  token (every client), with ``--lines`` concurrent phone lines each sending a number
  every ``--pace`` seconds (20 lines every 0.5 s: 40 calls a second, about 120 times the
  29,000 calls a day of the lockdown wave spread over 8 hours). Numbers typed: 80 % the
  help code of a random laptop (ACME has a queue, GLOBEX uses the default), 10 % a
  well-formed code of no laptop, 10 % junk (a typo, a short number, letters). Target
  (issue #16): p99 ≤ 20 ms.
- Baseline: ``GET /me`` (authentication + framework + HTTP, no query) under the same
  load, so the ratio says what the routing itself costs.
- **route, sequential**: one line, back to back: the latency without queueing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api import service as tokens
from bench.core import Row, _technicians, backend_database, render, seed, uvicorn_server
from core import helpcode
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM, Role
from helpdesk import service
from helpdesk.schemas import QueueIn

ROUTE_P99_TARGET_MS = 20.0


def numbers(device_ids: list[int], n: int, rng: random.Random) -> list[str]:
    out = []
    top = max(device_ids)
    for _ in range(n):
        roll = rng.random()
        if roll < 0.8:
            out.append(helpcode.encode(rng.choice(device_ids)))
        elif roll < 0.9:
            out.append(helpcode.encode(rng.randint(top + 1, 9_999_999)))
        else:
            code = helpcode.encode(rng.choice(device_ids))
            out.append(rng.choice([code[:-1] + str((int(code[-1]) + 1) % 10), code[:5], "abc#"]))
    return out


def load(
    base: str, token: str, path: str, typed: list[str], *, lines: int, per_line: int, pace: float
) -> tuple[list[float], dict[int, int]]:
    async def request(client: httpx.AsyncClient, i: int, k: int) -> httpx.Response:
        number = typed[(i * per_line + k) % len(typed)]
        return await client.get(path, params={"number": number})

    return asyncio.run(_technicians(base, token, lines, per_line, pace, request))


def run_backend(backend: str, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"masterline-bench-helpdesk-{backend}-"))
    rng = random.Random(16)
    try:
        with backend_database(backend, workdir) as url:
            upgrade(url)
            db = Database(url)
            t0 = time.perf_counter()
            seed(db, args.devices, 1)
            print(
                f"[{backend}] seeded {args.devices:,} devices in {time.perf_counter() - t0:.1f} s"
            )
            with db.session() as s:
                service.set_queue(s, "ACME", QueueIn(name="acme-support"), SYSTEM)
                service.set_queue(s, None, QueueIn(name="centre"), SYSTEM)
                _, phone = tokens.create_token(s, name="ipbx", role=Role.HELPDESK)
                ids = [
                    int(i)
                    for i in s.connection().exec_driver_sql("SELECT id FROM device").scalars()
                ]
            if not db.is_sqlite:
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.exec_driver_sql("VACUUM ANALYZE")
                    c.exec_driver_sql("CHECKPOINT")
            os.sync()
            typed = numbers(ids, 5000, rng)
            with uvicorn_server(url, workdir) as base:
                kw = {"lines": args.lines, "per_line": args.per_line, "pace": args.pace}
                load(base, phone, "/me", typed, lines=args.lines, per_line=5, pace=0)  # warm-up
                lat, err = load(base, phone, "/me", typed, **kw)
                rows.append(Row(backend, "GET /me, paced (baseline)", lat, errors=err))
                lat, err = load(base, phone, "/helpdesk/route", typed, **kw)
                rows.append(
                    Row(
                        backend,
                        f"GET /helpdesk/route, {args.lines} lines, paced",
                        lat,
                        target=("p99", ROUTE_P99_TARGET_MS),
                        baseline="GET /me, paced (baseline)",
                        errors=err,
                        note=f"every {args.pace} s each; 80 % known codes",
                    )
                )
                lat, err = load(base, phone, "/me", typed, lines=1, per_line=500, pace=0)
                rows.append(Row(backend, "GET /me, sequential (baseline)", lat, errors=err))
                lat, err = load(
                    base, phone, "/helpdesk/route", typed, lines=1, per_line=500, pace=0
                )
                rows.append(
                    Row(
                        backend,
                        "GET /helpdesk/route, sequential",
                        lat,
                        target=("p99", ROUTE_P99_TARGET_MS),
                        baseline="GET /me, sequential (baseline)",
                        errors=err,
                    )
                )
            db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.helpdesk",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--per-line", type=int, default=100)
    parser.add_argument("--pace", type=float, default=0.5)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        rows += run_backend(backend, args)
    table, ok = render(rows)
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end, {args.devices:,} devices"
    )
    print(table)
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
