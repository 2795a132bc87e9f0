"""The wave dashboard: per delivery, client and site."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlmodel import Session

from api.deps import SessionDep
from console import charts, i18n
from console.cache import ScopeKey, TtlCache
from console.deps import AnyViewer, Viewer
from console.i18n import N_
from console.live import WAVES_TOPIC, Stale, sse, stream
from console.nav import NavItem, register
from console.pages import forecast as forecast_panel
from console.pages._kit import EVERYONE, hub_of, page, page_router
from forecast import service as forecast_service
from inventory import service as inventory
from inventory.models import Delivery
from provisioning.runs import overview
from provisioning.runs.overview import WaveFilter

router = page_router()
NAV = register(NavItem("waves", N_("Waves"), "/console/waves", frozenset(EVERYONE), 20))

ClientCode = Annotated[str | None, Query(max_length=32)]
Id = Annotated[int | None, Query(ge=1, le=2**62)]

# Display order of the counts: the pipeline from left to right.
STATE_ORDER = (
    "expected",
    "received",
    "queued",
    "imaging",
    "configuring",
    "verifying",
    "ready",
    "dispatched",
    "delivered",
    "failed_imaging",
    "failed_configuring",
    "failed_verifying",
    "quarantined",
    "unexpected",
    "returned",
    "retired",
)


def _filter(
    session: Session, viewer: Viewer, client: str | None, delivery: int | None, site: int | None
) -> tuple[WaveFilter, dict[str, Any]]:
    """The filter, every reference checked against what the viewer may see (404)."""
    client_id = None
    if client:
        client_id = inventory.client_by_code(session, client, viewer.principal).id
    if delivery is not None:
        inventory.get_delivery(session, delivery, viewer.principal)
    chosen = {"client": client or "", "delivery": delivery or "", "site": site or ""}
    return WaveFilter(client_id=client_id, delivery_id=delivery, site_id=site), chosen


def _query(chosen: dict[str, Any]) -> str:
    return "&".join(f"{k}={v}" for k, v in chosen.items() if v)


def _figures(
    request: Request,
    session: Session,
    viewer: Viewer,
    wanted: WaveFilter,
    deliveries: Sequence[Delivery] | None = None,
) -> dict[str, Any]:
    """The filter's figures, kept a second or two for everyone with the same scope
    (``console/cache.py``): never another scope's, and never older than the data: the
    key holds the live hub's marks (they move with every laptop's event and run) and
    the stored forecast's version, a few index look-ups."""
    cache: TtlCache[dict[str, Any]] = request.app.state.figures_cache
    key = (
        ScopeKey.of(viewer.principal, viewer.language, wanted),
        overview.change_marks(session),
        forecast_service.version(session),
    )
    return cache.get(key, lambda: _compute(session, viewer, wanted, deliveries))


def _compute(
    session: Session,
    viewer: Viewer,
    wanted: WaveFilter,
    deliveries: Sequence[Delivery] | None,
) -> dict[str, Any]:
    view = overview.wave_overview(session, viewer.principal, wanted)
    token = i18n.use(viewer.language)
    try:
        chart = charts.hourly_bars(
            view.hours,
            view.received_per_hour,
            view.ready_per_hour,
            title=i18n.gettext("Laptops scanned in and READY per hour, last 24 hours"),
            incoming_label=i18n.gettext("scanned in"),
            outgoing_label=i18n.gettext("READY"),
        )
    finally:
        i18n.reset(token)
    return {
        "view": view,
        "chart": chart,
        "state_order": STATE_ORDER,
        "forecast": forecast_panel.panel(session, viewer, wanted, deliveries=deliveries),
        "constraints": forecast_panel.CONSTRAINTS,
        "evidence_labels": forecast_panel.EVIDENCE,
    }


@router.get("/console/waves")
def dashboard(
    request: Request,
    session: SessionDep,
    viewer: AnyViewer,
    client: ClientCode = None,
    delivery: Id = None,
    site: Id = None,
) -> HTMLResponse:
    wanted, chosen = _filter(session, viewer, client, delivery, site)
    staff = not viewer.principal.role.client_bound
    # The filter menu's deliveries, which the forecast panel reads too (a computed
    # dashboard listed them twice).
    deliveries = inventory.list_deliveries(session, viewer.principal, cursor=None, limit=500)
    return page(
        request,
        "waves/dashboard.html",
        viewer=viewer,
        chosen=chosen,
        query=_query(chosen),
        clients=inventory.list_clients(session, viewer.principal),
        deliveries=deliveries,
        sites=inventory.list_sites(session) if staff else [],
        **_figures(request, session, viewer, wanted, deliveries),
    )


@router.get("/console/waves/figures")
def figures(
    request: Request,
    session: SessionDep,
    viewer: AnyViewer,
    client: ClientCode = None,
    delivery: Id = None,
    site: Id = None,
) -> HTMLResponse:
    """The figures alone (what the page reloads when the live stream says "stale")."""
    wanted, chosen = _filter(session, viewer, client, delivery, site)
    return page(
        request,
        "waves/_figures.html",
        viewer=viewer,
        query=_query(chosen),
        **_figures(request, session, viewer, wanted),
    )


@router.get("/console/live/waves")
async def dashboard_live(request: Request, viewer: AnyViewer) -> Response:
    """Server-Sent Events: ``stale`` when the figures changed (at most every few
    seconds); the page then reloads them."""
    hub = hub_of(request)
    sub = hub.subscribe(WAVES_TOPIC, viewer.session_id)

    def render(item: object) -> str | None:
        return sse("stale", "") if isinstance(item, Stale) else None

    return StreamingResponse(
        stream(hub, sub, None, render),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
