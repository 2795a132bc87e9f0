"""The demo data set (the all-in-one run behind ``make run`` is ``demo/run.py``)."""

from __future__ import annotations

from core.console import console
from core.db import get_database
from core.principal import SYSTEM, Role

DEMO_CLIENT = "ACME"
DEMO_ORDER = "PO-DEMO-0001"
DEMO_SERIALS = [f"DEMO{n:04d}" for n in range(1, 7)]


def seed() -> str:
    """Create the demo client, site, bench, model, delivery and laptops if missing;
    return a fresh admin token (tokens are stored hashed, so each run makes one)."""
    from api import service as tokens
    from inventory import lifecycle, repository
    from inventory import service as inventory
    from inventory.models import Device
    from inventory.schemas import BenchCreate, ClientCreate, DeliveryCreate, SiteCreate
    from inventory.states import Event

    with get_database().session() as session:
        if repository.get_client_by_code(session, DEMO_CLIENT) is None:
            inventory.create_client(session, ClientCreate(code=DEMO_CLIENT, name="ACME Corp"))
            inventory.create_site(session, SiteCreate(code="PAR", name="Paris staging centre"))
            inventory.create_bench(session, BenchCreate(site_code="PAR", code="B1", slots=16))
            model = inventory.get_or_create_hardware_model(session, "Dell", "Latitude 5440")
            delivery = inventory.create_delivery(
                session,
                DeliveryCreate(
                    client_code=DEMO_CLIENT,
                    vendor="Dell",
                    order_reference=DEMO_ORDER,
                    carrier="DHL",
                    tracking="JD0146000000000001",
                ),
                SYSTEM,
            )
            devices = [
                Device(
                    serial=s,
                    vendor="Dell",
                    hardware_model_id=model.id,
                    client_id=delivery.client_id,
                    delivery_id=delivery.id,
                    order_reference=DEMO_ORDER,
                    mac_addresses=[],
                )
                for s in DEMO_SERIALS
            ]
            lifecycle.create(
                session, devices, Event.EXPECT, actor=SYSTEM.actor, reason="demo ship notice"
            )
        _, clear = tokens.create_token(session, name="demo-admin", role=Role.ADMIN)
    return clear


def run_api_only(*, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    token = seed()
    base = f"http://{host}:{port}"
    console.print(f"[bold green]Masterline is up[/bold green] at {base}")
    console.print(f"  OpenAPI docs: {base}/docs")
    console.print(f"  admin token:  {token}")
    console.print(f"  try: MASTERLINE_TOKEN={token} .venv/bin/masterline devices list")
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
