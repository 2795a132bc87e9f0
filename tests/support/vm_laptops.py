"""VM laptops on a bench network, as the end-to-end VM tests (``tests/lab/test_vm_*.py``)
share them: the site's set-up (the cached demo OS image and PE in the catalogue, the
client's configuration, the site's worker key and heartbeat limits), the bench (a
namespace with the site's own DHCP, Masterline's dnsmasq as proxy-DHCP, the API and a
real ``masterline worker`` inside it) and the QEMU laptops on it (``lab.vms``), with what
a failing test prints. Everything started is stopped by ``vm_bench``'s exit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from boot.netboot import dnsmasq, service
from boot.registration import sites
from boot.registration.schemas import SiteSettingsUpdate
from inventory.models import Device
from lab import vms
from lab.keys import generate_ed25519
from provisioning.runs.models import ProvisioningRun
from tests.boot.conftest import Boot
from tests.support.demo_os import cached_demo_image
from tests.support.harness import LINUX_CONFIG, activate_config, publish_image
from tests.support.images import GeneratedImage
from tests.support.netns import BenchNet, bench_network, serial_log
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port

DISK_BYTES = 512 * 1024 * 1024
"""Room for the demo OS (81 MiB raw) and nothing to spare: a small sparse file."""


def prepare_site(
    boot: Boot, tmp: Path, *, heartbeat_seconds: int = 5, silence_seconds: int = 300
) -> GeneratedImage:
    """The demo OS published for ACME with its configuration, the PE in the catalogue,
    and PAR's worker key and heartbeat limits. Call inside ``local_store``."""
    image = cached_demo_image()
    pe_dir, pe_manifest = cached_pe()
    store_in_catalogue(pe_dir, pe_manifest)
    acme = boot.world.acme.id
    assert acme is not None
    publish_image(boot.db, client_id=acme, image=image, os_family="linux")
    activate_config(boot.db, client_id=acme, body=LINUX_CONFIG)
    key = tmp / "worker" / "id_ed25519"
    generate_ed25519(key, "worker@par")
    with boot.db.session() as s:
        sites.update_settings(
            s, "PAR",
            SiteSettingsUpdate(
                worker_key_path=str(key), heartbeat_seconds=heartbeat_seconds,
                silence_seconds=silence_seconds,
            ),
        )  # fmt: skip
    return image


def scan(boot: Boot, serial: str) -> None:
    """A technician scans ``serial`` in at the bench."""
    with TestClient(create_app(boot.db)) as api:
        r = api.post("/scan", json={"code": serial, "bench_id": boot.bench.id},
                     headers=boot.technician)  # fmt: skip
        assert r.status_code == 200, r.text


@dataclass
class VmBench:
    boot: Boot
    net: BenchNet
    tmp: Path
    accel: str
    consoles: dict[str, Path] = field(default_factory=dict)
    qemus: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    taps: dict[str, str] = field(default_factory=dict)

    def power_on(
        self, index: int, serial: str, *, network_boot_once: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start VM ``vm<index>`` (serial ``serial``, a blank disk the first time, a Dell
        Latitude as the delivery expects); again after a power cut: same disk, same
        TAP device, a console log that goes on."""
        name = f"vm{index}"
        disk = self.tmp / f"{name}.raw"
        if serial not in self.taps:
            self.taps[serial] = self.net.add_tap(f"tap{index - 1}")
            vms.blank_disk(disk, DISK_BYTES)
        spec = vms.VmSpec(
            name=name, serial=serial, mac=vms.mac_of(index), disk=disk, tap=self.taps[serial],
            console_log=self.tmp / f"{name}.console.log", vendor="Dell Inc.",
            model="Latitude 5440", network_boot_once=network_boot_once,
        )  # fmt: skip
        self.consoles[serial] = spec.console_log
        proc = self.net.start(
            *vms.qemu_argv(spec, accel=self.accel), log=self.tmp / f"{name}.qemu.log"
        )
        self.qemus[serial] = proc
        return proc

    def power_cut(self, serial: str) -> None:
        """The laptop loses power: its QEMU is killed, nothing in the guest is told."""
        proc = self.qemus[serial]
        proc.kill()
        proc.wait(timeout=60)

    def console(self, serial: str) -> str:
        return serial_log(self.consoles[serial])

    def device(self, serial: str) -> Device:
        with self.boot.db.session(write=False) as s:
            return s.exec(select(Device).where(Device.serial == serial)).one()

    def run_of(self, serial: str) -> ProvisioningRun | None:
        device = self.device(serial)
        with self.boot.db.session(write=False) as s:
            return s.exec(
                select(ProvisioningRun).where(ProvisioningRun.device_id == device.id)
            ).first()

    def alive(self) -> None:
        """:raises AssertionError: a VM's QEMU exited without the test stopping it."""
        for serial, q in self.qemus.items():
            if q.poll() is not None and q.returncode != -9:
                raise AssertionError(f"{serial}'s qemu exited\n{self.what_happened()}")

    def what_happened(self) -> str:
        parts = [f"{s} console:\n{serial_log(c)[-3000:]}" for s, c in self.consoles.items()]
        parts.append("worker:\n" + serial_log(self.tmp / "worker.log")[-4000:])
        parts.append("api:\n" + serial_log(self.net.workdir / "api.log")[-1500:])
        for serial in self.consoles:
            run = self.run_of(serial)
            if run is not None:
                parts.append(f"{serial} run {run.status} {run.step_name} {run.last_error}")
        return "\n".join(parts)


def _start_worker(
    net: BenchNet, tmp: Path, database_url: str, extra: dict[str, str] | None = None
) -> None:
    net.start(
        sys.executable, "-c", "import cli; cli.main()", "worker",
        log=tmp / "worker.log",
        env={
            "MASTERLINE_DATABASE_URL": database_url,
            "MASTERLINE_SITE_CACHE_DIR": str(tmp / "site-cache"),
            "MASTERLINE_WORKER_ID": "vm-worker",
            "MASTERLINE_WORKER_LEASE_SECONDS": "30",
            "MASTERLINE_WORKER_POLL_SECONDS": "0.5",
            "MASTERLINE_WORKER_BACKOFF_BASE": "1",
            "MASTERLINE_WORKER_BACKOFF_CAP": "4",
            **(extra or {}),
        },
    )  # fmt: skip


@contextmanager
def vm_bench(
    boot: Boot, tmp: Path, *, subnet: str, worker_env: dict[str, str] | None = None
) -> Iterator[VmBench]:
    """The bench network with the site's DHCP, Masterline's proxy-DHCP chaining to the
    bench's iPXE script, the API and a worker (``worker_env``: settings of its own);
    no VM yet (``VmBench.power_on``)."""
    with bench_network(tmp / "bench", subnet=subnet) as net:
        base = net.serve_api(boot.db.url, free_port())
        with boot.db.session(write=False) as s:
            link = service.bench_boot(s, boot.bench).link
        net.site_dhcp(100, 150)
        plan = dnsmasq.plan(
            script_url=f"{base}/boot/ipxe/{link}", interface="br0",
            subnet=f"{net.prefix}.0/24", dhcp_range=None,
        )  # fmt: skip
        net.dnsmasq(dnsmasq.render(plan, title="VM test bench"))
        _start_worker(net, tmp, boot.db.url, worker_env)
        yield VmBench(boot, net, tmp, vms.accelerator())
