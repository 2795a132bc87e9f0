"""Logistics API shapes. Every string and list has a limit.

Personal data (``TeleworkerRead``) appears only in shapes that the router fills for
logistics and admin callers; for technicians and DSI it is ``null``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.kit import Page
from core.values import Int64
from inventory.states import DeviceState
from logistics.models import Language

_EMAIL_MAX = 254


def _email(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    # Deliberately loose (RFC 5322 is not a regex); says nothing back about the value.
    if not local or "." not in domain or " " in value or domain.startswith("."):
        raise ValueError("not a valid e-mail address")
    return value


Email = Annotated[str, Field(min_length=3, max_length=_EMAIL_MAX), AfterValidator(_email)]


class TeleworkerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: Email
    phone: str | None = Field(default=None, max_length=40)
    address: str = Field(min_length=1, max_length=500, description="Full delivery address.")
    language: Language = Field(
        default=Language.FR, description="Language of the welcome sheet in the box."
    )


class TeleworkerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    client_id: int
    name: str
    email: str
    phone: str | None
    address: str
    language: str
    erased_at: datetime | None


class DispatchRequest(BaseModel):
    serial: str = Field(min_length=1, max_length=64, description="Serial or asset tag.")
    vendor: str | None = Field(
        default=None, max_length=64, description="Only when the serial exists for two vendors."
    )
    teleworker: TeleworkerIn | None = Field(
        default=None, description="Who receives it (created or updated by e-mail)."
    )
    teleworker_id: Int64 | None = Field(default=None, description="Or an existing teleworker.")
    carrier: str = Field(min_length=1, max_length=64)
    tracking: str = Field(min_length=1, max_length=128)


class ReasonRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class ReturnRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class ShipmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: int
    client_id: int
    teleworker_id: int
    carrier: str
    tracking: str
    status: str
    dispatched_at: datetime
    delivered_at: datetime | None
    returned_at: datetime | None
    return_reason: str | None


class DeviceStatus(BaseModel):
    """Where a laptop is. ``teleworker`` is null unless the caller is logistics or admin."""

    device_id: int
    serial: str
    vendor: str
    asset_tag: str | None
    client_id: int | None
    delivery_id: int | None
    order_reference: str | None
    state: DeviceState
    state_changed_at: datetime
    shipment: ShipmentRead | None
    teleworker: TeleworkerRead | None


class StatusPage(Page[DeviceStatus]):
    pass


class StateCounts(BaseModel):
    client_id: int | None = None
    client_code: str | None = None
    delivery_id: int | None = None
    total: int
    counts: dict[str, int] = Field(description="Devices per state (states with none omitted).")


class ChangeRead(BaseModel):
    seq: int = Field(description="Position in the feed; pass the last one as `cursor`.")
    event_id: int
    type: str = Field(description="`device.<new state>`, as in webhooks.")
    device_id: int
    serial: str
    vendor: str
    asset_tag: str | None
    client_id: int | None
    delivery_id: int | None
    order_reference: str | None
    event: str
    from_state: str | None
    to_state: str
    at: datetime
    reason: str | None


class ChangePage(BaseModel):
    items: list[ChangeRead]
    next_cursor: int = Field(description="Poll again with this; equal to `cursor` if empty.")


class ImportLine(BaseModel):
    line: int | None
    column: str | None
    message: str


_REJECTED = Field(
    default=False,
    description="Dry run only: the file has errors and would be refused whole; the "
    "counts are then 0.",
)


class DispatchImportSummary(BaseModel):
    dry_run: bool
    rows: int
    rejected: bool = _REJECTED
    dispatched: int = Field(description="Laptops dispatched (0 on a dry run).")
    would_dispatch: int = Field(
        default=0, description="Dry run: laptops a real import would dispatch (0 if rejected)."
    )
    errors: list[ImportLine] = Field(description="Empty unless dry_run (else 422).")


class CarrierImportSummary(BaseModel):
    dry_run: bool
    rows: int
    rejected: bool = _REJECTED
    delivered: int
    returned: int
    unchanged: int = Field(description="Already in the reported state.")
    errors: list[ImportLine]


class PurgeSummary(BaseModel):
    erased: int
    retention_days: int


class TeleworkerSearch(BaseModel):
    """In a POST body, so that e-mail addresses never land in access logs."""

    email: Email


# Webhooks.
class SubscriptionCreate(BaseModel):
    client_code: str | None = Field(
        default=None, max_length=32, description="Required for admins; implied for logistics."
    )
    url: str = Field(min_length=8, max_length=2000)
    event_types: list[str] = Field(
        default_factory=lambda: ["*"],
        max_length=32,
        description="`device.<state>` types, or `*` for every event.",
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="`whsec_<base64>`; generated (and returned once) when omitted.",
    )
    description: str | None = Field(default=None, max_length=200)


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    client_id: int
    url: str
    event_types: list[str]
    active: bool
    description: str | None
    created_at: datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str | None = Field(
        description="The generated secret, shown this once; null when you supplied one."
    )


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    duration_ms: int


class DeliveryLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    subscription_id: int
    event_id: int
    seq: int
    message_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[AttemptRead] = Field(default_factory=list)


class DeliveryLogPage(Page[DeliveryLogRead]):
    pass


class ReplayRequest(BaseModel):
    since_seq: Int64 | None = Field(default=None, ge=0, description="Re-send every event after.")
    delivery_ids: list[Int64] | None = Field(default=None, max_length=1000)
    failed_only: bool = Field(default=False, description="Only deliveries that gave up.")


class ReplaySummary(BaseModel):
    requeued: int
    created: int


class TestResult(BaseModel):
    __test__ = False  # not a pytest class
    delivered: bool
    status_code: int | None
    error: str | None
    message_id: str
