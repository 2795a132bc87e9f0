"""How a PE authenticates: a bench enrollment credential (to register) or a per-boot
agent token (to heartbeat). Neither is an API token: these dependencies accept only
their own kind, and ``api.deps.get_principal`` refuses both (no ``mlt_`` token has
their hashes).

Order matters on a hostile network: the source address is counted first (before any
database read, so guessing is slow), then the secret is checked, then the body is read
(with a cap) by the route.
"""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from api.body import declared_length, read_capped
from api.deps import get_db
from boot.registration import credentials, service
from boot.registration.config import get_boot_settings
from boot.registration.credentials import Enrollment
from boot.registration.errors import BadAgentToken, BadEnrollmentCredential
from boot.registration.ratelimit import limits_of
from boot.registration.service import AgentBoot
from core.db import Database
from core.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

_enroll_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="EnrollmentCredential",
    description="A bench enrollment credential (mle_…), from `masterline.enroll=` on the "
    "PE's kernel command line.",
)
_agent_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AgentToken",
    description="This boot's agent token (mla_…), from the registration's answer.",
)


def peer_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class DeviceAuth:
    """Marks a route that a PE calls with its own secret instead of an API token (the
    access test recognises it, as it recognises ``Allow``)."""

    kind = "device"


class EnrollmentAuth(DeviceAuth):
    kind = "enrollment"

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_enroll_bearer)],
    ) -> Enrollment:
        limits = limits_of(request.app.state)
        peer = peer_of(request)
        limits.hit("address", peer, what="registrations from this address")
        if bearer is None or not bearer.credentials:
            raise BadEnrollmentCredential()
        clear = bearer.credentials
        enrollment = await anyio.to_thread.run_sync(_check_enrollment, get_db(request), clear, peer)
        limits.hit(
            "credential",
            str(enrollment.credential_id),
            what="registrations with this credential",
        )
        return enrollment


def _check_enrollment(db: Database, clear: str, peer: str) -> Enrollment:
    with db.session(write=False) as session:
        try:
            return credentials.enrollment_of(credentials.check(session, clear))
        except BadEnrollmentCredential:
            pass
    # Not in the read transaction above: recording needs a write one.
    with db.session() as session:
        credentials.record_dead_credential_use(session, clear, peer=peer)
    raise BadEnrollmentCredential()


class AgentAuth(DeviceAuth):
    kind = "agent"

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_agent_bearer)],
    ) -> AgentBoot:
        limits_of(request.app.state).hit(
            "heartbeat", peer_of(request), what="heartbeats from this address"
        )
        if bearer is None or not bearer.credentials:
            raise BadAgentToken()
        found = await anyio.to_thread.run_sync(_check_agent, get_db(request), bearer.credentials)
        if found is None:
            raise BadAgentToken()
        return found


def _check_agent(db: Database, token: str) -> AgentBoot | None:
    with db.session(write=False) as session:
        return service.check_agent_token(session, token)


EnrollmentDep = Annotated[Enrollment, Depends(EnrollmentAuth())]
AgentDep = Annotated[AgentBoot, Depends(AgentAuth())]


async def json_body(request: Request, model: type[M], *, required: bool = True) -> M | None:
    """The request body as ``model``, read with a cap after authentication.

    Validation errors say where and what, never the value (it may hold anything).

    :raises TooLarge: over the cap. :raises InvalidInput: not JSON, or invalid.
    """
    raw = await read_capped(
        request.stream(),
        limit=get_boot_settings().register_max_bytes,
        declared=declared_length(request.headers),
        what="body",
    )
    if not raw.strip():
        if required:
            raise InvalidInput("a JSON body is required")
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in e.errors(include_input=False, include_url=False)
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid body"}
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", errors=errors) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("body is not JSON") from None
