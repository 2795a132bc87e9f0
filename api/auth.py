"""Who is calling: a request's bearer token checked against the stored hashes.

Tokens are 256-bit random strings, so a plain SHA-256 is the right stored form: a slow
password hash would protect nothing more and would cost every request. This module is
what every route needs (``api/deps.py``), so it imports no domain; managing tokens
(``api/service.py``) names client companies and sits above inventory.
"""

from __future__ import annotations

import hashlib

from sqlmodel import Session

from api import repository
from api.errors import BadToken
from core.principal import Principal, Role

TOKEN_PREFIX = "mlt_"  # noqa: S105  (a prefix, not a secret)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(session: Session, token: str) -> Principal:
    """:raises BadToken: unknown or revoked."""
    row = repository.get_by_hash(session, hash_token(token))
    if row is None or row.revoked_at is not None or row.id is None:
        raise BadToken()
    return Principal(token_id=row.id, name=row.name, role=Role(row.role), client_id=row.client_id)
