"""Webhooks: per-client subscriptions, a durable sender, a delivery log, replay.

How nothing is lost (docs/logistics.md has the long form):

1. A lifecycle transition inserts a ``device_event``; a database trigger inserts its
   ``logistics_outbox`` row in the same transaction. Committed transition = committed
   outbox row, whatever process made it and whenever it dies afterwards.
2. ``feed.sequence`` numbers committed outbox rows in commit order.
3. ``fan_out`` turns new outbox rows into one ``webhook_delivery`` per matching
   subscription (body frozen there), advancing a counter in the same transaction.
4. ``send_due`` claims due deliveries with a lease (``next_attempt_at`` pushed forward and
   committed *before* the HTTP call), sends, and records the outcome. A sender killed
   mid-send leaves the delivery pending; when the lease expires it is sent again with
   the same ``webhook-id``: at-least-once, and receivers deduplicate by that id.

Messages are signed as Standard Webhooks specifies: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` with the subscription's ``whsec_`` secret.

The sending side (steps 3 and 4, the test ping) is ``logistics.sender``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from core import egress
from core.errors import InvalidInput
from core.principal import Principal
from core.settings import get_settings
from core.timeutil import utcnow
from inventory import service as inventory
from inventory.states import DeviceState
from logistics import crypto, feed, repository
from logistics.errors import SubscriptionNotFound
from logistics.feed import Change
from logistics.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from logistics.schemas import ReplayRequest, SubscriptionCreate

log = logging.getLogger("masterline.webhooks")

FANOUT_COUNTER = "webhook_fanout"
EVENT_TYPES = frozenset(f"device.{s.value}" for s in DeviceState)
OTHER_EVENT_TYPES: set[str] = set()
"""Event types of domains above logistics (the forecast's ``forecast.at_risk``),
registered at start (``wiring.wire``); their messages are queued by ``enqueue``."""
USER_AGENT = "Masterline-Webhooks/1"


# Subscriptions.
def check_destination(url: str) -> egress.Destination:
    """An http(s) URL whose host resolves to public addresses only (or to networks of
    ``MASTERLINE_WEBHOOK_ALLOW_NETWORKS``). Resolves the name: never call it with a
    database transaction open.

    :raises DestinationRefused: another scheme, no host, credentials in the URL, a name
        that does not resolve, or a destination that is not public.
    """
    return egress.check(url, allow=get_settings().webhook_networks)


def _validate_types(types: Sequence[str]) -> list[str]:
    out = []
    for t in types:
        if t != "*" and t not in EVENT_TYPES and t not in OTHER_EVENT_TYPES:
            raise InvalidInput(f"unknown event type {t[:64]!r} (use '*' or device.<state>)")
        out.append(t)
    if not out:
        raise InvalidInput("event_types must not be empty")
    return sorted(set(out))


def create_subscription(
    session: Session, body: SubscriptionCreate, principal: Principal
) -> tuple[WebhookSubscription, str | None]:
    """Returns the subscription and the generated secret (``None`` if one was given).

    The URL is checked (resolved) first, before this function's first query, so no
    transaction is open while the name resolves.

    :raises DestinationRefused: see ``check_destination``.
    :raises InvalidInput: bad event type or secret; no client for an admin.
    :raises ClientNotFound: unknown client code.
    """
    url = check_destination(body.url).url
    types = _validate_types(body.event_types)
    if principal.role.client_bound:
        assert principal.client_id is not None
        client_id = principal.client_id
    else:
        if not body.client_code:
            raise InvalidInput("client_code is required")
        client = inventory.client_by_code(session, body.client_code, principal)
        assert client.id is not None
        client_id = client.id
    generated = None
    secret = body.secret
    if secret is None:
        secret = generated = crypto.new_webhook_secret()
    else:
        why = crypto.webhook_secret_problem(secret)
        if why is not None:
            raise InvalidInput(f"secret {why}; omit it to have one generated")
    row = WebhookSubscription(
        client_id=client_id,
        url=url,
        event_types=types,
        secret_encrypted=crypto.encrypt(secret),
        description=body.description,
    )
    session.add(row)
    session.flush()
    return row, generated


def list_subscriptions(session: Session, principal: Principal) -> Sequence[WebhookSubscription]:
    return repository.list_subscriptions(session, client_id=principal.client_scope)


def get_subscription(session: Session, sub_id: int, principal: Principal) -> WebhookSubscription:
    """:raises SubscriptionNotFound: unknown or another company's."""
    return principal.visible(
        repository.get_subscription(session, sub_id), SubscriptionNotFound(str(sub_id))
    )


def set_active(
    session: Session, sub_id: int, principal: Principal, *, active: bool
) -> WebhookSubscription:
    row = get_subscription(session, sub_id, principal)
    row.active = active
    session.add(row)
    session.flush()
    return row


def _matches(sub: WebhookSubscription, change: Change) -> bool:
    if change.client_id != sub.client_id:
        return False
    return "*" in sub.event_types or change.event_type in sub.event_types


def payload(change: Change) -> str:
    """The JSON body of one event (compact, keys sorted: stable bytes)."""
    data: dict[str, Any] = {
        "seq": change.seq,
        "event_id": change.event_id,
        "device_id": change.device_id,
        "serial": change.serial,
        "vendor": change.vendor,
        "asset_tag": change.asset_tag,
        "client_id": change.client_id,
        "delivery_id": change.delivery_id,
        "order_reference": change.order_reference,
        "event": change.event,
        "from_state": change.from_state,
        "to_state": change.to_state,
        "at": change.at.isoformat(),
        "reason": change.reason,
    }
    body = {"type": change.event_type, "timestamp": change.at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def message_id(event_id: int) -> str:
    return f"msg_evt_{event_id}"


# Fan-out.
def fan_out(session: Session, *, limit: int = 1000) -> int:
    """Turn sequenced outbox rows past the fan-out counter into deliveries.

    Runs under the counter's row lock, so concurrent senders never fan out twice.
    Returns how many outbox rows it consumed (``limit`` means: call again).
    """
    counter = feed.lock_counter(session, FANOUT_COUNTER)
    changes = feed.changes_since(session, cursor=counter.value, limit=limit, client_id=None)
    if not changes:
        return 0
    subs = repository.active_subscriptions(session)
    created = 0
    now = utcnow()
    for change in changes:
        for sub in subs:
            # A new subscription gets what happens from its creation on, not the backlog
            # (``replay --since-seq`` sends history on purpose).
            if _matches(sub, change) and change.at >= sub.created_at:
                session.add(_delivery(sub, change, now))
                created += 1
    counter.value = changes[-1].seq
    session.add(counter)
    session.flush()
    log.debug("fanned out %d event(s) into %d delivery(ies)", len(changes), created)
    return len(changes)


def _delivery(sub: WebhookSubscription, change: Change, now: datetime) -> WebhookDelivery:
    assert sub.id is not None
    return WebhookDelivery(
        subscription_id=sub.id,
        event_id=change.event_id,
        seq=change.seq,
        message_id=message_id(change.event_id),
        event_type=change.event_type,
        payload=payload(change),
        next_attempt_at=now,
    )


def enqueue(
    session: Session,
    *,
    client_id: int,
    event_type: str,
    key: str,
    at: datetime,
    data: dict[str, Any],
) -> int:
    """Queue an event that is not a device's (``OTHER_EVENT_TYPES``) to every active
    subscription of ``client_id`` that wants it: the same deliveries, sender, signature,
    retries and log as device events, in the caller's transaction. ``key`` makes the
    ``webhook-id`` (``msg_<key>``). Returns how many deliveries were queued."""
    body = {"type": event_type, "timestamp": at.isoformat(), "data": data}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True)
    queued = 0
    for sub in repository.active_subscriptions(session):
        wanted = "*" in sub.event_types or event_type in sub.event_types
        if sub.client_id != client_id or not wanted or sub.id is None:
            continue
        session.add(
            WebhookDelivery(
                subscription_id=sub.id,
                event_id=None,
                seq=0,
                message_id=f"msg_{key}"[:64],
                event_type=event_type,
                payload=raw,
                next_attempt_at=utcnow(),
            )
        )
        queued += 1
    session.flush()
    return queued


# Replay and the log.
def replay(session: Session, sub: WebhookSubscription, body: ReplayRequest) -> tuple[int, int]:
    """Queue deliveries again (same ``webhook-id``). Returns (requeued, created).

    :raises InvalidInput: nothing selected.
    """
    assert sub.id is not None
    if body.since_seq is None and not body.delivery_ids and not body.failed_only:
        raise InvalidInput("say what to replay: since_seq, delivery_ids or failed_only")
    now = utcnow()
    requeued = created = 0
    targets: list[WebhookDelivery] = []
    if body.delivery_ids:
        targets += repository.deliveries_by_id(session, sub.id, body.delivery_ids)
    if body.failed_only:
        targets += repository.deliveries_of(
            session, sub.id, status=DeliveryStatus.FAILED, cursor=None, limit=10_000
        )
    if body.since_seq is not None:
        feed.sequence(session)
        cursor = body.since_seq
        while True:
            changes = feed.changes_since(
                session, cursor=cursor, limit=1000, client_id=sub.client_id
            )
            if not changes:
                break
            matching = [c for c in changes if _matches(sub, c)]
            known = repository.existing_deliveries(session, sub.id, [c.event_id for c in matching])
            for change in matching:
                if change.event_id in known:
                    targets.append(known[change.event_id])
                else:
                    session.add(_delivery(sub, change, now))
                    created += 1
            cursor = changes[-1].seq
    for d in {id(t): t for t in targets}.values():
        d.status = DeliveryStatus.PENDING
        d.next_attempt_at = now
        d.attempts = 0
        session.add(d)
        requeued += 1
    session.flush()
    return requeued, created
