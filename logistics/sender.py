"""Webhook sending: claim due deliveries, call receivers, record outcomes; the test ping.

Every call goes through ``core.egress``: public destinations only (checked at
subscription and again at every send, on the resolved address, connecting to that
address), no redirects, a total deadline, a capped read, a short sanitised excerpt in
the log. No call is made while a database transaction is open: claims are committed
before the calls, outcomes recorded after them, each in its own short transaction
(``logistics.webhooks`` has the whole design).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from core import egress
from core.db import Database
from core.errors import MasterlineError
from core.principal import Principal
from core.settings import get_settings
from core.timeutil import utcnow
from logistics import crypto, feed, repository
from logistics.models import DeliveryStatus, WebhookAttempt
from logistics.webhooks import USER_AGENT, check_destination, fan_out, get_subscription

log = logging.getLogger("masterline.webhooks")


@dataclass(frozen=True)
class SenderPolicy:
    """Retries: attempt n (1-based) that fails waits ``backoff * 2**(n-1)``, capped.
    The call limits default to the settings (``MASTERLINE_WEBHOOK_DEADLINE_SECONDS``,
    ``MASTERLINE_WEBHOOK_MAX_REPLY_BYTES``)."""

    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0
    max_attempts: int = 12
    lease_seconds: float = 60.0
    timeout_seconds: float = field(default_factory=lambda: get_settings().webhook_deadline_seconds)
    """The whole exchange (connect, send, headers, body), not each read."""
    max_reply_bytes: int = field(default_factory=lambda: get_settings().webhook_max_reply_bytes)
    """At most this much of a reply is read; only a short excerpt is kept."""
    batch: int = 50

    def delay(self, attempts: int) -> timedelta:
        seconds = min(self.backoff_seconds * (2 ** max(attempts - 1, 0)), self.max_backoff_seconds)
        return timedelta(seconds=seconds)


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


def deliver(
    *, url: str, secret: str, msg_id: str, body: str, now: datetime, policy: SenderPolicy
) -> Outcome:
    """One signed POST, to a destination checked again now (a name may have been
    pointed inward since the subscription). Never raises for network errors: they are
    an ``Outcome``."""
    try:
        dest = check_destination(url)
    except egress.DestinationRefused as e:
        return Outcome(False, None, f"refused: {e.message}"[:500], None, 0)
    timestamp = int(now.timestamp())
    raw = body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": crypto.sign(secret, msg_id, timestamp, raw),
    }
    reply = egress.post(
        dest,
        raw,
        headers,
        deadline_seconds=policy.timeout_seconds,
        max_reply_bytes=policy.max_reply_bytes,
    )
    return Outcome(reply.ok, reply.status, reply.error, reply.excerpt, reply.duration_ms)


def record(
    session: Session, claim: Claimed, outcome: Outcome, *, now: datetime, policy: SenderPolicy
) -> None:
    delivery = repository.get_delivery_for_update(session, claim.delivery_id)
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
    *,
    policy: SenderPolicy,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """One round: sequence, fan out, claim, send, record. Returns deliveries attempted.

    Each database step is its own short transaction; the HTTP calls happen between
    them, with none open."""
    feed.sequence_all(db)
    for _ in range(100):
        with db.session() as session:
            if fan_out(session, limit=1000) < 1000:
                break
    with db.session() as session:
        claims = claim_due(session, now=clock(), policy=policy)
    for claim in claims:
        outcome = deliver(
            url=claim.url,
            secret=claim.secret,
            msg_id=claim.message_id,
            body=claim.payload,
            now=clock(),
            policy=policy,
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
    while not should_stop():
        try:
            sent = send_due(db, policy=policy)
        except OperationalError as e:
            # Database restarting or busy: the outbox keeps everything; try again.
            log.warning("database unavailable (%s); retrying", type(e.orig).__name__)
            sent = 0
        if once:
            return
        if not sent:
            time.sleep(interval)


@dataclass(frozen=True)
class TestTarget:
    """What a test ping needs, read in a short transaction that ends before the call."""

    __test__ = False  # not a pytest class
    subscription_id: int
    url: str
    secret: str


def test_target(session: Session, sub_id: int, principal: Principal) -> TestTarget:
    """:raises SubscriptionNotFound: unknown or another company's."""
    sub = get_subscription(session, sub_id, principal)
    assert sub.id is not None
    return TestTarget(sub.id, sub.url, crypto.decrypt(sub.secret_encrypted))


def send_test(target: TestTarget, *, policy: SenderPolicy | None = None) -> tuple[str, Outcome]:
    """A signed ``webhook.test`` ping, sent now, not queued and not logged. Call it
    with no transaction open: it may take the whole deadline."""
    now = utcnow()
    msg_id = f"msg_test_{target.subscription_id}_{int(now.timestamp() * 1000)}"
    body = json.dumps(
        {
            "type": "webhook.test",
            "timestamp": now.isoformat(),
            "data": {"subscription_id": target.subscription_id},
        },
        separators=(",", ":"),
    )
    outcome = deliver(
        url=target.url,
        secret=target.secret,
        msg_id=msg_id,
        body=body,
        now=now,
        policy=policy or SenderPolicy(),
    )
    return msg_id, outcome
