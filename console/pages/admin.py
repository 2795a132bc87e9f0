"""Administration: clients, sites, benches, hardware models, tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from api import service as tokens
from api.deps import SessionDep, get_db, principal_cache
from console import render
from console.deps import AdminViewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import done, page, page_router
from core.errors import InvalidInput
from core.principal import Role
from inventory import service as inventory
from inventory.schemas import BenchCreate, ClientCreate, HardwareModelCreate, SiteCreate

router = page_router()
NAV = register(
    NavItem("admin", N_("Administration"), "/console/admin", frozenset({Role.ADMIN}), 90)
)
Text = Annotated[str, Form(min_length=1, max_length=200)]


def _valid(shape: type[BaseModel], **values: Any) -> Any:
    """The form's values as ``model``, or one clear error."""
    try:
        return shape(**values)
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e


@router.get("/console/admin")
def admin(request: Request, session: SessionDep, viewer: AdminViewer) -> HTMLResponse:
    return page(
        request,
        "admin/admin.html",
        viewer=viewer,
        clients=inventory.list_clients(session, viewer.principal),
        sites=inventory.list_sites(session),
        benches=inventory.list_benches(session),
        models=inventory.list_hardware_models(session),
        tokens=tokens.list_tokens(session),
        roles=[r.value for r in Role],
    )


@router.post("/console/admin/clients")
def create_client(
    request: Request, session: SessionDep, viewer: AdminViewer, code: Text, name: Text
) -> Response:
    row = inventory.create_client(session, _valid(ClientCreate, code=code.strip(), name=name))
    return done(
        request, viewer, N_("Client %(code)s created."), fallback="/console/admin", code=row.code
    )


@router.post("/console/admin/sites")
def create_site(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    code: Text,
    name: Text,
    max_imaging_streams: Annotated[int, Form(ge=1, le=1000)] = 8,
) -> Response:
    body = _valid(SiteCreate, code=code.strip(), name=name, max_imaging_streams=max_imaging_streams)
    row = inventory.create_site(session, body)
    return done(
        request, viewer, N_("Site %(code)s created."), fallback="/console/admin", code=row.code
    )


@router.post("/console/admin/benches")
def create_bench(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    site_code: Text,
    code: Text,
    slots: Annotated[int, Form(ge=1, le=512)] = 16,
) -> Response:
    body = _valid(BenchCreate, site_code=site_code, code=code.strip(), slots=slots)
    row = inventory.create_bench(session, body)
    return done(
        request, viewer, N_("Bench %(code)s created."), fallback="/console/admin", code=row.code
    )


@router.post("/console/admin/models")
def create_model(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    vendor: Text,
    model: Text,
    disk_rule: Annotated[str, Form(min_length=1, max_length=64)] = "largest",
) -> Response:
    body = _valid(
        HardwareModelCreate, vendor=vendor.strip(), model=model.strip(), disk_rule=disk_rule
    )
    row = inventory.create_hardware_model(session, body)
    return done(
        request,
        viewer,
        N_("Model %(vendor)s %(model)s created."),
        fallback="/console/admin",
        vendor=row.vendor,
        model=row.model,
    )


@router.post("/console/admin/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    role: Annotated[Role, Form()],
    client_code: Annotated[str | None, Form(max_length=32)] = None,
) -> HTMLResponse:
    """The clear token is shown in the answer, once (only its hash is stored)."""
    row, clear = tokens.create_token(
        session, name=name.strip(), role=role, client_code=client_code or None
    )
    body = render.render(
        "admin/_token_created.html", {"row": row, "clear": clear}, language=viewer.language
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/console/admin/tokens/{token_id}/revoke")
def revoke_token(token_id: int, request: Request, viewer: AdminViewer) -> Response:
    """Revoke: API calls with it stop at once, and so do the console sessions opened
    with it."""
    with get_db(request).session() as session:
        row = tokens.revoke_token(session, token_id)
    principal_cache(request).forget_token(token_id)  # after the commit, as the API does
    return done(
        request, viewer, N_("Token %(name)s revoked."), fallback="/console/admin", name=row.name
    )
