"""The forecast's rules: compute it, keep the latest per scope, read it as a caller may,
commitments and the alerts when a committed date is at risk.

Services don't commit: ``refresh`` owns its two transactions (a read to compute, a short
write to store), the routes and commands own theirs.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from core.db import Database
from core.errors import Forbidden
from core.principal import Principal
from core.timeutil import utcnow
from forecast import answers, inputs, montecarlo, repository
from forecast.errors import DeliveryNotFound, NothingToForecast, SiteNotFound
from forecast.models import ForecastDelivery, ForecastNotice, ForecastSite, ForecastSnapshot
from forecast.world import Status, World
from inventory import repository as inventory_repo

log = logging.getLogger("masterline.forecast")

RUNS = 200
SEED = 17
"""Every forecast draws from the same seed: two forecasts of the same wave agree, and a
what-if differs from its base only by what it changed (common random numbers)."""
AT_RISK = "forecast.at_risk"
BACK_ON_TRACK = "forecast.back_on_track"
EVENT_TYPES = (AT_RISK, BACK_ON_TRACK)


@dataclass
class Computed:
    world: World
    index: inputs.Index
    outcome: montecarlo.Outcome
    figures: dict[tuple[str, int], dict[str, Any]]


def _iso(t0: datetime, seconds: float | None) -> str | None:
    return None if seconds is None else (t0 + timedelta(seconds=seconds)).isoformat()


def figures_of(
    computed_or: tuple[World, inputs.Index, montecarlo.Outcome], members: np.ndarray
) -> dict[str, Any]:
    world, index, out = computed_or
    status = world.fleet.status
    d = montecarlo.dates(out, members, status)
    return {
        "laptops": d.laptops,
        "dispatched": d.done,
        "ready_or_gone": int(
            np.sum((status[members] == Status.READY) | (status[members] == Status.DISPATCHED))
        ),
        "expected_aside": round(d.aside, 2),
        "ready_p50": _iso(index.t0, d.ready_p50),
        "ready_p90": _iso(index.t0, d.ready_p90),
        "dispatched_p50": _iso(index.t0, d.dispatched_p50),
        "dispatched_p90": _iso(index.t0, d.dispatched_p90),
        "throughput_per_hour": round(montecarlo.throughput_per_hour(out, members, status), 2),
    }


def compute(
    session: Session,
    *,
    now: datetime | None = None,
    runs: int = RUNS,
    seed: int = SEED,
    bottlenecks: bool = True,
) -> Computed:
    """The forecast of the wave as it stands.

    :raises NothingToForecast: no site or no laptop.
    """
    now = now or utcnow()
    world, index = inputs.build(session, now=now)
    out = montecarlo.simulate(world, runs=runs, seed=seed)
    base = (world, index, out)
    fleet = world.fleet
    everyone = np.arange(len(fleet))
    figures: dict[tuple[str, int], dict[str, Any]] = {("wave", 0): figures_of(base, everyone)}
    verdicts = answers.bottlenecks(world, index, out, seed=seed) if bottlenecks else {}
    for k, site in enumerate(index.sites):
        members = np.flatnonzero(fleet.site == k)
        if len(members):
            fig = figures_of(base, members)
            fig["name"] = site.name
            fig["bottleneck"] = verdicts.get(k)
            figures[("site", site.site_id)] = fig
    if verdicts.get(-1):
        figures[("wave", 0)]["bottleneck"] = verdicts[-1]
    for client in sorted(set(index.client_ids.tolist()) - {0}):
        figures[("client", client)] = figures_of(base, np.flatnonzero(index.client_ids == client))
    for i, delivery_id in enumerate(index.delivery_ids):
        members = np.flatnonzero(fleet.delivery == i)
        if len(members):
            figures[("delivery", delivery_id)] = figures_of(base, members)
    figures[("wave", 0)]["assumptions"] = index.assumptions
    figures[("wave", 0)]["learned"] = index.sources
    return Computed(world, index, out, figures)


def store(session: Session, computed: Computed, *, now: datetime) -> list[ForecastNotice]:
    """Replace the stored forecast with ``computed`` and raise the alerts it calls for."""
    clients = computed.index.delivery_clients
    rows = []
    for (scope, scope_id), fig in computed.figures.items():
        client = (
            scope_id
            if scope == "client"
            else clients.get(scope_id)
            if scope == "delivery"
            else None
        )
        rows.append(
            ForecastSnapshot(
                scope=scope,
                scope_id=scope_id,
                client_id=client,
                made_at=now,
                figures=json.loads(json.dumps(fig, default=str)),
            )
        )
    repository.replace_snapshots(session, rows)
    return check_commitments(session, computed.figures, now=now)


def refresh(db: Database, *, now: datetime | None = None, up_to: int | None = None) -> bool:
    """Compute and store the forecast (False: nothing to forecast). The computation
    reads in its own transaction; storing is a short write of its own."""
    now = now or utcnow()
    try:
        with db.session(write=False) as s:
            computed = compute(s, now=now)
    except NothingToForecast:
        with db.session() as s:
            repository.replace_snapshots(s, [])
            if up_to is not None:
                repository.clear_changes(s, up_to=up_to)
        return False
    with db.session() as s:
        store(s, computed, now=now)
        if up_to is not None:
            repository.clear_changes(s, up_to=up_to)
    return True


# Reading.
def snapshots(session: Session, principal: Principal) -> list[ForecastSnapshot]:
    """What the caller may see: staff everything; a client's people their company's
    deliveries and its own figures."""
    rows = repository.snapshots(session)
    if not principal.role.client_bound:
        return list(rows)
    return [
        r for r in rows if r.scope in ("client", "delivery") and principal.sees_client(r.client_id)
    ]


def delivery_snapshot(
    session: Session, delivery_id: int, principal: Principal
) -> tuple[ForecastSnapshot | None, ForecastDelivery | None]:
    """:raises DeliveryNotFound: unknown, or another company's."""
    delivery = inventory_repo.get_delivery(session, delivery_id)
    principal.visible(delivery, DeliveryNotFound(delivery_id))
    return repository.snapshot(session, "delivery", delivery_id), repository.delivery_setting(
        session, delivery_id
    )


