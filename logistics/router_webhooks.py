"""Webhook routes: subscriptions (create, list, pause, resume), test pings, replays and the
delivery log."""

from __future__ import annotations

import threading

import anyio
from fastapi import Request
from fastapi.responses import Response

from api.deps import SessionDep, get_db, new_router
from logistics import sender, service, webhooks
from logistics.errors import TooManyPings
from logistics.models import DeliveryStatus
from logistics.router import Format, Limit, LogisticsOrAdmin, csv_response
from logistics.schemas import (
    AttemptRead,
    DeliveryLogPage,
    DeliveryLogRead,
    ReplayRequest,
    ReplaySummary,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
    TestResult,
)

router = new_router()


@router.post("/webhooks", response_model=SubscriptionCreated, status_code=201, tags=["webhooks"])
def create_subscription(
    body: SubscriptionCreate, session: SessionDep, principal: LogisticsOrAdmin
) -> SubscriptionCreated:
    """Subscribe a URL to device events. The secret is stored encrypted and never shown
    again; when you send none, the generated one is in this response only."""
    row, generated = webhooks.create_subscription(session, body, principal)
    return SubscriptionCreated(
        **SubscriptionRead.model_validate(row).model_dump(), secret=generated
    )


@router.get("/webhooks", response_model=list[SubscriptionRead], tags=["webhooks"])
def list_subscriptions(session: SessionDep, principal: LogisticsOrAdmin) -> list[SubscriptionRead]:
    return [
        SubscriptionRead.model_validate(s) for s in webhooks.list_subscriptions(session, principal)
    ]


@router.get("/webhooks/{sub_id}", response_model=SubscriptionRead, tags=["webhooks"])
def get_subscription(
    sub_id: int, session: SessionDep, principal: LogisticsOrAdmin
) -> SubscriptionRead:
    return SubscriptionRead.model_validate(webhooks.get_subscription(session, sub_id, principal))


@router.post("/webhooks/{sub_id}/pause", response_model=SubscriptionRead, tags=["webhooks"])
def pause(sub_id: int, session: SessionDep, principal: LogisticsOrAdmin) -> SubscriptionRead:
    """Pause a subscription: its deliveries wait (nothing is dropped) until resumed."""
    return SubscriptionRead.model_validate(
        webhooks.set_active(session, sub_id, principal, active=False)
    )


@router.post("/webhooks/{sub_id}/resume", response_model=SubscriptionRead, tags=["webhooks"])
def resume(sub_id: int, session: SessionDep, principal: LogisticsOrAdmin) -> SubscriptionRead:
    return SubscriptionRead.model_validate(
        webhooks.set_active(session, sub_id, principal, active=True)
    )


# Test pings run on threads of their own, a few at a time: a receiver that takes its
# whole deadline must not hold the request threads that scans need (45 slow pings at
# once did, before). More at once answer 429.
_TEST_PING_SLOTS = 4
_TEST_PINGS = anyio.CapacityLimiter(_TEST_PING_SLOTS)
_test_pings_admitted = threading.BoundedSemaphore(_TEST_PING_SLOTS)


@router.post(
    "/webhooks/{sub_id}/test",
    response_model=TestResult,
    tags=["webhooks"],
    responses={429: {"description": "Too many test pings in progress; retry shortly."}},
)
async def test_subscription(
    sub_id: int, request: Request, principal: LogisticsOrAdmin
) -> TestResult:
    """Send a signed `webhook.test` message now and report what the endpoint answered.

    The subscription is read in a short read-only transaction that ends before the call;
    the call itself has a total deadline (10 s) and reads at most 64 KiB of the reply."""
    db = get_db(request)

    def lookup() -> sender.TestTarget:
        with db.session(write=False) as s:
            return sender.test_target(s, sub_id, principal)

    target = await anyio.to_thread.run_sync(lookup)
    if not _test_pings_admitted.acquire(blocking=False):
        raise TooManyPings()
    try:
        msg_id, outcome = await anyio.to_thread.run_sync(
            lambda: sender.send_test(target), limiter=_TEST_PINGS
        )
    finally:
        _test_pings_admitted.release()
    return TestResult(
        delivered=outcome.ok,
        status_code=outcome.status_code,
        error=outcome.error,
        message_id=msg_id,
    )


@router.post("/webhooks/{sub_id}/replay", response_model=ReplaySummary, tags=["webhooks"])
def replay(
    sub_id: int, body: ReplayRequest, session: SessionDep, principal: LogisticsOrAdmin
) -> ReplaySummary:
    """Queue events again, with their original `webhook-id` (receivers deduplicate)."""
    sub = webhooks.get_subscription(session, sub_id, principal)
    requeued, created = webhooks.replay(session, sub, body)
    return ReplaySummary(requeued=requeued, created=created)


@router.get("/webhooks/{sub_id}/deliveries", response_model=DeliveryLogPage, tags=["webhooks"])
def delivery_log(
    sub_id: int,
    session: SessionDep,
    principal: LogisticsOrAdmin,
    status: DeliveryStatus | None = None,
    cursor: int | None = None,
    limit: Limit = 100,
    format: Format = "json",
) -> DeliveryLogPage | Response:
    """The delivery log: each event's delivery state and every attempt."""
    sub = webhooks.get_subscription(session, sub_id, principal)
    rows = service.delivery_log(session, sub, status=status, cursor=cursor, limit=limit)
    items = []
    for r, attempts in rows:
        item = DeliveryLogRead.model_validate(r)
        item.log = [AttemptRead.model_validate(a) for a in attempts]
        items.append(item)
    page = DeliveryLogPage.of(items, limit)
    if format == "csv":
        flat = [i.model_dump(mode="json", exclude={"log"}) for i in items]
        return csv_response(
            flat, filename=f"webhook-{sub_id}-log.csv", next_cursor=page.next_cursor
        )
    return page
