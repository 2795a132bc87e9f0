"""Logistics tables: teleworkers, shipments, the change outbox, webhooks.

Personal data lives in one table only (``teleworker``), so that the retention purge has
one place to erase and every other row (shipments, device events, outbox) can be kept as
anonymised history. Nothing else copies a name, e-mail, phone or address.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class Language(StrEnum):
    """The languages welcome sheets and help-desk articles are written in."""

    FR = "fr"
    EN = "en"


class Teleworker(SQLModel, table=True):
    """The person a laptop is shipped to. Belongs to one client company.

    Erased (fields replaced by anonymised values, ``erased_at`` set) once every one of
    their shipments is closed for longer than the retention period.
    """

    __tablename__ = "teleworker"
    __table_args__ = (UniqueConstraint("client_id", "email", name="uq_teleworker_client_email"),)
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    name: str = Field(max_length=200)
    # Lower-cased; unique per client so a bulk file can name the same person twice.
    email: str = Field(max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    address: str = Field(max_length=500)
    # The welcome sheet's language (not erased by the purge: it identifies nobody).
    language: str = Field(default=Language.FR.value, sa_type=String(8))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ShipmentStatus(StrEnum):
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    RETURNED = "returned"


class Shipment(SQLModel, table=True):
    """One laptop handed to a carrier for one teleworker; kept after the purge."""

    __tablename__ = "shipment"
    __table_args__ = (
        Index("ix_shipment_device", "device_id"),
        Index("ix_shipment_tracking", "tracking"),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    teleworker_id: int = Field(foreign_key="teleworker.id", index=True, ondelete="RESTRICT")
    carrier: str = Field(max_length=64)
    tracking: str = Field(max_length=128)
    status: ShipmentStatus = Field(default=ShipmentStatus.DISPATCHED, sa_type=String(16))
    dispatched_at: datetime = _ts()
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    returned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    return_reason: str | None = Field(default=None, max_length=1000)


class OutboxEntry(SQLModel, table=True):
    """One row per ``device_event``, written by a database trigger in the same
    transaction as the event (see the ``logistics_0001`` migration).

    ``seq`` is handed out after commit, in commit order, by ``logistics.feed.sequence``;
    readers page by ``seq``, which (unlike the event id on PostgreSQL) never lets a
    later-committed row appear behind a cursor that already passed it.
    """

    __tablename__ = "logistics_outbox"
    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="device_event.id", unique=True, ondelete="RESTRICT")
    client_id: int | None = Field(default=None, index=True)
    seq: int | None = Field(default=None, unique=True, index=True)


class Counter(SQLModel, table=True):
    """Named monotonic counters, locked ``FOR UPDATE`` by whoever advances them."""

    __tablename__ = "logistics_counter"
    name: str = Field(primary_key=True, max_length=32)
    value: int = Field(default=0)


class WebhookSubscription(SQLModel, table=True):
    """A client's endpoint. The secret is stored encrypted and never returned."""

    __tablename__ = "webhook_subscription"
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    active: bool = Field(default=True)
    description: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Gave up after the maximum number of attempts; ``replay`` puts it back."""


class WebhookDelivery(SQLModel, table=True):
    """The delivery state of one outbox entry to one subscription."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_delivery_sub_event"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="webhook_subscription.id", ondelete="RESTRICT")
    event_id: int = Field(foreign_key="device_event.id", ondelete="RESTRICT")
    seq: int
    # The Standard Webhooks ``webhook-id``: the same on every attempt and replay.
    message_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    # The body, frozen at fan-out: every retry and replay sends the same bytes.
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=String(16))
    attempts: int = Field(default=0)
    next_attempt_at: datetime = _ts()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _ts()


class WebhookAttempt(SQLModel, table=True):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempt"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id", index=True, ondelete="RESTRICT")
    attempt: int
    at: datetime = _ts()
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    response_excerpt: str | None = Field(default=None, max_length=500)
    duration_ms: int = Field(default=0)
