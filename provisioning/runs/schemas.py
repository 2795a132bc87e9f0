"""API shapes of the provisioning domain (separate from the table models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.kit import Page
from core.values import Int64
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent


class EndpointCreate(BaseModel):
    bench_id: Int64 = Field(ge=1)
    slot: int = Field(ge=1, le=10_000)
    host: str = Field(min_length=1, max_length=255)
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_user: str = Field(default="root", min_length=1, max_length=64)
    key_path: str = Field(min_length=1, max_length=1000)
    known_hosts_path: str = Field(min_length=1, max_length=1000)
    options: dict[str, Any] = Field(default_factory=dict, max_length=32)


class RunStart(BaseModel):
    device_id: Int64 = Field(ge=1)


class RunAbort(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class RunRead(BaseModel):
    id: int
    device_id: int
    serial: str
    bench_id: int | None
    slot: int | None
    device_state: str
    image_id: int | None
    os_family: str
    status: RunStatus
    step_index: int
    step_name: str | None
    step_attempt: int
    run_attempt: int
    last_error: str | None
    failed_step: str | None
    abort_requested: bool
    progress_bytes: int
    progress_total: int
    progress_percent: float | None
    rate_bytes_per_second: float
    eta_seconds: float | None
    relay_wave: str | None = None
    """The relay wave this run's laptop is imaged in, while its stream step runs in one
    (its progress is then the bytes verified on its own disk: docs/relay.md)."""
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(
        cls,
        run: ProvisioningRun,
        *,
        serial: str,
        bench_id: int | None,
        slot: int | None,
        device_state: str,
    ) -> RunRead:
        assert run.id is not None
        pct = (100.0 * run.progress_bytes / run.progress_total) if run.progress_total else None
        return cls(
            id=run.id,
            device_id=run.device_id,
            serial=serial,
            bench_id=bench_id,
            slot=slot,
            device_state=device_state,
            image_id=run.image_id,
            os_family=run.os_family,
            status=run.status,
            step_index=run.step_index,
            step_name=run.step_name,
            step_attempt=run.step_attempt,
            run_attempt=run.run_attempt,
            last_error=run.last_error,
            failed_step=run.failed_step,
            abort_requested=run.abort_requested,
            progress_bytes=run.progress_bytes,
            progress_total=run.progress_total,
            progress_percent=pct,
            rate_bytes_per_second=run.rate_bps,
            eta_seconds=run.eta_seconds,
            relay_wave=_relay_wave(run),
            created_at=run.created_at,
            started_at=run.started_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
        )


def _relay_wave(run: ProvisioningRun) -> str | None:
    relay = (run.context or {}).get("relay")
    wave = relay.get("wave") if isinstance(relay, dict) else None
    return str(wave) if wave else None


class RunEventRead(BaseModel):
    seq: int
    step: str
    attempt: int
    kind: str
    message: str
    details: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, row: RunStepEvent) -> RunEventRead:
        return cls(
            seq=row.seq,
            step=row.step,
            attempt=row.attempt,
            kind=row.kind,
            message=row.message,
            details=row.details,
            at=row.at,
        )


class RunDetail(RunRead):
    events: list[RunEventRead]


class RunPage(Page[RunRead]):
    pass


class EndpointRead(BaseModel):
    id: int
    bench_id: int
    slot: int
    host: str
    ssh_port: int
    ssh_user: str
