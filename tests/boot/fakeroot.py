"""Fake roots for the PE agent: a directory laid out like a laptop's ``/sys``, ``/proc``
and ``/etc``, plus stand-ins on ``PATH`` for ``smartctl``, ``nvme`` and ``dmidecode``
that print outputs recorded on real machines (``fixtures/``, see its README).

The values are real machines' too: the DMI strings, CPU and memory of a Dell Latitude
3320 (linuxhw/DMI dump, whose TPM is an NTC TPM 2.0 and whose battery is designed for
54 Wh), and battery capacities posted from real packs (an ASUS UX32 at 40.9 of 48.2 Wh
after 481 cycles; a Lenovo L14M4P23 at 52.3 of 60.0 Wh).
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

CPUINFO_I5_1135G7 = "".join(
    f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 140\n"
    f"model name\t: 11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz\n"
    f"physical id\t: 0\nsiblings\t: 8\ncore id\t\t: {i % 4}\ncpu cores\t: 4\n\n"
    for i in range(8)
)


@dataclass
class Disk:
    name: str
    size_bytes: int
    model: str
    serial: str
    smartctl: str | None = None
    """Fixture file under fixtures/smartctl/ that `smartctl -j -a /dev/NAME` prints."""
    nvme: str | None = None
    """Fixture file under fixtures/nvme/ that `nvme smart-log -o json /dev/NAME` prints."""
    usb: bool = False


@dataclass
class Laptop:
    serial: str
    vendor: str = "Dell Inc."
    product_name: str = "Latitude 3320"
    product_version: str = "Not Specified"
    smbios_uuid: str = "4c4c4544-0042-3510-8052-b4c04f4e5331"
    bios: tuple[str, str, str] = ("Dell Inc.", "1.33.0", "11/14/2024")
    nics: list[tuple[str, str, str]] = field(
        default_factory=lambda: [("enp0s31f6", "3c:52:82:0a:1b:2c", "pci")]
    )
    disks: list[Disk] = field(
        default_factory=lambda: [
            Disk(
                "nvme0n1",
                1024209543168,
                "INTEL SSDPEKNW010T8",
                "BTNH93710FS91P0B",
                smartctl="intel-ssdpeknw010t8-nvme.json",
                nvme="smart-log-nvme-cli-2.3.json",
            )
        ]
    )
    # (name, energy_full_design µWh, energy_full µWh, cycles, manufacturer, model)
    batteries: list[tuple[str, int, int, int, str, str]] = field(
        default_factory=lambda: [("BAT0", 60000000, 52260000, 0, "SMP", "L14M4P23")]
    )
    tpm_major: str | None = "2"
    uefi: bool = True
    secure_boot: bool | None = True
    dmidecode_17: str | None = "dell-latitude-3320-type17.txt"
    host_key: str = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxXm1GgXqTJc1wJmFJ0qTQ9xjv0xgq1LrYkqB7S7fZa root@pe"
    )
    cmdline: str = ""


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")


def build(root: Path, laptop: Laptop) -> Path:
    """Lay ``laptop`` out under ``root``; returns ``root``."""
    dmi = root / "sys/class/dmi/id"
    for name, value in {
        "product_serial": laptop.serial,
        "product_uuid": laptop.smbios_uuid,
        "sys_vendor": laptop.vendor,
        "product_name": laptop.product_name,
        "product_version": laptop.product_version,
        "bios_vendor": laptop.bios[0],
        "bios_version": laptop.bios[1],
        "bios_date": laptop.bios[2],
    }.items():
        _write(dmi / name, value)
    pci = root / "sys/devices/pci0000:00"
    for i, (name, mac, bus) in enumerate(laptop.nics):
        net = root / "sys/class/net" / name
        _write(net / "address", mac)
        _write(net / "type", "1")
        if bus != "virtual":
            where = pci / (
                f"0000:00:14.0/usb2/2-{i + 1}" if bus == "usb" else f"0000:00:1f.{i + 6}"
            )
            where.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(where, net), net / "device")
    lo = root / "sys/class/net/lo"
    _write(lo / "address", "00:00:00:00:00:00")
    _write(lo / "type", "772")
    for i, disk in enumerate(laptop.disks):
        block = root / "sys/block" / disk.name
        _write(block / "size", str(disk.size_bytes // 512))
        _write(block / "removable", "0")
        _write(block / "queue/rotational", "0")
        where = pci / (f"0000:00:14.0/usb2/2-{i + 3}" if disk.usb else f"0000:00:0{i + 1}.0")
        _write(where / "model", disk.model)
        _write(where / "serial", disk.serial)
        os.symlink(os.path.relpath(where, block), block / "device")
    _write(root / "sys/block/loop0/size", "0")
    for name, design, full, cycles, maker, model in laptop.batteries:
        bat = root / "sys/class/power_supply" / name
        for key, value in {
            "type": "Battery",
            "present": "1",
            "status": "Discharging",
            "technology": "Li-ion",
            "energy_full_design": str(design),
            "energy_full": str(full),
            "cycle_count": str(cycles),
            "manufacturer": maker,
            "model_name": model,
        }.items():
            _write(bat / key, value)
    _write(root / "sys/class/power_supply/AC/type", "Mains")
    if laptop.tpm_major is not None:
        _write(root / "sys/class/tpm/tpm0/tpm_version_major", laptop.tpm_major)
    if laptop.uefi:
        efivars = root / "sys/firmware/efi/efivars"
        efivars.mkdir(parents=True, exist_ok=True)
        if laptop.secure_boot is not None:
            secure_boot = b"\x06\x00\x00\x00" + (b"\x01" if laptop.secure_boot else b"\x00")
            _write(efivars / f"SecureBoot-{EFI_GLOBAL}", secure_boot)
    _write(root / "proc/cpuinfo", CPUINFO_I5_1135G7)
    _write(root / "proc/meminfo", "MemTotal:        7874560 kB\nMemFree:         7001234 kB")
    _write(root / "proc/cmdline", laptop.cmdline)
    _write(root / "etc/ssh/ssh_host_ed25519_key.pub", laptop.host_key)
    _write(root / "etc/masterline-pe-version", "test-1")
    return root


def shims(bin_dir: Path, laptop: Laptop) -> Path:
    """``smartctl``, ``nvme`` and ``dmidecode`` stand-ins printing the laptop's recorded
    outputs (and smartctl's exit status bits, as the real one sets them)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    smart_cases, nvme_cases = [], []
    for d in laptop.disks:
        if d.smartctl:
            fixture = FIXTURES / "smartctl" / d.smartctl
            status = 8 if "failing" in d.smartctl else 0
            smart_cases.append(
                f'  "/dev/{d.name}") cat {shlex.quote(str(fixture))}; exit {status};;'
            )
        if d.nvme:
            fixture = FIXTURES / "nvme" / d.nvme
            nvme_cases.append(f'  "/dev/{d.name}") cat {shlex.quote(str(fixture))}; exit 0;;')
    scripts = {
        "smartctl": ['dev="$3"', 'case "$dev" in', *smart_cases, "esac", "exit 2"],
        "nvme": ['dev="$4"', 'case "$dev" in', *nvme_cases, "esac", "exit 1"],
    }
    if laptop.dmidecode_17:
        fixture = FIXTURES / "dmidecode" / laptop.dmidecode_17
        scripts["dmidecode"] = [f"cat {shlex.quote(str(fixture))}"]
    for name, lines in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir
