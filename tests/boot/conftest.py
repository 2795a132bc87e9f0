"""Boot fixtures: a second site, bench enrollment credentials, a site with a worker key,
and a helper that registers a PE through the real API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from boot.registration import credentials, sites
from boot.registration.config import get_boot_settings
from boot.registration.ratelimit import BootRateLimits
from boot.registration.schemas import CredentialCreate, SiteSettingsUpdate
from core.db import Database
from core.principal import SYSTEM, Role
from core.settings import get_settings
from inventory import service as inventory
from inventory.models import Bench
from inventory.schemas import BenchCreate, SiteCreate
from tests.conftest import auth
from tests.support.factories import World

WORKER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8w5pN0m3cJv1vBqzJ8vU0aT7mYtq1xQn2r9H3fK6L worker@par"
)
HOST_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxXm1GgXqTJc1wJmFJ0qTQ9xjv0xgq1LrYkqB7S7fZa root@pe"
)
HOST_KEY_2 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq3yG1r5cK0uQeWm7aZrVn9s2Lh8dTfPxJk4oN6wE1C root@pe"
)


@pytest.fixture(autouse=True)
def boot_settings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fixed secret key (netboot credentials are encrypted with it) and a data dir of
    the test's own; PEs are told to retry after one second."""
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "boot-test-key")
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MASTERLINE_BOOT_WAIT_RETRY_SECONDS", "1")
    get_settings.cache_clear()
    get_boot_settings.cache_clear()
    yield
    get_settings.cache_clear()
    get_boot_settings.cache_clear()


@dataclass
class Boot:
    """Two sites (PAR with bench B1 from the world, LYO with bench L1), a credential for
    each, PAR configured with a worker key."""

    world: World
    db: Database
    bench: Bench
    lyon_bench: Bench
    credential: str
    credential_id: int
    lyon_credential: str
    secrets: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return auth(self.world.token(Role.ADMIN))

    @property
    def technician(self) -> dict[str, str]:
        return auth(self.world.token(Role.TECHNICIAN))


@pytest.fixture
def boot(db: Database, world: World) -> Boot:
    with db.session() as s:
        inventory.create_site(s, SiteCreate(code="LYO", name="Lyon"))
        lyon_bench = inventory.create_bench(s, BenchCreate(site_code="LYO", code="L1", slots=8))
        row, clear = credentials.create_credential(
            s, CredentialCreate(name="PAR B1", site_code="PAR", bench_code="B1"), SYSTEM
        )
        _, lyon = credentials.create_credential(
            s, CredentialCreate(name="LYO L1", site_code="LYO", bench_code="L1"), SYSTEM
        )
        sites.update_settings(
            s,
            "PAR",
            SiteSettingsUpdate(
                worker_public_keys=[WORKER_KEY], heartbeat_seconds=2, silence_seconds=5
            ),
        )
        sites.update_settings(s, "LYO", SiteSettingsUpdate(worker_public_keys=[WORKER_KEY]))
        assert row.id is not None
    return Boot(
        world=world,
        db=db,
        bench=world.bench,
        lyon_bench=lyon_bench,
        credential=clear,
        credential_id=row.id,
        lyon_credential=lyon,
        secrets=[clear, lyon],
    )


PE_ADDRESS = "10.20.0.57"


def pe_client(db: Database, address: str = PE_ADDRESS, **rates: str) -> TestClient:
    """The real app, seen from a PE at ``address``, with rate limits high enough for a
    test's own calls unless ``rates`` says otherwise."""
    app = create_app(db)
    limits = {
        "per_address": "10000/minute",
        "per_credential": "10000/minute",
        "heartbeat_per_address": "10000/minute",
        **rates,
    }
    app.state.boot_rate_limits = BootRateLimits(**limits)
    return TestClient(app, raise_server_exceptions=False, client=(address, 50000))


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with pe_client(db) as c:
        yield c


def pe_body(serial: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serial": serial,
        "smbios_uuid": None,
        "vendor": "Dell Inc.",
        "model": "Latitude 5440",
        "interfaces": [
            {"name": "enp0s31f6", "mac": "3c:52:82:0a:1b:2c", "bus": "pci"},
            {"name": "enx00e04c680001", "mac": "00:e0:4c:68:00:01", "bus": "usb"},
        ],
        "address": PE_ADDRESS,
        "host_key": HOST_KEY,
        "pe_version": "test",
    }
    body.update(over)
    return body


def register(client: TestClient, secret: str, serial: str, **over: Any) -> Response:
    return client.post("/boot/register", json=pe_body(serial, **over), headers=auth(secret))


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
