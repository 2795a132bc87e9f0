"""The forecast's API shapes (validated at the edge, limits on every string and list)."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator

from forecast import answers, calendar
from forecast.models import ForecastDelivery, ForecastNotice, ForecastSnapshot

_HM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
HourMinute = Annotated[str, Field(pattern=_HM.pattern, min_length=5, max_length=5)]
BIG = 2**31 - 1


def _zone(name: str) -> str:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError on odd paths
        raise ValueError("unknown time zone") from None
    return name


TimeZoneName = Annotated[
    str, Field(min_length=1, max_length=64, examples=["Europe/Paris"]), AfterValidator(_zone)
]
"""An IANA time zone this machine knows: checked at the edge, so a bad one is a 422."""


def _time(text: str | None) -> time | None:
    return None if text is None else time(int(text[:2]), int(text[3:]))


class Dates(BaseModel):
    """When every laptop of the scope is ready, and handed to a carrier: P50 (as likely
    sooner as later) and P90 (nine times in ten, by then). None: not within 60 days."""

    laptops: int
    dispatched: int = Field(description="Already handed to a carrier.")
    ready_or_gone: int = Field(description="Ready or already dispatched.")
    expected_aside: float = Field(description="Laptops expected to be set aside (mean).")
    ready_p50: datetime | None
    ready_p90: datetime | None
    dispatched_p50: datetime | None
    dispatched_p90: datetime | None
    throughput_per_hour: float = Field(description="Laptops made ready per hour, until all are.")


class ScopeForecast(Dates):
    scope: str
    id: int
    name: str | None = None
    made_at: datetime
    bottleneck: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: ForecastSnapshot) -> ScopeForecast:
        fig = {k: v for k, v in row.figures.items() if k in Dates.model_fields}
        return cls(
            scope=row.scope,
            id=row.scope_id,
            name=row.figures.get("name"),
            made_at=row.made_at,
            bottleneck=row.figures.get("bottleneck"),
            **fig,
        )


class Commitment(BaseModel):
    delivery_id: int
    committed_date: date | None
    committed_by: str | None
    site_id: int | None
    at_risk_since: datetime | None

    @classmethod
    def of(cls, row: ForecastDelivery) -> Commitment:
        return cls(
            delivery_id=row.delivery_id,
            committed_date=row.committed_date,
            committed_by=row.committed_by,
            site_id=row.site_id,
            at_risk_since=row.at_risk_since,
        )


class DeliveryForecast(BaseModel):
    delivery_id: int
    forecast: ScopeForecast | None
    commitment: Commitment | None
    at_risk: bool = Field(description="The P90 of all dispatched is past the committed date.")


class ForecastRead(BaseModel):
    made_at: datetime | None
    wave: ScopeForecast | None
    sites: list[ScopeForecast]
    clients: list[ScopeForecast]
    deliveries: list[ScopeForecast]
    assumptions: list[str] = Field(default_factory=list)
    learned: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per laptop profile and step: what its figures come from."
    )


class CommitmentSet(BaseModel):
    committed_date: date | None = Field(
        description="Every laptop dispatched by the end of this day; null clears it."
    )
    site_id: Annotated[int, Field(ge=1, le=BIG)] | None = Field(
        default=None, description="Where the delivery is staged (staff only)."
    )


class NoticeRead(BaseModel):
    id: int
    delivery_id: int
    client_id: int
    kind: str
    committed_date: date
    p90_dispatched: datetime | None
    made_at: datetime

    @classmethod
    def of(cls, row: ForecastNotice) -> NoticeRead:
        assert row.id is not None
        return cls(**row.model_dump())


# Site settings.
class DayHours(BaseModel):
    open: HourMinute
    close: HourMinute


class SiteSettingsWrite(BaseModel):
    timezone: TimeZoneName = "Europe/Paris"
    hours: dict[str, DayHours | None] = Field(
        default_factory=dict, description="By weekday (mon…sun); null: closed that day."
    )
    closed_dates: list[date] = Field(default_factory=list, max_length=366)
    cutoffs: list[HourMinute] = Field(default_factory=list, max_length=12)
    arrival_time: HourMinute = "09:00"
    always_open: bool = False
    workers: int = Field(default=1, ge=0, le=1000)
    worker_parallel: int = Field(default=16, ge=1, le=1000)
    tech_delay_minutes: int = Field(default=30, ge=0, le=10_000)

    @field_validator("hours")
    @classmethod
    def _days(cls, v: dict[str, DayHours | None]) -> dict[str, DayHours | None]:
        bad = set(v) - set(calendar.WEEKDAYS)
        if bad:
            raise ValueError(f"unknown weekday(s): {', '.join(sorted(bad))[:100]}")
        return v


class SiteSettingsRead(SiteSettingsWrite):
    site_id: int


# What-if and capacity.
class SiteChangeIn(BaseModel):
    site_id: Annotated[int, Field(ge=1, le=BIG)]
    slots: int | None = Field(default=None, ge=0, le=100_000)
    stream_limit: int | None = Field(default=None, ge=0, le=10_000)
    workers: int | None = Field(default=None, ge=0, le=1000)
    bandwidth_bps: int | None = Field(default=None, ge=1, le=10**12)
    uncapped: bool = False
    always_open: bool | None = None
    open_at: HourMinute | None = None
    close_at: HourMinute | None = None
    saturday: bool | None = None

    def change(self) -> answers.SiteChange:
        return answers.SiteChange(
            site_id=self.site_id,
            slots=self.slots,
            stream_limit=self.stream_limit,
            workers=self.workers,
            bandwidth_bps=self.bandwidth_bps,
            uncapped=self.uncapped,
            always_open=self.always_open,
            open_at=_time(self.open_at),
            close_at=_time(self.close_at),
            saturday=self.saturday,
        )


class SecondSiteIn(BaseModel):
    name: str = Field(default="second site", min_length=1, max_length=64)
    slots: int = Field(default=100, ge=1, le=100_000)
    stream_limit: int = Field(default=16, ge=1, le=10_000)
    workers: int = Field(default=1, ge=1, le=1000)
    bandwidth_bps: int | None = Field(default=None, ge=1, le=10**12)
    share: float = Field(default=0.5, ge=0.0, le=1.0)


class WhatIf(BaseModel):
    sites: list[SiteChangeIn] = Field(default_factory=list, max_length=50)
    second_site: SecondSiteIn | None = None
    deliveries_on_time: bool = False

    def changes(self) -> answers.Changes:
        second = None
        if self.second_site is not None:
            second = answers.SecondSite(**self.second_site.model_dump())
        return answers.Changes(
            sites=[s.change() for s in self.sites],
            second_site=second,
            deliveries_on_time=self.deliveries_on_time,
        )


class WhatIfScope(BaseModel):
    scope: str
    id: int
    name: str | None = None
    before: Dates
    after: Dates


class WhatIfRead(BaseModel):
    made_at: datetime
    wave: WhatIfScope
    sites: list[WhatIfScope]
    deliveries: list[WhatIfScope]


class CapacityIn(BaseModel):
    laptops: int = Field(ge=1, le=1_000_000)
    image_gb: float = Field(gt=0, le=10_000, description="The image's size on the wire, GB.")
    days: int = Field(ge=1, le=365)
    os_family: str = Field(default="windows", pattern="^(windows|linux)$")
    start: datetime | None = None
    open_at: HourMinute = "08:00"
    close_at: HourMinute = "18:00"
    saturday: bool = False
    cutoff: HourMinute = "17:00"
    timezone: TimeZoneName = "Europe/Paris"


class CapacityRead(BaseModel):
    slots: int
    live_runs: int
    bandwidth_bytes_per_second: int
    workers: int
    assumptions: list[str]
    arithmetic: list[str]
    check: dict[str, Any]
