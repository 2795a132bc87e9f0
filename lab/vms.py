"""Virtual-machine laptops: QEMU machines that boot like a laptop on a bench, each with its
own SMBIOS serial, MAC address, blank virtual disk and, when Debian's ``swtpm`` is
installed, a TPM 2.0 of its own.

A VM's boot order is its disk, then the network: a blank disk is not bootable, so a new
VM network-boots (the NIC's iPXE ROM, then Masterline's script and PE); once imaged, its
reboot starts the installed system from its own disk, as a laptop whose firmware lists
the disk first does. KVM is used only when a real probe shows that a guest runs under it
(``kvm_works``): on some hosts ``/dev/kvm`` exists and accepts a VM that never runs; TCG
otherwise.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"
PROBE_SECONDS = 15.0
"""A KVM guest prints within a second; one that has printed nothing by then never will."""

# A boot sector that writes "OK\n" to COM1 and halts: mov dx,0x3f8; mov al,c; out dx,al
# (three times); hlt; jmp back to hlt.
_PROBE_CODE = bytes.fromhex("baf803b04feeb04beeb00aeef4ebfd")


@functools.cache
def kvm_works() -> bool:
    """Whether a guest really runs under KVM here: a boot sector must print on its serial
    port within ``PROBE_SECONDS`` (the device node alone proves nothing)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which(QEMU) is None:
        return False
    with tempfile.TemporaryDirectory(prefix="ml-kvm-probe-") as tmp:
        disk = Path(tmp) / "probe.img"
        sector = bytearray(512)
        sector[: len(_PROBE_CODE)] = _PROBE_CODE
        sector[510:512] = b"\x55\xaa"
        disk.write_bytes(bytes(sector) + bytes(512 * 15))
        proc = subprocess.Popen(
            [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "32", "-display", "none",
             "-nodefaults", "-nic", "none", "-serial", "stdio", "-no-reboot",
             "-drive", f"file={disk},format=raw,if=ide"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=PROBE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=30)
        return b"OK" in (out or b"")


def accelerator() -> str:
    return "kvm" if kvm_works() else "tcg"


@dataclass(frozen=True)
class VmSpec:
    name: str
    serial: str
    mac: str
    disk: Path
    tap: str
    console_log: Path
    memory_mib: int = 768
    tpm_socket: Path | None = None
    vendor: str = "QEMU Lab"
    model: str = "Masterline VM"
    network_boot_once: bool = False
    """Boot from the network this time whatever the disk holds (a technician's one-time
    boot menu): a laptop powered off mid-stream has a half-written disk that may look
    bootable; later reboots go back to disk first."""


def mac_of(index: int) -> str:
    """A locally administered MAC per VM (QEMU's 52:54:00 prefix)."""
    return f"52:54:00:4d:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"


def blank_disk(path: Path, size_bytes: int) -> None:
    """A sparse, all-zero disk: not bootable, so the VM network-boots."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size_bytes)


def qemu_argv(spec: VmSpec, *, accel: str | None = None) -> list[str]:
    """The QEMU command of one VM laptop: BIOS (SeaBIOS), e1000 with its iPXE ROM on the
    TAP device ``spec.tap``, the disk as virtio, the console on a serial log."""
    kind = accel or accelerator()
    argv = [
        QEMU, "-accel", kind, "-m", str(spec.memory_mib), "-smp", "1",
        "-display", "none", "-serial", f"file:{spec.console_log}",
        "-smbios",
        f"type=1,serial={spec.serial},manufacturer={spec.vendor},product={spec.model}",
        "-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"e1000,netdev=n0,mac={spec.mac}",
        "-drive", f"file={spec.disk},format=raw,if=virtio",
        "-boot", "order=cn,once=n" if spec.network_boot_once else "order=cn",
        # Entropy from the host, as a laptop's RDRAND/TPM gives it: a TCG guest without
        # it waits minutes before its SSH server can answer.
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    if kind == "kvm":
        argv[3:3] = ["-cpu", "host"]
    if spec.tpm_socket is not None:
        argv += [
            "-chardev", f"socket,id=chrtpm,path={spec.tpm_socket}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
        ]  # fmt: skip
    return argv


def swtpm_argv(state_dir: Path, socket: Path) -> list[str] | None:
    """A TPM 2.0 emulator for one VM, or None when ``swtpm`` is not installed."""
    if shutil.which("swtpm") is None:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    return [
        "swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state_dir}",
        "--ctrl", f"type=unixio,path={socket}", "--terminate",
    ]  # fmt: skip


def wait_for_socket(path: Path, *, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


OVMF = Path("/usr/share/OVMF")
"""Debian's ``ovmf``: UEFI firmware for QEMU, with a Secure Boot build."""


def ovmf_present(*, secure_boot: bool = False) -> bool:
    code = "OVMF_CODE_4M.secboot.fd" if secure_boot else "OVMF_CODE_4M.fd"
    return (OVMF / code).is_file()


def uefi_argv(
    *,
    vars_file: Path,
    secure_boot: bool = False,
    ipv4_pxe: bool = True,
) -> list[str]:
    """QEMU arguments of a UEFI laptop's firmware: q35 and OVMF, whose NVRAM is a fresh
    copy of Debian's template written to ``vars_file``. ``secure_boot``: OVMF's Secure
    Boot build with Microsoft's keys enrolled, SMM on and the flash writable only from
    SMM, so Secure Boot is enforced and cannot be switched off by the guest. Network boot
    is IPv4 only (IPv6 attempts first wait for router advertisements); ``ipv4_pxe=False``
    turns PXE off, so that UEFI HTTP boot is what runs."""
    template = "OVMF_VARS_4M.ms.fd" if secure_boot else "OVMF_VARS_4M.fd"
    code = "OVMF_CODE_4M.secboot.fd" if secure_boot else "OVMF_CODE_4M.fd"
    vars_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OVMF / template, vars_file)
    argv = ["-machine", "q35,smm=on" if secure_boot else "q35"]
    if secure_boot:
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    argv += [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}",
        "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
    ]  # fmt: skip
    if not ipv4_pxe:
        argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
    return argv


def virtio_nic_argv(tap: str, mac: str) -> list[str]:
    """A virtio NIC on ``tap`` without an option ROM: the firmware's own network boot
    client runs (QEMU's NIC ROMs are iPXE, which would skip it)."""
    return [
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=",
    ]  # fmt: skip
