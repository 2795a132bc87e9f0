"""Browser sessions: an API token exchanged for a server-side session.

The browser holds only a random session key (an HttpOnly cookie); the token it signed in
with is never stored or sent again. Services never commit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from api import auth as tokens
from api.errors import BadToken
from console import repository
from console.errors import SessionEnded
from console.models import WebSession
from core.principal import Principal
from core.timeutil import utcnow

SESSION_PREFIX = "mls_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Opened:
    row: WebSession
    key: str
    """The clear session key: goes into the cookie, never stored."""


def open_session(
    session: Session, token: str, *, lifetime: timedelta, language: str | None
) -> Opened:
    """Check ``token`` and open a session for it.

    :raises BadToken: unknown or revoked token.
    """
    principal = tokens.authenticate(session, token.strip())
    now = utcnow()
    # Housekeeping on the way: sign-ins are rare, sessions few.
    repository.end_expired(session, before=now - timedelta(days=1))
    key = SESSION_PREFIX + secrets.token_urlsafe(32)
    row = WebSession(
        key_hash=hash_key(key),
        token_id=principal.token_id,
        csrf_token=secrets.token_urlsafe(32),
        language=language,
        created_at=now,
        expires_at=now + lifetime,
    )
    repository.add(session, row)
    return Opened(row, key)


@dataclass(frozen=True)
class Signed:
    """A live session and who it acts as."""

    session_id: int
    principal: Principal
    csrf_token: str
    language: str | None


def resolve(session: Session, key: str) -> Signed:
    """The session behind a cookie.

    :raises SessionEnded: unknown, signed out, expired, or its token revoked.
    """
    row = repository.get_by_key_hash(session, hash_key(key))
    if row is None or row.id is None or row.ended_at is not None or row.expires_at <= utcnow():
        raise SessionEnded()
    try:
        principal = tokens.principal_of_token(session, row.token_id)
    except BadToken as e:
        raise SessionEnded() from e
    return Signed(row.id, principal, row.csrf_token, row.language)


def close_session(session: Session, key: str) -> None:
    """Sign out (idempotent)."""
    row = repository.get_by_key_hash(session, hash_key(key))
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        session.add(row)
        session.flush()


def set_language(session: Session, session_id: int, language: str) -> None:
    row = repository.get(session, session_id)
    if row is not None:
        row.language = language
        session.add(row)
        session.flush()


def live_sessions(session: Session, ids: Sequence[int]) -> set[int]:
    return repository.live_ids(session, ids, now=utcnow())
