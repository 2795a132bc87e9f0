"""All registration SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from boot.registration.models import (
    BootSiteSettings,
    BootStatus,
    DeliverySite,
    EnrollmentCredential,
    PeBoot,
    RegistrationAttempt,
)
from inventory.models import Device


# Credentials.
def credential_by_hash(session: Session, secret_hash: str) -> EnrollmentCredential | None:
    return session.exec(
        select(EnrollmentCredential).where(EnrollmentCredential.secret_hash == secret_hash)
    ).first()


def get_credential(session: Session, credential_id: int) -> EnrollmentCredential | None:
    return session.get(EnrollmentCredential, credential_id)


def list_credentials(
    session: Session, *, site_id: int | None = None, include_revoked: bool = True
) -> Sequence[EnrollmentCredential]:
    q = select(EnrollmentCredential).order_by(col(EnrollmentCredential.id))
    if site_id is not None:
        q = q.where(EnrollmentCredential.site_id == site_id)
    if not include_revoked:
        q = q.where(col(EnrollmentCredential.revoked_at).is_(None))
    return session.exec(q).all()


def netboot_credentials(session: Session, site_id: int) -> Sequence[EnrollmentCredential]:
    """Live credentials of a site that firmware may be handed, newest first."""
    return session.exec(
        select(EnrollmentCredential)
        .where(
            EnrollmentCredential.site_id == site_id,
            col(EnrollmentCredential.revoked_at).is_(None),
            col(EnrollmentCredential.secret_ciphertext).is_not(None),
        )
        .order_by(col(EnrollmentCredential.id).desc())
    ).all()


# Settings.
def site_settings(session: Session, site_id: int) -> BootSiteSettings | None:
    return session.get(BootSiteSettings, site_id)


def delivery_site(session: Session, delivery_id: int) -> DeliverySite | None:
    return session.get(DeliverySite, delivery_id)


# Devices, as registration matches them.
def devices_by_serial(session: Session, serial: str) -> Sequence[Device]:
    """Devices whose serial is exactly ``serial`` (normalised), locked: the same serial
    may repeat across vendors."""
    return session.exec(
        select(Device).where(Device.serial == serial).order_by(col(Device.id)).with_for_update()
    ).all()


# Boots.
def boots_of_device(
    session: Session, device_id: int, *, statuses: Sequence[BootStatus]
) -> Sequence[PeBoot]:
    return session.exec(
        select(PeBoot)
        .where(PeBoot.device_id == device_id, col(PeBoot.status).in_(list(statuses)))
        .order_by(col(PeBoot.id).desc())
        .with_for_update()
    ).all()


def current_registered(session: Session, device_id: int) -> PeBoot | None:
    return session.exec(
        select(PeBoot)
        .where(PeBoot.device_id == device_id, PeBoot.status == BootStatus.REGISTERED)
        .order_by(col(PeBoot.id).desc())
    ).first()


def latest_given_go(session: Session, device_id: int) -> PeBoot | None:
    """The laptop's newest boot that was ever answered go (registered, or ended since)."""
    return session.exec(
        select(PeBoot)
        .where(PeBoot.device_id == device_id, col(PeBoot.registered_at).is_not(None))
        .order_by(col(PeBoot.id).desc())
    ).first()


def boot_by_token_hash(session: Session, token_hash: str) -> PeBoot | None:
    return session.exec(select(PeBoot).where(PeBoot.token_hash == token_hash)).first()


def get_boot(session: Session, boot_id: int, *, for_update: bool = False) -> PeBoot | None:
    q = select(PeBoot).where(PeBoot.id == boot_id)
    if for_update:
        q = q.with_for_update().execution_options(populate_existing=True)
    return session.exec(q).first()


def list_boots(
    session: Session,
    *,
    site_id: int | None,
    statuses: Sequence[BootStatus],
    cursor: int | None,
    limit: int,
) -> Sequence[PeBoot]:
    q = (
        select(PeBoot)
        .where(col(PeBoot.status).in_(list(statuses)))
        .order_by(col(PeBoot.id).desc())
        .limit(limit)
    )
    if site_id is not None:
        q = q.where(PeBoot.site_id == site_id)
    if cursor is not None:
        q = q.where(col(PeBoot.id) < cursor)
    return session.exec(q).all()


# Attempts.
def recent_attempt(
    session: Session, *, credential_id: int, serial: str, reason: str, since: datetime
) -> RegistrationAttempt | None:
    return session.exec(
        select(RegistrationAttempt)
        .where(
            RegistrationAttempt.credential_id == credential_id,
            RegistrationAttempt.serial == serial,
            RegistrationAttempt.reason == reason,
            col(RegistrationAttempt.last_at) >= since,
        )
        .order_by(col(RegistrationAttempt.id).desc())
        .with_for_update()
    ).first()


def list_attempts(
    session: Session,
    *,
    site_id: int | None,
    since: datetime | None,
    cursor: int | None,
    limit: int,
) -> Sequence[RegistrationAttempt]:
    q = select(RegistrationAttempt).order_by(col(RegistrationAttempt.id).desc()).limit(limit)
    if site_id is not None:
        q = q.where(RegistrationAttempt.site_id == site_id)
    if since is not None:
        q = q.where(col(RegistrationAttempt.at) >= since)
    if cursor is not None:
        q = q.where(col(RegistrationAttempt.id) < cursor)
    return session.exec(q).all()
