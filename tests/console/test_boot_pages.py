"""Boot data in the console: a laptop that booted its preboot environment before it was
scanned in waits on the bench board ("booted, not scanned"), and its laptop page shows
what the PE found (hardware, health findings), through boot's services."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from core.principal import Role
from tests.boot.conftest import Boot, boot, boot_settings, client, register
from tests.boot.test_registration import device
from tests.console.support import sign_in

__all__ = ["boot", "boot_settings", "client"]  # fixtures

INVENTORY: dict[str, Any] = {
    "cpu": {"model": "Intel(R) Core(TM) i5-1345U", "cores": 10, "threads": 12, "arch": "x86_64"},
    "memory": {"installed_bytes": 16 * 1024**3, "usable_bytes": 15 * 1024**3},
    "disks": [
        {
            "name": "nvme0n1",
            "model": "PM9B1 NVMe Samsung 512GB",
            "size_bytes": 512110190592,
            "transport": "nvme",
            "health": "failing",
            "smart_passed": False,
        }
    ],
    "batteries": [{"name": "BAT0", "health_pct": 91.0, "cycles": 12}],
    "tpm": {"present": True, "version": "2.0"},
    "firmware": {
        "vendor": "Dell Inc.",
        "version": "1.12.0",
        "boot_mode": "uefi",
        "secure_boot": True,
    },
}


def test_a_laptop_booted_before_scan_in_waits_on_the_board_and_shows_its_hardware(
    client: TestClient, boot: Boot
) -> None:
    go = register(client, boot.credential, "ACME0001", inventory=INVENTORY)
    assert go.status_code == 202 and go.json()["reason"] == "booted, not scanned", go.text
    laptop = device(boot, "ACME0001")
    sign_in(client, boot.world.token(Role.TECHNICIAN))
    waiting = client.get(f"/console/benches/{boot.bench.id}/waiting")
    assert waiting.status_code == 200
    assert "ACME0001" in waiting.text and "démarré, pas scanné" in waiting.text
    board = client.get(f"/console/benches/{boot.bench.id}")
    assert f'hx-get="/console/benches/{boot.bench.id}/waiting"' in board.text
    page = client.get(f"/console/laptops/{laptop.id}")
    assert "Ce que l\u2019environnement de démarrage a trouvé" in page.text
    assert "Intel(R) Core(TM) i5-1345U" in page.text and "Dell Inc. 1.12.0" in page.text
    assert "un disque défaillant" in page.text
    # The other company's client IT sees neither this laptop nor its hardware.
    with TestClient(client.app) as dsi:
        sign_in(dsi, boot.world.token(Role.DSI, "GLOBEX"))
        assert dsi.get(f"/console/laptops/{laptop.id}").status_code == 404
        assert dsi.get(f"/console/benches/{boot.bench.id}/waiting").status_code == 403
