"""All SQL about tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, select

from api.models import ApiToken


def get_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    return session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def get(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def list_all(session: Session) -> Sequence[ApiToken]:
    return session.exec(select(ApiToken).order_by(ApiToken.id)).all()  # type: ignore[arg-type]
