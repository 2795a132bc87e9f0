"""Forecast HTTP routes: the forecast (wave, sites, clients, deliveries), a delivery's
committed date, notices, site settings, what-if and capacity questions."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from fastapi import Path

from api.deps import AdminOnly, AnyRole, SessionDep, Staff, new_router
from forecast import calendar, service
from forecast import capacity as sizing
from forecast.schemas import (
    BIG,
    CapacityIn,
    CapacityRead,
    Commitment,
    CommitmentSet,
    Dates,
    DeliveryForecast,
    ForecastRead,
    NoticeRead,
    ScopeForecast,
    SiteSettingsRead,
    SiteSettingsWrite,
    WhatIf,
    WhatIfRead,
    WhatIfScope,
)

router = new_router(prefix="/forecast", tags=["forecast"])
Id = Annotated[int, Path(ge=1, le=BIG)]


def _read(session: SessionDep, principal: AnyRole) -> ForecastRead:
    rows = service.snapshots(session, principal)
    by = {
        s: [ScopeForecast.of(r) for r in rows if r.scope == s]
        for s in ("wave", "site", "client", "delivery")
    }
    wave_row = next((r for r in rows if r.scope == "wave"), None)
    figures = wave_row.figures if wave_row else {}
    return ForecastRead(
        made_at=max((r.made_at for r in rows), default=None),
        wave=by["wave"][0] if by["wave"] else None,
        sites=by["site"],
        clients=by["client"],
        deliveries=by["delivery"],
        assumptions=figures.get("assumptions", []),
        learned=figures.get("learned", {}),
    )


@router.get("", response_model=ForecastRead)
def get_forecast(session: SessionDep, principal: AnyRole) -> ForecastRead:
    """The latest forecast, as the refresher keeps it (recomputed after runs finish and
    laptops arrive, debounced; never on a read): ``made_at`` says when. Empty until the
    first is made (``POST /forecast/refresh``). dsi/logistics see their own company's
    deliveries and figures."""
    return _read(session, principal)


@router.post("/refresh", response_model=ForecastRead)
def refresh(session: SessionDep, principal: Staff) -> ForecastRead:
    """Compute the forecast now (the refresher does it after changes, debounced)."""
    service.store(session, service.compute(session), now=service.utcnow())
    return _read(session, principal)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryForecast)
def get_delivery(delivery_id: Id, session: SessionDep, principal: AnyRole) -> DeliveryForecast:
    snap, setting = service.delivery_snapshot(session, delivery_id, principal)
    return DeliveryForecast(
        delivery_id=delivery_id,
        forecast=ScopeForecast.of(snap) if snap else None,
        commitment=Commitment.of(setting) if setting else None,
        at_risk=bool(setting and setting.at_risk_since),
    )


@router.put("/deliveries/{delivery_id}/commitment", response_model=Commitment)
def set_commitment(
    delivery_id: Id, body: CommitmentSet, session: SessionDep, principal: AnyRole
) -> Commitment:
    """Set (or clear, with null) the date by which every laptop of the delivery is to be
    dispatched. The client's dsi and logistics, and staff; only staff say where it is
    staged (``site_id``)."""
    row = service.set_commitment(
        session,
        delivery_id,
        principal,
        committed=body.committed_date,
        site_id=body.site_id,
        set_site=body.site_id is not None,
    )
    return Commitment.of(row)


@router.get("/notices", response_model=list[NoticeRead])
def notices(session: SessionDep, principal: AnyRole) -> list[NoticeRead]:
    """Committed dates the P90 passed (``at_risk``) or came back within (``on_track``),
    newest first."""
    return [NoticeRead.of(n) for n in service.notices(session, principal)]


@router.get("/sites/{site_id}/settings", response_model=SiteSettingsRead)
def get_site_settings(site_id: Id, session: SessionDep, principal: Staff) -> SiteSettingsRead:
    return _settings(service.site_settings(session, site_id))


@router.put("/sites/{site_id}/settings", response_model=SiteSettingsRead)
def put_site_settings(
    site_id: Id, body: SiteSettingsWrite, session: SessionDep, principal: AdminOnly
) -> SiteSettingsRead:
    """Opening hours, closed dates, carriers' collection times, workers (admin)."""
    values = body.model_dump()
    values["hours"] = {
        day: None if span is None else [span["open"], span["close"]]
        for day, span in values["hours"].items()
    }
    values["closed_dates"] = [d.isoformat() for d in body.closed_dates]
    return _settings(service.set_site_settings(session, site_id, values))


def _settings(row: object) -> SiteSettingsRead:
    data = dict(row.__dict__)
    data["hours"] = {
        day: None if not span else {"open": span[0], "close": span[1]}
        for day, span in (data.get("hours") or {}).items()
    }
    return SiteSettingsRead.model_validate(data)


@router.post("/what-if", response_model=WhatIfRead)
def what_if(body: WhatIf, session: SessionDep, principal: Staff) -> WhatIfRead:
    """New dates if something changed: more slots, another cap, longer hours, a second
    site, deliveries on time. Computed now, from the same draws as the forecast."""
    before, after = service.what_if(session, body.changes())

    def pair(scope: str, scope_id: int) -> WhatIfScope:
        a = before.figures.get((scope, scope_id)) or after.figures[(scope, scope_id)]
        b = after.figures[(scope, scope_id)]
        return WhatIfScope(
            scope=scope,
            id=scope_id,
            name=b.get("name"),
            before=Dates.model_validate(a),
            after=Dates.model_validate(b),
        )

    keys = sorted(after.figures)
    return WhatIfRead(
        made_at=after.index.t0,
        wave=pair("wave", 0),
        sites=[pair(s, i) for s, i in keys if s == "site"],
        deliveries=[pair(s, i) for s, i in keys if s == "delivery"],
    )


@router.post("/capacity", response_model=CapacityRead)
def capacity(body: CapacityIn, principal: Staff) -> CapacityRead:
    """How many slots, live runs, how much bandwidth and how many workers N laptops of
    an image need in D days, with the assumptions and the arithmetic, checked by the
    simulator."""
    hours = calendar.Hours(
        timezone=body.timezone,
        week=(*(((_t(body.open_at), _t(body.close_at)),) * (6 if body.saturday else 5)),)
        + (None,) * (1 if body.saturday else 2),
        cutoffs=(_t(body.cutoff),),
    )
    answer = sizing.capacity(
        sizing.CapacityQuestion(
            laptops=body.laptops,
            image_bytes=body.image_gb * 1e9,
            days=body.days,
            os_family=body.os_family,
            start=body.start,
            hours=hours,
        )
    )
    return CapacityRead(
        slots=answer.slots,
        live_runs=answer.live_runs,
        bandwidth_bytes_per_second=answer.bandwidth_bps,
        workers=answer.workers,
        assumptions=answer.assumptions,
        arithmetic=answer.arithmetic,
        check=answer.check,
    )


def _t(text: str) -> time:
    return time(int(text[:2]), int(text[3:]))


__all__ = ["datetime", "router"]
