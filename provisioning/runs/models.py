"""Provisioning tables: runs, their step log, and the bench slots' PE addresses.

``image_id`` is stored without a foreign key: the images migration (``images_0001``) did
not exist when this one was written, and a run must keep naming the image it wrote even
if the catalogue entry is later retired.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class RunStatus(StrEnum):
    QUEUED = "queued"
    """Committed and waiting for a worker (and a free stream at its site)."""
    RUNNING = "running"
    """A worker holds its lease and is running ``step_name``."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @classmethod
    def active(cls) -> frozenset[RunStatus]:
        return frozenset({cls.QUEUED, cls.RUNNING})


class ProvisioningRun(SQLModel, table=True):
    """One attempt to take a device from QUEUED to READY.

    ``step_index``/``step_name`` are saved *before* the step runs (Ironic's
    ``deploy_step``), so a restarted worker resumes at the interrupted step. ``context``
    carries what earlier steps learnt (chosen disk, bytes written, readback hash).
    """

    __tablename__ = "provisioning_run"
    __table_args__ = (
        Index("ix_provisioning_run_status", "status", "site_id"),
        Index("ix_provisioning_run_device", "device_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", ondelete="RESTRICT")
    client_id: int | None = Field(default=None, foreign_key="client_company.id")
    site_id: int | None = Field(default=None, foreign_key="site.id")
    image_id: int | None = None
    os_family: str = Field(default="linux", max_length=16)
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=String(16))
    step_index: int = 0
    step_name: str | None = Field(default=None, max_length=32)
    step_attempt: int = 0
    run_attempt: int = 1
    last_error: str | None = Field(default=None, max_length=1000)
    failed_step: str | None = Field(default=None, max_length=32)
    abort_requested: bool = False
    worker_id: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    progress_bytes: int = 0
    progress_total: int = 0
    rate_bps: float = 0.0
    eta_seconds: float | None = None
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = _ts()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunStepEvent(SQLModel, table=True):
    """The run's log: step started/done/retry/failed, configure events, gate checks.

    The unique key makes "no event written twice" a database fact: a resumed step gets
    a new ``attempt``, a replayed write of the same one fails.
    """

    __tablename__ = "provisioning_run_event"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_event_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="provisioning_run.id", index=True, ondelete="CASCADE")
    seq: int
    step: str = Field(max_length=32)
    attempt: int = 0
    kind: str = Field(max_length=24)
    message: str = Field(max_length=1000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = _ts()


class SlotEndpoint(SQLModel, table=True):
    """Where the laptop plugged into a bench slot answers while in its provisioning
    environment (the slot's network port), and with which pinned trust.

    Keyed by slot, not serial, on purpose: the identity step checks that the laptop
    answering in the slot is the one scanned into it.
    """

    __tablename__ = "slot_endpoint"
    __table_args__ = (UniqueConstraint("bench_id", "slot", name="uq_slot_endpoint"),)
    id: int | None = Field(default=None, primary_key=True)
    bench_id: int = Field(foreign_key="bench.id", ondelete="RESTRICT")
    slot: int
    host: str = Field(max_length=255)
    ssh_port: int = 22
    ssh_user: str = Field(default="root", max_length=64)
    key_path: str = Field(max_length=1000)
    known_hosts_path: str = Field(max_length=1000)
    # Extra, transport-specific settings for the installed OS (ports, CA path...); never
    # secrets: those come from the client's configuration.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
