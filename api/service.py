"""Tokens: creation, listing, revocation (checking a request's token is ``api/auth.py``).

Tokens are 256-bit random strings, so a plain SHA-256 is the right stored form: a slow
password hash would protect nothing more and would cost every request.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlmodel import Session

from api import repository
from api.auth import TOKEN_PREFIX, hash_token
from api.errors import ClientRequired, TokenNotFound
from api.models import ApiToken
from core.principal import Role
from core.timeutil import utcnow
from inventory import repository as inventory_repo
from inventory.errors import ClientNotFound


def create_token(
    session: Session, *, name: str, role: Role, client_code: str | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the clear token (shown once).

    :raises ClientRequired: a dsi/logistics token without a client company.
    :raises ClientNotFound: no such client company.
    """
    client_id: int | None = None
    if client_code:
        client = inventory_repo.get_client_by_code(session, client_code)
        if client is None:
            raise ClientNotFound(client_code)
        client_id = client.id
    if role.client_bound and client_id is None:
        raise ClientRequired(role.value)
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        prefix=clear[:12],
        token_hash=hash_token(clear),
        role=role,
        client_id=client_id,
    )
    session.add(row)
    session.flush()
    return row, clear


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return repository.list_all(session)


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """:raises TokenNotFound: no such token."""
    row = repository.get(session, token_id)
    if row is None:
        raise TokenNotFound(str(token_id))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.flush()
    return row
