"""Welcome sheets to print and put in the boxes: one laptop, a delivery's shipped
laptops, or the laptops of a dispatch file, in its order. The PDFs are the API's
(``/helpdesk/welcome``): the page links to them."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from api.deps import SessionDep
from console.deps import BodyLimit, PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import page, page_router
from core.errors import InvalidInput
from core.principal import Role
from helpdesk import welcome
from inventory import service as inventory
from logistics import service as logistics

router = page_router()
PRINTERS = (Role.ADMIN, Role.LOGISTICS)
"""Who prints welcome sheets (they carry the teleworker's name): as the API."""
PrintViewer = Annotated[Viewer, Depends(PageAllow(*PRINTERS))]
NAV = register(
    NavItem("welcome", N_("Welcome sheets"), "/console/welcome", frozenset(PRINTERS), 65)
)
FILE_LIMIT = 20 * 1024 * 1024


@router.get("/console/welcome")
def home(request: Request, session: SessionDep, viewer: PrintViewer) -> HTMLResponse:
    return page(
        request,
        "helpdesk/welcome.html",
        viewer=viewer,
        deliveries=inventory.list_deliveries(session, viewer.principal, cursor=None, limit=500),
    )


@router.get("/console/welcome/laptop")
def one_laptop(
    session: SessionDep,
    viewer: PrintViewer,
    serial: Annotated[str, Query(min_length=1, max_length=64)],
) -> Response:
    """A serial or asset tag → that laptop's sheet (the API's PDF)."""
    device = logistics.find_device(session, serial, viewer.principal)
    return RedirectResponse(f"/helpdesk/welcome?device_id={device.id}", status_code=303)


@router.post(
    "/console/welcome/dispatch-file",
    dependencies=[Depends(BodyLimit(FILE_LIMIT + 64 * 1024))],
)
async def dispatch_file(request: Request, session: SessionDep, viewer: PrintViewer) -> Response:
    """The sheets of a dispatch file's laptops, in the file's order, as one PDF."""
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("choose the dispatch file")
    data = await upload.read(FILE_LIMIT + 1)
    if len(data) > FILE_LIMIT:
        raise InvalidInput(f"the file is over {FILE_LIMIT // (1024 * 1024)} MiB")

    def work() -> bytes:
        serials = welcome.serials_of_dispatch_file(data)
        return welcome.pdf(welcome.sheets_for(session, viewer.principal, serials=serials))

    body = await anyio.to_thread.run_sync(work)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="welcome-sheets.pdf"'},
    )
