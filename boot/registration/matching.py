"""How a registering PE is matched to a device: the serial (normalised as scan-in does),
cross-checked with the vendor and the SMBIOS UUID when both sides know them.

MACs are attributes, never keys: docks and USB network adapters carry one MAC from laptop
to laptop (FOG's long-standing identity trouble), so they are recorded, not matched.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from inventory.models import Device
from inventory.service import UNKNOWN_VENDOR

# Firmware placeholders that identify nothing (unset boards, a famous AMI default).
_DUMMY_UUIDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    }
)
_DUMMY_SERIALS = frozenset(
    {"", "DEFAULT STRING", "TO BE FILLED BY O.E.M.", "SYSTEM SERIAL NUMBER", "0", "NONE", "--"}
)
# DMI spellings → the names ship notices use. Compared after _fold().
_VENDOR_ALIASES = {
    "hewlett packard": "hp",
    "hewlett packard enterprise": "hp",
    "lenovo group": "lenovo",
    "micro star international": "msi",
    "asustek computer": "asus",
    "dell computer": "dell",
}
_SUFFIXES = re.compile(r"\b(inc|corp|corporation|co|ltd|limited|gmbh|sa|s a|llc|technologies)\b")


def placeholder_serial(serial: str) -> bool:
    """A firmware default that many boards share: never a laptop's identity."""
    return serial.strip().upper() in _DUMMY_SERIALS


def normalize_uuid(raw: str | None) -> str | None:
    """Canonical lower-case SMBIOS UUID, or None when absent or a placeholder."""
    if not raw:
        return None
    try:
        value = str(uuid.UUID(raw.strip()))
    except ValueError:
        return None
    return None if value in _DUMMY_UUIDS else value


def _fold(vendor: str) -> str:
    text = re.sub(r"[^a-z0-9]+", " ", vendor.casefold())
    text = " ".join(_SUFFIXES.sub(" ", text).split())
    return _VENDOR_ALIASES.get(text, text)


def same_vendor(a: str | None, b: str | None) -> bool | None:
    """Whether two vendor spellings name one maker ("Dell Inc." and "DELL" do); None
    when either is unknown."""
    if not a or not b or UNKNOWN_VENDOR in (a, b):
        return None
    fa, fb = _fold(a), _fold(b)
    if not fa or not fb:
        return None
    return fa == fb or fa.startswith(fb + " ") or fb.startswith(fa + " ")


def pick(devices: Sequence[Device], vendor: str | None) -> list[Device]:
    """Narrow devices sharing one serial to those of ``vendor`` (a serial may repeat
    across makers); unchanged when the vendor cannot tell them apart."""
    if len(devices) <= 1 or not vendor:
        return list(devices)
    same = [d for d in devices if same_vendor(d.vendor, vendor)]
    return same or list(devices)


def identity_conflict(device: Device, *, vendor: str | None, smbios_uuid: str | None) -> str | None:
    """Why the PE is not this device, or None when nothing known disagrees."""
    if same_vendor(device.vendor, vendor) is False:
        return f"vendor {vendor!r} differs from the expected {device.vendor!r}"
    known = normalize_uuid(device.smbios_uuid)
    if known and smbios_uuid and known != smbios_uuid:
        return "SMBIOS UUID differs from the one recorded for this serial"
    return None
