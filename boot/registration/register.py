"""Registering a PE: match it to a device, answer go (a per-boot agent token, this
boot's address and SSH host key recorded), wait, or a refusal recorded for the
supervisor (docs/boot.md, "Registration").

The address and host key are trusted because the registration was authenticated by a
bench credential, not because they answered first on the bench network. A new boot of
the same laptop (a new host key) ends the previous boot and its token.

Services don't commit: ``register`` returns its outcome (a refusal included) so that
the route commits the attempt record and then answers the refusal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from boot.hardware import service as hardware
from boot.hardware.models import HardwareReport
from boot.registration import matching, repository
from boot.registration.config import get_boot_settings
from boot.registration.credentials import (
    AGENT_TOKEN_PREFIX,
    Enrollment,
    hash_secret,
    new_secret,
)
from boot.registration.errors import (
    AddressMismatch,
    InvalidRegistration,
    NotImageable,
    Quarantined,
    Refused,
)
from boot.registration.models import (
    BootStatus,
    PeBoot,
    RegistrationAttempt,
)
from boot.registration.schemas import (
    RegisterGo,
    RegisterRequest,
    RegisterWait,
    WaitReason,
)
from boot.registration.sites import settings_of
from core.timeutil import utcnow
from inventory import codes
from inventory.models import Device
from inventory.states import DeviceState

# States in which a PE may be handed a go: received and waiting for imaging, or already
# imaging (a PE that boots again resumes its run), or failed while imaging (a retry
# will need it).
GO_STATES = frozenset(
    {
        DeviceState.RECEIVED,
        DeviceState.QUEUED,
        DeviceState.IMAGING,
        DeviceState.FAILED_IMAGING,
    }
)


@dataclass(frozen=True)
class Outcome:
    """What ``register`` decided; exactly one of the three is set."""

    go: RegisterGo | None = None
    wait: RegisterWait | None = None
    refusal: Refused | None = None


# Registration.
def register(
    session: Session,
    enrollment: Enrollment,
    body: RegisterRequest,
    *,
    peer: str,
    now: datetime | None = None,
) -> Outcome:
    """Match the PE to a device and answer go, wait or a refusal.

    A refusal is recorded (``RegistrationAttempt``) in this transaction and returned,
    not raised, so that the caller commits the record before answering it.
    """
    now = now or utcnow()
    serial = codes.normalize(body.serial)
    credential = repository.get_credential(session, enrollment.credential_id)
    if credential is not None:
        credential.last_used_at = now
        session.add(credential)
    try:
        return _register(session, enrollment, body, serial=serial, peer=peer, now=now)
    except Refused as e:
        _record_attempt(session, enrollment, body, e, serial=serial, peer=peer, now=now)
        return Outcome(refusal=e)


ATTEMPT_MERGE = timedelta(minutes=10)
"""A PE refused again for the same reason within this window bumps the count of the
previous record instead of adding one (a refused laptop left on the bench retries)."""


def _record_attempt(
    session: Session,
    enrollment: Enrollment,
    body: RegisterRequest,
    e: Refused,
    *,
    serial: str,
    peer: str,
    now: datetime,
) -> None:
    outcome = "quarantined" if isinstance(e, Quarantined) else "refused"
    recent = repository.recent_attempt(
        session,
        credential_id=enrollment.credential_id,
        serial=serial[:64],
        reason=e.reason,
        since=now - ATTEMPT_MERGE,
    )
    if recent is not None and recent.outcome == outcome:
        recent.count += 1
        recent.last_at = now
        recent.peer_address = peer[:64]
        recent.detail = e.message[:500]
        session.add(recent)
    else:
        session.add(
            RegistrationAttempt(
                at=now,
                last_at=now,
                credential_id=enrollment.credential_id,
                site_id=enrollment.site_id,
                bench_id=enrollment.bench_id,
                device_id=e.device_id,
                serial=serial[:64],
                vendor=body.vendor[:64] if body.vendor else None,
                smbios_uuid=matching.normalize_uuid(body.smbios_uuid),
                peer_address=peer[:64],
                outcome=outcome,
                reason=e.reason,
                detail=e.message[:500],
            )
        )
    session.flush()


def _register(
    session: Session,
    enrollment: Enrollment,
    body: RegisterRequest,
    *,
    serial: str,
    peer: str,
    now: datetime,
) -> Outcome:
    if matching.placeholder_serial(serial):
        raise InvalidRegistration(
            f"serial {serial!r} is a firmware placeholder; set the real serial in the "
            "firmware (or ask the vendor) before this laptop can be staged"
        )
    # The rule scan-in applies: a serial nobody could scan is nobody's laptop.
    why = codes.problem(body.serial, label="serial")
    if why is not None:
        raise InvalidRegistration(why)
    fingerprint = _fingerprint(body.host_key)
    site = settings_of(session, enrollment.site_id)
    address = _address(body.address, peer, allow_mismatch=site.allow_address_mismatch)
    smbios_uuid = matching.normalize_uuid(body.smbios_uuid)

    device = matching.match_device(
        session, enrollment, body, serial=serial, smbios_uuid=smbios_uuid, site=site
    )
    assert device.id is not None
    state = DeviceState(device.state)
    if state in (DeviceState.EXPECTED, DeviceState.UNEXPECTED):
        reason = WaitReason.NOT_SCANNED if state is DeviceState.EXPECTED else WaitReason.UNEXPECTED
        message = (
            f"{serial} booted before it was scanned in: scan it at the bench"
            if state is DeviceState.EXPECTED
            else f"{serial} is UNEXPECTED: attach it to a delivery (or reject it)"
        )
        boot = _boot(session, device, enrollment, body, address, peer, fingerprint, now)
        _record_inventory(session, device, body, boot, enrollment, os_family=None)
        return _wait(boot, device, reason, message)
    if state not in GO_STATES:
        raise NotImageable(
            f"{serial} is {state.value}: it must not be imaged from here",
            current_state=state.value,
            device_id=device.id,
        )
    keys = site.worker_public_keys
    boot = _boot(session, device, enrollment, body, address, peer, fingerprint, now)
    os_family = hardware.target_os_family(session, device)
    report = _record_inventory(session, device, body, boot, enrollment, os_family=os_family)
    if not keys:
        return _wait(
            boot,
            device,
            WaitReason.NO_WORKER_KEY,
            "this site has no worker SSH key configured (masterline boot site-settings "
            "SITE --worker-key PATH)",
        )
    gate = hardware.gate(
        session,
        device,
        site_id=enrollment.site_id,
        os_family=os_family,
        actor=_actor(enrollment),
        boot_id=boot.id,
        report=report,
    )
    if gate.blocks:
        close_boot(boot, now, "quarantined by the health policy" if gate.quarantined else "policy")
        session.add(boot)
        raise Quarantined(
            f"{serial} fails the site's health policy: "
            + "; ".join(f.message for f in gate.findings)
            + ("" if gate.quarantined else f" (device is {state.value}; abort its run)"),
            findings=[f.model_dump() for f in gate.findings],
            device_id=device.id,
        )
    token = new_secret(AGENT_TOKEN_PREFIX)
    expires = now + timedelta(hours=get_boot_settings().agent_token_hours)
    boot.status = BootStatus.REGISTERED
    boot.wait_reason = boot.wait_message = None
    boot.token_hash = hash_secret(token)
    boot.token_expires_at = expires
    boot.registered_at = boot.registered_at or now
    session.add(boot)
    _fill_identity(device, body, smbios_uuid, now)
    session.add(device)
    session.flush()
    assert boot.id is not None
    return Outcome(
        go=RegisterGo(
            boot_id=boot.id,
            device_id=device.id,
            agent_token=token,
            token_expires_at=expires,
            authorized_keys=list(keys),
            heartbeat_seconds=site.heartbeat_seconds,
        )
    )


def _actor(enrollment: Enrollment) -> str:
    return f"pe:{enrollment.name}"[:128]


def _boot(
    session: Session,
    device: Device,
    enrollment: Enrollment,
    body: RegisterRequest,
    address: str,
    peer: str,
    fingerprint: str,
    now: datetime,
) -> PeBoot:
    """This boot's row: the open boot with the same host key (the agent retried or was
    restarted), else a new one; every other open boot of the laptop ends, its token
    with it."""
    assert device.id is not None
    current: PeBoot | None = None
    for boot in repository.boots_of_device(
        session, device.id, statuses=(BootStatus.WAITING, BootStatus.REGISTERED)
    ):
        if current is None and boot.host_key_fingerprint == fingerprint:
            current = boot
        else:
            close_boot(boot, now, "superseded by a new boot of the same laptop")
            session.add(boot)
    if current is None:
        current = PeBoot(
            device_id=device.id,
            serial=device.serial,
            site_id=enrollment.site_id,
            credential_id=enrollment.credential_id,
            host_key=body.host_key,
            host_key_fingerprint=fingerprint,
            peer_address=peer[:64],
            created_at=now,
        )
    current.bench_id = enrollment.bench_id
    current.credential_id = enrollment.credential_id
    current.peer_address = address
    current.declared_address = body.address
    current.ssh_port = body.ssh_port
    current.smbios_uuid = matching.normalize_uuid(body.smbios_uuid)
    current.vendor = body.vendor
    current.model = body.model
    current.interfaces = [i.model_dump() for i in body.interfaces]
    current.pe_version = body.pe_version
    current.last_seen_at = now
    session.add(current)
    session.flush()
    return current


def close_boot(boot: PeBoot, now: datetime, reason: str) -> None:
    """End a boot and forget its token (its hash): a replay is refused from now on."""
    boot.status = BootStatus.ENDED
    boot.token_hash = None
    boot.ended_at = now
    boot.ended_reason = reason[:200]


def _wait(boot: PeBoot, device: Device, reason: WaitReason, message: str) -> Outcome:
    boot.status = BootStatus.WAITING
    boot.wait_reason = reason.value
    boot.wait_message = message[:300]
    boot.token_hash = None
    assert boot.id is not None and device.id is not None
    return Outcome(
        wait=RegisterWait(
            boot_id=boot.id,
            device_id=device.id,
            reason=reason,
            message=message,
            retry_seconds=get_boot_settings().wait_retry_seconds,
        )
    )


def _record_inventory(
    session: Session,
    device: Device,
    body: RegisterRequest,
    boot: PeBoot,
    enrollment: Enrollment,
    *,
    os_family: str | None,
) -> HardwareReport | None:
    if body.inventory is None:
        return None
    return hardware.record(
        session,
        device,
        body.inventory,
        boot_id=boot.id,
        site_id=enrollment.site_id,
        os_family=os_family,
    )


def _fill_identity(
    device: Device, body: RegisterRequest, smbios_uuid: str | None, now: datetime
) -> None:
    """What the PE knows and the ship notice did not: the UUID, the built-in MACs (never
    a dock's or a USB adapter's: those move between laptops), the model as seen."""
    if smbios_uuid and not device.smbios_uuid:
        device.smbios_uuid = smbios_uuid
    builtin = sorted({i.mac.lower() for i in body.interfaces if i.bus == "pci"})
    if builtin and not device.mac_addresses:
        device.mac_addresses = builtin
    if body.model:
        device.observed_model = body.model[:128]
    device.updated_at = now


def _fingerprint(host_key: str) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint. :raises InvalidRegistration: not base64."""
    try:
        blob = base64.b64decode(host_key.split()[1], validate=True)
    except (binascii.Error, IndexError) as e:
        raise InvalidRegistration("host_key is not an OpenSSH public key line") from e
    if len(blob) < 19:
        raise InvalidRegistration("host_key is not an OpenSSH public key line")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _address(declared: str, peer: str, *, allow_mismatch: bool) -> str:
    """The address the worker will use: the one the server saw, which must be the one
    the PE declares (no NAT on a bench network), unless the site allows a mismatch.

    :raises InvalidRegistration: not an IP address. :raises AddressMismatch: they differ.
    """
    try:
        mine = ipaddress.ip_address(declared.strip())
    except ValueError as e:
        raise InvalidRegistration("address is not an IP address") from e
    try:
        seen = ipaddress.ip_address(peer)
        if isinstance(seen, ipaddress.IPv6Address) and seen.ipv4_mapped is not None:
            seen = seen.ipv4_mapped
    except ValueError:
        seen = None
    if seen == mine:
        return str(seen)
    if allow_mismatch:
        return str(mine)
    raise AddressMismatch(
        f"the PE declares {mine} but the server sees {peer}; a NAT or proxy between the "
        "bench and the API? (site setting allow_address_mismatch)"
    )
