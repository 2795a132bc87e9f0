"""How a registering PE is matched to a device (``match_device``): the serial
(normalised as scan-in does), cross-checked with the vendor and the SMBIOS UUID when
both sides know them.

MACs are attributes, never keys: docks and USB network adapters carry one MAC from laptop
to laptop (FOG's long-standing identity trouble), so they are recorded, not matched.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from sqlmodel import Session

from boot.registration import repository
from boot.registration.credentials import Enrollment
from boot.registration.errors import (
    AmbiguousSerial,
    IdentityMismatch,
    OtherClient,
    OtherSite,
    UnknownSerial,
)
from boot.registration.models import BootSiteSettings
from boot.registration.schemas import RegisterRequest
from core.principal import Principal, Role
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.models import Device
from inventory.schemas import ScanRequest
from inventory.service import UNKNOWN_VENDOR
from inventory.states import DeviceState

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


def _principal(enrollment: Enrollment) -> Principal:
    """Who scans a laptop in when registration is scan-in: the bench's credential."""
    return Principal(
        token_id=0,
        name=f"pe-credential-{enrollment.credential_id}",
        role=Role.TECHNICIAN,
        client_id=None,
    )


def match_device(
    session: Session,
    enrollment: Enrollment,
    body: RegisterRequest,
    *,
    serial: str,
    smbios_uuid: str | None,
    site: BootSiteSettings,
) -> Device:
    """The laptop this PE is (scanned in first when the site says registration is
    scan-in).

    :raises Refused: (a subclass) ambiguous or unknown serial, another client's or
        site's laptop, an identity that contradicts what is known.
    """
    found = pick(repository.devices_by_serial(session, serial), body.vendor)
    if len(found) > 1:
        raise AmbiguousSerial(
            f"serial {serial} matches laptops of several vendors; the PE reports "
            f"{body.vendor or 'no vendor'}"
        )
    if not found:
        if site.registration_is_scan_in and enrollment.bench_id is not None:
            return _scan_in(session, enrollment, serial, body)
        raise UnknownSerial(f"serial {serial} is not expected by any delivery")
    device = found[0]
    assert device.id is not None
    if enrollment.client_id is not None and device.client_id != enrollment.client_id:
        raise OtherClient(
            f"{serial} belongs to another client than this credential's", device_id=device.id
        )
    where = _site_of(session, device)
    if where is not None and where != enrollment.site_id:
        raise OtherSite(f"{serial} is expected or received at another site", device_id=device.id)
    conflict = identity_conflict(device, vendor=body.vendor, smbios_uuid=smbios_uuid)
    if conflict:
        raise IdentityMismatch(f"{serial}: {conflict}", device_id=device.id)
    if (
        device.state == DeviceState.EXPECTED
        and site.registration_is_scan_in
        and enrollment.bench_id is not None
    ):
        return _scan_in(session, enrollment, serial, body)
    return device


def _site_of(session: Session, device: Device) -> int | None:
    """Where the device is: its bench's site once scanned, else its delivery's assigned
    site; None when nothing says (then any site may receive it, as scan-in allows)."""
    if device.bench_id is not None:
        bench = inventory_repo.get_bench(session, device.bench_id)
        return bench.site_id if bench else None
    if device.delivery_id is not None:
        assigned = repository.delivery_site(session, device.delivery_id)
        return assigned.site_id if assigned else None
    return None


def _scan_in(
    session: Session, enrollment: Enrollment, serial: str, body: RegisterRequest
) -> Device:
    """The site chose "registration is scan-in": the inventory service scans the laptop
    in at the credential's bench, with every scan-in rule (UNEXPECTED included)."""
    assert enrollment.bench_id is not None
    done = inventory.scan(
        session,
        ScanRequest(code=serial, bench_id=enrollment.bench_id, model=body.model),
        _principal(enrollment),
    )
    return done.device
