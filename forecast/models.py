"""Forecast tables: what a manager configures of a site, each delivery's site and
committed date, the latest forecast per scope, the change marks that trigger a
recompute, and the notices the console shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class ForecastSite(SQLModel, table=True):
    """A site's week and crew, as its manager states them (defaults until then).

    Slots come from the site's benches, the stream limit and bandwidth cap from the
    site itself (``inventory``): one truth each."""

    __tablename__ = "forecast_site"
    site_id: int = Field(foreign_key="site.id", primary_key=True, ondelete="RESTRICT")
    timezone: str = Field(default="Europe/Paris", max_length=64)
    hours: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """``{"mon": ["08:00", "18:00"], …, "sat": null}``; a missing day keeps its default."""
    closed_dates: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cutoffs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """The carriers' daily collection times, ``"HH:MM"`` (empty: 17:00)."""
    arrival_time: str = Field(default="09:00", max_length=5)
    always_open: bool = False
    workers: int = 1
    worker_parallel: int = 16
    tech_delay_minutes: int = 30
    updated_at: datetime = _ts()


class ForecastDelivery(SQLModel, table=True):
    """Where a delivery is staged and what date its client was promised."""

    __tablename__ = "forecast_delivery"
    delivery_id: int = Field(foreign_key="delivery.id", primary_key=True, ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    site_id: int | None = Field(default=None, foreign_key="site.id", ondelete="RESTRICT")
    committed_date: date | None = None
    """Every laptop dispatched by the end of this day (the site's local time)."""
    committed_by: str | None = Field(default=None, max_length=128)
    committed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    at_risk_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the P90 of "all dispatched" passed the committed date (None: it does not)."""


class ForecastSnapshot(SQLModel, table=True):
    """The latest forecast of one scope (the wave, a site, a client, a delivery)."""

    __tablename__ = "forecast_snapshot"
    __table_args__ = (UniqueConstraint("scope", "scope_id", name="uq_forecast_scope"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=16)
    scope_id: int = 0
    client_id: int | None = Field(default=None, index=True)
    made_at: datetime = _ts()
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ForecastChange(SQLModel, table=True):
    """Something the forecast depends on changed (a run finished, a laptop arrived):
    appended by hooks inside the change's transaction, consumed by the refresher.
    Append-only, so a busy scan-in never waits on a shared row."""

    __tablename__ = "forecast_change"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    reason: str = Field(max_length=32)


class ForecastNotice(SQLModel, table=True):
    """A message for the console (and the record of a webhook sent): a delivery's
    committed date passed by its P90, or back within it."""

    __tablename__ = "forecast_notice"
    __table_args__ = (Index("ix_forecast_notice_client", "client_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    kind: str = Field(max_length=16)
    committed_date: date
    p90_dispatched: datetime | None = Field(default=None, sa_type=UTCDateTime)
    made_at: datetime = _ts()
