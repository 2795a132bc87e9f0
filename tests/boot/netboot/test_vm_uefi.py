"""UEFI firmware's own network boot, in a VM on a bench network in a namespace the test
creates (``test_vm_pxe``'s set-up), ending when the PE's agent has registered:

a. **UEFI PXE through TFTP**: OVMF's own PXE client (the NIC has no option ROM, so no
   iPXE is involved until we send one) asks DHCP; Masterline's dnsmasq (the bench
   network's DHCP server, ``masterline boot dnsmasq-config --range``) answers with
   ``ipxe.efi`` over TFTP; Debian's iPXE asks again as iPXE and is given the bench's
   script; the PE boots and registers.
b. **UEFI HTTP boot**: OVMF's HTTP boot client (vendor class ``HTTPClient``; PXE turned
   off in the firmware so that HTTP boot is what runs) is given the URL of ``ipxe.efi``
   served by Masterline behind the bench's link; the rest as in (a).

The NIC is virtio (OVMF drives it itself; QEMU's e1000 ROMs are iPXE, which would skip
the firmware's client). Secure Boot is off: Debian's iPXE is not signed (the signed
path is the USB stick's, ``tests/boot/pe/test_vm_usb.py``). Proxy-DHCP with BIOS PXE is
``test_vm_pxe``; HTTP boot needs dnsmasq as the DHCP server: a proxy does not answer
HTTP boot clients (measured: dnsmasq logs the request and stays silent; docs/boot.md).
One VM at a time; each stops at registration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from boot.netboot import dnsmasq, service
from boot.registration.models import PeBoot
from inventory.models import Device
from tests.boot.conftest import Boot
from tests.support.netns import bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.waiting import eventually

OVMF = Path("/usr/share/OVMF")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.xdist_group("vm"),  # one VM at a time on a 2-core machine
    vm_skip(),
    pytest.mark.skipif(
        not (OVMF / "OVMF_CODE_4M.fd").exists() or not Path("/usr/lib/ipxe/ipxe.efi").exists(),
        reason="ovmf or ipxe missing (make system-deps)",
    ),
]

DEADLINE = 420.0  # bounds a hang only (TCG on a loaded machine)
MAC = "52:54:00:4d:4c:02"


def boot_by_uefi(boot: Boot, tmp_path: Path, serial: str, *, http_boot: bool) -> str:
    """Scan ``serial`` (one of the delivery's), boot a UEFI VM with that SMBIOS serial on
    a bench network where dnsmasq is the DHCP server; wait for its PE to register.
    Returns dnsmasq's log."""
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    with TestClient(create_app(boot.db)) as api:
        scanned = api.post(
            "/scan", json={"code": serial, "bench_id": boot.bench.id}, headers=boot.technician
        )
        assert scanned.status_code == 200, scanned.text

    with bench_network(tmp_path / "bench") as net:
        base = net.serve_api(boot.db.url, free_port())
        with boot.db.session(write=False) as s:
            link = service.bench_boot(s, boot.bench).link
        plan = dnsmasq.plan(
            script_url=f"{base}/boot/ipxe/{link}", interface="br0",
            subnet=f"{net.prefix}.0/24", dhcp_range=f"{net.prefix}.100,{net.prefix}.150",
        )  # fmt: skip
        net.dnsmasq(dnsmasq.render(plan, title="UEFI VM test bench"))
        tap = net.add_tap("tap0")
        variables = tmp_path / "OVMF_VARS.fd"
        shutil.copyfile(OVMF / "OVMF_VARS_4M.fd", variables)
        console = tmp_path / "serial.log"
        firmware = [
            # Only IPv4: the IPv6 attempts would wait for router advertisements first.
            "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
        ]  # fmt: skip
        if http_boot:
            firmware += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
        qemu = net.start(
            "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "768", "-smp", "1",
            "-display", "none", "-no-reboot", "-serial", f"file:{console}",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
            *firmware,
            "-smbios", f"type=1,serial={serial},manufacturer=Dell Inc.,product=Latitude 5440",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC},romfile=",
            log=tmp_path / "qemu.log",
        )  # fmt: skip

        def what_happened() -> str:
            return (
                "serial console:\n" + serial_log(console)[-4000:]
                + "\ndnsmasq:\n" + serial_log(net.workdir / "dnsmasq.log")[-3000:]
                + "\nqemu:\n" + serial_log(tmp_path / "qemu.log")[-1000:]
                + "\napi:\n" + serial_log(net.workdir / "api.log")[-2000:]
            )  # fmt: skip

        def registered() -> PeBoot | None:
            if qemu.poll() is not None:
                raise AssertionError(f"qemu exited with {qemu.returncode}\n{what_happened()}")
            with boot.db.session(write=False) as s:
                return s.exec(select(PeBoot).where(PeBoot.status == "registered")).first()

        pe = eventually(registered, timeout=DEADLINE, every=1.0, message=what_happened)
        with boot.db.session(write=False) as s:
            device = s.get(Device, pe.device_id)
            assert device is not None and device.serial == serial
        log = serial_log(net.workdir / "dnsmasq.log")
    # Everything it started is stopped, the namespace is gone.
    assert qemu.poll() is not None and all(p.poll() is not None for p in net.procs)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.name not in left
    return log


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_uefi_firmware_pxe_chainloads_ipxe_over_tftp(boot: Boot, tmp_path: Path) -> None:
    log = boot_by_uefi(boot, tmp_path, "ACME0001", http_boot=False)
    # The firmware's own PXE client (architecture 7, not iPXE) was sent ipxe.efi, which
    # dnsmasq's TFTP server then sent; iPXE asked again and was given the script.
    assert "sent /usr/lib/ipxe/ipxe.efi to" in log, log[-3000:]
    assert "tags: efi64" in log and "tags: ipxe" in log.replace("tags: ipxe,", "tags: ipxe ")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_uefi_http_boot_fetches_ipxe_efi_from_masterline(boot: Boot, tmp_path: Path) -> None:
    log = boot_by_uefi(boot, tmp_path, "ACME0002", http_boot=True)
    # The firmware's HTTP boot client asked (vendor class HTTPClient) and was given the
    # URL of ipxe.efi behind the bench's link; TFTP was never used.
    assert "httpclient" in log and "/ipxe.efi" in log, log[-3000:]
    assert "sent /usr/lib/ipxe/ipxe.efi" not in log
