"""PE registration benchmark: what the hardware inventory adds to a PE's registration,
and how the API answers a bench of laptops registering at once.

    python -m bench.boot [--rounds 7] [--pes 64]

1. **Inventory** (in this process, the agent's own code): the identity read a
   registration needs anyway (DMI serial/UUID, interfaces, host key; the baseline) vs the
   whole inventory (``inventory.collect``), on a fake root of a real laptop (Latitude 3320
   values; an NVMe, a SATA SSD and a failing HDD) whose ``smartctl``/``nvme``/
   ``dmidecode`` are stand-ins printing outputs recorded on real drives (each one a real
   process start, as on a PE), and on this host's own ``/sys`` with the real tools when
   installed. Printed: median seconds and the time *added* over the baseline.
2. **Registration under load**: ``--pes`` PEs registering at the same moment against
   uvicorn on 127.0.0.1 (SQLite), each with a full inventory, vs the same number of
   authenticated ``GET /me`` in the same run (the baseline). Printed: p50/p99 latency and
   their ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from api import service as tokens
from boot.agent import inventory, sysinfo
from boot.agent.sysinfo import Root
from boot.registration import credentials, sites
from boot.registration.schemas import CredentialCreate, SiteSettingsUpdate
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM, Role
from inventory import service as inventory_service
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, ScanRequest, SiteCreate
from tests.boot.fakeroot import Disk, Laptop, build, shims
from tests.support.factories import create_devices
from tests.support.server import running_server

LAPTOP = Laptop(
    serial="BENCH0001",
    disks=[
        Disk(
            "nvme0n1",
            1024209543168,
            "INTEL SSDPEKNW010T8",
            "N1",
            smartctl="intel-ssdpeknw010t8-nvme.json",
        ),
        Disk("sda", 500107862016, "Samsung SSD 840", "S1", smartctl="samsung-ssd-840-sata.json"),
        Disk(
            "sdb",
            500107862016,
            "Hitachi HDS721050DLE630",
            "H1",
            smartctl="hitachi-hds721050-failing.json",
        ),
    ],
)


def _median(f: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_inventory(work: Path, rounds: int) -> None:
    root = Root(build(work / "root", LAPTOP))
    bin_dir = shims(work / "bin", LAPTOP)

    def identity() -> None:
        sysinfo.identity(root)
        sysinfo.interfaces(root)
        sysinfo.host_key(root)

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    try:
        base = _median(identity, rounds)
        full = _median(lambda: inventory.collect(root), rounds)
    finally:
        os.environ["PATH"] = old_path
    print(
        f"fake root (3 disks, recorded tools): identity {base * 1000:.1f} ms, "
        f"inventory {full * 1000:.0f} ms, added {(full - base) * 1000:.0f} ms "
        f"(budget {inventory.DEFAULT_BUDGET} s)"
    )
    here = Root(Path("/"))
    tools = [t for t in ("smartctl", "nvme", "dmidecode") if shutil.which(t)]
    host = _median(lambda: inventory.collect(here), rounds)
    print(f"this host's /sys, real tools {tools or 'none'}: inventory {host * 1000:.0f} ms")


def bench_registration(work: Path, pes: int, rounds: int) -> None:
    url = f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    serials = [f"BENCH{i:04d}" for i in range(pes * rounds)]
    with db.session() as s:
        client = inventory_service.create_client(s, ClientCreate(code="BENCH", name="Bench"))
        inventory_service.create_site(s, SiteCreate(code="BEN", name="Bench site"))
        bench = inventory_service.create_bench(
            s, BenchCreate(site_code="BEN", code="B1", slots=512)
        )
        delivery = inventory_service.create_delivery(
            s, DeliveryCreate(client_code="BENCH", vendor="Dell", order_reference="PO-1"), SYSTEM
        )
        create_devices(s, delivery=delivery, serials=serials)
        for serial in serials:
            inventory_service.scan(s, ScanRequest(code=serial, bench_id=bench.id or 0), SYSTEM)
        _, secret = credentials.create_credential(
            s,
            CredentialCreate(name="bench", site_code="BEN", bench_code="B1", netboot=False),
            SYSTEM,
        )
        sites.update_settings(
            s,
            "BEN",
            SiteSettingsUpdate(
                worker_public_keys=[
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8w5pN0m3cJv1vBqzJ8vU0 w"
                ]
            ),
        )
        _, token = tokens.create_token(s, name="bench", role=Role.TECHNICIAN)
        assert client.id
    healthy = Laptop(serial="BENCH", disks=LAPTOP.disks[:2])  # a go, not a quarantine
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{shims(work / 'bin2', healthy)}:/usr/bin:/bin"
    try:
        inv = inventory.collect(Root(build(work / "root2", healthy)))
    finally:
        os.environ["PATH"] = old_path
    assert [d["health"] for d in inv["disks"]] == ["ok", "ok"], inv["disks"]
    keys = iter(range(10**6))
    lock = threading.Lock()

    def register(http: httpx.Client, serial: str) -> float:
        with lock:
            n = next(keys)
        host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + f"{n:043d}"[:43] + " pe"
        body = {
            "serial": serial,
            "address": "127.0.0.1",
            "host_key": host_key,
            "vendor": "Dell Inc.",
            "inventory": inv,
        }
        start = time.perf_counter()
        r = http.post("/boot/register", json=body, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200, r.text
        return time.perf_counter() - start

    def me(http: httpx.Client, _: str) -> float:
        start = time.perf_counter()
        r = http.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        return time.perf_counter() - start

    os.environ["MASTERLINE_BOOT_RATE_PER_ADDRESS"] = "1000000/minute"
    from boot.registration.config import get_boot_settings

    get_boot_settings.cache_clear()
    results: dict[str, list[float]] = {"register": [], "me": []}
    with (
        running_server(db) as base,
        httpx.Client(base_url=base, timeout=120, limits=httpx.Limits(max_connections=pes)) as http,
    ):
        for r in range(rounds):
            batch = serials[r * pes : (r + 1) * pes]
            for name, f in (("me", me), ("register", register)):
                with ThreadPoolExecutor(max_workers=pes) as pool:
                    results[name] += list(pool.map(lambda s, f=f: f(http, s), batch))
    db.dispose()

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    b50, b99 = pct(results["me"], 0.5), pct(results["me"], 0.99)
    r50, r99 = pct(results["register"], 0.5), pct(results["register"], 0.99)
    print(
        f"{pes} PEs at once x {rounds} rounds, SQLite: GET /me p50 {b50 * 1000:.0f} ms "
        f"p99 {b99 * 1000:.0f} ms (baseline); POST /boot/register p50 {r50 * 1000:.0f} ms "
        f"({r50 / b50:.1f}x) p99 {r99 * 1000:.0f} ms ({r99 / b99:.1f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boot")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pes", type=int, default=64)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ml-bench-boot-"))
    os.environ.setdefault("MASTERLINE_SECRET_KEY", "bench-boot")
    try:
        bench_inventory(work, args.rounds)
        bench_registration(work, args.pes, min(args.rounds, 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
