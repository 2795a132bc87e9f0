"""The bench board: one tile per slot, live, with retry / abort / quarantine."""

from __future__ import annotations

import weakref
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from markupsafe import Markup

from api.deps import SessionDep
from console import render
from console.deps import StaffViewer
from console.i18n import N_
from console.live import bench_topic, sse, stream
from console.nav import NavItem, register
from console.pages._kit import STAFF, done, hub_of, page, page_router
from core import metrics
from inventory import service as inventory
from inventory.schemas import ScanRequest
from inventory.states import DeviceState, Event, next_state
from provisioning.runs import overview
from provisioning.runs import service as runs
from provisioning.runs.overview import BoardView, SlotView

router = page_router()
NAV = register(NavItem("bench", N_("Bench"), "/console/benches", frozenset(STAFF), 10))


def _tile_context(board: BoardView, slot: SlotView) -> dict[str, object]:
    laptop = slot.laptop
    state = laptop.state if laptop else None
    return {
        "board": board,
        "slot": slot,
        "laptop": laptop,
        "run": laptop.run if laptop else None,
        "can_retry": bool(laptop and laptop.run and laptop.failed and not laptop.run.active),
        "can_abort": bool(laptop and laptop.run and laptop.run.active),
        "can_quarantine": state is not None and next_state(state, Event.QUARANTINE) is not None,
        "failed": bool(laptop and laptop.failed),
        "DeviceState": DeviceState,
    }


# Renders shared by every connection watching the same snapshot in the same language.
_renders: weakref.WeakKeyDictionary[BoardView, dict[tuple[str, int], str]] = (
    weakref.WeakKeyDictionary()
)


def tile_html(board: BoardView, slot: SlotView, language: str) -> str:
    cache = _renders.setdefault(board, {})
    key = (language, slot.number)
    if key not in cache:
        cache[key] = render.render(
            "bench/_tile.html", _tile_context(board, slot), language=language
        )
    return cache[key]


def summary_html(board: BoardView, language: str) -> str:
    cache = _renders.setdefault(board, {})
    key = (language, 0)
    if key not in cache:
        cache[key] = render.render("bench/_summary.html", {"board": board}, language=language)
    return cache[key]


@router.get("/console/benches")
def benches(request: Request, session: SessionDep, viewer: StaffViewer) -> Response:
    rows = inventory.list_benches(session)
    if len(rows) == 1:
        return RedirectResponse(f"/console/benches/{rows[0].id}", status_code=303)
    sites = {s.id: s for s in inventory.list_sites(session)}
    return page(request, "bench/list.html", viewer=viewer, benches=rows, sites=sites)


@router.get("/console/benches/{bench_id}")
def board(
    bench_id: int, request: Request, session: SessionDep, viewer: StaffViewer
) -> HTMLResponse:
    view = overview.bench_board(session, bench_id, viewer.principal)
    # Rendered (and escaped) by their own template already.
    tiles = [Markup(tile_html(view, slot, viewer.language)) for slot in view.slots]  # noqa: S704
    return page(
        request,
        "bench/board.html",
        viewer=viewer,
        board=view,
        tiles=tiles,
        summary=Markup(summary_html(view, viewer.language)),  # noqa: S704
    )


@router.get("/console/live/benches/{bench_id}")
async def board_live(bench_id: int, request: Request, viewer: StaffViewer) -> Response:
    """Server-Sent Events: the tiles that changed, as HTML (``event: tiles``)."""
    hub = hub_of(request)
    first = hub.snapshot(bench_topic(bench_id))
    if first is None:
        import anyio

        first = await anyio.to_thread.run_sync(hub.load_board, bench_id)  # 404 if unknown
    sub = hub.subscribe(bench_topic(bench_id), viewer.session_id)
    sent: dict[int, str] = {}
    language = viewer.language

    def render_board(item: object) -> str | None:
        if not isinstance(item, BoardView):
            return None
        changed = []
        for slot in item.slots:
            html = tile_html(item, slot, language)
            if sent.get(slot.number) != html:
                sent[slot.number] = html
                changed.append(html)
        summary = summary_html(item, language)
        if sent.get(0) != summary:
            sent[0] = summary
            changed.append(summary)
        return sse("tiles", "\n".join(changed)) if changed else None

    return StreamingResponse(
        stream(hub, sub, first, render_board),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# Actions. The board shows their effect through the live stream; the response is a
# message for the person who acted.
SCAN_MESSAGES = {
    "received": N_("%(serial)s received in slot %(slot)s."),
    "unexpected": N_("%(serial)s is in no delivery: kept aside as unexpected (slot %(slot)s)."),
    "quarantined": N_("%(serial)s quarantined (damaged)."),
    "already": N_("%(serial)s was already scanned: nothing changed."),
}


@router.post("/console/benches/{bench_id}/scan")
def scan(
    bench_id: int,
    request: Request,
    session: SessionDep,
    viewer: StaffViewer,
    code: Annotated[str, Form(min_length=1, max_length=64)],
    slot: Annotated[int | None, Form(ge=1, le=10_000)] = None,
    damaged: Annotated[bool, Form()] = False,
) -> Response:
    """Scan-in from the board (a keyboard-wedge scanner types into the field and sends
    Enter), as ``masterline scan`` does."""
    body = ScanRequest(code=code, bench_id=bench_id, slot=slot, damaged=damaged)
    result = inventory.scan(session, body, viewer.principal)
    session.commit()
    metrics.scanned(result.outcome.value)
    return done(
        request,
        viewer,
        SCAN_MESSAGES[result.outcome.value],
        fallback=f"/console/benches/{bench_id}",
        serial=result.device.serial,
        slot=result.device.slot or "—",
    )


@router.post("/console/runs/{run_id}/retry")
def retry(run_id: int, request: Request, session: SessionDep, viewer: StaffViewer) -> Response:
    run = runs.retry(session, run_id, viewer.principal)
    device = runs.run_device(session, run)
    return done(
        request,
        viewer,
        N_("%(serial)s: retry queued from “%(step)s”."),
        fallback="/console/benches",
        serial=device.serial,
        step=run.step_name or "",
    )


@router.post("/console/runs/{run_id}/abort")
def abort(
    run_id: int,
    request: Request,
    session: SessionDep,
    viewer: StaffViewer,
    reason: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    run = runs.abort(session, run_id, viewer.principal, reason=reason or None)
    device = runs.run_device(session, run)
    return done(
        request,
        viewer,
        N_("%(serial)s: abort requested."),
        fallback="/console/benches",
        serial=device.serial,
    )


@router.post("/console/laptops/{device_id}/quarantine")
def quarantine(
    device_id: int,
    request: Request,
    session: SessionDep,
    viewer: StaffViewer,
    reason: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    device = inventory.transition(
        session, device_id, Event.QUARANTINE, viewer.principal, reason=reason or None
    )
    return done(
        request,
        viewer,
        N_("%(serial)s: quarantined."),
        fallback=f"/console/laptops/{device_id}",
        serial=device.serial,
    )
