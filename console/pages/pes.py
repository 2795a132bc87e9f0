"""Laptops whose preboot environment registered at a bench's site but may not go yet
("booted, not scanned": a technician powered it on before scanning it in; unexpected;
no worker key), shown on the bench board so the technician scans them in. Polled by
the board every few seconds (``bench/board.html``); read through boot's service."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.deps import SessionDep
from boot.registration import service as boot
from boot.registration.models import BootStatus
from console.deps import StaffViewer
from console.i18n import N_
from console.pages._kit import page, page_router
from inventory import service as inventory
from inventory.errors import BenchNotFound

router = page_router()
LIMIT = 50
REASONS = {
    "booted, not scanned": N_("booted, not scanned: scan it in"),
    "unexpected": N_("not on any ship notice"),
    "no worker key": N_("the site has no worker key"),
}


@router.get("/console/benches/{bench_id}/waiting")
def waiting(
    bench_id: int, request: Request, session: SessionDep, viewer: StaffViewer
) -> HTMLResponse:
    bench = next((b for b in inventory.list_benches(session) if b.id == bench_id), None)
    if bench is None:
        raise BenchNotFound(str(bench_id))
    site = next(s for s in inventory.list_sites(session) if s.id == bench.site_id)
    boots = [
        b
        for b in boot.list_boots(
            session, site_code=site.code, statuses=[BootStatus.WAITING], cursor=None, limit=LIMIT
        )
        if b.bench_id in (None, bench_id)
    ]
    return page(
        request, "bench/_waiting.html", viewer=viewer, bench=bench, boots=boots, reasons=REASONS
    )
