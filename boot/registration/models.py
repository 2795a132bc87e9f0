"""Registration tables: bench enrollment credentials, the site's registration settings,
where a delivery is staged, each PE boot of a laptop, and refused attempts.

Secrets are stored as SHA-256 hashes (256-bit random values: a slow hash would protect
nothing more). The one exception is ``EnrollmentCredential.secret_ciphertext``: a bench
credential that network boot must hand to firmware in the iPXE script is kept encrypted
at rest with the installation's key (``core.vault``), because the server has to print it
again on every boot.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


def _opt_ts() -> Any:
    return Field(default=None, sa_type=UTCDateTime)


class EnrollmentCredential(SQLModel, table=True):
    """What a bench's PEs present to register. Not an API token: it opens
    ``POST /boot/register`` and nothing else, for laptops of one site."""

    __tablename__ = "boot_enrollment_credential"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    # First characters, shown in listings so a human can tell credentials apart.
    prefix: str = Field(max_length=16)
    secret_hash: str = Field(max_length=64, unique=True, index=True)
    secret_ciphertext: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    site_id: int = Field(foreign_key="site.id", ondelete="RESTRICT", index=True)
    bench_id: int | None = Field(default=None, foreign_key="bench.id", ondelete="RESTRICT")
    client_id: int | None = Field(
        default=None, foreign_key="client_company.id", ondelete="RESTRICT"
    )
    created_by: str = Field(max_length=128)
    created_at: datetime = _ts()
    expires_at: datetime | None = _opt_ts()
    revoked_at: datetime | None = _opt_ts()
    last_used_at: datetime | None = _opt_ts()


class BootSiteSettings(SQLModel, table=True):
    """How a site's PEs register. A site without a row gets the defaults below."""

    __tablename__ = "boot_site_settings"
    site_id: int = Field(primary_key=True, foreign_key="site.id", ondelete="RESTRICT")
    registration_is_scan_in: bool = False
    # The private key the site's worker logs into PEs with (as ``SlotEndpoint.key_path``),
    # and the public lines PEs are told to trust (read from ``<key_path>.pub`` when set,
    # so the API process need not see the worker's files afterwards).
    worker_key_path: str | None = Field(default=None, max_length=1000)
    worker_public_keys: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    heartbeat_seconds: int = 15
    silence_seconds: int = 90
    allow_address_mismatch: bool = False
    updated_at: datetime = _ts()


class DeliverySite(SQLModel, table=True):
    """Where a delivery is staged. A delivery without a row may be received at any site
    (as a technician's scan-in allows); with one, PEs of other sites are refused."""

    __tablename__ = "boot_delivery_site"
    delivery_id: int = Field(primary_key=True, foreign_key="delivery.id", ondelete="RESTRICT")
    site_id: int = Field(foreign_key="site.id", ondelete="RESTRICT")
    assigned_by: str = Field(max_length=128)
    assigned_at: datetime = _ts()


class BootStatus(StrEnum):
    WAITING = "waiting"
    """Registered its identity but may not go yet (booted before scan-in, unexpected…)."""
    REGISTERED = "registered"
    """Matched; holds a per-boot agent token; the worker may use it."""
    ENDED = "ended"
    """Superseded by a newer boot of the same laptop, or ended by the pipeline."""


class PeBoot(SQLModel, table=True):
    """One boot of one laptop's PE, identified by its freshly generated host key.

    The address and host key are trusted because the registration was authenticated by
    a bench credential, not because someone answered on the network first.
    """

    __tablename__ = "boot_pe_boot"
    __table_args__ = (
        Index("ix_boot_pe_boot_device_status", "device_id", "status"),
        Index("ix_boot_pe_boot_site_status", "site_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", ondelete="RESTRICT")
    serial: str = Field(max_length=64)
    site_id: int = Field(foreign_key="site.id", ondelete="RESTRICT")
    bench_id: int | None = Field(default=None, foreign_key="bench.id", ondelete="RESTRICT")
    credential_id: int = Field(foreign_key="boot_enrollment_credential.id", ondelete="RESTRICT")
    status: BootStatus = Field(default=BootStatus.WAITING, sa_type=String(16))
    wait_reason: str | None = Field(default=None, max_length=32)
    wait_message: str | None = Field(default=None, max_length=300)
    peer_address: str = Field(max_length=64)
    declared_address: str | None = Field(default=None, max_length=64)
    ssh_port: int = 22
    host_key: str = Field(max_length=2000)
    host_key_fingerprint: str = Field(max_length=64)
    smbios_uuid: str | None = Field(default=None, max_length=36)
    vendor: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=128)
    interfaces: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    pe_version: str | None = Field(default=None, max_length=64)
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    token_expires_at: datetime | None = _opt_ts()
    action: str = Field(default="none", max_length=16)
    ended_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()
    registered_at: datetime | None = _opt_ts()
    last_seen_at: datetime = _ts()
    ended_at: datetime | None = _opt_ts()


class RegistrationAttempt(SQLModel, table=True):
    """A registration that was refused (or quarantined): the supervisor's record of
    who tried what from where. Never holds a secret."""

    __tablename__ = "boot_registration_attempt"
    __table_args__ = (Index("ix_boot_registration_attempt_site_at", "site_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    last_at: datetime = _ts()
    count: int = 1
    credential_id: int | None = Field(
        default=None, foreign_key="boot_enrollment_credential.id", ondelete="RESTRICT"
    )
    site_id: int | None = Field(default=None, foreign_key="site.id", ondelete="RESTRICT")
    bench_id: int | None = Field(default=None, foreign_key="bench.id", ondelete="RESTRICT")
    device_id: int | None = Field(default=None, foreign_key="device.id", ondelete="RESTRICT")
    serial: str | None = Field(default=None, max_length=64)
    vendor: str | None = Field(default=None, max_length=64)
    smbios_uuid: str | None = Field(default=None, max_length=36)
    peer_address: str = Field(max_length=64)
    outcome: str = Field(max_length=16)
    reason: str = Field(max_length=32)
    detail: str = Field(max_length=500)
