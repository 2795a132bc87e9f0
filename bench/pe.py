"""PE benchmark: the preboot environment's size, and how long a VM laptop takes from
QEMU's start to its agent registered, against a bare busybox initramfs on the same
kernel (the baseline: the kernel reaching userspace and nothing else), in the same run.

    python -m bench.pe            # root: the VMs run on a bench network in a namespace

1. **Size**: the kernel and the initramfs (gzip) of ``masterline pe build`` vs a
   busybox-only initramfs; the initramfs' unpacked size and file count.
2. **Boot**: QEMU TCG (KVM cannot run guests on this machine kind), 768 MiB, one vCPU,
   an e1000 on a bridge with dnsmasq and the API inside a network namespace:
   a. baseline: direct kernel boot, busybox initramfs, until its /init prints;
   b. the PE by direct kernel boot, until the agent says it registered (DHCP, host
      key, SSH server, Python start, inventory, registration);
   c. the PE through the whole network chain (BIOS): the NIC's iPXE ROM, DHCP (dnsmasq
      as the bench network's DHCP server), the bench's script over HTTP, the kernel and
      initramfs over HTTP, until registered;
   d. the same with UEFI firmware (OVMF, q35, Secure Boot off): the ROM's EFI iPXE, the
      kernel's EFI stub.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from boot.netboot import dnsmasq, service
from boot.pe import cpio, debian, repository
from boot.pe import service as pe_service
from boot.registration import credentials, sites
from boot.registration.schemas import CredentialCreate, SiteSettingsUpdate
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM
from core.settings import get_settings
from inventory import service as inventory_service
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, ScanRequest, SiteCreate
from tests.support.factories import create_devices
from tests.support.netns import BenchNet, bench_network, serial_log, vm_prerequisites
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.processes import stop
from wiring import wire

SERIAL = "BENCHPE001"
DEADLINE = 300.0  # bounds a hang only
OVMF = Path("/usr/share/OVMF")
WORKER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8w5pN0m3cJv1vBqzJ8vU0 worker@bench"


def busybox_initrd(out: Path) -> int:
    """The baseline: busybox and an /init that prints a line and powers off."""
    (pkg,) = debian.candidates(["busybox-static"])
    deb = debian.download([pkg], pe_service.PeSettings().cache_dir)[pkg]
    with tempfile.TemporaryDirectory() as tmp:
        debian.unpack([deb], Path(tmp))
        tree: dict[str, cpio.Node] = {
            "bin": cpio.Dir(),
            "bin/busybox": cpio.File((Path(tmp) / "bin/busybox").read_bytes(), 0o755),
            "bin/sh": cpio.Symlink("busybox"),
            "dev": cpio.Dir(),
            "dev/console": cpio.CharDev(5, 1),
            "init": cpio.File(b"#!/bin/sh\n/bin/busybox echo BASELINE-USERSPACE\n"
                              b"/bin/busybox poweroff -f\n", 0o755),
        }  # fmt: skip
        cpio.write_gzip(tree, out, mtime=0)
    return out.stat().st_size


def boot_vm(net: BenchNet, tap: str, log: Path, marker: str, *args: str) -> float:
    """Seconds from QEMU's start to ``marker`` on its serial console."""
    start = time.monotonic()
    proc = net.start(
        "qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1", "-display", "none",
        "-no-reboot", "-serial", f"file:{log}",
        "-smbios", f"type=1,serial={SERIAL},manufacturer=Dell Inc.,product=Latitude 5440",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", "e1000,netdev=n0", *args,
        log=log.with_suffix(".qemu"),
    )  # fmt: skip
    try:
        while time.monotonic() - start < DEADLINE:
            if marker in serial_log(log):
                return time.monotonic() - start
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"no {marker!r} within {DEADLINE} s:\n{serial_log(log)[-3000:]}")
    finally:
        stop(proc)


