"""The survey's and the retention purge's SQL (split from ``helpdesk.repository`` by
meaning: the people who may be called, the calls, the answers, and what the purge cuts)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from helpdesk.models import (
    CallStatus,
    Contact,
    Survey,
    SurveyAnswer,
    SurveyCall,
    SurveyOptOut,
    SurveyStratum,
)
from helpdesk.repository import chunks
from logistics.models import Shipment, Teleworker


# Survey.
def recipients(session: Session, since: datetime, until: datetime) -> list[tuple[int, int]]:
    """(teleworker id, client id) of people whose laptop was delivered in the window."""
    q = (
        select(Shipment.teleworker_id, Shipment.client_id)
        .where(col(Shipment.delivered_at) >= since, col(Shipment.delivered_at) < until)
        .distinct()
    )
    return [(t, c) for t, c in session.exec(q).all()]


def callers(session: Session, since: datetime, until: datetime) -> list[tuple[int, int]]:
    """(teleworker id, client id) of people who contacted the help desk in the window."""
    q = (
        select(Contact.teleworker_id, Contact.client_id)
        .where(
            col(Contact.at) >= since,
            col(Contact.at) < until,
            col(Contact.teleworker_id).is_not(None),
        )
        .distinct()
    )
    return [(t, c) for t, c in session.exec(q).all() if t is not None]


def excluded_people(session: Session, ids: Collection[int]) -> set[int]:
    """Of ``ids``: who opted out or whose personal data was erased."""
    out: set[int] = set()
    for chunk in chunks(ids):
        out |= set(
            session.exec(
                select(SurveyOptOut.teleworker_id).where(col(SurveyOptOut.teleworker_id).in_(chunk))
            ).all()
        )
        out |= {
            t
            for t in session.exec(
                select(Teleworker.id).where(
                    col(Teleworker.id).in_(chunk), col(Teleworker.erased_at).is_not(None)
                )
            ).all()
            if t is not None
        }
    return out


def survey_by_month(session: Session, month: str) -> Survey | None:
    return session.exec(select(Survey).where(Survey.month == month)).first()


def list_surveys(session: Session) -> Sequence[Survey]:
    return session.exec(select(Survey).order_by(col(Survey.month))).all()


def strata(session: Session, survey_id: int) -> Sequence[SurveyStratum]:
    return session.exec(
        select(SurveyStratum)
        .where(SurveyStratum.survey_id == survey_id)
        .order_by(col(SurveyStratum.client_id))
    ).all()


def calls(
    session: Session,
    survey_id: int,
    *,
    client_id: int | None,
    status: CallStatus | None,
) -> Sequence[SurveyCall]:
    q = (
        select(SurveyCall)
        .where(SurveyCall.survey_id == survey_id)
        .order_by(col(SurveyCall.position))
    )
    if client_id is not None:
        q = q.where(SurveyCall.client_id == client_id)
    if status is not None:
        q = q.where(SurveyCall.status == status)
    return session.exec(q).all()


def get_call_for_update(session: Session, call_id: int) -> SurveyCall | None:
    q = select(SurveyCall).where(SurveyCall.id == call_id).with_for_update()
    return session.exec(q.execution_options(populate_existing=True)).first()


def answers(
    session: Session, survey_ids: Collection[int], client_id: int
) -> Sequence[SurveyAnswer]:
    return session.exec(
        select(SurveyAnswer).where(
            col(SurveyAnswer.survey_id).in_(list(survey_ids)), SurveyAnswer.client_id == client_id
        )
    ).all()


def is_opted_out(session: Session, teleworker_id: int) -> bool:
    return session.get(SurveyOptOut, teleworker_id) is not None


def opt_out(session: Session, teleworker_id: int) -> None:
    if session.get(SurveyOptOut, teleworker_id) is None:
        session.add(SurveyOptOut(teleworker_id=teleworker_id))


# Retention.
def _erased() -> Any:
    return select(Teleworker.id).where(col(Teleworker.erased_at).is_not(None)).scalar_subquery()


def anonymise_contacts(session: Session, *, before: datetime, now: datetime) -> int:
    """Cut the person link and blank the note of contacts older than ``before`` or about
    a person whose data was erased; returns how many rows changed."""
    cond = or_(col(Contact.at) < before, col(Contact.teleworker_id).in_(_erased()))
    result = session.exec(
        update(Contact)
        .where(cond, or_(col(Contact.teleworker_id).is_not(None), col(Contact.note).is_not(None)))
        .values(teleworker_id=None, note=None, anonymised_at=now)
    )
    return int(result.rowcount or 0)


def anonymise_calls(session: Session, *, before: datetime, now: datetime) -> int:
    """Cut the person link of calls of surveys drawn before ``before``, or to a person
    whose data was erased."""
    old = select(Survey.id).where(col(Survey.created_at) < before).scalar_subquery()
    cond = or_(col(SurveyCall.survey_id).in_(old), col(SurveyCall.teleworker_id).in_(_erased()))
    result = session.exec(
        update(SurveyCall)
        .where(cond, col(SurveyCall.teleworker_id).is_not(None))
        .values(teleworker_id=None, anonymised_at=now)
    )
    return int(result.rowcount or 0)


def blank_comments(session: Session, *, before: date, now: datetime) -> int:
    result = session.exec(
        update(SurveyAnswer)
        .where(col(SurveyAnswer.answered_on) < before, col(SurveyAnswer.comment).is_not(None))
        .values(comment=None, anonymised_at=now)
    )
    return int(result.rowcount or 0)
