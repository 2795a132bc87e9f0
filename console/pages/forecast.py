"""The forecast on the wave dashboard (issue #17): P50/P90 of "all ready" and "all
dispatched", throughput, the bottleneck, each delivery's committed date and an at-risk
badge; the what-if form (staff) and the committed date (the client and staff).

Reads never compute: the panel shows the latest stored forecast (the refresher keeps it
true); only the what-if question simulates, on demand, through ``forecast.service``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from api.deps import EVERYONE, STAFF, SessionDep
from console.deps import PageAllow, Viewer
from console.i18n import N_
from console.pages._kit import done, page, page_router
from core.errors import InvalidInput
from forecast import service as forecast
from forecast.schemas import Dates, ScopeForecast, WhatIf
from inventory import service as inventory
from inventory.models import Delivery
from provisioning.runs.overview import WaveFilter

router = page_router()
StaffViewer = Annotated[Viewer, Depends(PageAllow(*STAFF))]
AnyViewer = Annotated[Viewer, Depends(PageAllow(*EVERYONE))]

CONSTRAINTS = {
    "slots": N_("bench slots"),
    "streams": N_("live runs (stream limit, workers)"),
    "bandwidth": N_("the site's bandwidth cap"),
    "hours": N_("opening hours"),
    "deliveries": N_("laptops not yet delivered"),
}
EVIDENCE = {
    "hours_waiting_for_a_slot": N_("hours waiting for a slot"),
    "hours_waiting_for_opening": N_("hours waiting for the site to open"),
    "hours_waiting_for_a_live_run": N_("hours waiting for a live run"),
    "laptops_not_delivered": N_("laptops not delivered yet"),
    "slots": N_("bench slots"),
    "live_runs": N_("live runs"),
    "open_hours_per_day": N_("open hours a day"),
}


MAX_LINES = 12
"""Deliveries listed in the panel: those at risk, then committed, then the latest to
finish (a wave of a hundred deliveries is read by choosing one in the filter)."""


@dataclass
class DeliveryLine:
    delivery_id: int
    order_reference: str
    forecast: ScopeForecast
    committed: date | None
    at_risk: bool


@dataclass
class Panel:
    """What the dashboard's forecast section shows, for the scope being looked at."""

    scope: str
    main: ScopeForecast | None
    bottleneck: dict[str, Any] | None
    deliveries: list[DeliveryLine] = field(default_factory=list)
    notices: list[Any] = field(default_factory=list)
    more: int = 0
    """Deliveries with a forecast not listed (beyond ``MAX_LINES``)."""
    names: dict[int, str] = field(default_factory=dict)
    """Order reference of each visible delivery (the notices name them)."""
    made_at: datetime | None = None


def panel(
    session: Session,
    viewer: Viewer,
    wanted: WaveFilter,
    *,
    deliveries: Sequence[Delivery] | None = None,
) -> Panel:
    """The latest forecast for the dashboard's filter, as the viewer may see it.

    ``deliveries``: the viewer's deliveries as ``inventory.list_deliveries`` gives them
    (up to 500) when the caller has them already (the dashboard's filter menu), so a
    computed dashboard lists them once; read here otherwise."""
    principal = viewer.principal
    rows = {(r.scope, r.scope_id): r for r in forecast.snapshots(session, principal)}
    if wanted.delivery_id is not None:
        key = ("delivery", wanted.delivery_id)
    elif wanted.site_id is not None and not principal.role.client_bound:
        key = ("site", wanted.site_id)
    elif wanted.client_id is not None:
        key = ("client", wanted.client_id)
    elif principal.role.client_bound:
        key = ("client", principal.client_id or 0)
    else:
        key = ("wave", 0)
    if not rows:  # no forecast made yet (or none of the viewer's): nothing else to read
        return Panel(scope=key[0], main=None, bottleneck=None)
    main = ScopeForecast.of(rows[key]) if key in rows else None
    bottleneck = main.bottleneck if main else None
    if bottleneck is None and ("wave", 0) in rows and key[0] != "site":
        bottleneck = rows[("wave", 0)].figures.get("bottleneck")
    if deliveries is None:
        deliveries = inventory.list_deliveries(session, principal, cursor=None, limit=500)
    visible = {d.id: d for d in deliveries if d.id is not None}
    chosen = {
        i: d
        for i, d in visible.items()
        if (wanted.delivery_id is None or i == wanted.delivery_id)
        and (wanted.client_id is None or d.client_id == wanted.client_id)
    }
    shown = [i for i in chosen if ("delivery", i) in rows]
    committed = forecast.commitments(session, principal, shown)

    # At risk first, then committed, then the latest "all dispatched" (ISO times in UTC
    # sort as text; none, past the horizon, as the latest of all): two stable sorts.
    shown.sort(
        key=lambda i: rows[("delivery", i)].figures.get("dispatched_p90") or "9999", reverse=True
    )
    shown.sort(
        key=lambda i: (
            not (i in committed and committed[i].at_risk_since),
            not (i in committed and committed[i].committed_date),
        )
    )
    lines = []
    for delivery_id in shown[:MAX_LINES]:  # parsed only for the lines shown
        setting = committed.get(delivery_id)
        lines.append(
            DeliveryLine(
                delivery_id=delivery_id,
                order_reference=chosen[delivery_id].order_reference,
                forecast=ScopeForecast.of(rows[("delivery", delivery_id)]),
                committed=setting.committed_date if setting else None,
                at_risk=bool(setting and setting.at_risk_since),
            )
        )
    made = [r.made_at for r in rows.values()]
    return Panel(
        scope=key[0],
        main=main,
        bottleneck=bottleneck,
        deliveries=lines,
        more=max(0, len(shown) - MAX_LINES),
        notices=list(forecast.notices(session, principal))[:5],
        made_at=max(made) if made else None,
        names={i: d.order_reference for i, d in visible.items()},
    )


