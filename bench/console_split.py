"""Where a computed wave dashboard's time goes, in process, on the console benchmark's
world (100,000 laptops, 2,500 in flight, a stored forecast), on SQLite and PostgreSQL.

    python -m bench.console_split [--backends sqlite,postgres] [--devices 100000]
                                  [--calls 30] [--rounds 3]

- **before / after** (issue #15): the per-hour arrivals chart as it was (the events'
  index ``(to_state, at, device_id)``, joined to the laptops for a filter) against the
  chart over the client, delivery and site each event carries (``console_0003``: one
  index, no join), switched back and forth ``--rounds`` times on the same database
  (index dropped and built, statistics refreshed after each switch). Per filter: the
  median of ``--calls`` calls of ``wave_overview`` and of the chart's query alone.
- **lists**: the computed dashboard in process with the forecast panel listing the
  viewer's deliveries itself (before) or taking the list the filter menu read (after),
  alternated; its median time and its SQL statements per request.
- **parts** (after): the median of ``--calls`` calls of each read the dashboard makes
  (``wave_overview``'s five queries, the forecast panel, the page's lists of clients,
  deliveries and sites) and of the whole page in process (``TestClient``, figures
  computed on every request, HTML rendered), per filter.

Medians of sequential calls in one process: comparable before/after on one machine at
one time; the absolute figures move with the machine's load (print ``uptime``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Integer, event, text
from sqlmodel import Session, col, func, select

from bench.console import settle
from bench.console_world import put_in_flight, store_forecast
from bench.core import backend_database, seed
from console.cache import TtlCache
from console.deps import Viewer
from console.pages import forecast as forecast_panel
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM
from core.timeutil import utcnow
from inventory import service as inventory
from inventory.models import Device, DeviceEvent
from inventory.states import DeviceState
from provisioning.runs import overview, repository
from provisioning.runs.overview import IN_FLIGHT, WaveFilter

_OLD_INDEX = "ix_device_event_to_state_at_device"
_NEW_INDEX = "ix_device_event_to_state_at_scope"


def _old_arrivals_per_hour(
    session: Session,
    *,
    to_states: Sequence[str],
    since: datetime,
    client_id: int | None,
    delivery_id: int | None,
    site_id: int | None,
) -> Sequence[tuple[str, int, int]]:
    """The chart's query before console_0003 (commit e3a7db2), kept for the comparison."""
    at = col(DeviceEvent.at)
    if session.get_bind().dialect.name == "postgresql":
        hour: Any = func.floor(func.extract("epoch", at - since) / 3600)
    else:
        start = since.replace(tzinfo=None).isoformat(sep=" ")
        hour = func.cast((func.julianday(at) - func.julianday(start)) * 24, Integer)
    stmt = (
        select(DeviceEvent.to_state, hour, func.count())
        .where(col(DeviceEvent.to_state).in_(list(to_states)), at >= since)
        .group_by(DeviceEvent.to_state, hour)
    )
    if client_id is not None or delivery_id is not None or site_id is not None:
        stmt = stmt.join(Device, col(Device.id) == DeviceEvent.device_id)
        stmt = repository._device_filter(
            stmt, client_id=client_id, delivery_id=delivery_id, site_id=site_id
        )
    return [(str(s), int(h), int(n)) for s, h, n in session.exec(stmt).all()]


_NEW_ARRIVALS = repository.arrivals_per_hour
VIEWER = Viewer(principal=SYSTEM, session_id=0, csrf_token="", language="fr")


def _switch(db: Database, variant: str) -> None:
    """The schema and query of ``variant`` (``before`` or ``after``), statistics fresh."""
    drop, create, columns = (
        (_NEW_INDEX, _OLD_INDEX, "to_state, at, device_id")
        if variant == "before"
        else (_OLD_INDEX, _NEW_INDEX, "to_state, at, client_id, delivery_id, site_id")
    )
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {drop}"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {create} ON device_event ({columns})"))
    settle(db)
    repository.arrivals_per_hour = _old_arrivals_per_hour if variant == "before" else _NEW_ARRIVALS


