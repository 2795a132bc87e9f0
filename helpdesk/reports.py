"""Contact reports: what people call about, and how many calls a wave of laptops causes
in its first days at home — the figure a staging centre wants to bring down."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlmodel import Session

from core.principal import Principal
from core.timeutil import utcnow
from helpdesk import repository
from helpdesk.schemas import ReasonRow, WaveRow
from inventory import service as inventory

FIRST_DAYS = 10


def reasons(
    session: Session, principal: Principal, *, since: datetime, until: datetime
) -> list[ReasonRow]:
    """Contacts per ISO week, client, hardware model, reason and configuration item."""
    rows = repository.reason_counts(
        session, client_id=principal.client_scope, since=since, until=until
    )
    codes = {c.id: c.code for c in repository.clients(session).values()}
    model_ids = {r[2] for r in rows if r[2] is not None}
    models = repository.hardware_models(session, model_ids) if model_ids else {}
    out = []
    for week, client_id, model_id, reason, item, count, resolved in rows:
        model = models.get(model_id) if model_id is not None else None
        out.append(
            ReasonRow(
                week=week,
                client_code=codes.get(client_id, ""),
                model=f"{model.vendor} {model.model}" if model else None,
                reason=str(reason),
                item=item,
                contacts=int(count),
                resolved_first_contact=int(resolved or 0),
            )
        )
    out.sort(key=lambda r: (r.week, r.client_code, r.model or "", r.reason, r.item or ""))
    return out


def waves(
    session: Session,
    principal: Principal,
    *,
    delivery_id: int | None = None,
    days: int = FIRST_DAYS,
    now: datetime | None = None,
) -> list[WaveRow]:
    """Per wave (the laptops of one vendor delivery): contacts about its laptops within
    ``days`` days of each laptop's delivery to its teleworker, per 100 laptops.

    Only laptops whose window has closed count, so a wave still arriving is not flattered
    by laptops that have had no time to cause calls; ``delivered`` says how many have
    arrived at all.

    :raises DeliveryNotFound: ``delivery_id`` unknown or another company's.
    """
    if delivery_id is not None:
        inventory.get_delivery(session, delivery_id, principal)
    at = now or utcnow()
    window = timedelta(days=days)
    deliveries = repository.wave_deliveries(
        session, client_id=principal.client_scope, delivery_id=delivery_id
    )
    arrived = repository.first_deliveries(session, [d.id for d in deliveries if d.id])
    by_wave: dict[int, dict[int, datetime]] = defaultdict(dict)
    for wave, device_id, delivered_at in arrived:
        by_wave[wave][device_id] = delivered_at
    closed = {
        device_id: delivered_at
        for devices in by_wave.values()
        for device_id, delivered_at in devices.items()
        if delivered_at + window <= at
    }
    in_window: dict[int, int] = defaultdict(int)
    for device_id, contact_at in repository.contact_times(session, closed):
        start = closed[device_id]
        if start <= contact_at < start + window:
            in_window[device_id] += 1
    codes = {c.id: c.code for c in repository.clients(session).values()}
    out = []
    for d in deliveries:
        assert d.id is not None
        devices = by_wave.get(d.id, {})
        done = [x for x in devices if x in closed]
        contacts = sum(in_window[x] for x in done)
        out.append(
            WaveRow(
                delivery_id=d.id,
                order_reference=d.order_reference,
                client_code=codes.get(d.client_id, ""),
                delivered=len(devices),
                window_closed=len(done),
                contacts=contacts,
                per_100=round(contacts * 100 / len(done), 2) if done else None,
            )
        )
    return out
