"""What the intake tests share: posting a ship notice through the API, and reading back
what it wrote."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlmodel import func, select

from core.db import Database
from core.principal import Role
from inventory.models import Device, DeviceEvent, HardwareModel
from tests.conftest import auth
from tests.support.factories import World

GENERIC_HEADER = "serial,vendor,model,macs,order_reference,carton_id,asset_tag"
HASH = base64.b64encode(b"\x01\x02hardware-hash-bytes" * 20).decode()


def post_notice(
    client: TestClient,
    world: World,
    data: bytes | str,
    *,
    delivery_id: int | None = None,
    token: str | None = None,
    content_type: str = "text/csv",
    **params: Any,
) -> httpx.Response:
    body = data.encode() if isinstance(data, str) else data
    return client.post(
        f"/deliveries/{delivery_id or world.acme_delivery.id}/import",
        content=body,
        params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
        headers={
            **auth(token or world.token(Role.LOGISTICS, "ACME")),
            "Content-Type": content_type,
        },
    )


def devices_of(db: Database, delivery_id: int | None) -> dict[str, Device]:
    assert delivery_id is not None  # a flushed delivery's id
    with db.session(write=False) as s:
        rows = s.exec(select(Device).where(Device.delivery_id == delivery_id)).all()
    return {d.serial: d for d in rows}


def totals(db: Database) -> tuple[int, int, int]:
    with db.session(write=False) as s:
        devices = s.exec(select(func.count()).select_from(Device)).one()
        events = s.exec(select(func.count()).select_from(DeviceEvent)).one()
        models = s.exec(select(func.count()).select_from(HardwareModel)).one()
    return int(devices), int(events), int(models)


def errors_of(r: httpx.Response) -> list[tuple[int | None, str | None, str]]:
    return [(e["line"], e["column"], e["message"]) for e in r.json()["errors"]]
