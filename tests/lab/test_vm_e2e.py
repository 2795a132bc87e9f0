"""Two VM laptops from power-on to READY, with nothing wired and nothing faked: QEMU
machines (``lab.vms``: own SMBIOS serial, MAC and blank disk; TCG unless KVM really
runs) on a bench network in a namespace the test creates (bridge, TAP devices, the
site's own DHCP server and Masterline's dnsmasq as proxy-DHCP), the API and a real
``masterline worker`` inside that namespace.

Each VM: BIOS → iPXE → the bench's script → the PE → the agent registers → identity
check → the demo OS image (``lab.demo_os``) streamed and read back → the PE mounts it,
writes the hostname, generates its SSH host key and hands the public half back over the
pinned session → reboot from its own disk → Ansible configures it over SSH with that
key pinned → the gate → READY. ACME0001 is scanned before it boots; ACME0002 boots
first, waits visibly ("booted, not scanned"), and goes on once it is scanned in.
Relay imaging is on (the default): the two laptops, same image, same site, form one
wave served from the worker's bench address, learned from its SSH sessions; the
worker sends one copy, the second PE takes it from the first.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from boot.netboot import dnsmasq, service
from boot.registration import sites
from boot.registration.models import PeBoot
from boot.registration.schemas import SiteSettingsUpdate
from inventory.models import Device
from inventory.states import DeviceState
from lab import vms
from lab.keys import generate_ed25519
from provisioning.bootcontrol import seal
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent
from provisioning.runs.states import STEP_NAMES
from tests.boot.conftest import Boot, boot, boot_settings
from tests.support.demo_os import cached_demo_image
from tests.support.harness import LINUX_CONFIG, activate_config, local_store, publish_image
from tests.support.netns import BenchNet, bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.waiting import eventually

__all__ = ["boot", "boot_settings"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.lab,
    pytest.mark.xdist_group("vm"),  # one VM test at a time on a 2-core machine
    vm_skip(),
]

DEADLINE = 1200.0  # bounds a hang only (two TCG guests on a loaded 2-core machine)
SERIALS = ("ACME0001", "ACME0002")


def _device(boot: Boot, serial: str) -> Device:
    with boot.db.session(write=False) as s:
        return s.exec(select(Device).where(Device.serial == serial)).one()


def _run_of(boot: Boot, serial: str) -> ProvisioningRun | None:
    device = _device(boot, serial)
    with boot.db.session(write=False) as s:
        return s.exec(select(ProvisioningRun).where(ProvisioningRun.device_id == device.id)).first()


def _start_worker(net: BenchNet, tmp: Path, database_url: str) -> None:
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
        },
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_two_vm_laptops_go_from_power_on_to_ready(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    image = cached_demo_image()
    pe_dir, pe_manifest = cached_pe()
    with local_store(tmp_path, monkeypatch):
        store_in_catalogue(pe_dir, pe_manifest)
        acme = boot.world.acme.id
        assert acme is not None
        publish_image(boot.db, client_id=acme, image=image, os_family="linux")
        activate_config(boot.db, client_id=acme, body=LINUX_CONFIG)
        key = tmp_path / "worker" / "id_ed25519"
        generate_ed25519(key, "worker@par")
        with boot.db.session() as s:
            sites.update_settings(
                s, "PAR",
                SiteSettingsUpdate(
                    worker_key_path=str(key), heartbeat_seconds=5, silence_seconds=300
                ),
            )  # fmt: skip
        with TestClient(create_app(boot.db)) as api:
            r = api.post(
                "/scan", json={"code": SERIALS[0], "bench_id": boot.bench.id},
                headers=boot.technician,
            )  # fmt: skip
            assert r.status_code == 200, r.text

        with bench_network(tmp_path / "bench", subnet="10.79.0") as net:
            base = net.serve_api(boot.db.url, free_port())
            with boot.db.session(write=False) as s:
                link = service.bench_boot(s, boot.bench).link
            net.site_dhcp(100, 150)
            plan = dnsmasq.plan(
                script_url=f"{base}/boot/ipxe/{link}", interface="br0",
                subnet=f"{net.prefix}.0/24", dhcp_range=None,
            )  # fmt: skip
            net.dnsmasq(dnsmasq.render(plan, title="VM e2e bench"))
            _start_worker(net, tmp_path, boot.db.url)
            accel = vms.accelerator()
            consoles: dict[str, Path] = {}
            qemus = {}
            t0 = time.monotonic()
            for i, serial in enumerate(SERIALS):
                spec = vms.VmSpec(
                    name=f"vm{i + 1}", serial=serial, mac=vms.mac_of(i + 1),
                    disk=tmp_path / f"vm{i + 1}.raw", tap=net.add_tap(f"tap{i}"),
                    console_log=tmp_path / f"vm{i + 1}.console.log",
                    vendor="Dell Inc.", model="Latitude 5440",  # as the delivery expects
                )  # fmt: skip
                vms.blank_disk(spec.disk, 512 * 1024 * 1024)
                consoles[serial] = spec.console_log
                qemus[serial] = net.start(
                    *vms.qemu_argv(spec, accel=accel), log=tmp_path / f"vm{i + 1}.qemu.log"
                )

            def what_happened() -> str:
                parts = [f"{s} console:\n{serial_log(c)[-3000:]}" for s, c in consoles.items()]
                parts.append("worker:\n" + serial_log(tmp_path / "worker.log")[-4000:])
                parts.append("api:\n" + serial_log(net.workdir / "api.log")[-1500:])
                for serial in SERIALS:
                    run = _run_of(boot, serial)
                    if run is not None:
                        parts.append(f"{serial} run {run.status} {run.step_name} {run.last_error}")
                return "\n".join(parts)

            def alive() -> None:
                for serial, q in qemus.items():
                    if q.poll() is not None:
                        raise AssertionError(f"{serial}'s qemu exited\n{what_happened()}")

            # Booted before it was scanned: its PE waits, and says so on its console.
            def waiting() -> bool:
                alive()
                return "reason=booted,-not-scanned" in serial_log(consoles[SERIALS[1]])

            eventually(waiting, timeout=DEADLINE, every=1.0, message=what_happened)
            timings = {"ACME0002 waiting (booted, not scanned)": time.monotonic() - t0}
            assert _run_of(boot, SERIALS[1]) is None  # nothing runs for it yet
            with TestClient(create_app(boot.db)) as api:
                r = api.post(
                    "/scan", json={"code": SERIALS[1], "bench_id": boot.bench.id},
                    headers=boot.technician,
                )  # fmt: skip
                assert r.status_code == 200, r.text

            registered: dict[str, float] = {}
            ready: dict[str, float] = {}

            def all_done() -> bool:
                alive()
                for serial in SERIALS:
                    if serial not in registered and "MASTERLINE-AGENT registered" in serial_log(
                        consoles[serial]
                    ):
                        registered[serial] = time.monotonic() - t0
                    run = _run_of(boot, serial)
                    if run is not None and run.status == RunStatus.FAILED:
                        raise AssertionError(f"{serial} failed\n{what_happened()}")
                    if serial not in ready and _device(boot, serial).state == DeviceState.READY:
                        ready[serial] = time.monotonic() - t0
                return len(ready) == len(SERIALS)

            eventually(all_done, timeout=DEADLINE, every=1.0, message=what_happened)
            for serial in SERIALS:
                timings[f"{serial} power-on -> registered"] = registered[serial]
                timings[f"{serial} power-on -> READY"] = ready[serial]
            print(f"\nVM e2e timings (s, accel={accel}): {timings}")
            (tmp_path / "timings.txt").write_text(repr(timings))

            relayed: dict[str, dict[str, object]] = {}
            for serial in SERIALS:
                run = _run_of(boot, serial)
                assert run is not None and run.status == RunStatus.SUCCEEDED
                assert run.context["readback_sha256"] == image.raw_sha256
                with boot.db.session(write=False) as s:
                    events = s.exec(
                        select(RunStepEvent)
                        .where(RunStepEvent.run_id == run.id)
                        .order_by(RunStepEvent.seq)  # type: ignore[arg-type]
                    ).all()
                    (pe,) = s.exec(select(PeBoot).where(PeBoot.device_id == run.device_id)).all()
                assert [e.step for e in events if e.kind == "step_done"] == list(STEP_NAMES)
                # Imaged through the relay, from the worker's address on the bench
                # network (not 127.0.0.1, which no PE reaches), never falling back.
                (streamed,) = [e for e in events if e.step == "stream" and e.kind == "step_done"]
                relayed[serial] = streamed.details["written"]["relay"]
                learned = [e.details["host"] for e in events if e.kind == "relay_address"]
                assert learned and set(learned) == {net.address}
                assert not [e for e in events if e.kind == "relay_fell_back"]
                # Each step's duration, for docs/benchmarks.md (printed, never asserted).
                started = {e.step: e.at for e in events if e.kind == "step_started"}
                phases = {
                    e.step: round((e.at - started[e.step]).total_seconds(), 1)
                    for e in events
                    if e.kind == "step_done" and e.step in started
                }
                print(f"{serial} steps (s): {phases}")
                # The installed OS came up from its own disk with the hostname the PE wrote
                # and the host key the PE generated in it: the one the worker pinned.
                assert pe.id is not None
                sealed = seal.recorded(pe.id)
                assert sealed is not None and not sealed.package_manager
                console = serial_log(consoles[serial])
                up = re.search(r"MASTERLINE-OS up (\S+) ssh (ssh-ed25519 \S+)", console)
                assert up is not None, console[-2000:]
                assert up.group(1) == f"ACME-{serial}"
                assert up.group(2) == sealed.host_key
                assert sealed.host_key.split()[1] != pe.host_key.split()[1]
                assert boot.credential not in console
            # One wave of both; the worker sent one copy: the head took it from the
            # source, the other laptop from the head.
            waves = {str(r["wave"]) for r in relayed.values()}
            assert len(waves) == 1 and all(r["members"] == 2 for r in relayed.values())
            head, tail = sorted(relayed.values(), key=lambda r: r["upstreams"] != ["source"])
            assert head["upstreams"] == ["source"] and tail["upstreams"] == [head["member"]]
            # The PE of the VM booted before its scan waited, then went on.
            assert "reason=booted,-not-scanned" not in serial_log(consoles[SERIALS[0]])
        assert all(p.poll() is not None for p in net.procs)
