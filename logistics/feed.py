"""The change feed: every device event, in an order a cursor can never skip.

Why not ``device_event.id > cursor``: on PostgreSQL, ids come from a sequence when the row
is inserted, but transactions commit in another order. A reader can see id 12 committed
while id 11 is still in flight, move its cursor to 12, and never see 11.

What we do instead: a trigger writes one ``logistics_outbox`` row per event in the event's
own transaction, with ``seq`` empty. ``sequence()`` then hands out ``seq`` numbers, but
only to rows that are already committed, in a transaction that holds the
``outbox_seq`` counter row locked. Rows committed later get higher numbers; numbers of
one round become visible together when that round commits. So everything below a
``seq`` a reader has seen is final, and ``seq > cursor`` cannot skip. On SQLite writers
are serialised anyway; the same code runs there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from core.db import Database
from inventory.models import Device, DeviceEvent
from logistics import repository
from logistics.models import Counter, OutboxEntry

SEQ_COUNTER = "outbox_seq"
BATCH = 1000


def lock_counter(session: Session, name: str) -> Counter:
    """The named counter row, locked until the transaction ends (created at 0)."""
    return repository.lock_counter(session, name)


def sequence(session: Session, *, limit: int = BATCH) -> int:
    """Give committed, unsequenced outbox rows their ``seq``; returns how many.

    Call it in its own short write transaction (``sequence_all`` does).
    """
    counter = repository.lock_counter(session, SEQ_COUNTER)
    ids = repository.unsequenced_outbox_ids(session, limit=limit)
    if not ids:
        return 0
    start = counter.value
    repository.assign_seqs(session, {oid: start + i + 1 for i, oid in enumerate(ids)})
    counter.value = start + len(ids)
    session.add(counter)
    session.flush()
    return len(ids)


def sequence_all(db: Database, *, rounds: int = 100) -> int:
    """Sequence everything committed so far, one short transaction per batch."""
    total = 0
    for _ in range(rounds):
        with db.session() as session:
            n = sequence(session)
        total += n
        if n < BATCH:
            break
    return total


@dataclass(frozen=True)
class Change:
    seq: int
    event_id: int
    device_id: int
    serial: str
    vendor: str
    asset_tag: str | None
    client_id: int | None
    delivery_id: int | None
    order_reference: str | None
    event: str
    from_state: str | None
    to_state: str
    at: datetime
    reason: str | None

    @property
    def event_type(self) -> str:
        """The webhook ``type``: ``device.<state it moved to>``."""
        return f"device.{self.to_state}"


def changes_since(
    session: Session, *, cursor: int, limit: int, client_id: int | None
) -> list[Change]:
    """Changes with ``seq > cursor``, oldest first; ``client_id`` scopes a tenant."""
    rows = repository.outbox_since(session, cursor=cursor, limit=limit, client_id=client_id)
    return [_change(o, e, d) for o, e, d in rows]


def changes_by_seq(session: Session, seqs: Sequence[int]) -> list[Change]:
    return [_change(o, e, d) for o, e, d in repository.outbox_by_seq(session, seqs)]


def _change(o: OutboxEntry, e: DeviceEvent, d: Device) -> Change:
    assert o.seq is not None and e.id is not None and d.id is not None
    return Change(
        seq=o.seq,
        event_id=e.id,
        device_id=d.id,
        serial=d.serial,
        vendor=d.vendor,
        asset_tag=d.asset_tag,
        client_id=o.client_id,
        delivery_id=d.delivery_id,
        order_reference=d.order_reference,
        event=e.event,
        from_state=e.from_state,
        to_state=e.to_state,
        at=e.at,
        reason=e.reason,
    )
