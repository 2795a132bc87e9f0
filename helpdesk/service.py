"""Help-desk rules: queues, the phone menu's routing, contacts.

Services never commit (the request or the CLI command does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session

from core import helpcode
from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from helpdesk import repository
from helpdesk.errors import ArticleNotFound
from helpdesk.models import Contact, Queue
from helpdesk.schemas import ContactCreate, QueueIn, QueueRead, RouteAnswer
from inventory import service as inventory
from inventory.models import ClientCompany

DEFAULT_QUEUE = "default"
"""The queue name when the centre has not configured one."""
MAX_NUMBER = 32
"""Anything longer that a phone system sends is not a help code: default queue."""


# Queues.
def queue_read(session: Session, client: ClientCompany | None) -> QueueRead:
    """The client's queue, or the centre's default queue."""
    row = repository.get_queue(session, client.id) if client and client.id else None
    if row is not None:
        assert client is not None
        return QueueRead(
            client_code=client.code, name=row.name, phone_number=row.phone_number, hours=row.hours
        )
    default = repository.get_queue(session, None)
    if default is None:
        return QueueRead(client_code=None, name=DEFAULT_QUEUE, phone_number=None, hours=None)
    return QueueRead(
        client_code=None, name=default.name, phone_number=default.phone_number, hours=default.hours
    )


def set_queue(
    session: Session, client_code: str | None, body: QueueIn, principal: Principal
) -> Queue:
    """Create or replace a client's queue, or (``client_code`` None) the default.

    :raises ClientNotFound: unknown client.
    """
    client_id = None
    if client_code is not None:
        client_id = inventory.client_by_code(session, client_code, principal).id
    row = repository.get_queue(session, client_id) or Queue(client_id=client_id, name=body.name)
    row.name, row.phone_number, row.hours = body.name, body.phone_number, body.hours
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def list_queues(session: Session, principal: Principal) -> list[QueueRead]:
    rows = repository.list_queues(session, client_id=principal.client_scope)
    codes = {c.id: c.code for c in repository.clients(session).values()}
    return [
        QueueRead(
            client_code=codes.get(r.client_id) if r.client_id else None,
            name=r.name,
            phone_number=r.phone_number,
            hours=r.hours,
        )
        for r in rows
    ]


# Routing.
def route_number(session: Session, number: str, principal: Principal) -> RouteAnswer:
    """The queue for the number a caller typed. Never raises for a bad number: anything
    that is not the help code of a laptop this caller may see goes to the default
    queue. One indexed query (``repository.route``)."""
    device_id = helpcode.decode(number) if len(number) <= MAX_NUMBER else None
    client_id, queue, default = repository.route(session, device_id or 0)
    fallback = default or DEFAULT_QUEUE
    if device_id is None or client_id is None or not principal.sees_client(client_id):
        return RouteAnswer(queue=fallback, known=False)
    return RouteAnswer(queue=queue or fallback, known=True)


# Contacts.
def iso_week(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def record_contact(session: Session, body: ContactCreate, principal: Principal) -> Contact:
    """Record one contact. With a laptop, its client and (if it was shipped to someone)
    the person are taken from it; without one, the client is the token's or named.

    :raises DeviceNotFound, ClientNotFound, ArticleNotFound: unknown or invisible.
    :raises InvalidInput: a laptop of no client, a time in the future, no client.
    """
    from helpdesk import kb

    at = body.at or utcnow()
    if at.tzinfo is None:
        raise InvalidInput("at must carry a time zone (e.g. 2026-11-24T09:30:00Z)")
    if at > utcnow() + timedelta(minutes=5):
        raise InvalidInput("at is in the future")
    teleworker_id = None
    if body.device_id is not None:
        device = inventory.get_device(session, body.device_id, principal)
        if device.client_id is None:
            raise InvalidInput(f"laptop {device.serial} belongs to no client yet")
        client_id = device.client_id
        shipment = repository.latest_shipments(session, [body.device_id]).get(body.device_id)
        if shipment is not None:
            person = repository.teleworkers(session, [shipment.teleworker_id]).get(
                shipment.teleworker_id
            )
            if person is not None and person.erased_at is None:
                teleworker_id = person.id
    else:
        client_id = kb.client_for_write(session, body.client_code, principal)
    if body.article_id is not None:
        article = kb.get_article(session, body.article_id, principal)
        if article.client_id != client_id:
            raise ArticleNotFound(str(body.article_id))
    row = Contact(
        client_id=client_id,
        device_id=body.device_id,
        teleworker_id=teleworker_id,
        channel=body.channel,
        reason=body.reason,
        item=body.item,
        resolved_first_contact=body.resolved_first_contact,
        article_id=body.article_id,
        note=body.note,
        at=at,
        week=iso_week(at),
    )
    session.add(row)
    session.flush()
    return row


def list_contacts(
    session: Session,
    principal: Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    cursor: int | None,
    limit: int,
) -> Sequence[Contact]:
    return repository.list_contacts(
        session,
        client_id=principal.client_scope,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
