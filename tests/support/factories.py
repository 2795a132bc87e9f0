"""Builders for test rows: plain functions with keyword-only arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from api import service as tokens
from core.db import Database
from core.principal import SYSTEM, Role
from inventory import lifecycle
from inventory import service as inventory
from inventory.models import Bench, ClientCompany, Delivery, Device
from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, SiteCreate
from inventory.states import Event


@dataclass
class World:
    """Two client companies with a delivery each, one site, one bench, and tokens."""

    acme: ClientCompany
    globex: ClientCompany
    bench: Bench
    acme_delivery: Delivery
    globex_delivery: Delivery
    tokens: dict[str, str]

    def token(self, role: Role, client: str | None = None) -> str:
        return self.tokens[f"{role.value}:{client or ''}"]


def create_client(session: Session, *, code: str) -> ClientCompany:
    return inventory.create_client(session, ClientCreate(code=code, name=f"{code} Corp"))


def create_delivery(
    session: Session, *, client: ClientCompany, order: str, vendor: str = "Dell"
) -> Delivery:
    body = DeliveryCreate(client_code=client.code, vendor=vendor, order_reference=order)
    return inventory.create_delivery(session, body, SYSTEM)


def create_devices(
    session: Session, *, delivery: Delivery, serials: list[str], model: str = "Latitude 5440"
) -> list[Device]:
    hw = inventory.get_or_create_hardware_model(session, delivery.vendor, model)
    devices = [
        Device(
            serial=s,
            vendor=delivery.vendor,
            hardware_model_id=hw.id,
            client_id=delivery.client_id,
            delivery_id=delivery.id,
            order_reference=delivery.order_reference,
            mac_addresses=[],
        )
        for s in serials
    ]
    lifecycle.create(session, devices, Event.EXPECT, actor="test")
    return devices


def build_world(db: Database) -> World:
    with db.session() as session:
        acme = create_client(session, code="ACME")
        globex = create_client(session, code="GLOBEX")
        inventory.create_site(session, SiteCreate(code="PAR", name="Paris"))
        bench = inventory.create_bench(session, BenchCreate(site_code="PAR", code="B1", slots=64))
        acme_delivery = create_delivery(session, client=acme, order="PO-ACME-1")
        globex_delivery = create_delivery(session, client=globex, order="PO-GLOBEX-1")
        create_devices(session, delivery=acme_delivery, serials=["ACME0001", "ACME0002"])
        create_devices(session, delivery=globex_delivery, serials=["GLBX0001"])
        issued: dict[str, str] = {}
        for role in Role:
            clients: list[str | None] = [None]
            if role.client_bound:
                clients = ["ACME", "GLOBEX"]
            elif role.client_optional:
                clients = [None, "ACME", "GLOBEX"]
            for code in clients:
                _, clear = tokens.create_token(
                    session, name=f"{role.value}-{code or 'all'}", role=role, client_code=code
                )
                issued[f"{role.value}:{code or ''}"] = clear
    return World(acme, globex, bench, acme_delivery, globex_delivery, issued)


def reload_world(db: Database, world: World) -> World:
    """``world`` read again from ``db``, a copy of the database it was built in: rows of
    this test's own, which it may change without touching another test's."""
    with db.session(write=False) as session:

        def fresh(row: Any) -> Any:
            again = session.get(type(row), row.id)
            assert again is not None, f"{type(row).__name__} {row.id} missing from the copy"
            return again

        return World(
            fresh(world.acme),
            fresh(world.globex),
            fresh(world.bench),
            fresh(world.acme_delivery),
            fresh(world.globex_delivery),
            dict(world.tokens),
        )
