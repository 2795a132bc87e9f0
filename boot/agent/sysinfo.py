"""Readers of the laptop's identity and hardware from ``/sys`` and ``/proc``.

Every reader takes the root to read under (``/`` in the PE; a directory of files copied
from real machines in tests) and returns None for what it cannot read: an unknown value
is reported as unknown, never guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# EFI_GLOBAL_VARIABLE (UEFI spec): SecureBoot, SetupMode, PK... live under this GUID.
_EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
_PLACEHOLDERS = {"", "none", "not specified", "default string", "to be filled by o.e.m.", "--"}


@dataclass(frozen=True)
class Root:
    path: Path

    def file(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def read(self, rel: str, *, limit: int = 65536) -> str | None:
        try:
            with open(self.file(rel), "rb") as fh:
                return fh.read(limit).decode(errors="replace").strip()
        except OSError:
            return None

    def read_bytes(self, rel: str, *, limit: int = 4096) -> bytes | None:
        try:
            with open(self.file(rel), "rb") as fh:
                return fh.read(limit)
        except OSError:
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.file(rel)))
        except OSError:
            return []

    def resolve(self, rel: str) -> str | None:
        """Where a sysfs symlink points, as a path under the root (or None)."""
        p = self.file(rel)
        if not os.path.lexists(p):
            return None
        return os.path.realpath(p)


def clean(value: str | None, limit: int = 128) -> str | None:
    """A firmware string as people read it: printable characters only (DMI fields are
    sometimes padded with NULs or garbage), blanks collapsed, placeholders dropped."""
    if value is None:
        return None
    text = " ".join("".join(ch for ch in value if ch.isprintable() or ch.isspace()).split())
    if text.casefold() in _PLACEHOLDERS:
        return None
    return text[:limit] or None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# Identity.
def identity(root: Root) -> dict[str, Any]:
    dmi = "sys/class/dmi/id"
    vendor = clean(root.read(f"{dmi}/sys_vendor"), 64)
    model = clean(root.read(f"{dmi}/product_name"))
    friendly = clean(root.read(f"{dmi}/product_version"))
    # Lenovo keeps the machine type in product_name (21AHCTO1WW) and the name people
    # know in product_version (ThinkPad T14 Gen 3).
    if vendor and vendor.upper().startswith("LENOVO") and friendly:
        model = friendly
    return {
        "serial": clean(root.read(f"{dmi}/product_serial"), 64),
        "smbios_uuid": clean(root.read(f"{dmi}/product_uuid"), 64),
        "vendor": vendor,
        "model": model,
    }


def interfaces(root: Root) -> list[dict[str, str]]:
    """Ethernet-like interfaces with their MAC and bus (``usb`` for docks and adapters,
    whose MAC moves from laptop to laptop)."""
    out = []
    for name in root.listdir("sys/class/net"):
        base = f"sys/class/net/{name}"
        if name == "lo" or root.read(f"{base}/type") not in (None, "1"):
            continue
        mac = (root.read(f"{base}/address") or "").lower()
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac) or mac == "00:00:00:00:00:00":
            continue
        target = root.resolve(f"{base}/device")
        if target is None:
            bus = "virtual"
        elif "/usb" in target:
            bus = "usb"
        elif "/pci" in target:
            bus = "pci"
        else:
            bus = "other"
        out.append({"name": name[:32], "mac": mac, "bus": bus})
    return out[:32]


def host_key(root: Root) -> str | None:
    line = root.read("etc/ssh/ssh_host_ed25519_key.pub", limit=4096)
    return " ".join(line.split()[:2]) if line else None


# Hardware.
def cpu(root: Root) -> dict[str, Any]:
    text = root.read("proc/cpuinfo", limit=1 << 20) or ""
    model = None
    threads = 0
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key == "model name" and model is None:
            model = clean(value)
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    return {
        "model": model,
        "threads": threads or None,
        "cores": len(cores) or (threads or None),
        "arch": os.uname().machine,
    }


def memory_usable(root: Root) -> int | None:
    for line in (root.read("proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            kib = _int(line.split()[1]) if len(line.split()) > 1 else None
            return kib * 1024 if kib is not None else None
    return None


def memory_installed(dmidecode_type17: str | None) -> int | None:
    """Sum of the populated memory devices in ``dmidecode -t 17`` output."""
    if not dmidecode_type17:
        return None
    total = 0
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
    for line in dmidecode_type17.splitlines():
        m = re.match(r"^\s*Size:\s*(\d+)\s*([KMGT]B)\s*$", line, re.IGNORECASE)
        if m:
            total += int(m.group(1)) * units[m.group(2).lower()]
    return total or None


def batteries(root: Root) -> list[dict[str, Any]]:
    """Laptop batteries (not a wireless mouse's: those have ``scope=Device``), with
    health = full capacity / design capacity."""
    out = []
    for name in root.listdir("sys/class/power_supply"):
        base = f"sys/class/power_supply/{name}"
        if root.read(f"{base}/type") != "Battery" or root.read(f"{base}/scope") == "Device":
            continue
        if root.read(f"{base}/present") == "0":
            continue
        design = _int(root.read(f"{base}/energy_full_design"))
        full = _int(root.read(f"{base}/energy_full"))
        if design is None or full is None:
            design = _int(root.read(f"{base}/charge_full_design"))
            full = _int(root.read(f"{base}/charge_full"))
        health = round(full * 100 / design, 1) if design and full is not None else None
        cycles = _int(root.read(f"{base}/cycle_count"))
        out.append(
            {
                "name": name[:32],
                "manufacturer": clean(root.read(f"{base}/manufacturer"), 64),
                "model": clean(root.read(f"{base}/model_name"), 64),
                "technology": clean(root.read(f"{base}/technology"), 32),
                "design_capacity": design,
                "full_capacity": full,
                "health_pct": min(health, 200.0) if health is not None else None,
                # Many firmwares report 0 when they do not count cycles.
                "cycles": cycles if cycles else None,
                "status": clean(root.read(f"{base}/status"), 32),
            }
        )
    return out[:4]


def tpm(root: Root) -> dict[str, Any]:
    devices = [d for d in root.listdir("sys/class/tpm") if d.startswith("tpm")]
    if not devices:
        return {"present": False, "version": None}
    base = f"sys/class/tpm/{devices[0]}"
    major = root.read(f"{base}/tpm_version_major")
    if major == "2":
        return {"present": True, "version": "2.0"}
    if major == "1":
        return {"present": True, "version": "1.2"}
    caps = root.read(f"{base}/device/caps") or ""
    if "1.2" in caps:
        return {"present": True, "version": "1.2"}
    # Only TPM 2.0 devices get a resource manager node.
    if os.path.exists(root.file("dev/tpmrm0")):
        return {"present": True, "version": "2.0"}
    return {"present": True, "version": None}


def firmware(root: Root) -> dict[str, Any]:
    dmi = "sys/class/dmi/id"
    uefi = os.path.isdir(root.file("sys/firmware/efi"))
    secure: bool | None = False
    if uefi:
        raw = root.read_bytes(f"sys/firmware/efi/efivars/SecureBoot-{_EFI_GLOBAL}")
        # 4 bytes of attributes, then the value.
        secure = bool(raw[4]) if raw is not None and len(raw) >= 5 else None
    return {
        "vendor": clean(root.read(f"{dmi}/bios_vendor"), 64),
        "version": clean(root.read(f"{dmi}/bios_version"), 64),
        "date": clean(root.read(f"{dmi}/bios_date"), 32),
        "boot_mode": "uefi" if uefi else "bios",
        "secure_boot": secure,
    }
