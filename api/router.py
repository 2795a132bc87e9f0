"""Token administration and "who am I"."""

from __future__ import annotations

from fastapi import Request

from api import service
from api.deps import (
    AdminOnly,
    Anyone,
    SessionDep,
    in_transaction,
    new_router,
    principal_cache,
)
from api.schemas import PrincipalRead, TokenCreate, TokenCreated, TokenRead

router = new_router(tags=["tokens"])


@router.get("/me", response_model=PrincipalRead)
async def whoami(principal: Anyone) -> PrincipalRead:
    """The calling token's role and client company."""
    return PrincipalRead(
        token_id=principal.token_id,
        name=principal.name,
        role=principal.role,
        client_id=principal.client_id,
    )


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, session: SessionDep, _: AdminOnly) -> TokenCreated:
    """Create a token. The clear token is in this response only."""
    row, clear = service.create_token(
        session, name=body.name, role=body.role, client_code=body.client_code
    )
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=clear)


@router.get("/tokens", response_model=list[TokenRead])
def list_tokens(session: SessionDep, _: AdminOnly) -> list[TokenRead]:
    return [TokenRead.model_validate(t) for t in service.list_tokens(session)]


@router.delete("/tokens/{token_id}", response_model=TokenRead)
async def revoke_token(
    token_id: int, request: Request, session: SessionDep, _: AdminOnly
) -> TokenRead:
    """Revoke a token: refused from now on by this server process, and by any other
    within ``MASTERLINE_AUTH_CACHE_SECONDS``."""
    row = await in_transaction(
        session, lambda: TokenRead.model_validate(service.revoke_token(session, token_id))
    )
    # After the commit: forgetting earlier would let a request re-cache the token
    # from the still-uncommitted row.
    principal_cache(request).forget_token(token_id)
    return row
