"""Images and configurations, for the client's IT (and the centre's staff): the
catalogue, a resumable upload from the browser (tus, through the API's own ``/uploads``),
retire; the configuration editor, whose secrets are write-only."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.deps import SessionDep
from console.deps import PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import done, page, page_router
from core.errors import InvalidInput
from core.principal import Role
from core.settings import get_settings
from images import configs
from images import service as images
from images.models import ImageStatus
from images.schemas import VPN_SECRET_NAMES, ClientConfigBody
from inventory import service as inventory

router = page_router()
READERS = (Role.ADMIN, Role.TECHNICIAN, Role.DSI)
WRITERS = (Role.ADMIN, Role.DSI)
Reader = Annotated[Viewer, Depends(PageAllow(*READERS))]
Writer = Annotated[Viewer, Depends(PageAllow(*WRITERS))]
NAV = register(NavItem("images", N_("Images"), "/console/images", frozenset(READERS), 50))
CONFIG_NAV = register(
    NavItem("configs", N_("Configuration"), "/console/configs", frozenset(READERS), 55)
)
ClientCode = Annotated[str | None, Query(max_length=32)]


def _writes(viewer: Viewer) -> bool:
    return viewer.principal.role in WRITERS


@router.get("/console/images")
def catalogue(
    request: Request,
    session: SessionDep,
    viewer: Reader,
    client: ClientCode = None,
    status: ImageStatus | None = None,
) -> HTMLResponse:
    rows = images.list_images(
        session, viewer.principal, client_code=client or None, status=status, limit=500
    )
    items = images.to_read(session, rows)
    return page(
        request,
        "images/catalogue.html",
        viewer=viewer,
        items=sorted(items, key=lambda i: (i.client_code, i.name, i.created_at), reverse=False),
        uploading=[i for i in items if i.status is ImageStatus.UPLOADING],
        clients=inventory.list_clients(session, viewer.principal),
        chosen_client=client or "",
        chosen_status=status.value if status else "",
        writes=_writes(viewer),
        chunk_size=get_settings().console_upload_chunk_bytes,
    )


@router.post("/console/images/{image_id}/retire")
def retire(image_id: int, request: Request, session: SessionDep, viewer: Writer) -> Response:
    row = images.retire(session, image_id, viewer.principal)
    return done(
        request,
        viewer,
        N_("%(name)s %(version)s retired: no new run will use it."),
        fallback="/console/images",
        name=row.name,
        version=row.version,
    )


# Configurations.
@router.get("/console/configs")
def configs_home(request: Request, session: SessionDep, viewer: Reader) -> Response:
    clients = inventory.list_clients(session, viewer.principal)
    if len(clients) == 1:
        return RedirectResponse(f"/console/configs/{clients[0].code}", status_code=303)
    return page(request, "images/config_clients.html", viewer=viewer, clients=clients)


def _config_page(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    client_code: str,
    *,
    document: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    client, versions = configs.list_configs(session, client_code, viewer.principal)
    reads = [configs.to_read(client, v) for v in versions]
    active = next((r for r in reads if r.active), None)
    if document is None:
        source = next((v for v in versions if v.active), None)
        document = json.dumps(
            configs.body_of(source).model_dump(mode="json", exclude={"vpn": {"secrets"}})
            if source
            else {"hostname_pattern": f"{client.code}-{{serial}}", "vpn": None, "apps": []},
            indent=2,
            ensure_ascii=False,
        )
    return page(
        request,
        "images/config.html",
        viewer=viewer,
        status_code=status_code,
        client=client,
        versions=reads,
        active=active,
        document=document,
        error=error,
        writes=_writes(viewer),
        secret_names=VPN_SECRET_NAMES,
    )


@router.get("/console/configs/{client_code}")
def config(client_code: str, request: Request, session: SessionDep, viewer: Reader) -> Response:
    return _config_page(request, session, viewer, client_code)


@router.post("/console/configs/{client_code}")
async def save_config(
    client_code: str, request: Request, session: SessionDep, viewer: Writer
) -> Response:
    """A new version from the edited document; a secret field left empty keeps the
    secret the active version has (values are never shown, only their names)."""
    form = await request.form(max_files=0, max_fields=40, max_part_size=512 * 1024)
    document = str(form.get("document") or "")
    secrets = {
        str(k)[len("secret_") :]: str(v)
        for k, v in form.items()
        if str(k).startswith("secret_") and isinstance(v, str) and v
    }
    clear = form.get("clear_secrets") == "on"

    def work() -> Response:
        try:
            raw: Any = json.loads(document)
            if not isinstance(raw, dict):
                raise InvalidInput("the configuration is a JSON object")
            if raw.get("vpn") is not None and isinstance(raw["vpn"], dict):
                raw["vpn"]["secrets"] = {} if clear else (secrets or None)
            body = ClientConfigBody.model_validate(raw)
        except json.JSONDecodeError as e:
            return _config_page(
                request,
                session,
                viewer,
                client_code,
                document=document,
                error=f"JSON, line {e.lineno}, column {e.colno}: {e.msg}",
                status_code=422,
            )
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return _config_page(
                request,
                session,
                viewer,
                client_code,
                document=document,
                error=f"{where}: {first.get('msg', '')}",
                status_code=422,
            )
        row = configs.set_config(
            session, client_code, body, viewer.principal, merge_secrets=not clear
        )
        session.commit()
        return RedirectResponse(f"/console/configs/{client_code}?saved={row.version}", 303)

    return await anyio.to_thread.run_sync(work)


@router.post("/console/configs/{client_code}/{version}/activate")
def activate(
    client_code: str, version: int, request: Request, session: SessionDep, viewer: Writer
) -> Response:
    configs.activate(session, client_code, version, viewer.principal)
    return done(
        request,
        viewer,
        N_("Version %(version)s is now active."),
        fallback=f"/console/configs/{client_code}",
        version=version,
    )
