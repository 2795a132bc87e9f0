"""Hardware rules: storing what a PE reported, the site's health policy as a gate before
any byte is written, and the per-delivery exports (inventory and dead-on-arrival).

The gate quarantines through ``inventory.lifecycle`` (the one writer of device state). A
technician who releases a laptop quarantined by the policy accepts it as it is: the
same findings do not quarantine it again (the release is in its history, with who).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from boot.errors import SiteNotFound
from boot.hardware import policy as rules
from boot.hardware import repository
from boot.hardware.models import HardwareReport, HealthPolicy, Verdict
from boot.hardware.schemas import (
    DeadOnArrival,
    DeviceHardware,
    DoaLine,
    Finding,
    HardwareInventory,
    HardwareReportRead,
    PolicyFields,
    PolicyRead,
)
from core.errors import MasterlineError
from core.principal import Principal
from core.timeutil import utcnow
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.models import Device, Site
from inventory.states import TRANSITIONS, DeviceState, Event

HISTORY_LIMIT = 50
POLICY_MARK = "health_policy"
"""Key in a quarantine event's details that says the policy did it."""

_QUARANTINABLE = frozenset(
    src for (src, event) in TRANSITIONS if event is Event.QUARANTINE and src is not None
)


# Reports.
def record(
    session: Session,
    device: Device,
    inv: HardwareInventory,
    *,
    boot_id: int | None,
    site_id: int,
    os_family: str | None,
) -> HardwareReport:
    """Store one boot's inventory (once per boot: a PE that retries while waiting does
    not add rows) with the site policy's findings at this moment."""
    assert device.id is not None
    if boot_id is not None:
        existing = repository.report_of_boot(session, boot_id)
        if existing is not None:
            return existing
    findings = rules.evaluate(policy_of(session, site_id), inv, os_family=os_family)
    s = rules.summarize(inv)
    row = HardwareReport(
        device_id=device.id,
        boot_id=boot_id,
        collected_at=utcnow(),
        cpu_model=inv.cpu.model,
        cpu_cores=inv.cpu.cores,
        cpu_threads=inv.cpu.threads,
        ram_bytes=s.ram_bytes,
        disk_count=s.disk_count,
        disk_bytes=s.disk_bytes,
        disk_health=s.disk_health,
        disk_wear_pct=s.disk_wear_pct,
        battery_health_pct=s.battery_health_pct,
        battery_cycles=s.battery_cycles,
        tpm_version=s.tpm_version,
        secure_boot=s.secure_boot,
        boot_mode=inv.firmware.boot_mode,
        firmware_vendor=inv.firmware.vendor,
        firmware_version=inv.firmware.version,
        firmware_date=inv.firmware.date,
        collect_seconds=inv.collect_seconds,
        inventory=inv.model_dump(mode="json"),
        findings=[f.model_dump() for f in findings],
        verdict=Verdict.FAIL if findings else Verdict.PASS,
    )
    session.add(row)
    session.flush()
    return row


def target_os_family(session: Session, device: Device) -> str | None:
    """OS family of the image the device's client would give it now, or None when it
    cannot be resolved yet (no configuration, no image)."""
    from images import service as image_service

    if device.client_id is None:
        return None
    try:
        config = image_service.active_config(session, device.client_id)
        if config is None:
            return None
        return str(image_service.resolve_with_config(session, device, config).os_family)
    except MasterlineError:
        return None


# The gate.
@dataclass(frozen=True)
class GateResult:
    findings: list[Finding]
    waived_at: datetime | None = None
    quarantined: bool = False

    @property
    def blocks(self) -> bool:
        return bool(self.findings) and self.waived_at is None


def gate(
    session: Session,
    device: Device,
    *,
    site_id: int,
    os_family: str | None,
    actor: str,
    boot_id: int | None = None,
    report: HardwareReport | None = None,
) -> GateResult:
    """The site's policy against the device's latest report, before anything is
    written to the laptop. A failure quarantines the device (when its state allows)
    with the findings as the reason. Call with the device row locked.

    The pipeline calls this again once the image is known (``os_family``): the
    Windows-only TPM rule cannot be decided earlier.
    """
    assert device.id is not None
    report = report or repository.latest_report(session, device.id)
    if report is None:
        return GateResult(findings=[])
    inv = HardwareInventory.model_validate(report.inventory)
    findings = rules.evaluate(policy_of(session, site_id), inv, os_family=os_family)
    if not findings:
        return GateResult(findings=[])
    waived = _waived_at(session, device.id)
    if waived is not None:
        return GateResult(findings=findings, waived_at=waived)
    if report.verdict != Verdict.FAIL:
        report.verdict = Verdict.FAIL
        report.findings = [f.model_dump() for f in findings]
        session.add(report)
    if DeviceState(device.state) not in _QUARANTINABLE:
        return GateResult(findings=findings)
    reason = "health policy: " + "; ".join(f.message for f in findings)
    device.quarantine_reason = reason[:500]
    lifecycle.apply(
        session,
        device,
        Event.QUARANTINE,
        actor=actor,
        reason=reason[:1000],
        details={
            POLICY_MARK: True,
            "findings": [f.code for f in findings],
            "report_id": report.id,
            "boot_id": boot_id,
        },
    )
    return GateResult(findings=findings, quarantined=True)