def _optional_int(text: str | None, name: str, *, scale: float = 1.0) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return round(float(text.replace(",", ".")) * scale)
    except ValueError:
        raise InvalidInput(f"{name}: a number") from None


@router.post("/console/waves/what-if")
def what_if(
    request: Request,
    session: SessionDep,
    viewer: StaffViewer,
    site_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    slots: Annotated[str | None, Form(max_length=12)] = None,
    bandwidth_mb: Annotated[str | None, Form(max_length=12)] = None,
    uncapped: Annotated[bool, Form()] = False,
    open_at: Annotated[str | None, Form(max_length=5)] = None,
    close_at: Annotated[str | None, Form(max_length=5)] = None,
    saturday: Annotated[bool, Form()] = False,
    always_open: Annotated[bool, Form()] = False,
    on_time: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """New dates for the wave, its sites and deliveries if something changed (from the
    same random draws as the forecast: the difference is the change's)."""
    change: dict[str, Any] = {"site_id": site_id}
    if (n := _optional_int(slots, "slots")) is not None:
        change["slots"] = n
    if (bps := _optional_int(bandwidth_mb, "bandwidth", scale=1e6)) is not None:
        change["bandwidth_bps"] = bps
    change["uncapped"] = uncapped
    change["open_at"] = open_at or None
    change["close_at"] = close_at or None
    change["saturday"] = True if saturday else None
    change["always_open"] = True if always_open else None
    try:
        question = WhatIf.model_validate({"sites": [change], "deliveries_on_time": on_time})
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e
    before, after = forecast.what_if(session, question.changes())
    names = {
        d.id: d.order_reference
        for d in inventory.list_deliveries(session, viewer.principal, cursor=None, limit=500)
    }

    def pair(key: tuple[str, int]) -> tuple[Dates, Dates]:
        a = before.figures.get(key) or after.figures[key]
        return Dates.model_validate(a), Dates.model_validate(after.figures[key])

    keys = sorted(after.figures)
    return page(
        request,
        "waves/_what_if.html",
        viewer=viewer,
        wave=pair(("wave", 0)),
        sites=[(after.figures[k].get("name") or k[1], *pair(k)) for k in keys if k[0] == "site"],
        deliveries=[(names.get(k[1], k[1]), *pair(k)) for k in keys if k[0] == "delivery"],
    )


@router.post("/console/waves/deliveries/{delivery_id}/commitment")
def commit(
    delivery_id: int,
    request: Request,
    session: SessionDep,
    viewer: AnyViewer,
    committed_date: Annotated[date | None, Form()] = None,
) -> Response:
    """Set (or clear, empty) the date by which every laptop of the delivery is to be
    dispatched; the next forecast judges it (an at-risk notice and webhook if its P90
    passes it)."""
    forecast.set_commitment(session, delivery_id, viewer.principal, committed=committed_date)
    if committed_date is None:
        return done(request, viewer, N_("Committed date cleared."), fallback="/console/waves")
    return done(
        request,
        viewer,
        N_("Committed date set to %(date)s: the next forecast judges it."),
        fallback="/console/waves",
        date=committed_date.isoformat(),
    )
