"""A laptop reached through its PE's registration vs the same kind of laptop in a wired
slot, scan to READY, measured in one run.

    python -m bench.registered [--rounds 3] [--mib 16]

Each round takes two fresh lab laptops (real sshd on 127.0.0.1) through the whole
pipeline (identify, stream ``--mib`` of image, verify, reboot, Ansible, gate) with one
in-process worker against a real API (uvicorn, SQLite):

* **wired** (the baseline): its bench slot wired with ``PUT /runs/endpoints``' row (the
  lab's boot control), scanned in: scan → READY.
* **registered**: no slot wiring; scanned in, then "powered on" at once: the real agent
  (Debian's python3 on the laptop's fake root, the sshd's host key) registers; the run,
  waiting for its PE, resumes on the go. Printed: power-on → registered (the agent's
  ``registered`` line) and scan → READY.

The rounds alternate which laptop goes first; each time shown is the median of the
rounds, and the ratio is the median of the rounds' own ratios (registered / wired).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from sqlmodel import select

from boot.registration import credentials, sites
from boot.registration.schemas import CredentialCreate, SiteSettingsUpdate
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM
from core.settings import get_settings
from inventory import service as inventory_service
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, ScanRequest, SiteCreate
from lab.bootcontrol import slot_options
from lab.keys import generate_ed25519
from lab.lab import Lab, LabLaptop, LaptopSpec
from provisioning.runs import service as runs
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.schemas import EndpointCreate
from tests.support.agent import AgentRun, install_agent
from tests.support.factories import create_devices
from tests.support.harness import (
    LINUX_CONFIG,
    activate_config,
    engine_config,
    publish_image,
    running_engine,
)
from tests.support.images import make_image
from tests.support.server import running_server

DEADLINE = 600.0  # bounds a hang only


class World:
    def __init__(self, work: Path, rounds: int, mib: int) -> None:
        self.work = work
        url = f"sqlite:///{work / 'bench.db'}"
        upgrade(url)
        self.db = Database(url)
        self.serials = [f"REG{i:04d}" for i in range(1, 2 * rounds + 1)]
        with self.db.session() as s:
            client = inventory_service.create_client(s, ClientCreate(code="REG", name="Reg"))
            inventory_service.create_site(s, SiteCreate(code="PAR", name="Paris"))
            bench = inventory_service.create_bench(
                s, BenchCreate(site_code="PAR", code="B1", slots=64)
            )
            delivery = inventory_service.create_delivery(
                s, DeliveryCreate(client_code="REG", vendor="Dell", order_reference="PO-1"), SYSTEM
            )
            create_devices(s, delivery=delivery, serials=self.serials)
            _, self.credential = credentials.create_credential(
                s, CredentialCreate(name="B1", site_code="PAR", bench_code="B1"), SYSTEM
            )
            self.worker_key = work / "worker" / "id_ed25519"
            generate_ed25519(self.worker_key, "worker@par")
            sites.update_settings(
                s,
                "PAR",
                SiteSettingsUpdate(
                    worker_key_path=str(self.worker_key), heartbeat_seconds=5, silence_seconds=300
                ),
            )
            assert client.id is not None and bench.id is not None
            self.client_id, self.bench_id = client.id, bench.id
        image = make_image(work / "img", mib=mib)
        publish_image(self.db, client_id=self.client_id, image=image, os_family="linux")
        activate_config(self.db, client_id=self.client_id, body=LINUX_CONFIG)
        self.lab = Lab(get_settings().data_dir / "lab", keep_running=True)

    def laptop(self, serial: str) -> LabLaptop:
        (lp,) = self.lab.up([LaptopSpec(serial=serial, disk_bytes=64 * 1024 * 1024)])
        return lp

    def scan(self, serial: str, *, slot: int) -> int:
        with self.db.session() as s:
            done = inventory_service.scan(
                s, ScanRequest(code=serial, bench_id=self.bench_id, slot=slot), SYSTEM
            )
            run = s.exec(
                select(ProvisioningRun).where(ProvisioningRun.device_id == done.device.id)
            ).one()
            assert run.id is not None
            return run.id

    def wait(self, run_id: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            with self.db.session(write=False) as s:
                run = s.get(ProvisioningRun, run_id)
                assert run is not None
                if run.status == RunStatus.SUCCEEDED:
                    return
                if run.status in (RunStatus.FAILED, RunStatus.ABORTED):
                    raise SystemExit(f"run {run_id} {run.status}: {run.last_error}")
            time.sleep(0.05)
        raise SystemExit(f"run {run_id} not done within {DEADLINE} s")


def wired(world: World, serial: str, slot: int) -> float:
    lp = world.laptop(serial)
    with world.db.session() as s:
        runs.register_endpoint(
            s,
            EndpointCreate(
                bench_id=world.bench_id,
                slot=slot,
                host=lp.host,
                ssh_port=lp.ssh_port,
                ssh_user=lp.ssh_user,
                key_path=str(lp.client_key_path),
                known_hosts_path=str(lp.known_hosts_path),
                options=slot_options(world.lab.root, lp.name),
            ),
        )
    start = time.perf_counter()
    world.wait(world.scan(serial, slot=slot))
    return time.perf_counter() - start


def registered(world: World, api: str, serial: str, slot: int) -> tuple[float, float]:
    lp = world.laptop(serial)
    etc_ssh = lp.pe_root / "etc" / "ssh"
    etc_ssh.mkdir(parents=True)
    shutil.copy(lp.dir / "sshd" / "ssh_host_ed25519_key.pub", etc_ssh)
    home = world.work / f"agent-{serial}"
    (home / "bin").mkdir(parents=True)
    cmdline = home / "cmdline"
    cmdline.write_text(
        f"masterline.api={api} masterline.enroll={world.credential} "
        f"masterline.ssh_port={lp.ssh_port}\n"
    )
    cwd = install_agent(home / "opt")
    start = time.perf_counter()
    run_id = world.scan(serial, slot=slot)
    agent = AgentRun(cwd, lp.pe_root, home / "bin", "--cmdline", str(cmdline))
    try:
        agent.wait_for("MASTERLINE-AGENT registered")
        registered_at = time.perf_counter() - start
        world.wait(run_id)
        return registered_at, time.perf_counter() - start
    finally:
        agent.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.registered")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ml-bench-registered-"))
    saved = {k: os.environ.get(k) for k in ("MASTERLINE_DATA_DIR", "MASTERLINE_IMAGE_STORE_DIR")}
    os.environ["MASTERLINE_DATA_DIR"] = str(work / "data")
    os.environ["MASTERLINE_IMAGE_STORE_DIR"] = str(work / "store")
    os.environ.setdefault("MASTERLINE_SECRET_KEY", "bench-registered")
    os.environ.setdefault("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    get_settings.cache_clear()
    world: World | None = None
    try:
        world = World(work, args.rounds, args.mib)
        base: list[float] = []
        ours: list[float] = []
        reg: list[float] = []
        with (
            running_server(world.db) as api,
            running_engine(
                world.db,
                engine_config(work, pe_wait_seconds=3600, backoff_base=1.0, backoff_cap=4.0),
            ),
        ):
            for i in range(args.rounds):
                a, b = world.serials[2 * i], world.serials[2 * i + 1]
                if i % 2 == 0:
                    base.append(wired(world, a, slot=2 * i + 1))
                    r, t = registered(world, api, b, slot=2 * i + 2)
                else:
                    r, t = registered(world, api, b, slot=2 * i + 2)
                    base.append(wired(world, a, slot=2 * i + 1))
                reg.append(r)
                ours.append(t)
        ratios = [o / w for o, w in zip(ours, base, strict=True)]
        print(
            f"{args.mib} MiB image, {args.rounds} rounds: wired slot scan→READY "
            f"{statistics.median(base):.1f} s; registered: power-on→registered "
            f"{statistics.median(reg):.2f} s, scan→READY {statistics.median(ours):.1f} s "
            f"({statistics.median(ratios):.2f}x the wired slot)"
        )
    finally:
        if world is not None:
            world.lab.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
