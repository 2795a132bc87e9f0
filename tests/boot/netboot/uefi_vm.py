"""A UEFI VM laptop on a test's bench network, until its PE registers: the QEMU set-up
(``lab.vms``' OVMF and NIC arguments) and the wait shared by ``test_vm_uefi`` and
``test_vm_secureboot``."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from boot.registration.models import PeBoot
from lab import vms
from tests.boot.conftest import Boot
from tests.support.netns import BenchNet, serial_log
from tests.support.waiting import eventually

DEADLINE = 420.0  # bounds a hang only (TCG on a loaded machine)


@dataclass
class UefiBoot:
    qemu: subprocess.Popen[bytes]
    pe: PeBoot
    console: Path
    seconds: float
    """Power-on (QEMU started) to the registration seen in the database: reported in
    docs/boot.md, never asserted."""


def boot_uefi_vm(
    boot: Boot,
    net: BenchNet,
    workdir: Path,
    serial: str,
    *,
    mac: str,
    tap: str = "tap0",
    secure_boot: bool = False,
    http_boot: bool = False,
    deadline: float = DEADLINE,
) -> UefiBoot:
    """Start a UEFI VM (q35, OVMF, a virtio NIC without option ROM, SMBIOS ``serial``) on
    a new TAP of ``net`` and wait until a PE registered. QEMU stays running (``net``
    stops it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    console = workdir / "serial.log"
    net.add_tap(tap)
    started = time.monotonic()
    qemu = net.start(
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024" if secure_boot else "768",
        "-smp", "1", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
        *vms.uefi_argv(
            vars_file=workdir / "OVMF_VARS.fd", secure_boot=secure_boot, ipv4_pxe=not http_boot
        ),
        "-smbios", f"type=1,serial={serial},manufacturer=Dell Inc.,product=Latitude 5440",
        *vms.virtio_nic_argv(tap, mac),
        log=workdir / "qemu.log",
    )  # fmt: skip

    def what_happened() -> str:
        return (
            "serial console:\n" + serial_log(console)[-4000:]
            + "\ndnsmasq:\n" + serial_log(net.workdir / "dnsmasq.log")[-3000:]
            + "\nqemu:\n" + serial_log(workdir / "qemu.log")[-1000:]
            + "\napi:\n" + serial_log(net.workdir / "api.log")[-2000:]
        )  # fmt: skip

    def registered() -> PeBoot | None:
        for proc in net.procs:  # qemu, dnsmasq, the API: none may have stopped
            if proc.poll() is not None:
                raise AssertionError(
                    f"{proc.args!r} exited with {proc.returncode}\n{what_happened()}"
                )
        with boot.db.session(write=False) as s:
            return s.exec(select(PeBoot).where(PeBoot.status == "registered")).first()

    pe = eventually(registered, timeout=deadline, every=1.0, message=what_happened)
    return UefiBoot(qemu, pe, console, time.monotonic() - started)
