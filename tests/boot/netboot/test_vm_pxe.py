"""A VM laptop end to end over the network: a bench network in a namespace the test
creates (bridge, TAP; the site's own DHCP server, and Masterline's dnsmasq as
proxy-DHCP + TFTP as ``masterline boot dnsmasq-config`` configures it; the isolated
set-up where dnsmasq is the DHCP server boots in ``bench.pe``), Masterline's API on the
bridge, QEMU (TCG) with an SMBIOS serial:
BIOS PXE → iPXE (the NIC's ROM, Debian's ipxe-qemu) → the bench's script over HTTP → the
PE built by ``masterline pe build`` → the agent registers the scanned laptop → the server
records its address and host key → SSH into the PE with that key pinned (and a wrong pin
refused). One VM, registration only."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from boot.netboot import dnsmasq, service
from boot.registration import sites
from boot.registration.models import PeBoot
from boot.registration.schemas import SiteSettingsUpdate
from boot.registration.service import current_boot
from inventory.models import Device
from tests.boot.conftest import Boot
from tests.support.netns import BenchNet, bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.xdist_group("vm"),  # one VM at a time on a 2-core machine
    vm_skip(),
]

SERIAL = "ACME0001"
BOOT_DEADLINE = 300.0  # bounds a hang only (TCG on a loaded machine); a boot takes ~40 s


def worker_key(tmp_path: Path) -> Path:
    key = tmp_path / "worker_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "worker@test", "-f", str(key)],
        check=True, timeout=30,
    )  # fmt: skip
    return key


def ssh(
    net: BenchNet, key: Path, known_hosts: Path, address: str, *cmd: str
) -> subprocess.CompletedProcess[str]:
    return net.run(
        "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=20", f"root@{address}", *cmd,
        timeout=90,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_a_vm_laptop_pxe_boots_the_pe_and_registers(boot: Boot, tmp_path: Path) -> None:
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    key = worker_key(tmp_path)
    with boot.db.session() as s:
        sites.update_settings(s, "PAR", SiteSettingsUpdate(worker_key_path=str(key)))
    with TestClient(create_app(boot.db)) as api:
        scanned = api.post(
            "/scan", json={"code": SERIAL, "bench_id": boot.bench.id}, headers=boot.technician
        )
        assert scanned.status_code == 200, scanned.text

    with bench_network(tmp_path / "bench") as net:
        base = net.serve_api(boot.db.url, free_port())
        with boot.db.session(write=False) as s:
            link = service.bench_boot(s, boot.bench).link
        # The site keeps its own DHCP server; Masterline's dnsmasq is proxy-DHCP + TFTP.
        net.site_dhcp(100, 150)
        plan = dnsmasq.plan(
            script_url=f"{base}/boot/ipxe/{link}",
            interface="br0",
            subnet=f"{net.prefix}.0/24",
            dhcp_range=None,
        )
        net.dnsmasq(dnsmasq.render(plan, title="VM test bench"))
        tap = net.add_tap("tap0")
        serial = tmp_path / "serial.log"
        qemu = net.start(
            "qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1",
            "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
            "-smbios", f"type=1,serial={SERIAL},manufacturer=Dell Inc.,product=Latitude 5440",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", "e1000,netdev=n0,mac=52:54:00:4d:4c:01", "-boot", "n",
            log=tmp_path / "qemu.log",
        )  # fmt: skip

        def what_happened() -> str:
            return (
                "serial console:\n" + serial_log(serial)[-4000:]
                + "\ndnsmasq:\n" + serial_log(net.workdir / "dnsmasq.log")[-2000:]
                + "\nqemu:\n" + serial_log(tmp_path / "qemu.log")[-1000:]
                + "\napi:\n" + serial_log(net.workdir / "api.log")[-2000:]
            )  # fmt: skip

        def registered() -> PeBoot | None:
            if qemu.poll() is not None:
                raise AssertionError(f"qemu exited with {qemu.returncode}\n{what_happened()}")
            with boot.db.session(write=False) as s:
                return s.exec(select(PeBoot).where(PeBoot.status == "registered")).first()

        def registered_console() -> str | None:
            if "MASTERLINE-AGENT registered" in serial_log(serial):
                return serial_log(serial)
            return None

        pe = eventually(registered, timeout=BOOT_DEADLINE, every=1.0, message=what_happened)
        console = eventually(registered_console, timeout=60, every=0.5, message=what_happened)

        # The chain really went through the site's DHCP (the address) and Masterline's
        # proxy-DHCP (the script's URL, to iPXE).
        site_log = serial_log(net.workdir / "site-dhcp.log")
        assert re.search(r"DHCPACK\(eth0\) \S+ 52:54:00:4d:4c:01", site_log)
        proxy_log = serial_log(net.workdir / "dnsmasq.log")
        assert "DHCP, proxy on subnet" in proxy_log
        assert f"bootfile name: {plan.script_url}" in proxy_log
        assert f"MASTERLINE-AGENT registered device={pe.device_id} boot={pe.id}" in console

        with boot.db.session(write=False) as s:
            device = s.get(Device, pe.device_id)
            assert device is not None and device.serial == SERIAL
            view = current_boot(s, pe.device_id)
        assert view is not None and view.alive
        # The address the server saw is the lease dnsmasq gave the VM.
        assert re.fullmatch(
            rf"{re.escape(net.prefix)}\.1[0-4]\d|{re.escape(net.prefix)}\.150", view.address
        )
        # The host key recorded is the one this boot generated (the PE printed it).
        printed = re.search(r"MASTERLINE-PE ssh (ssh-ed25519 \S+)", console)
        assert printed and view.host_key.split()[:2] == printed.group(1).split()
        assert boot.credential not in console

        known = tmp_path / "known_hosts"
        known.write_text(view.known_hosts_line() + "\n")
        got = ssh(net, key, known, view.address, "cat /sys/class/dmi/id/product_serial; uname -r")
        assert got.returncode == 0, got.stderr + what_happened()
        assert got.stdout.split() == [SERIAL, manifest["kernel_version"]]

        # Another key pinned for that address: OpenSSH refuses to talk to the PE.
        other = tmp_path / "other_known_hosts"
        other.write_text(
            f"{view.address} {Path(str(key) + '.pub').read_text().split(' ')[0]} "
            f"{Path(str(key) + '.pub').read_text().split(' ')[1]}\n"
        )
        refused = ssh(net, key, other, view.address, "true")
        assert refused.returncode != 0 and "host key" in refused.stderr.lower()
    # Everything it started is stopped, both namespaces are gone.
    assert qemu.poll() is not None and all(p.poll() is not None for p in net.procs)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.name not in left
