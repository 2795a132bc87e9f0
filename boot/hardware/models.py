"""Hardware tables: what a laptop's PE reported at each boot, and each site's health
policy.

A report keeps the whole (bounded) inventory as JSON for the API, plus the few columns
the exports and the policy read, so a delivery's CSV is one query.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


class DiskHealth(StrEnum):
    OK = "ok"
    WARNING = "warning"
    """Worn or with reallocated sectors, but the drive still says it passes."""
    FAILING = "failing"
    """SMART overall assessment failed, or an NVMe critical warning is raised."""
    UNKNOWN = "unknown"
    """No SMART data (tool missing, USB bridge, virtual disk)."""


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105  (a verdict, not a password)
    FAIL = "fail"


class TpmRequirement(StrEnum):
    NEVER = "never"
    WINDOWS = "windows"
    """TPM 2.0 required when the laptop's image is a Windows image (Windows 11)."""
    ALWAYS = "always"


class HardwareReport(SQLModel, table=True):
    """One boot's inventory of one laptop; the latest row is the device's hardware."""

    __tablename__ = "boot_hardware_report"
    __table_args__ = (Index("ix_boot_hardware_report_device", "device_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", ondelete="RESTRICT")
    boot_id: int | None = Field(default=None, foreign_key="boot_pe_boot.id", ondelete="RESTRICT")
    collected_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    cpu_model: str | None = Field(default=None, max_length=200)
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    ram_bytes: int | None = Field(default=None, sa_type=BigInteger)
    disk_count: int = 0
    disk_bytes: int | None = Field(default=None, sa_type=BigInteger)
    disk_health: DiskHealth = Field(default=DiskHealth.UNKNOWN, sa_type=String(16))
    disk_wear_pct: int | None = None
    battery_health_pct: float | None = None
    battery_cycles: int | None = None
    tpm_version: str | None = Field(default=None, max_length=8)
    secure_boot: bool | None = None
    boot_mode: str | None = Field(default=None, max_length=8)
    firmware_vendor: str | None = Field(default=None, max_length=64)
    firmware_version: str | None = Field(default=None, max_length=64)
    firmware_date: str | None = Field(default=None, max_length=32)
    collect_seconds: float | None = None
    inventory: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    findings: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    verdict: Verdict = Field(default=Verdict.PASS, sa_type=String(8))


class HealthPolicy(SQLModel, table=True):
    """A site's gate before any byte is written. ``None`` thresholds are not checked.
    A site without a row gets ``DEFAULT_POLICY`` (a failing disk only)."""

    __tablename__ = "boot_health_policy"
    site_id: int = Field(primary_key=True, foreign_key="site.id", ondelete="RESTRICT")
    min_battery_health_pct: int | None = None
    max_battery_cycles: int | None = None
    fail_on_failing_disk: bool = True
    max_disk_wear_pct: int | None = None
    require_tpm2: TpmRequirement = Field(default=TpmRequirement.NEVER, sa_type=String(8))
    require_secure_boot: bool = False
    min_ram_gib: int | None = None
    min_disk_gib: int | None = None
    updated_by: str = Field(default="default", max_length=128)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
