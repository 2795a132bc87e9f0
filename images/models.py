"""Image catalogue and client configuration tables.

Sizes are ``BIGINT``: master images are tens of GB, past a 32-bit integer. Secrets are
never stored in clear: ``secrets_ciphertext`` and ``DeviceSecret.ciphertext`` hold Fernet
tokens (see ``core.vault``); table models are not API shapes (``schemas.py``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class OsFamily(StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"


class ImageFormat(StrEnum):
    RAW = "raw"
    """A raw disk image, written to the target disk byte for byte."""
    RAW_ZSTD = "raw+zstd"
    """A raw disk image compressed with zstd; decompressed while it is streamed."""
    FILE = "file"
    """An opaque file (e.g. an application installer a client configuration names);
    never resolved as a disk image."""

    @property
    def is_disk(self) -> bool:
        return self is not ImageFormat.FILE


class ImageStatus(StrEnum):
    UPLOADING = "uploading"
    """Declared; bytes are arriving (or not yet)."""
    VERIFYING = "verifying"
    """Every byte arrived; size and hashes are being checked before publication."""
    AVAILABLE = "available"
    """Published: immutable, resolvable for new runs."""
    RETIRED = "retired"
    """Never resolves for a new run; its storage is reclaimed by ``images gc`` once no
    run needs it."""


class Image(SQLModel, table=True):
    """One version of one client's master image (or installer file)."""

    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("client_id", "name", "version", name="uq_image_client_name_version"),
        Index("ix_image_client_status", "client_id", "status"),
        Index("ix_image_stored_sha256", "stored_sha256"),
    )
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    name: str = Field(max_length=100)
    version: str = Field(max_length=64)
    os_family: OsFamily = Field(sa_type=String(16))
    format: ImageFormat = Field(sa_type=String(16))
    # The raw disk bytes (what ends up on the laptop's disk and is read back).
    raw_size: int = Field(sa_type=BigInteger)
    raw_sha256: str = Field(max_length=64)
    # The stored file (equal to the raw bytes unless compressed): its content address.
    stored_size: int = Field(sa_type=BigInteger)
    stored_sha256: str = Field(max_length=64)
    status: ImageStatus = Field(default=ImageStatus.UPLOADING, sa_type=String(16))
    uploaded_by: str = Field(max_length=128)
    notes: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retired_by: str | None = Field(default=None, max_length=128)
    # Set by ``images gc`` when the stored file of a retired version was reclaimed.
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The resumable (tus) upload in progress, if any: an unguessable id, the offset the
    # server holds durably, and when it last moved (abandoned uploads expire).
    upload_id: str | None = Field(default=None, max_length=64, unique=True)
    upload_offset: int = Field(default=0, sa_type=BigInteger)
    upload_touched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ImageHardwareModel(SQLModel, table=True):
    """Which hardware models an image is for; none at all means every model."""

    __tablename__ = "image_hardware_model"
    image_id: int = Field(foreign_key="image.id", primary_key=True, ondelete="CASCADE")
    hardware_model_id: int = Field(
        foreign_key="hardware_model.id", primary_key=True, ondelete="RESTRICT"
    )


class ClientConfig(SQLModel, table=True):
    """One version of a client's configuration; exactly one version per client is
    active (the one new runs use). ``body`` is the validated ``ClientConfigBody``
    without its secrets; they are in ``secrets_ciphertext``, encrypted."""

    __tablename__ = "client_config"
    __table_args__ = (
        UniqueConstraint("client_id", "version", name="uq_client_config_version"),
        Index("ix_client_config_active", "client_id", "active"),
    )
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    version: int
    active: bool = False
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secret_names: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secrets_ciphertext: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_by: str = Field(max_length=128)
    created_at: datetime = _ts()


class DeviceSecret(SQLModel, table=True):
    """A per-device secret (e.g. a WireGuard private key), generated or imported;
    ``public`` holds its non-secret half when there is one (a WireGuard public key the
    DSI registers on its VPN server)."""

    __tablename__ = "device_secret"
    __table_args__ = (UniqueConstraint("device_id", "name", name="uq_device_secret_name"),)
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    device_id: int = Field(foreign_key="device.id", ondelete="RESTRICT")
    name: str = Field(max_length=64)
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    public: str | None = Field(default=None, max_length=512)
    origin: str = Field(default="generated", max_length=16)
    created_at: datetime = _ts()