def setup(work: Path) -> tuple[Database, str]:
    os.environ["MASTERLINE_DATA_DIR"] = str(work / "data")
    os.environ["MASTERLINE_SECRET_KEY"] = "bench-pe-key"  # noqa: S105 (a throwaway install)
    os.environ["MASTERLINE_BOOT_RATE_PER_ADDRESS"] = "1000/minute"
    get_settings.cache_clear()
    url = f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as s:
        inventory_service.create_client(s, ClientCreate(code="BENCH", name="Bench"))
        inventory_service.create_site(s, SiteCreate(code="BEN", name="Bench site"))
        bench = inventory_service.create_bench(s, BenchCreate(site_code="BEN", code="B1", slots=8))
        delivery = inventory_service.create_delivery(
            s, DeliveryCreate(client_code="BENCH", vendor="Dell", order_reference="PO-1"), SYSTEM
        )
        create_devices(s, delivery=delivery, serials=[SERIAL])
        inventory_service.scan(s, ScanRequest(code=SERIAL, bench_id=bench.id or 0), SYSTEM)
        _, secret = credentials.create_credential(
            s, CredentialCreate(name="bench", site_code="BEN", bench_code="B1"), SYSTEM
        )
        sites.update_settings(s, "BEN", SiteSettingsUpdate(worker_public_keys=[WORKER_KEY]))
    return db, secret


def main() -> int:
    wire()  # the bench's netboot link includes registration's kernel arguments
    why = vm_prerequisites()
    if why is not None:
        print(f"skipped: {why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-pe-") as tmp:
        work = Path(tmp)
        pe_dir, manifest = cached_pe()
        files = manifest["files"]
        unpacked = gzip.decompress((pe_dir / repository.INITRD).read_bytes())
        count = unpacked.count(b"070701")  # newc headers (an upper bound: content may match)
        baseline = work / "busybox.img"
        base_size = busybox_initrd(baseline)
        print(f"PE {manifest['version']}: kernel {files['vmlinuz']['size'] / 2**20:.1f} MiB, "
              f"initramfs {files['initrd.img']['size'] / 2**20:.1f} MiB gzip "
              f"({len(unpacked) / 2**20:.0f} MiB unpacked, ~{count} entries); "
              f"busybox-only initramfs {base_size / 2**20:.2f} MiB")  # fmt: skip

        db, secret = setup(work)
        store_in_catalogue(pe_dir, manifest)
        with bench_network(work / "net", subnet="10.79.0") as net:
            base = net.serve_api(db.url, free_port())
            with db.session(write=False) as s:
                link = service.bench_boot(s, service.bench_by_code(s, "BEN", "B1")).link
            plan = dnsmasq.plan(
                script_url=f"{base}/boot/ipxe/{link}", interface="br0",
                subnet=f"{net.prefix}.0/24", dhcp_range=f"{net.prefix}.100,{net.prefix}.150",
            )  # fmt: skip
            net.dnsmasq(dnsmasq.render(plan, title="bench"))
            kernel = str(pe_dir / repository.KERNEL)
            cmdline = (
                f"console=ttyS0,115200 quiet masterline.api={base} masterline.enroll={secret} "
                "masterline.bench=B1 masterline.site=BEN"
            )
            t_base = boot_vm(
                net, net.add_tap("tap0"), work / "a.log", "BASELINE-USERSPACE",
                "-kernel", kernel, "-initrd", str(baseline), "-append", "console=ttyS0 quiet",
            )  # fmt: skip
            t_direct = boot_vm(
                net, net.add_tap("tap1"), work / "b.log", "MASTERLINE-AGENT registered",
                "-kernel", kernel, "-initrd", str(pe_dir / repository.INITRD), "-append", cmdline,
            )  # fmt: skip
            t_pxe = boot_vm(
                net, net.add_tap("tap2"), work / "c.log", "MASTERLINE-AGENT registered",
                "-boot", "n",
            )  # fmt: skip
            shutil.copyfile(OVMF / "OVMF_VARS_4M.fd", work / "vars.fd")
            code = OVMF / "OVMF_CODE_4M.fd"  # Secure Boot off: Debian's iPXE is not signed
            t_uefi = boot_vm(
                net, net.add_tap("tap3"), work / "d.log", "MASTERLINE-AGENT registered",
                "-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={work / 'vars.fd'}",
            )  # fmt: skip
        print(f"QEMU start -> busybox userspace (baseline): {t_base:.1f} s")
        print(f"QEMU start -> PE registered, direct kernel boot: {t_direct:.1f} s "
              f"({t_direct / t_base:.1f}x)")  # fmt: skip
        print(f"QEMU start -> PE registered, PXE (iPXE ROM, DHCP, HTTP): {t_pxe:.1f} s "
              f"({t_pxe / t_base:.1f}x)")  # fmt: skip
        print(f"QEMU start -> PE registered, UEFI PXE (OVMF, iPXE EFI ROM, HTTP): {t_uefi:.1f} s "
              f"({t_uefi / t_base:.1f}x)")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
