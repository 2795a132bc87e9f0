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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from core.db import Database
from core.errors import InvalidInput, MasterlineError
from core.principal import Principal
from core.timeutil import utcnow
from inventory import service as inventory
from inventory.states import DeviceState
from logistics import crypto, feed, repository
from logistics.errors import SubscriptionNotFound
from logistics.feed import Change
from logistics.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from logistics.schemas import ReplayRequest, SubscriptionCreate

if TYPE_CHECKING:
    # Imported where used: httpx pulls in rich, click and pygments (~10 MB), which
    # the API server only needs when it sends a test ping.
    import httpx

log = logging.getLogger("masterline.webhooks")

FANOUT_COUNTER = "webhook_fanout"
EVENT_TYPES = frozenset(f"device.{s.value}" for s in DeviceState)
OTHER_EVENT_TYPES: set[str] = set()
"""Event types of domains above logistics (the forecast's ``forecast.at_risk``),
registered at start (``wiring.wire``); their messages are queued by ``enqueue``."""
USER_AGENT = "Masterline-Webhooks/1"


@dataclass(frozen=True)
class SenderPolicy:
    """Retries: attempt n (1-based) that fails waits ``backoff * 2**(n-1)``, capped."""

    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0
    max_attempts: int = 12
    lease_seconds: float = 60.0
    timeout_seconds: float = 10.0
    batch: int = 50

    def delay(self, attempts: int) -> timedelta:
        seconds = min(self.backoff_seconds * (2 ** max(attempts - 1, 0)), self.max_backoff_seconds)
        return timedelta(seconds=seconds)


# Subscriptions.
def validate_url(url: str) -> str:
    """Only http(s) with a host. (Tests post to receivers on 127.0.0.1 only.)

    :raises InvalidInput: another scheme, no host, or credentials in the URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook url must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise InvalidInput("webhook url must not carry credentials; the secret signs messages")
    return url.strip()


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

    :raises InvalidInput: bad URL, event type or secret; no client for an admin.
    :raises ClientNotFound: unknown client code.
    """
    url = validate_url(body.url)
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
        try:
            if len(crypto.signing_key(secret)) < 16:
                raise ValueError
        except ValueError:
            raise InvalidInput("secret must be whsec_ + base64 of at least 16 bytes") from None
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
    row = repository.get_subscription(session, sub_id)
    if row is None or not principal.sees_client(row.client_id):
        raise SubscriptionNotFound(str(sub_id))
    return row


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


# Sending.
@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempt: int
    url: str
    secret: str
    message_id: str
    payload: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    excerpt: str | None
    duration_ms: int


def claim_due(session: Session, *, now: datetime, policy: SenderPolicy) -> list[Claimed]:
    """Lease due deliveries: their ``next_attempt_at`` moves past the lease, committed by
    the caller before sending, so a killed sender's work comes back after the lease."""
    claimed = []
    secrets: dict[int, tuple[str, str] | None] = {}
    for d in repository.due_deliveries(session, now=now, limit=policy.batch):
        assert d.id is not None
        if d.subscription_id not in secrets:
            secrets[d.subscription_id] = _target(session, d.subscription_id)
        target = secrets[d.subscription_id]
        if target is None:
            continue  # paused subscription: stays pending until re-activated
        d.next_attempt_at = now + timedelta(seconds=policy.lease_seconds)
        session.add(d)
        claimed.append(Claimed(d.id, d.attempts + 1, target[0], target[1], d.message_id, d.payload))
    session.flush()
    return claimed


def _target(session: Session, sub_id: int) -> tuple[str, str] | None:
    """URL and clear secret of an active subscription; ``None`` keeps its deliveries
    waiting (paused, or a secret the current key cannot decrypt: fix the key, nothing
    is lost)."""
    sub = repository.get_subscription(session, sub_id)
    if sub is None or not sub.active:
        return None
    try:
        return sub.url, crypto.decrypt(sub.secret_encrypted)
    except MasterlineError:
        log.warning("webhook subscription %d: secret unreadable with the current key", sub_id)
        return None


