"""Inventory tables: tenants, sites, benches, the hardware catalogue, deliveries, devices.

Table models are never used to validate input (SQLModel does not validate ``table=True``
models); API shapes live in ``schemas.py``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime
from inventory.states import SLOT_HOLDING, STATE_COLUMN_LENGTH, DeviceState

# The predicate of the one-laptop-per-slot index (same text on both backends; the
# migration inventory_0001 writes it out literally).
SLOT_HELD_WHERE = "state IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(SLOT_HOLDING)))


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class ClientCompany(SQLModel, table=True):
    """A tenant: one client company whose DSI and logistics see only their own data."""

    __tablename__ = "client_company"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=200)
    created_at: datetime = _ts()


class Site(SQLModel, table=True):
    """A staging centre location; imaging bandwidth is capped per site."""

    __tablename__ = "site"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=200)
    max_imaging_streams: int = Field(default=8)
    max_bytes_per_second: int | None = Field(default=None)


class Bench(SQLModel, table=True):
    """A staging bench with numbered slots (1..slots)."""

    __tablename__ = "bench"
    __table_args__ = (UniqueConstraint("site_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="site.id", index=True, ondelete="RESTRICT")
    code: str = Field(max_length=32)
    slots: int = Field(default=16)


class HardwareModel(SQLModel, table=True):
    """Catalogue entry, unique on (vendor, model) as NetBox's DeviceType."""

    __tablename__ = "hardware_model"
    __table_args__ = (UniqueConstraint("vendor", "model"),)
    id: int | None = Field(default=None, primary_key=True)
    vendor: str = Field(max_length=64)
    model: str = Field(max_length=128)
    # Which disk to image: "largest" (non-removable) or a device name such as "nvme0n1".
    disk_rule: str = Field(default="largest", max_length=64)


class Delivery(SQLModel, table=True):
    """A vendor shipment for one client, from its ship notice."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("client_id", "order_reference"),)
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    vendor: str = Field(max_length=64)
    order_reference: str = Field(max_length=64)
    carrier: str | None = Field(default=None, max_length=64)
    tracking: str | None = Field(default=None, max_length=128)
    expected_date: date | None = None
    created_at: datetime = _ts()


class Device(SQLModel, table=True):
    """One laptop. ``state`` is written only by ``inventory.lifecycle.apply``."""

    __tablename__ = "device"
    __table_args__ = (
        UniqueConstraint("vendor", "serial", name="uq_device_vendor_serial"),
        Index("ix_device_client_state", "client_id", "state"),
        Index("ix_device_delivery", "delivery_id"),
        # A bench's occupied slots, read under the bench lock by every scan-in.
        Index("ix_device_bench_slot", "bench_id", "slot"),
        # The dashboard's oldest stuck laptops: a state's laptops by when they got there.
        Index("ix_device_state_changed", "state", "state_changed_at"),
        # A slot holds at most one laptop, whatever the code above does.
        Index(
            "uq_device_bench_slot_held",
            "bench_id",
            "slot",
            unique=True,
            sqlite_where=text(SLOT_HELD_WHERE),
            postgresql_where=text(SLOT_HELD_WHERE),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(max_length=64, index=True)
    vendor: str = Field(max_length=64)
    hardware_model_id: int | None = Field(
        default=None, foreign_key="hardware_model.id", ondelete="RESTRICT"
    )
    smbios_uuid: str | None = Field(default=None, max_length=36)
    mac_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    asset_tag: str | None = Field(default=None, max_length=64, unique=True)
    client_id: int | None = Field(
        default=None, foreign_key="client_company.id", ondelete="RESTRICT"
    )
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="RESTRICT")
    order_reference: str | None = Field(default=None, max_length=64)
    carton_id: str | None = Field(default=None, max_length=64)
    bench_id: int | None = Field(default=None, foreign_key="bench.id", ondelete="RESTRICT")
    slot: int | None = None
    # Model string as seen at the bench or by the provisioning environment, for the
    # "wrong model" reconciliation.
    observed_model: str | None = Field(default=None, max_length=128)
    # Windows Autopilot hardware-hash CSV columns, kept for the export to the DSI.
    windows_product_id: str | None = Field(default=None, max_length=64)
    hardware_hash: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    group_tag: str | None = Field(default=None, max_length=128)
    assigned_user: str | None = Field(default=None, max_length=256)
    # The default is never kept: lifecycle.create sets the state a creation event leads to.
    state: DeviceState = Field(
        default=DeviceState.EXPECTED, sa_type=String(STATE_COLUMN_LENGTH), index=True
    )
    target_state: DeviceState | None = Field(default=None, sa_type=String(STATE_COLUMN_LENGTH))
    state_changed_at: datetime = _ts()
    quarantine_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class DeviceEvent(SQLModel, table=True):
    """The audit history: one row per transition, never updated, never deleted."""

    __tablename__ = "device_event"
    __table_args__ = (
        # Laptops that reached a state per hour (the console's throughput chart) from
        # this index alone, whatever the chart's filter: the client, delivery and site
        # are in it, so a filtered chart joins no laptop (console_0003).
        Index(
            "ix_device_event_to_state_at_scope",
            "to_state",
            "at",
            "client_id",
            "delivery_id",
            "site_id",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True, ondelete="RESTRICT")
    # The laptop's client, delivery and site (its bench's) when the event happened,
    # copied by ``inventory.lifecycle`` so the chart filters the events themselves. No
    # foreign keys: they are copies, checked through ``device_id``'s row when written,
    # and adding them needs no rebuild of this table on SQLite. NULL until the laptop
    # had one (an UNEXPECTED laptop's events before it was attached to a delivery; an
    # EXPECTED laptop's before it was scanned in at a bench). See docs/console.md.
    client_id: int | None = None
    delivery_id: int | None = None
    site_id: int | None = None
    from_state: str | None = Field(default=None, max_length=STATE_COLUMN_LENGTH)
    to_state: str = Field(max_length=STATE_COLUMN_LENGTH)
    event: str = Field(max_length=24)
    actor: str = Field(max_length=128)
    at: datetime = _ts()
    reason: str | None = Field(default=None, max_length=1000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IntakeJob(SQLModel, table=True):
    """A large ship-notice import in progress (``inventory.intake_jobs``): its planned
    rows are staged first (invisible), then published in short transactions. At most
    one is live at a time (``lane``'s unique index over live jobs)."""

    __tablename__ = "intake_job"
    __table_args__ = (
        Index(
            "uq_intake_job_live",
            "lane",
            unique=True,
            sqlite_where=text("status IN ('staging', 'publishing')"),
            postgresql_where=text("status IN ('staging', 'publishing')"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    lane: str = Field(default="ship-notice", max_length=16)
    delivery_id: int = Field(foreign_key="delivery.id", ondelete="RESTRICT")
    actor: str = Field(max_length=128)
    format: str = Field(max_length=16)
    status: str = Field(max_length=16)  # staging | publishing
    rows: int = Field(default=0)
    published: int = Field(default=0)  # rows published so far, in staged order
    lease_until: datetime = _ts()
    created_at: datetime = _ts()


class IntakeJobChunk(SQLModel, table=True):
    """Planned rows of a job, in order; deleted as they are published."""

    __tablename__ = "intake_job_chunk"
    job_id: int = Field(foreign_key="intake_job.id", primary_key=True, ondelete="CASCADE")
    n: int = Field(primary_key=True)
    first_row: int
    payload: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
