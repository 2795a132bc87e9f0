"""The world of the core benchmark (``bench/core.py``): 100,000 devices seeded over the
domains' own services, the server as a separate uvicorn process, the database of each
backend (a PostgreSQL cluster of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api import service as tokens
from core.db import Database
from core.principal import SYSTEM, Role
from inventory import lifecycle, repository
from inventory import service as inventory
from inventory.models import Device
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, SiteCreate
from inventory.states import DeviceState, Event
from tests.support.postgres import free_port, start_cluster
from tests.support.processes import stop

REPO = Path(__file__).resolve().parent.parent
BATCH = 5_000
PER_DELIVERY = 1_000


@dataclass
class Seeded:
    admin: str
    technician: str
    bench_ids: list[int]
    acme_serials: list[str]
    delivery_id: int
    deep_cursor: int
    prefix: str
    unknown_serials: list[str] = field(default_factory=list)


# Data.
def seed(db: Database, n_devices: int, n_benches: int) -> Seeded:
    """Two clients, ``n_benches`` benches, and ``n_devices`` devices (60 % ACME, 40 %
    GLOBEX, 1 % of them UNEXPECTED) inserted with the lifecycle's batched ``create``."""
    with db.session() as s:
        acme = inventory.create_client(s, ClientCreate(code="ACME", name="Acme"))
        globex = inventory.create_client(s, ClientCreate(code="GLOBEX", name="Globex"))
        inventory.create_site(s, SiteCreate(code="PAR", name="Paris"))
        bench_ids = [
            int(
                inventory.create_bench(
                    s, BenchCreate(site_code="PAR", code=f"B{i:02d}", slots=512)
                ).id
                or 0
            )
            for i in range(n_benches)
        ]
        model = inventory.get_or_create_hardware_model(s, "Dell", "Latitude 5440")
        _, admin = tokens.create_token(s, name="bench-admin", role=Role.ADMIN)
        _, technician = tokens.create_token(s, name="bench-tech", role=Role.TECHNICIAN)
        client_ids = {"ACME": int(acme.id or 0), "GLOBEX": int(globex.id or 0)}
    n_unexpected = n_devices // 100
    n_expected = n_devices - n_unexpected
    plan = [("ACME" if i % 5 < 3 else "GLOBEX", i) for i in range(n_expected)]
    deliveries: dict[tuple[str, int], int] = {}
    acme_serials: list[str] = []
    for start in range(0, n_expected, BATCH):
        with db.session() as s:
            devices = []
            for code, i in plan[start : start + BATCH]:
                key = (code, i // PER_DELIVERY)
                if key not in deliveries:
                    body = DeliveryCreate(
                        client_code=code, vendor="Dell", order_reference=f"PO-{code}-{key[1]:04d}"
                    )
                    deliveries[key] = int(inventory.create_delivery(s, body, SYSTEM).id or 0)
                serial = f"{code[:4]}{i:07d}"
                if code == "ACME":
                    acme_serials.append(serial)
                devices.append(
                    Device(
                        serial=serial,
                        vendor="Dell",
                        hardware_model_id=model.id,
                        client_id=client_ids[code],
                        delivery_id=deliveries[key],
                        order_reference=f"PO-{code}-{key[1]:04d}",
                        mac_addresses=[],
                    )
                )
            lifecycle.create(s, devices, Event.EXPECT, actor="bench")
    with db.session() as s:
        strays = [
            Device(serial=f"STRAY{i:06d}", vendor="unknown", mac_addresses=[])
            for i in range(n_unexpected)
        ]
        lifecycle.create(s, strays, Event.DISCOVER, actor="bench")
    with db.session(write=False) as s:
        ids = [
            d.id
            for d in repository.list_devices(
                s,
                client_id=client_ids["ACME"],
                state=DeviceState.EXPECTED,
                limit=1,
                cursor=int(n_devices * 0.9),
            )
        ]
    middle = deliveries[("ACME", len(plan) // PER_DELIVERY // 2)]
    return Seeded(
        admin=admin,
        technician=technician,
        bench_ids=bench_ids,
        acme_serials=acme_serials,
        delivery_id=middle,
        deep_cursor=int(ids[0] or 0) if ids else 0,
        prefix=acme_serials[len(acme_serials) // 2][:-2],
    )


# The server.
@contextmanager
def uvicorn_server(
    url: str, workdir: Path, *, app: str = "api.main:app", env_extra: dict[str, str] | None = None
) -> Iterator[str]:
    """``app``: the ASGI app to serve (``bench.scan_trace:app`` for an instrumented one)."""
    port = free_port()
    env = {
        **os.environ,
        "MASTERLINE_DATABASE_URL": url,
        "MASTERLINE_DATA_DIR": str(workdir),
        **(env_extra or {}),
    }
    log = (workdir / "uvicorn.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {workdir / 'uvicorn.log'}")
            try:
                httpx.get(base + "/me", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        died = proc.poll()  # before we stop it: the server ended by itself
        stop(proc, grace=20)
        log.close()
        if died is not None:
            # The work directory, and the log with it, is removed by the caller.
            tail = (workdir / "uvicorn.log").read_text(errors="replace")[-4000:]
            print(
                f"the server exited with {died} during the run; its log ends:\n{tail}",
                file=sys.stderr,
            )


def pg_sessions(db: Database) -> int:
    """PostgreSQL sessions ever opened on this database (0 on SQLite): the server's
    pool opening connections mid-measurement shows here (the statistics are flushed
    about once a second, so the count is approximate; the second read's own session is
    subtracted by the caller)."""
    if db.is_sqlite:
        return 0
    with db.engine.connect() as conn:
        value = conn.exec_driver_sql(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).scalar()
    db.engine.dispose()  # the next read opens its own session, counted like this one
    return int(value or 0)


# One backend.
@contextmanager
def backend_database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    cluster = start_cluster()
    try:
        yield cluster.create_database("masterline_bench")
    finally:
        cluster.stop()
