"""Inventory API shapes. Every string and list has a limit."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.values import Int64, ModelName, VendorName
from inventory.formats import IntakeFormat
from inventory.states import DeviceState, Event

Code = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ClientCreate(BaseModel):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)


class ClientRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str


class SiteCreate(BaseModel):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    max_imaging_streams: int = Field(default=8, ge=1, le=1000)
    max_bytes_per_second: Int64 | None = Field(default=None, ge=1)


class SiteRead(SiteCreate):
    model_config = ConfigDict(from_attributes=True)
    id: int


class BenchCreate(BaseModel):
    site_code: str = Code
    code: str = Code
    slots: int = Field(default=16, ge=1, le=512)


class BenchRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    site_id: int
    code: str
    slots: int


class HardwareModelCreate(BaseModel):
    vendor: VendorName
    model: ModelName
    disk_rule: str = Field(default="largest", min_length=1, max_length=64)


class HardwareModelRead(HardwareModelCreate):
    model_config = ConfigDict(from_attributes=True)
    id: int


class DeliveryCreate(BaseModel):
    client_code: str | None = Field(
        default=None, max_length=32, description="Required for staff; implied for logistics."
    )
    vendor: VendorName
    order_reference: str = Field(min_length=1, max_length=64)
    carrier: str | None = Field(default=None, max_length=64)
    tracking: str | None = Field(default=None, max_length=128)
    expected_date: date | None = None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    client_id: int
    vendor: str
    order_reference: str
    carrier: str | None
    tracking: str | None
    expected_date: date | None
    created_at: datetime


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    serial: str
    vendor: str
    hardware_model_id: int | None
    smbios_uuid: str | None
    mac_addresses: list[str]
    asset_tag: str | None
    client_id: int | None
    delivery_id: int | None
    order_reference: str | None
    carton_id: str | None
    bench_id: int | None
    slot: int | None
    observed_model: str | None
    state: DeviceState
    target_state: DeviceState | None
    state_changed_at: datetime
    quarantine_reason: str | None
    created_at: datetime
    updated_at: datetime


class DeviceEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    from_state: str | None
    to_state: str
    event: str
    actor: str
    at: datetime
    reason: str | None
    details: dict[str, Any]


class DeviceDetail(DeviceRead):
    allowed_events: list[Event]
    history: list[DeviceEventRead]


class TransitionRequest(BaseModel):
    event: Event
    reason: str | None = Field(default=None, max_length=1000)


class AttachRequest(BaseModel):
    delivery_id: Int64


class ScanRequest(BaseModel):
    code: str = Field(
        min_length=1,
        max_length=128,
        description="Serial number or asset tag, as scanned (a scanner's prefix and "
        "suffix allowed); see docs/intake.md for what a scannable code is.",
    )
    bench_id: Int64
    slot: Int64 | None = Field(default=None, ge=1, description="Free slot chosen when omitted.")
    damaged: bool = False
    reason: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=128, description="Model as seen.")


class ScanOutcome(StrEnum):
    RECEIVED = "received"
    """Expected and now received at the bench."""
    UNEXPECTED = "unexpected"
    """No delivery expected this serial: kept as UNEXPECTED for a technician to resolve."""
    QUARANTINED = "quarantined"
    """Set aside as damaged."""
    ALREADY = "already"
    """Scanned before: nothing changed."""


class ScanResult(BaseModel):
    outcome: ScanOutcome
    attention: bool = Field(description="True when a technician should look (bell).")
    message: str
    device: DeviceRead


class ReconciliationLine(BaseModel):
    serial: str
    vendor: str
    expected_model: str | None
    observed_model: str | None
    state: DeviceState
    status: Literal["received", "missing", "unexpected", "wrong_model"] = Field(
        description="received (wrong_model when the bench saw another model), missing "
        "(still expected) or unexpected (scanned, listed by no delivery)"
    )


class Reconciliation(BaseModel):
    delivery_id: int
    expected: int
    received: int
    missing: int
    unexpected: int
    wrong_model: int
    lines: list[ReconciliationLine]


class IntakeError(BaseModel):
    line: int | None = Field(description="1-based physical line of the file (header is 1).")
    column: str | None = Field(description="Column name as written in the file's header.")
    message: str


class ImportSummary(BaseModel):
    delivery_id: int
    format: IntakeFormat
    dry_run: bool
    rows: int = Field(description="Data rows read (blank lines skipped).")
    rejected: bool = Field(
        default=False,
        description="Dry run only: the file has errors and would be refused whole; the "
        "counts below are then 0 (nothing would be written).",
    )
    created: int = Field(description="New EXPECTED devices.")
    updated: int = Field(description="Same device already known; details filled in or changed.")
    unchanged: int = Field(description="Same device already known with the same details.")
    attached: int = Field(description="UNEXPECTED devices (scanned first) now attached.")
    new_hardware_models: list[str] = Field(description="'vendor model' entries created.")
    errors: list[IntakeError] = Field(
        description="Empty unless dry_run: a real import with errors is rejected with 422."
    )