# Commitments and alerts.
def set_commitment(
    session: Session,
    delivery_id: int,
    principal: Principal,
    *,
    committed: date | None,
    site_id: int | None = None,
    set_site: bool = False,
) -> ForecastDelivery:
    """Set (or clear) the date promised for a delivery, and where it is staged (staff).

    :raises DeliveryNotFound: unknown, or another company's.
    :raises Forbidden: a client-bound caller saying where it is staged.
    """
    delivery = principal.visible(
        inventory_repo.get_delivery(session, delivery_id), DeliveryNotFound(delivery_id)
    )
    # After the look-up: another company's delivery is 404 whatever the body says.
    if set_site and principal.role.client_bound:
        raise Forbidden("only the staging centre says where a delivery is staged")
    row = repository.delivery_setting_for_update(session, delivery_id)
    if row is None:
        row = ForecastDelivery(delivery_id=delivery_id, client_id=delivery.client_id)
    if committed != row.committed_date:
        row.committed_date = committed
        row.committed_by = principal.actor
        row.committed_at = utcnow()
        row.at_risk_since = None  # judged again against the new date
    if set_site:
        row.site_id = site_id
    session.add(row)
    session.flush()
    repository.mark_changed(session, "commitment")
    return row


def deadline(committed: date, tz_name: str) -> datetime:
    """The end of the committed day, in the site's time zone."""
    from zoneinfo import ZoneInfo

    return datetime.combine(committed + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz_name))


