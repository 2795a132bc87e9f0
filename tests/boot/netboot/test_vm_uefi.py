"""UEFI firmware's own network boot, in a VM on a bench network in a namespace the test
creates (``tests.support.netns``; the VM from ``lab.vms``' OVMF arguments, through
``uefi_vm``), ending when the PE's agent has registered:

a. **UEFI PXE through TFTP**: OVMF's own PXE client (the NIC has no option ROM, so no
   iPXE is involved until we send one) asks DHCP; Masterline's dnsmasq (the bench
   network's DHCP server, ``masterline boot dnsmasq-config --range``) answers with
   ``ipxe.efi`` over TFTP; Debian's iPXE asks again as iPXE and is given the bench's
   script; the PE boots and registers.
b. **UEFI HTTP boot**: OVMF's HTTP boot client (vendor class ``HTTPClient``; PXE turned
   off in the firmware so that HTTP boot is what runs) is given the URL of ``ipxe.efi``
   served by Masterline's boot-file server (``sendfile``, ``MASTERLINE_NETBOOT_FILES_PORT``)
   behind the bench's link; iPXE's script sends it there for the PE's files too; the rest
   as in (a). (a) and the other VM tests fetch the PE's files from the API's route.

The NIC is virtio (OVMF drives it itself; QEMU's e1000 ROMs are iPXE, which would skip
the firmware's client). Secure Boot is off: Debian's iPXE is not signed (the signed
paths: ``test_vm_secureboot``, and the USB stick's ``tests/boot/pe/test_vm_usb.py``).
Proxy-DHCP with BIOS PXE is ``test_vm_pxe``; HTTP boot needs dnsmasq as the DHCP server:
a proxy does not answer HTTP boot clients (measured: dnsmasq logs the request and stays
silent; docs/boot.md).
One VM at a time; each stops at registration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from boot.netboot import dnsmasq, service
from inventory.models import Device
from lab import vms
from tests.boot.conftest import Boot
from tests.boot.netboot.uefi_vm import boot_uefi_vm
from tests.support.netns import bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.xdist_group("vm"),  # one VM at a time on a 2-core machine
    vm_skip(),
    pytest.mark.skipif(
        not vms.ovmf_present() or not Path("/usr/lib/ipxe/ipxe.efi").exists(),
        reason="ovmf or ipxe missing (make system-deps)",
    ),
]

MAC = "52:54:00:4d:4c:02"


def boot_by_uefi(
    boot: Boot, tmp_path: Path, serial: str, *, http_boot: bool, files_port: int | None = None
) -> str:
    """Scan ``serial`` (one of the delivery's), boot a UEFI VM with that SMBIOS serial on
    a bench network where dnsmasq is the DHCP server; wait for its PE to register.
    ``files_port``: the API runs its boot-file server there (``ipxe.efi`` and the PE's
    files come from it). Returns dnsmasq's log."""
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    with TestClient(create_app(boot.db)) as api:
        scanned = api.post(
            "/scan", json={"code": serial, "bench_id": boot.bench.id}, headers=boot.technician
        )
        assert scanned.status_code == 200, scanned.text

    with bench_network(tmp_path / "bench") as net:
        base = net.serve_api(boot.db.url, free_port(), files_port=files_port)
        with boot.db.session(write=False) as s:
            link = service.bench_boot(s, boot.bench).link
        files_url = f"http://{net.address}:{files_port}/boot/ipxe/{link}" if files_port else None
        plan = dnsmasq.plan(
            script_url=f"{base}/boot/ipxe/{link}", interface="br0",
            subnet=f"{net.prefix}.0/24", dhcp_range=f"{net.prefix}.100,{net.prefix}.150",
            files_url=files_url,
        )  # fmt: skip
        net.dnsmasq(dnsmasq.render(plan, title="UEFI VM test bench"))
        vm = boot_uefi_vm(boot, net, tmp_path, serial, mac=MAC, http_boot=http_boot)
        with boot.db.session(write=False) as s:
            device = s.get(Device, vm.pe.device_id)
            assert device is not None and device.serial == serial
        log = serial_log(net.workdir / "dnsmasq.log")
    # Everything it started is stopped, the namespace is gone.
    assert vm.qemu.poll() is not None and all(p.poll() is not None for p in net.procs)
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
    files_port = free_port()
    log = boot_by_uefi(boot, tmp_path, "ACME0002", http_boot=True, files_port=files_port)
    # The firmware's HTTP boot client asked (vendor class HTTPClient) and was given the
    # URL of ipxe.efi behind the bench's link on the boot-file server (sendfile), which
    # answered its HEAD and GET; iPXE's script then sent it there for the PE's kernel and
    # initramfs; TFTP was never used.
    assert "httpclient" in log and f":{files_port}/boot/ipxe/" in log, log[-3000:]
    assert "/ipxe.efi" in log
    assert "sent /usr/lib/ipxe/ipxe.efi" not in log
