"""All SQL of the console: its sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from api.models import ApiToken
from console.models import WebSession


def add(session: Session, row: WebSession) -> WebSession:
    session.add(row)
    session.flush()
    return row


def get(session: Session, session_id: int) -> WebSession | None:
    return session.get(WebSession, session_id)


def get_by_key_hash(session: Session, key_hash: str) -> WebSession | None:
    return session.exec(select(WebSession).where(WebSession.key_hash == key_hash)).first()


def live_ids(session: Session, ids: Sequence[int], *, now: datetime) -> set[int]:
    """Which of these sessions are still open: not ended, not expired, token not revoked
    (one query for every open live connection of a server process)."""
    if not ids:
        return set()
    stmt = (
        select(WebSession.id)
        .join(ApiToken, col(ApiToken.id) == WebSession.token_id)
        .where(
            col(WebSession.id).in_(list(ids)),
            col(WebSession.ended_at).is_(None),
            col(WebSession.expires_at) > now,
            col(ApiToken.revoked_at).is_(None),
        )
    )
    return {int(i) for i in session.exec(stmt).all() if i is not None}


def end_expired(session: Session, *, before: datetime) -> int:
    """Delete sessions that expired or ended before ``before`` (housekeeping)."""
    stmt = WebSession.__table__.delete().where(  # type: ignore[attr-defined]
        (col(WebSession.expires_at) < before)
        | (col(WebSession.ended_at).is_not(None) & (col(WebSession.ended_at) < before))
    )
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