def post(
    http: httpx.Client, *, url: str, secret: str, msg_id: str, body: str, now: datetime
) -> Outcome:
    """One signed POST. Never raises for network errors: they are an ``Outcome``."""
    import httpx

    timestamp = int(now.timestamp())
    raw = body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": crypto.sign(secret, msg_id, timestamp, raw),
    }
    started = time.monotonic()
    try:
        response = http.post(url, content=raw, headers=headers)
    except httpx.HTTPError as e:
        took = int((time.monotonic() - started) * 1000)
        return Outcome(False, None, type(e).__name__, None, took)
    took = int((time.monotonic() - started) * 1000)
    ok = 200 <= response.status_code < 300
    excerpt = response.text[:500] if response.content else None
    return Outcome(
        ok, response.status_code, None if ok else f"HTTP {response.status_code}", excerpt, took
    )


def record(
    session: Session, claim: Claimed, outcome: Outcome, *, now: datetime, policy: SenderPolicy
) -> None:
    delivery = session.exec(
        select(WebhookDelivery).where(WebhookDelivery.id == claim.delivery_id).with_for_update()
    ).one()
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            attempt=claim.attempt,
            at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            response_excerpt=outcome.excerpt,
            duration_ms=outcome.duration_ms,
        )
    )
    delivery.attempts = claim.attempt
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
    elif claim.attempt >= policy.max_attempts:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.next_attempt_at = now + policy.delay(claim.attempt)
    session.add(delivery)
    session.flush()


def send_due(
    db: Database,
    http: httpx.Client,
    *,
    policy: SenderPolicy,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """One round: sequence, fan out, claim, send, record. Returns deliveries attempted."""
    feed.sequence_all(db)
    for _ in range(100):
        with db.session() as session:
            if fan_out(session, limit=1000) < 1000:
                break
    with db.session() as session:
        claims = claim_due(session, now=clock(), policy=policy)
    for claim in claims:
        outcome = post(
            http,
            url=claim.url,
            secret=claim.secret,
            msg_id=claim.message_id,
            body=claim.payload,
            now=clock(),
        )
        with db.session() as session:
            record(session, claim, outcome, now=clock(), policy=policy)
        # The id and the status only: URLs may embed tokens, bodies are the client's.
        log.info(
            "webhook %s attempt %d: %s",
            claim.message_id,
            claim.attempt,
            outcome.status_code or outcome.error,
        )
    return len(claims)


def run_sender(
    db: Database,
    *,
    policy: SenderPolicy,
    interval: float,
    once: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    import httpx

    with httpx.Client(timeout=policy.timeout_seconds, follow_redirects=False) as http:
        while not should_stop():
            try:
                sent = send_due(db, http, policy=policy)
            except OperationalError as e:
                # Database restarting or busy: the outbox keeps everything; try again.
                log.warning("database unavailable (%s); retrying", type(e.orig).__name__)
                sent = 0
            if once:
                return
            if not sent:
                time.sleep(interval)


def send_test(session: Session, sub: WebhookSubscription) -> tuple[str, Outcome]:
    """A signed ``webhook.test`` ping, sent now, not queued and not logged."""
    import httpx

    assert sub.id is not None
    now = utcnow()
    msg_id = f"msg_test_{sub.id}_{int(now.timestamp() * 1000)}"
    body = json.dumps(
        {"type": "webhook.test", "timestamp": now.isoformat(), "data": {"subscription_id": sub.id}},
        separators=(",", ":"),
    )
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        outcome = post(
            http,
            url=sub.url,
            secret=crypto.decrypt(sub.secret_encrypted),
            msg_id=msg_id,
            body=body,
            now=now,
        )
    return msg_id, outcome


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
        targets += session.exec(
            select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == sub.id,
                col(WebhookDelivery.id).in_(body.delivery_ids),
            )
        ).all()
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
