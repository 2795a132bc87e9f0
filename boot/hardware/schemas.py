"""Hardware API shapes: the inventory a PE reports (validated at the edge, every string
and list bounded), the stored reports as read back, and a site's health policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from boot.hardware.models import DiskHealth, TpmRequirement, Verdict
from core.values import INT64_MAX

Short = Field(default=None, max_length=128)


class CpuInfo(BaseModel):
    model: str | None = Short
    cores: int | None = Field(default=None, ge=0, le=4096)
    threads: int | None = Field(default=None, ge=0, le=8192)
    arch: str | None = Field(default=None, max_length=32)


class MemoryInfo(BaseModel):
    installed_bytes: int | None = Field(
        default=None, ge=0, le=2**50, description="Sum of the DIMMs (dmidecode type 17)."
    )
    usable_bytes: int | None = Field(
        default=None, ge=0, le=2**50, description="MemTotal as the PE's kernel sees it."
    )


class DiskInfo(BaseModel):
    name: str = Field(min_length=1, max_length=32, examples=["nvme0n1"])
    model: str | None = Short
    serial: str | None = Field(default=None, max_length=64)
    size_bytes: int = Field(ge=0, le=2**60)
    transport: str | None = Field(default=None, max_length=16, examples=["nvme", "sata", "usb"])
    rotational: bool | None = None
    removable: bool = False
    health: DiskHealth = DiskHealth.UNKNOWN
    smart_passed: bool | None = None
    wear_pct: int | None = Field(default=None, ge=0, le=255, description="NVMe percentage used.")
    available_spare_pct: int | None = Field(default=None, ge=0, le=255)
    media_errors: int | None = Field(default=None, ge=0, le=INT64_MAX)
    reallocated_sectors: int | None = Field(default=None, ge=0, le=INT64_MAX)
    pending_sectors: int | None = Field(default=None, ge=0, le=INT64_MAX)
    power_on_hours: int | None = Field(default=None, ge=0, le=INT64_MAX)
    temperature_c: int | None = Field(default=None, ge=-100, le=300)
    source: str | None = Field(default=None, max_length=16, examples=["smartctl", "nvme"])
    note: str | None = Field(default=None, max_length=200)


class BatteryInfo(BaseModel):
    name: str = Field(min_length=1, max_length=32, examples=["BAT0"])
    manufacturer: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=64)
    technology: str | None = Field(default=None, max_length=32)
    design_capacity: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="µWh or µAh, as sysfs."
    )
    full_capacity: int | None = Field(default=None, ge=0, le=INT64_MAX)
    health_pct: float | None = Field(default=None, ge=0, le=200)
    cycles: int | None = Field(default=None, ge=0, le=INT64_MAX)
    status: str | None = Field(default=None, max_length=32)


class TpmInfo(BaseModel):
    present: bool = False
    version: Literal["1.2", "2.0"] | None = None


class FirmwareInfo(BaseModel):
    vendor: str | None = Field(default=None, max_length=64)
    version: str | None = Field(default=None, max_length=64)
    date: str | None = Field(default=None, max_length=32)
    boot_mode: Literal["uefi", "bios"] | None = None
    secure_boot: bool | None = None


class HardwareInventory(BaseModel):
    """What the PE's agent read. Unknown values are null, never guessed."""

    cpu: CpuInfo = Field(default_factory=CpuInfo)
    memory: MemoryInfo = Field(default_factory=MemoryInfo)
    disks: list[DiskInfo] = Field(default_factory=list, max_length=32)
    batteries: list[BatteryInfo] = Field(default_factory=list, max_length=4)
    tpm: TpmInfo = Field(default_factory=TpmInfo)
    firmware: FirmwareInfo = Field(default_factory=FirmwareInfo)
    collect_seconds: float | None = Field(default=None, ge=0, le=3600)
    warnings: list[str] = Field(default_factory=list, max_length=32)


class Finding(BaseModel):
    code: str = Field(examples=["battery_worn"])
    message: str = Field(examples=["battery at 62% of its design capacity (policy: ≥ 80%)"])


class HardwareReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: int
    boot_id: int | None
    collected_at: datetime
    cpu_model: str | None
    cpu_cores: int | None
    cpu_threads: int | None
    ram_bytes: int | None
    disk_count: int
    disk_bytes: int | None
    disk_health: DiskHealth
    disk_wear_pct: int | None
    battery_health_pct: float | None
    battery_cycles: int | None
    tpm_version: str | None
    secure_boot: bool | None
    boot_mode: str | None
    firmware_vendor: str | None
    firmware_version: str | None
    firmware_date: str | None
    collect_seconds: float | None
    inventory: dict[str, Any]
    findings: list[Finding]
    verdict: Verdict


class DeviceHardware(BaseModel):
    device_id: int
    serial: str
    latest: HardwareReportRead | None = Field(description="Null until a PE has registered.")
    history: list[HardwareReportRead] = Field(description="Older reports, newest first.")


class PolicyFields(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "min_battery_health_pct": 80,
                    "max_battery_cycles": 800,
                    "fail_on_failing_disk": True,
                    "max_disk_wear_pct": 80,
                    "require_tpm2": "windows",
                    "require_secure_boot": True,
                    "min_ram_gib": 8,
                    "min_disk_gib": 238,
                }
            ]
        }
    )
    min_battery_health_pct: int | None = Field(default=None, ge=1, le=100)
    max_battery_cycles: int | None = Field(default=None, ge=1, le=100_000)
    fail_on_failing_disk: bool = True
    max_disk_wear_pct: int | None = Field(default=None, ge=1, le=255)
    require_tpm2: TpmRequirement = TpmRequirement.NEVER
    require_secure_boot: bool = False
    min_ram_gib: int | None = Field(default=None, ge=1, le=65_536)
    min_disk_gib: int | None = Field(default=None, ge=1, le=1_000_000)


class PolicyRead(PolicyFields):
    model_config = ConfigDict(from_attributes=True)
    site_code: str
    updated_by: str
    updated_at: datetime | None


class DoaLine(BaseModel):
    device_id: int
    serial: str
    asset_tag: str | None
    model: str | None
    state: str
    reasons: list[str]
    collected_at: datetime
    quarantined_at: datetime | None


class DeadOnArrival(BaseModel):
    delivery_id: int
    count: int
    lines: list[DoaLine]
