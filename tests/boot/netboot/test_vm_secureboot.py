"""Network boot with Secure Boot enforced (issue #14): a q35 VM with OVMF's Secure Boot
firmware and Microsoft's keys enrolled (SMM on), a virtio NIC without option ROM, on a
bench network in a namespace the test creates, where dnsmasq (running as Debian's
``dnsmasq`` user, as on a site) is the DHCP and TFTP server configured by ``masterline
boot dnsmasq-config --secure-boot``, which also wrote the bench's TFTP root:

firmware PXE → shimx64.efi (Microsoft-signed) → grubx64.efi (Debian's signed netboot
GRUB, verified by shim) → grub/grub.cfg (the bench's) → the PE's signed kernel and
initramfs over TFTP → the agent registers the scanned laptop and reports Secure Boot on.
One VM, registration only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from boot.hardware.models import HardwareReport
from boot.netboot import tftp
from inventory.models import Device
from lab import vms
from tests.boot.conftest import Boot
from tests.boot.netboot.uefi_vm import boot_uefi_vm
from tests.support.netns import bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port

DNSMASQ_USER = "dnsmasq"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.xdist_group("vm"),  # one VM at a time on a 2-core machine
    vm_skip(),
    pytest.mark.skipif(
        not vms.ovmf_present(secure_boot=True) or not _has_user(DNSMASQ_USER),
        reason="ovmf or dnsmasq missing (make system-deps)",
    ),
]

SERIAL = "ACME0001"  # one of the delivery's (the world fixture)
MAC = "52:54:00:4d:4c:03"
DEADLINE = 900.0
"""Bounds a hang only: on the shared 2-core machine at load 20+, TCG took over 420 s from
power-on to the PE's first registration (26 MiB over TFTP, 1 KiB per round trip)."""


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_uefi_pxe_with_secure_boot_boots_shim_grub_and_the_signed_pe(
    boot: Boot, tmp_path: Path
) -> None:
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    with TestClient(create_app(boot.db)) as api:
        scanned = api.post(
            "/scan", json={"code": SERIAL, "bench_id": boot.bench.id}, headers=boot.technician
        )
        assert scanned.status_code == 200, scanned.text

    # Outside pytest's 0700 tmp tree: dnsmasq, once it is the dnsmasq user, must reach it.
    scratch = Path(tempfile.mkdtemp(prefix="ml-sbnet-tftp-"))
    scratch.chmod(0o755)
    root = scratch / "bench-B1"
    try:
        with bench_network(tmp_path / "bench") as net:
            base = net.serve_api(boot.db.url, free_port())
            conf = tmp_path / "dnsmasq.conf"
            made = subprocess.run(
                [".venv/bin/masterline", "boot", "dnsmasq-config", "--site", "PAR",
                 "--bench", "B1", "--api-url", base, "--interface", "br0",
                 "--subnet", f"{net.prefix}.0/24",
                 "--range", f"{net.prefix}.100,{net.prefix}.150",
                 "--secure-boot", "--tftp-root", str(root), "--tftp-user", DNSMASQ_USER,
                 "-o", str(conf)],
                capture_output=True, text=True, timeout=600,
                env={**os.environ, "MASTERLINE_DATABASE_URL": boot.db.url, "COLUMNS": "200"},
            )  # fmt: skip
            assert made.returncode == 0, made.stdout + made.stderr
            assert boot.credential not in made.stdout + made.stderr
            config = conf.read_text()
            assert "dhcp-boot=tag:!ipxe,tag:!httpclient,tag:efi64,shimx64.efi" in config
            assert f"tftp-root={root}" in config and "\ntftp-secure" in config

            # The grub.cfg carries the credential: only dnsmasq's user reads it.
            uid = pwd.getpwnam(DNSMASQ_USER).pw_uid
            cfg = root / tftp.GRUB_CFG
            assert boot.credential in cfg.read_text()
            assert cfg.stat().st_mode & 0o777 == 0o600 and cfg.stat().st_uid == uid
            assert root.stat().st_mode & 0o777 == 0o700 and root.stat().st_uid == uid

            net.dnsmasq(config, user=DNSMASQ_USER)
            vm = boot_uefi_vm(
                boot, net, tmp_path / "vm", SERIAL, mac=MAC, secure_boot=True, deadline=DEADLINE
            )
            console = serial_log(vm.console)
            dnsmasq_log = serial_log(net.workdir / "dnsmasq.log")

            # The chain: the firmware fetched shim, shim fetched the netboot GRUB from its
            # own directory, GRUB its config under its prefix and the PE over TFTP.
            version = manifest["version"]
            for sent in (
                tftp.SHIM, tftp.GRUB, tftp.GRUB_CFG, f"pe/{version}/vmlinuz",
                f"pe/{version}/initrd.img",
            ):  # fmt: skip
                assert f"sent {root}/{sent} to" in dnsmasq_log, dnsmasq_log[-3000:]
            assert "Fetching Netboot Image grubx64.efi" in console  # shim speaking
            assert "Booting `Masterline preboot environment'" in console
            with boot.db.session(write=False) as s:
                device = s.get(Device, vm.pe.device_id)
                assert device is not None and device.serial == SERIAL
                (report,) = s.exec(
                    select(HardwareReport).where(HardwareReport.boot_id == vm.pe.id)
                ).all()
            # The PE read the SecureBoot EFI variable: the firmware enforced it.
            assert report.secure_boot is True
            assert boot.credential not in console and boot.credential not in dnsmasq_log
            print(f"secure boot network boot: power-on to registered in {vm.seconds:.0f} s")
        # Everything it started is stopped, the namespace is gone.
        assert vm.qemu.poll() is not None and all(p.poll() is not None for p in net.procs)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert net.name not in left
    finally:
        shutil.rmtree(scratch)
