"""10,000 ship-notice rows import in seconds (no timing assert: the figure is printed
with ``-s`` and recorded in docs/benchmarks.md)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from core.db import Database
from core.principal import Role
from inventory.models import Device, DeviceEvent
from tests.conftest import auth
from tests.support.factories import World

pytestmark = pytest.mark.slow  # imports ten thousand rows, twice

ROWS = 10_000


def ship_notice(rows: int, *, prefix: str = "BULK") -> bytes:
    """A generic ship notice of ``rows`` laptops over three models, two MACs each."""
    lines = ["serial,vendor,model,macs,order_reference,carton_id"]
    models = ("Latitude 5440", "Latitude 7450", "Precision 3581")
    for i in range(rows):
        mac = f"{i:012x}"
        lines.append(
            f"{prefix}{i:06d},Dell,{models[i % 3]},{mac}|{(i + 1 << 24):012x},PO-ACME-1,"
            f"CTN-{i // 20:04d}"
        )
    return ("\n".join(lines) + "\n").encode()


def test_ten_thousand_rows_import_and_reimport(
    app_client: TestClient, world: World, db: Database, backend: str
) -> None:
    data = ship_notice(ROWS)
    headers = {**auth(world.token(Role.LOGISTICS, "ACME")), "Content-Type": "text/csv"}
    url = f"/deliveries/{world.acme_delivery.id}/import"
    started = time.perf_counter()
    r = app_client.post(url, content=data, headers=headers)
    first = time.perf_counter() - started
    assert r.status_code == 200, r.text[:500]
    assert r.json()["created"] == ROWS
    started = time.perf_counter()
    again = app_client.post(url, content=data, headers=headers)
    second = time.perf_counter() - started
    assert again.json()["unchanged"] == ROWS
    print(
        f"\nintake {backend}: {ROWS} rows imported in {first:.2f} s, "
        f"re-imported (all unchanged) in {second:.2f} s"
    )
    with db.session(write=False) as s:
        of_delivery = Device.delivery_id == world.acme_delivery.id
        assert s.exec(select(func.count()).select_from(Device).where(of_delivery)).one() == (
            ROWS + 2
        )
        assert (
            s.exec(
                select(func.count()).select_from(DeviceEvent).where(DeviceEvent.event == "expect")
            ).one()
            == ROWS + 3
        )
