"""All hardware SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from boot.hardware.models import HardwareReport, HealthPolicy, Verdict
from inventory.models import Device


def latest_report(session: Session, device_id: int) -> HardwareReport | None:
    return session.exec(
        select(HardwareReport)
        .where(HardwareReport.device_id == device_id)
        .order_by(col(HardwareReport.id).desc())
    ).first()


def reports_of_device(session: Session, device_id: int, *, limit: int) -> Sequence[HardwareReport]:
    return session.exec(
        select(HardwareReport)
        .where(HardwareReport.device_id == device_id)
        .order_by(col(HardwareReport.id).desc())
        .limit(limit)
    ).all()


def report_of_boot(session: Session, boot_id: int) -> HardwareReport | None:
    return session.exec(select(HardwareReport).where(HardwareReport.boot_id == boot_id)).first()


def policy(session: Session, site_id: int) -> HealthPolicy | None:
    return session.get(HealthPolicy, site_id)


def _latest_ids_of_delivery(delivery_id: int) -> object:
    return (
        select(func.max(HardwareReport.id))
        .join(Device, col(Device.id) == col(HardwareReport.device_id))
        .where(Device.delivery_id == delivery_id)
        .group_by(col(HardwareReport.device_id))
    )


def delivery_hardware(
    session: Session, delivery_id: int
) -> Sequence[tuple[Device, HardwareReport | None]]:
    """Every device of the delivery with its latest report (None before any boot)."""
    rows = session.exec(
        select(Device, HardwareReport)
        .outerjoin(
            HardwareReport,
            (col(HardwareReport.device_id) == col(Device.id))
            & col(HardwareReport.id).in_(_latest_ids_of_delivery(delivery_id)),  # type: ignore[arg-type]
        )
        .where(Device.delivery_id == delivery_id)
        .order_by(col(Device.id))
    ).all()
    return [(d, r) for d, r in rows]


def dead_on_arrival(session: Session, delivery_id: int) -> Sequence[tuple[Device, HardwareReport]]:
    """Devices of the delivery whose latest report failed the site's policy."""
    rows = session.exec(
        select(Device, HardwareReport)
        .join(HardwareReport, col(HardwareReport.device_id) == col(Device.id))
        .where(
            Device.delivery_id == delivery_id,
            col(HardwareReport.id).in_(_latest_ids_of_delivery(delivery_id)),  # type: ignore[arg-type]
            HardwareReport.verdict == Verdict.FAIL,
        )
        .order_by(col(Device.id))
    ).all()
    return [(d, r) for d, r in rows]
