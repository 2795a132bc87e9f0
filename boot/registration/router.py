"""Registration HTTP routes: what a PE calls (register, heartbeat) and what staff use
(credentials, site settings, PE boots, refused attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from api.deps import AdminOnly, SessionDep, Staff, in_transaction, new_router
from api.kit import Page
from boot.registration import credentials, service, sites
from boot.registration.auth import AgentDep, EnrollmentDep, json_body, peer_of
from boot.registration.errors import BadAgentToken
from boot.registration.models import BootStatus, PeBoot
from boot.registration.schemas import (
    ActionRequest,
    AttemptRead,
    CredentialCreate,
    CredentialCreated,
    CredentialRead,
    DeliverySiteRead,
    DeliverySiteSet,
    HeartbeatAnswer,
    HeartbeatRequest,
    PeBootRead,
    RegisterGo,
    RegisterRequest,
    RegisterWait,
    SiteSettingsRead,
    SiteSettingsUpdate,
)
from core.timeutil import utcnow

router = new_router(prefix="/boot", tags=["boot"])

_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` to one of ``defs`` replaced by its definition (the
    PE's models nest without recursion)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _body_doc(model: Any, *, required: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (after
    authentication, with a cap), so FastAPI does not document it: the model's schema,
    self-contained."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _inline(schema, defs)}},
        }
    }


_REGISTER_DOC = _body_doc(RegisterRequest)


@router.post(
    "/register",
    status_code=200,
    response_model=RegisterGo,
    openapi_extra=_REGISTER_DOC,
    responses={
        202: {
            "model": RegisterWait,
            "description": "Wait and register again after `retry_seconds` (booted before "
            "scan-in, unexpected, site not configured).",
        },
        401: {
            "description": "Unknown, revoked or expired enrollment credential.",
            "content": _PROBLEM,
        },
        403: {"description": "`other_site` or `other_client`.", "content": _PROBLEM},
        404: {"description": "`unknown_serial`.", "content": _PROBLEM},
        409: {
            "description": "`not_imageable`, `identity_mismatch`, `address_mismatch`, "
            "`ambiguous_serial`, or `health_policy` (the laptop was quarantined).",
            "content": _PROBLEM,
        },
        422: {"description": "Invalid body (never echoed).", "content": _PROBLEM},
        429: {
            "description": "Rate-limited; `Retry-After` says when to retry.",
            "content": _PROBLEM,
        },
    },
)
async def register(request: Request, session: SessionDep, enrollment: EnrollmentDep) -> Any:
    """A PE registers the laptop it runs on (called by the agent, `Authorization: Bearer
    <bench enrollment credential>`).

    The laptop is matched by serial (normalised as scan-in does), cross-checked with the
    vendor and SMBIOS UUID when both sides know them. **200 go**: this boot's agent token
    (shown once), the worker keys to trust for root's SSH login, the heartbeat period.
    **202 wait**: register again after `retry_seconds`. A refusal is a problem+json whose
    `reason` is a stable code, and is recorded for the supervisor (`GET /boot/attempts`).
    """
    body = await json_body(request, RegisterRequest)
    assert body is not None
    peer = peer_of(request)
    outcome = await in_transaction(
        session, lambda: service.register(session, enrollment, body, peer=peer)
    )
    if outcome.refusal is not None:
        raise outcome.refusal
    if outcome.go is not None:
        return outcome.go
    assert outcome.wait is not None
    return JSONResponse(outcome.wait.model_dump(mode="json"), status_code=202)


@router.post(
    "/heartbeat",
    response_model=HeartbeatAnswer,
    openapi_extra=_body_doc(HeartbeatRequest, required=False),
    responses={
        401: {
            "description": "Token unknown, expired, or superseded by a newer boot: register again.",
            "content": _PROBLEM,
        },
        429: {"description": "Rate-limited.", "content": _PROBLEM},
    },
)
async def heartbeat(request: Request, session: SessionDep, agent: AgentDep) -> HeartbeatAnswer:
    """The PE is alive (`Authorization: Bearer <agent token>`); the answer may ask it to
    power off or reboot."""
    await json_body(request, HeartbeatRequest, required=False)
    answer = await in_transaction(session, lambda: service.heartbeat(session, agent))
    if answer is None:
        raise BadAgentToken()
    action, period = answer
    return HeartbeatAnswer.model_validate({"action": action, "heartbeat_seconds": period})


# Enrollment credentials (admin).
@router.post("/credentials", response_model=CredentialCreated, status_code=201)
def create_credential(
    body: CredentialCreate, session: SessionDep, principal: AdminOnly
) -> CredentialCreated:
    """Create a bench enrollment credential. The clear credential is in this response
    only; `netboot: true` (default) lets the bench's iPXE script carry it."""
    row, clear = credentials.create_credential(session, body, principal)
    return CredentialCreated(**credentials.to_read(row).model_dump(), credential=clear)


