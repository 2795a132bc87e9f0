"""The help desk's part of the personal-data retention purge (``masterline logistics
purge``), registered in ``logistics.hooks`` at start (``wiring.wire``) so that logistics
runs it without importing the help desk.

Past the retention period (and at once for a person the purge erased), a contact loses
its link to the person and its free-text note, a survey call its link to the person, a
survey answer its comment. What stays cannot name anyone and keeps the reports true:
contact counts by reason, model and wave; call outcomes; scores.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from helpdesk import repository_survey as survey_sql
from logistics import hooks


def purge(session: Session, before: datetime, now: datetime) -> dict[str, int]:
    """Anonymise what is older than ``before``; returns counts by kind."""
    counts = {
        "contact(s) anonymised": survey_sql.anonymise_contacts(session, before=before, now=now),
        "survey call(s) anonymised": survey_sql.anonymise_calls(session, before=before, now=now),
        "survey comment(s) blanked": survey_sql.blank_comments(
            session, before=before.date(), now=now
        ),
    }
    session.flush()
    return counts


def register() -> None:
    hooks.register_purge(purge)
