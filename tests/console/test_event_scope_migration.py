"""console_0003 copies each existing event's client, delivery and site from its laptop
(what the lifecycle now writes), in batches, on both databases; and walks back down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, pool, text

from core.migrate import downgrade, upgrade
from tests.conftest import BACKENDS
from tests.inventory.test_event_scope import scope_mismatches
from tests.support.postgres import PostgresCluster

_SETUP = [
    "INSERT INTO site (id, code, name, max_imaging_streams) VALUES (1, 'P', 'P', 8), "
    "(2, 'L', 'L', 8)",
    "INSERT INTO bench (id, site_id, code, slots) VALUES (1, 1, 'B1', 8), (2, 2, 'B2', 8)",
    "INSERT INTO client_company (id, code, name, created_at) VALUES "
    "(1, 'ACME', 'Acme', '2026-01-01'), (2, 'GLOBEX', 'Globex', '2026-01-01')",
    "INSERT INTO delivery (id, client_id, vendor, order_reference, created_at) VALUES "
    "(1, 1, 'Dell', 'PO-1', '2026-01-01'), (2, 2, 'Dell', 'PO-2', '2026-01-01')",
]
_DEVICE = (
    "INSERT INTO device (id, serial, vendor, mac_addresses, client_id, delivery_id, "
    "bench_id, slot, state, state_changed_at, created_at, updated_at) VALUES (:id, :serial, "
    "'Dell', '[]', :client, :delivery, :bench, :slot, :state, '2026-01-01', '2026-01-01', "
    "'2026-01-01')"
)
# (id, serial, client, delivery, bench, slot, state)
_DEVICES = [
    (1, "READY1", 1, 1, 1, 1, "ready"),  # imported, scanned in at P, READY
    (2, "STRAY1", 2, 2, 2, 1, "received"),  # scanned unknown at L, then attached
    (3, "WAITING1", 1, 1, None, None, "expected"),  # imported, never scanned
    (4, "NOBODY1", None, None, 1, 2, "unexpected"),  # scanned unknown at P
]
_EVENT = (
    "INSERT INTO device_event (id, device_id, from_state, to_state, event, actor, at, "
    "details) VALUES (:id, :device, NULL, :to_state, :event, 'test', '2026-01-01', '{}')"
)
# Ids far apart: the backfill's batches (20,000 ids) start, skip an empty one and end.
# (event id, device, to_state, event) -> (client, delivery, site) after the upgrade
_EVENTS = {
    (1, 1, "expected", "expect"): (1, 1, None),
    (2, 1, "received", "receive"): (1, 1, 1),
    (3, 2, "unexpected", "discover"): (None, None, 2),
    (4, 4, "unexpected", "discover"): (None, None, 1),
    (25_000, 1, "ready", "verify"): (1, 1, 1),
    (25_001, 2, "received", "attach"): (2, 2, 2),
    (70_000, 3, "expected", "expect"): (1, 1, None),
}


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    yield cluster.create_database(f"masterline_event_scope_{worker}")


def _indexes(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return {str(i["name"]) for i in inspect(engine).get_indexes("device_event")}
    finally:
        engine.dispose()


def test_existing_events_are_backfilled_and_the_chart_index_replaced(fresh_url: str) -> None:
    upgrade(fresh_url, "console_0002")
    engine = create_engine(fresh_url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        for statement in _SETUP:
            conn.execute(text(statement))
        for id_, serial, client, delivery, bench, slot, state in _DEVICES:
            conn.execute(
                text(_DEVICE),
                {
                    "id": id_,
                    "serial": serial,
                    "client": client,
                    "delivery": delivery,
                    "bench": bench,
                    "slot": slot,
                    "state": state,
                },
            )
        for id_, device, to_state, event in _EVENTS:
            conn.execute(
                text(_EVENT), {"id": id_, "device": device, "to_state": to_state, "event": event}
            )

    upgrade(fresh_url)
    with engine.connect() as conn:
        got = {
            int(i): (c, d, s)
            for i, c, d, s in conn.execute(
                text("SELECT id, client_id, delivery_id, site_id FROM device_event")
            ).all()
        }
        assert scope_mismatches(conn) == []
    assert got == {key[0]: want for key, want in _EVENTS.items()}
    indexes = _indexes(fresh_url)
    assert "ix_device_event_to_state_at_scope" in indexes
    assert "ix_device_event_to_state_at_device" not in indexes

    downgrade(fresh_url, "console_0002")
    columns = {c["name"] for c in inspect(engine).get_columns("device_event")}
    assert not {"client_id", "delivery_id", "site_id"} & columns
    assert "ix_device_event_to_state_at_device" in _indexes(fresh_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM device_event")).scalar_one() == 7
    engine.dispose()
