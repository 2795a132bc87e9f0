"""The hardware identity of a lab laptop, as its provisioning environment answers it.

Files under the laptop's fake root (``pe_root``) that stand for ``/sys/class/dmi/id``,
``/sys/class/net``, ``/sys/block`` and ``/dev`` on a real PE (see docs/lab.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import boot.agent

if TYPE_CHECKING:
    from lab.laptop import LabLaptop

USB_STICK_BYTES = 64 * 1024**2
AGENT_DIR = Path(boot.agent.__file__).resolve().parent


def build_pe_root(lp: LabLaptop) -> None:
    """Write the laptop's identity files and disk device links under its ``pe_root``."""
    pe = lp.pe_root
    dmi = pe / "sys/class/dmi/id"
    write_file(dmi / "product_serial", lp.serial + "\n")
    write_file(dmi / "product_uuid", lp.smbios_uuid + "\n")
    write_file(dmi / "sys_vendor", lp.vendor + "\n")
    write_file(dmi / "product_name", lp.model + "\n")
    write_file(dmi / "board_serial", lp.serial + "\n")
    write_file(pe / "sys/class/net/lo/address", "00:00:00:00:00:00\n")
    for ifname, mac in zip(lp.ifnames, lp.macs, strict=True):
        write_file(pe / "sys/class/net" / ifname / "address", mac + "\n")
    disk = pe / "sys/block" / lp.disk_device
    write_file(disk / "size", f"{lp.disk_bytes // 512}\n")
    write_file(disk / "removable", "0\n")
    write_file(disk / "device/model", "LAB NVMe SSD\n")
    # The USB stick the PE booted from: removable, to be ignored by the pipeline.
    usb = pe / "sys/block/sda"
    write_file(usb / "size", f"{USB_STICK_BYTES // 512}\n")
    write_file(usb / "removable", "1\n")
    write_file(usb / "device/model", "LAB USB STICK\n")
    dev = pe / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    (dev / lp.disk_device).symlink_to(lp.disk_path)
    with open(lp.dir / "usb.img", "wb") as fh:
        fh.truncate(USB_STICK_BYTES)
    (dev / "sda").symlink_to(lp.dir / "usb.img")
    install_relay(pe)


def install_relay(pe: Path) -> None:
    """The PE's relay program where a real PE has it (``/opt/masterline/agent/``, as
    boot/pe's root file system ships ``boot/agent/*.py``), for relay imaging."""
    agent = pe / "opt/masterline/agent"
    agent.mkdir(parents=True, exist_ok=True)
    for src in sorted(AGENT_DIR.glob("relay*.py")):
        shutil.copyfile(src, agent / src.name)


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def macs_for(serial: str) -> list[str]:
    # Deterministic, locally administered (02:…) MACs so a ship notice can name them.
    digest = hashlib.sha256(serial.encode()).digest()
    out = []
    for i in range(2):
        tail = digest[i * 4 : i * 4 + 4]
        out.append("02:" + ":".join(f"{b:02x}" for b in tail) + f":{i + 1:02x}")
    return out