def check_commitments(
    session: Session, figures: dict[tuple[str, int], dict[str, Any]], *, now: datetime
) -> list[ForecastNotice]:
    """Each committed delivery: its P90 of "all dispatched" against the end of the
    committed day. Crossing it raises a notice and a ``forecast.at_risk`` webhook once;
    coming back within it, ``forecast.back_on_track``."""
    from logistics import webhooks

    raised: list[ForecastNotice] = []
    ids = [scope_id for (scope, scope_id) in figures if scope == "delivery"]
    for row in repository.delivery_settings(session, ids).values():
        if row.committed_date is None:
            continue
        fig = figures[("delivery", row.delivery_id)]
        p90_text = fig.get("dispatched_p90")
        p90 = datetime.fromisoformat(p90_text) if p90_text else None
        tz = "Europe/Paris"
        if row.site_id is not None and (settings := repository.site_settings(session, row.site_id)):
            tz = settings.timezone
        late = p90 is None or p90 > deadline(row.committed_date, tz)
        if late == (row.at_risk_since is not None):
            continue
        row.at_risk_since = now if late else None
        kind = "at_risk" if late else "on_track"
        notice = ForecastNotice(
            delivery_id=row.delivery_id,
            client_id=row.client_id,
            kind=kind,
            committed_date=row.committed_date,
            p90_dispatched=p90,
            made_at=now,
        )
        session.add(row)
        session.add(notice)
        session.flush()
        delivery = inventory_repo.get_delivery(session, row.delivery_id)
        webhooks.enqueue(
            session,
            client_id=row.client_id,
            event_type=AT_RISK if late else BACK_ON_TRACK,
            key=f"forecast_{notice.id}",
            at=now,
            data={
                "delivery_id": row.delivery_id,
                "order_reference": delivery.order_reference if delivery else None,
                "committed_date": row.committed_date.isoformat(),
                "dispatched_p50": fig.get("dispatched_p50"),
                "dispatched_p90": p90_text,
                "made_at": now.isoformat(),
            },
        )
        raised.append(notice)
        log.info("delivery %s: %s (P90 %s)", row.delivery_id, kind, p90_text)
    return raised


def notices(session: Session, principal: Principal) -> list[ForecastNotice]:
    return list(repository.notices(session, client_id=principal.client_scope))


# Site settings.
def site_settings(session: Session, site_id: int) -> ForecastSite:
    """The site's settings (defaults until set).

    :raises SiteNotFound: no such site.
    """
    if repository.site(session, site_id) is None:
        raise SiteNotFound(site_id)
    return repository.site_settings(session, site_id) or ForecastSite(site_id=site_id)


def set_site_settings(session: Session, site_id: int, values: dict[str, Any]) -> ForecastSite:
    """:raises SiteNotFound: no such site."""
    row = site_settings(session, site_id)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    repository.mark_changed(session, "site settings")
    return row


# What-if and capacity.
def what_if(
    session: Session, changes: answers.Changes, *, now: datetime | None = None, runs: int = RUNS
) -> tuple[Computed, Computed]:
    """The forecast as it stands and with ``changes``, from the same draws.

    :raises NothingToForecast: no site or no laptop.
    :raises BadQuestion: a change that does not apply.
    """
    now = now or utcnow()
    world, index = inputs.build(session, now=now)
    base_out = montecarlo.simulate(world, runs=runs, seed=SEED)
    changed, settings = answers.apply(world, index, changes)
    new_index = copy.copy(index)
    new_index.sites = settings
    new_out = montecarlo.simulate(changed, runs=runs, seed=SEED)
    return (
        _figures(world, index, base_out),
        _figures(changed, new_index, new_out),
    )


def _figures(world: World, index: inputs.Index, out: montecarlo.Outcome) -> Computed:
    base = (world, index, out)
    fleet = world.fleet
    figures: dict[tuple[str, int], dict[str, Any]] = {
        ("wave", 0): figures_of(base, np.arange(len(fleet)))
    }
    for k, site in enumerate(index.sites):
        members = np.flatnonzero(fleet.site == k)
        figures[("site", site.site_id)] = {**figures_of(base, members), "name": site.name}
    for i, delivery_id in enumerate(index.delivery_ids):
        members = np.flatnonzero(fleet.delivery == i)
        if len(members):
            figures[("delivery", delivery_id)] = figures_of(base, members)
    return Computed(world, index, out, figures)


def version(session: Session) -> tuple[int, int, datetime | None]:
    """See ``repository.version`` (what the console's kept figures are keyed by)."""
    return repository.version(session)


def has_forecast(session: Session) -> bool:
    return repository.snapshot(session, "wave", 0) is not None


def commitments(
    session: Session, principal: Principal, delivery_ids: list[int]
) -> dict[int, ForecastDelivery]:
    """The committed dates (and at-risk marks) of these deliveries the caller may see:
    one query for a whole table of deliveries (the console's forecast panel)."""
    rows = repository.delivery_settings(session, delivery_ids)
    return {k: r for k, r in rows.items() if principal.sees_client(r.client_id)}