def _waived_at(session: Session, device_id: int) -> datetime | None:
    """When a technician released the device after its last policy quarantine."""
    quarantined: datetime | None = None
    released: datetime | None = None
    for e in inventory_repo.device_events(session, device_id):
        if e.event == Event.QUARANTINE.value and (e.details or {}).get(POLICY_MARK):
            quarantined, released = e.at, None
        elif e.event == Event.RELEASE.value and quarantined is not None:
            released = e.at
    return released


# Reading.
def policy_of(session: Session, site_id: int) -> HealthPolicy:
    return repository.policy(session, site_id) or _default_policy(site_id)


def _default_policy(site_id: int) -> HealthPolicy:
    return HealthPolicy(site_id=site_id, **rules.DEFAULT_POLICY.model_dump(exclude={"site_id"}))


def device_hardware(session: Session, device_id: int, principal: Principal) -> DeviceHardware:
    """:raises DeviceNotFound: unknown or another company's for a client-bound caller."""
    device = inventory.get_device(session, device_id, principal)
    reports = [
        HardwareReportRead.model_validate(r)
        for r in repository.reports_of_device(session, device_id, limit=HISTORY_LIMIT)
    ]
    return DeviceHardware(
        device_id=device_id,
        serial=device.serial,
        latest=reports[0] if reports else None,
        history=reports[1:],
    )


def read_policy(session: Session, site_code: str) -> PolicyRead:
    """:raises SiteNotFound: unknown site."""
    site = _site(session, site_code)
    assert site.id is not None
    row = repository.policy(session, site.id)
    base = row or _default_policy(site.id)
    return PolicyRead(
        site_code=site.code,
        updated_by=base.updated_by,
        updated_at=row.updated_at if row else None,
        **PolicyFields.model_validate(base, from_attributes=True).model_dump(),
    )


def set_policy(
    session: Session, site_code: str, body: PolicyFields, principal: Principal
) -> PolicyRead:
    """Replace the site's policy (every field: an omitted threshold is not checked).

    :raises SiteNotFound: unknown site.
    """
    site = _site(session, site_code)
    assert site.id is not None
    row = repository.policy(session, site.id) or HealthPolicy(site_id=site.id)
    for key, value in body.model_dump().items():
        setattr(row, key, value)
    row.updated_by = principal.actor
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return read_policy(session, site_code)


def _site(session: Session, code: str) -> Site:
    site = inventory_repo.get_site_by_code(session, code)
    if site is None or site.id is None:
        raise SiteNotFound(code)
    return site


# Per-delivery exports.
def delivery_rows(
    session: Session, delivery_id: int, principal: Principal
) -> Sequence[tuple[Device, HardwareReport | None]]:
    """:raises DeliveryNotFound: unknown or another company's."""
    inventory.get_delivery(session, delivery_id, principal)
    return repository.delivery_hardware(session, delivery_id)


def dead_on_arrival(session: Session, delivery_id: int, principal: Principal) -> DeadOnArrival:
    """Laptops of the delivery whose latest hardware report fails the site's policy:
    the list a logistics team sends back to the vendor.

    :raises DeliveryNotFound: unknown or another company's.
    """
    inventory.get_delivery(session, delivery_id, principal)
    models = {m.id: m.model for m in inventory_repo.list_hardware_models(session)}
    lines: list[DoaLine] = []
    for device, report in repository.dead_on_arrival(session, delivery_id):
        assert device.id is not None
        lines.append(
            DoaLine(
                device_id=device.id,
                serial=device.serial,
                asset_tag=device.asset_tag,
                model=device.observed_model or models.get(device.hardware_model_id),
                state=str(device.state),
                reasons=[str(f.get("message", "")) for f in report.findings],
                collected_at=report.collected_at,
                quarantined_at=_policy_quarantined_at(session, device.id),
            )
        )
    return DeadOnArrival(delivery_id=delivery_id, count=len(lines), lines=lines)


def _policy_quarantined_at(session: Session, device_id: int) -> datetime | None:
    at = None
    for e in inventory_repo.device_events(session, device_id):
        if e.event == Event.QUARANTINE.value and (e.details or {}).get(POLICY_MARK):
            at = e.at
    return at