@router.get("/credentials", response_model=list[CredentialRead])
def list_credentials(
    session: SessionDep,
    _: AdminOnly,
    site: Annotated[str | None, Query(max_length=32, description="Site code.")] = None,
    include_revoked: bool = False,
) -> list[CredentialRead]:
    rows = credentials.list_credentials(session, site_code=site, include_revoked=include_revoked)
    return [credentials.to_read(r) for r in rows]


@router.delete("/credentials/{credential_id}", response_model=CredentialRead)
def revoke_credential(credential_id: int, session: SessionDep, _: AdminOnly) -> CredentialRead:
    """Revoke a credential: refused from the next request on, and no longer served to
    network boot."""
    return credentials.to_read(credentials.revoke_credential(session, credential_id))


# Site settings and delivery sites.
@router.get("/sites/{site_code}/settings", response_model=SiteSettingsRead)
def get_site_settings(site_code: str, session: SessionDep, _: Staff) -> SiteSettingsRead:
    return sites.read_settings(session, site_code)


@router.patch("/sites/{site_code}/settings", response_model=SiteSettingsRead)
def update_site_settings(
    site_code: str, body: SiteSettingsUpdate, session: SessionDep, _: AdminOnly
) -> SiteSettingsRead:
    """Change a site's registration settings (only the fields given)."""
    return sites.update_settings(session, site_code, body)


@router.put("/deliveries/{delivery_id}/site", response_model=DeliverySiteRead)
def set_delivery_site(
    delivery_id: int, body: DeliverySiteSet, session: SessionDep, principal: AdminOnly
) -> DeliverySiteRead:
    """Stage a delivery at one site: PEs registering at other sites are refused its
    laptops (without it, any site may receive them, as scan-in allows)."""
    return sites.set_delivery_site(session, delivery_id, body.site_code, principal)


# PE boots and attempts (staff).
def boot_read(row: PeBoot, *, silence_seconds: int, now: datetime) -> PeBootRead:
    alive = (
        row.status == BootStatus.REGISTERED
        and (now - row.last_seen_at).total_seconds() <= silence_seconds
    )
    fields = {name: getattr(row, name) for name in PeBootRead.model_fields if name != "alive"}
    return PeBootRead.model_validate({**fields, "alive": alive})


@router.get("/pes", response_model=Page[PeBootRead])
def list_pes(
    session: SessionDep,
    _: Staff,
    site: Annotated[str | None, Query(max_length=32, description="Site code.")] = None,
    status: Annotated[
        list[BootStatus] | None,
        Query(description="waiting (e.g. `booted, not scanned`), registered, ended."),
    ] = None,
    cursor: Annotated[int | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[PeBootRead]:
    """PE boots, newest first: by default those waiting or registered (the bench view:
    laptops that booted before they were scanned are `waiting` with their reason)."""
    wanted = status or [BootStatus.WAITING, BootStatus.REGISTERED]
    rows = service.list_boots(session, site_code=site, statuses=wanted, cursor=cursor, limit=limit)
    now = utcnow()
    items = [
        boot_read(
            r, silence_seconds=service.settings_of(session, r.site_id).silence_seconds, now=now
        )
        for r in rows
    ]
    return Page.of(items, limit)


@router.post("/pes/{boot_id}/action", response_model=PeBootRead)
def request_action(boot_id: int, body: ActionRequest, session: SessionDep, _: Staff) -> PeBootRead:
    """Ask a PE to power off or reboot at its next heartbeat."""
    row = service.request_action(session, boot_id, body.action)
    silence = service.settings_of(session, row.site_id).silence_seconds
    return boot_read(row, silence_seconds=silence, now=utcnow())


@router.get("/attempts", response_model=Page[AttemptRead])
def list_attempts(
    session: SessionDep,
    _: Staff,
    site: Annotated[str | None, Query(max_length=32, description="Site code.")] = None,
    since: datetime | None = None,
    cursor: Annotated[int | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AttemptRead]:
    """Refused and quarantined registrations, newest first: unknown serials, other
    sites' or clients' laptops, revoked credentials still in use, identity mismatches."""
    rows = service.list_attempts(session, site_code=site, since=since, cursor=cursor, limit=limit)
    items = [AttemptRead.model_validate(r) for r in rows]
    return Page.of(items, limit)
