"""The retention purge: personal data of teleworkers whose shipments closed long enough ago
is erased, the history stays."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from core.errors import InvalidInput
from core.timeutil import utcnow
from logistics import hooks, repository

ERASED = "erased"


# Retention.
def purge_personal_data(
    session: Session,
    *,
    retention_days: int,
    now: datetime | None = None,
    report: dict[str, int] | None = None,
) -> int:
    """Erase teleworkers whose every shipment closed more than ``retention_days`` ago.

    Name, e-mail, phone and address are replaced by anonymised values; the teleworker
    row, its shipments and every device event stay, so the history still says that
    laptop X went to teleworker #N by carrier C on day D. Returns how many were erased.

    Then, in the same transaction, every purge step (``logistics.hooks``) applies the
    same retention to what other domains keep about people (the help desk's contacts,
    survey calls and answers); each adds its counts to ``report``.

    :raises InvalidInput: a negative retention.
    """
    if retention_days < 0:
        raise InvalidInput("retention must be zero or more days")
    at = now or utcnow()
    erased = 0
    for person in repository.teleworkers_to_erase(
        session, closed_before=at - timedelta(days=retention_days)
    ):
        person.name = ERASED
        # Still unique per client (the constraint) and obviously not an address.
        person.email = f"erased-{person.id}@erased.invalid"
        person.phone = None
        person.address = ERASED
        person.erased_at = at
        person.updated_at = at
        session.add(person)
        erased += 1
    session.flush()
    cutoff = at - timedelta(days=retention_days)
    for step in hooks.ON_PURGE:
        counts = step(session, cutoff, at)
        if report is not None:
            report.update(counts)
    return erased