def _median_ms(fn: Callable[[], object], calls: int) -> float:
    fn()  # warm: the first call pays the plan and the caches
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _filters(db: Database, delivery_id: int) -> dict[str, WaveFilter]:
    with db.session(write=False) as s:
        acme = inventory.client_by_code(s, "ACME", SYSTEM).id
    return {
        "every client": WaveFilter(),
        "one client": WaveFilter(client_id=acme),
        "one delivery": WaveFilter(delivery_id=delivery_id),
    }


def _arrivals(s: Session, wanted: WaveFilter) -> object:
    return repository.arrivals_per_hour(
        s,
        to_states=[DeviceState.RECEIVED.value, DeviceState.READY.value],
        since=utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=23),
        client_id=wanted.client_id,
        delivery_id=wanted.delivery_id,
        site_id=wanted.site_id,
    )


def explain(db: Database, wanted: WaveFilter) -> None:
    """PostgreSQL's plan of the chart's query for ``wanted`` (captured as it runs)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    with db.session(write=False) as s:
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            _arrivals(s, wanted)
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        statement, params = seen[-1]
        plan = s.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, params
        )
        for (line,) in plan:
            print(f"    {line}")


def before_after(db: Database, filters: dict[str, WaveFilter], args: argparse.Namespace) -> None:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for variant in ("before", "after"):
            _switch(db, variant)
            if r == 0 and db.engine.dialect.name == "postgresql":
                print(f"  EXPLAIN, {variant}, one client:")
                explain(db, filters["one client"])
            with db.session(write=False) as s:
                for name, wanted in filters.items():
                    reads = _reads(s, wanted, VIEWER)
                    whole = _median_ms(reads["wave_overview"], args.calls)
                    chart = _median_ms(reads["  per-hour arrivals"], args.calls)
                    results.setdefault((name, variant), []).append((whole, chart))
                    print(
                        f"  round {r + 1} {variant:6} {name:13} wave_overview {whole:7.1f} ms"
                        f"  per-hour arrivals {chart:6.1f} ms",
                        flush=True,
                    )
    print("\n| filter | wave_overview before → after | per-hour arrivals before → after |")
    print("|---|---|---|")
    for name in filters:
        b = results[(name, "before")]
        a = results[(name, "after")]
        bw, aw = statistics.median(x for x, _ in b), statistics.median(x for x, _ in a)
        bc, ac = statistics.median(y for _, y in b), statistics.median(y for _, y in a)
        print(f"| {name} | {bw:.1f} → {aw:.1f} ms ({aw / bw:.2f}x) | {bc:.1f} → {ac:.1f} ms |")


def _sign_in(client: TestClient, token: str) -> None:
    form = client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text[:300]
    client.post("/console/sign-in", data={"token": token, "nonce": nonce.group(1)})


def _reads(s: Session, w: WaveFilter, viewer: Viewer) -> dict[str, Callable[[], object]]:
    """Each read of a computed dashboard, as ``wave_overview`` and the page make it."""
    states = [x.value for x in (*IN_FLIGHT, *DeviceState.failed())]
    failed = [x.value for x in DeviceState.failed()]
    kw: dict[str, Any] = {
        "client_id": w.client_id,
        "delivery_id": w.delivery_id,
        "site_id": w.site_id,
    }
    return {
        "wave_overview": lambda: overview.wave_overview(s, SYSTEM, w),
        "  counts per state": lambda: repository.count_by_state(s, **kw),
        "  per-hour arrivals": lambda: _arrivals(s, w),
        "  failed runs": lambda: repository.failed_runs(s, states=failed, limit=5000, **kw),
        "  oldest": lambda: repository.oldest_in_states(s, states=states, limit=10, **kw),
        "forecast panel": lambda: forecast_panel.panel(s, viewer, w),
        "list of clients": lambda: inventory.list_clients(s, SYSTEM),
        "list of 500 deliveries": lambda: inventory.list_deliveries(
            s, SYSTEM, cursor=None, limit=500
        ),
        "list of sites": lambda: inventory.list_sites(s),
    }


def parts(
    db: Database, filters: dict[str, WaveFilter], token: str, args: argparse.Namespace
) -> None:
    from api.app import create_app

    viewer = VIEWER
    app = create_app(db)
    app.state.figures_cache = TtlCache(ttl=0)  # every request computes
    with TestClient(app) as client:
        _sign_in(client, token)
        rows: list[tuple[str, str, float]] = []
        with db.session(write=False) as s:
            for name, w in filters.items():
                for part, fn in _reads(s, w, viewer).items():
                    rows.append((name, part, _median_ms(fn, args.calls)))
                url = "/console/waves"
                if w.client_id:
                    url += "?client=ACME"
                elif w.delivery_id:
                    url += f"?delivery={w.delivery_id}"

                def page(url: str = url) -> object:
                    return client.get(url)

                def account() -> object:
                    return client.get("/console/account")

                rows.append((name, "whole page in process", _median_ms(page, args.calls)))
                rows.append((name, "account page in process", _median_ms(account, args.calls)))
    print("\n| filter | part | median ms |")
    print("|---|---|---|")
    for name, part, ms in rows:
        print(f"| {name} | {part} | {ms:.1f} |")


def page_lists(
    db: Database, filters: dict[str, WaveFilter], token: str, args: argparse.Namespace
) -> None:
    """The computed dashboard in process with the forecast panel listing the deliveries
    itself (before) or taking the filter menu's list (after), alternated ``--rounds``
    times: the page's median time and its SQL statements per request."""
    from api.app import create_app

    given = forecast_panel.panel

    def own_list(session: Session, viewer: Viewer, wanted: WaveFilter, **_: Any) -> Any:
        return given(session, viewer, wanted)

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    app = create_app(db)
    app.state.figures_cache = TtlCache(ttl=0)
    results: dict[tuple[str, str], list[float]] = {}
    queries: dict[tuple[str, str], int] = {}
    with TestClient(app) as client:
        _sign_in(client, token)
        for _ in range(args.rounds):
            for variant in ("before", "after"):
                forecast_panel.panel = own_list if variant == "before" else given
                for name, w in filters.items():
                    url = "/console/waves"
                    if w.client_id:
                        url += "?client=ACME"
                    elif w.delivery_id:
                        url += f"?delivery={w.delivery_id}"

                    def page(url: str = url) -> object:
                        return client.get(url)

                    results.setdefault((name, variant), []).append(_median_ms(page, args.calls))
                    event.listen(db.engine, "before_cursor_execute", count)
                    statements = 0
                    page()
                    event.remove(db.engine, "before_cursor_execute", count)
                    queries[(name, variant)] = statements
    forecast_panel.panel = given
    print("\n| filter | computed page before → after | SQL statements per page |")
    print("|---|---|---|")
    for name in filters:
        b = statistics.median(results[(name, "before")])
        a = statistics.median(results[(name, "after")])
        print(
            f"| {name} | {b:.1f} → {a:.1f} ms ({a / b:.2f}x) | "
            f"{queries[(name, 'before')]} → {queries[(name, 'after')]} |"
        )


def run_backend(backend: str, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"masterline-bench-split-{backend}-"))
    try:
        with backend_database(backend, workdir) as url:
            upgrade(url)
            db = Database(url)
            t0 = time.perf_counter()
            seeded = seed(db, args.devices, n_benches=8)
            put_in_flight(db, in_flight=args.in_flight, ready=args.ready)
            store_forecast(db)
            settle(db)
            print(f"[{backend}] scene staged in {time.perf_counter() - t0:.0f} s", flush=True)
            filters = _filters(db, seeded.delivery_id)
            print(f"[{backend}] load average {os.getloadavg()} before", flush=True)
            if "split" in args.what:
                before_after(db, filters, args)
            if "parts" in args.what:
                _switch(db, "after")
                parts(db, filters, seeded.admin, args)
            if "lists" in args.what:
                _switch(db, "after")
                page_lists(db, filters, seeded.admin, args)
            print(f"[{backend}] load average {os.getloadavg()} after", flush=True)
            db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console_split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=2_500)
    parser.add_argument("--ready", type=int, default=5_000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--what", default="split,parts,lists", help="any of split, parts, lists (comma-separated)"
    )
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        run_backend(backend, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
