"""The laptop as its provisioning environment sees it: its identity (serial, UUID, MACs,
model, disks) read in one round trip, and the target disk chosen by the hardware model's
rule. Read only: running it twice is safe."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provisioning.errors import CommandFailed
from provisioning.transports.base import Transport

PE_ROOT = '"${MASTERLINE_PE_ROOT:-}"'
_DISK_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd", "dm-", "md")

IDENTIFY_SCRIPT = r"""R="${MASTERLINE_PE_ROOT:-}"
echo "serial=$(cat "$R/sys/class/dmi/id/product_serial" 2>/dev/null)"
echo "uuid=$(cat "$R/sys/class/dmi/id/product_uuid" 2>/dev/null)"
echo "model=$(cat "$R/sys/class/dmi/id/product_name" 2>/dev/null)"
for n in "$R"/sys/class/net/*; do
  [ -f "$n/address" ] && echo "mac=$(basename "$n") $(cat "$n/address")"
done
for b in "$R"/sys/block/*; do
  [ -f "$b/size" ] || continue
  rm="$(cat "$b/removable" 2>/dev/null || echo 0)"
  echo "disk=$(basename "$b") $(cat "$b/size") $rm"
done
true
"""


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    removable: bool


@dataclass(frozen=True)
class Identity:
    serial: str
    uuid: str
    model: str
    macs: dict[str, str]
    disks: list[Disk]

    def as_dict(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "uuid": self.uuid,
            "model": self.model,
            "macs": self.macs,
            "disks": [
                {"name": d.name, "size": d.size_bytes, "removable": d.removable} for d in self.disks
            ],
        }


def identify(transport: Transport, *, timeout: float) -> Identity:
    """Read serial, SMBIOS UUID, MACs and disks in the provisioning environment.

    :raises CommandFailed: the script failed; transport errors as ``Transport.run``.
    """
    res = transport.run("sh -s", timeout=timeout, stdin=IDENTIFY_SCRIPT.encode())
    if not res.ok:
        raise CommandFailed(f"identity script exited {res.rc}: {last_line(res.stderr)}")
    serial = uuid = model = ""
    macs: dict[str, str] = {}
    disks: list[Disk] = []
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "serial":
            serial = value
        elif key == "uuid":
            uuid = value
        elif key == "model":
            model = value
        elif key == "mac":
            iface, _, addr = value.partition(" ")
            if iface != "lo":
                macs[iface] = addr.strip().lower()
        elif key == "disk":
            parts = value.split()
            if len(parts) >= 2 and parts[1].isdigit():
                removable = len(parts) > 2 and parts[2] == "1"
                disks.append(Disk(parts[0], int(parts[1]) * 512, removable))
    return Identity(serial=serial, uuid=uuid, model=model, macs=macs, disks=disks)


def pick_disk(identity: Identity, *, rule: str = "largest") -> Disk:
    """The target disk: the model's named disk, or the largest non-removable one.

    :raises CommandFailed: no such disk / no candidate (fatal: a human must look).
    """
    candidates = [
        d for d in identity.disks if _DISK_NAME.match(d.name) and not d.name.startswith(_SKIP_DISKS)
    ]
    if rule and rule != "largest":
        for d in candidates:
            if d.name == rule:
                return d
        raise CommandFailed(f"disk {rule!r} required by the hardware model is not present")
    fixed = [d for d in candidates if not d.removable and d.size_bytes > 0]
    if not fixed:
        raise CommandFailed("no non-removable disk found")
    return max(fixed, key=lambda d: (d.size_bytes, d.name))


def disk_path(name: str) -> str:
    if not _DISK_NAME.match(name):
        raise CommandFailed(f"refusing odd disk name {name!r}")
    return f"{PE_ROOT}/dev/{name}"


def last_line(text: str) -> str:
    """The last non-blank line of a command's output (where a shell script's error
    ends up), for a one-line error."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
