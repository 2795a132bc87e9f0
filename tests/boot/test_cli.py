"""``masterline boot …``, ``devices hardware``, ``deliveries hardware|doa`` against the
API served by uvicorn (one backend: the routes behind them run on both elsewhere)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import MasterlineError
from core.principal import Role
from tests.boot.conftest import Boot, pe_body
from tests.conftest import BACKENDS, auth
from tests.support.server import running_server

pytestmark = pytest.mark.slow

runner = CliRunner()


def masterline(url: str, token: str, *args: str) -> tuple[int, str]:
    """Exit code and output as ``cli.main`` gives them (one line per error)."""
    env = {"MASTERLINE_API_URL": url, "MASTERLINE_TOKEN": token, "COLUMNS": "200"}
    result = runner.invoke(app, list(args), env=env)
    if isinstance(result.exception, MasterlineError):
        return result.exception.exit_code, result.output + result.exception.message
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_credentials_policy_and_reports_from_the_command_line(boot: Boot, tmp_path: Path) -> None:
    admin = boot.world.token(Role.ADMIN)
    tech = boot.world.token(Role.TECHNICIAN)
    with running_server(boot.db) as url:
        code, out = masterline(
            url,
            admin,
            "boot",
            "credentials",
            "create",
            "--site",
            "PAR",
            "--bench",
            "B1",
            "--name",
            "wave 5",
        )
        assert code == 0, out
        secret = out.strip().splitlines()[-1]
        assert secret.startswith("mle_")
        code, out = masterline(url, admin, "boot", "credentials", "list", "--site", "PAR", "--json")
        listed = {c["name"]: c for c in json.loads(out)}
        assert code == 0 and listed["wave 5"]["prefix"] == secret[:12] and secret not in out
        code, out = masterline(url, admin, "boot", "credentials", "list", "--site", "NOPE")
        assert code == 4 and "site NOPE not found" in out

        key = tmp_path / "worker_ed25519"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        (tmp_path / "worker_ed25519.pub").write_text(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0tARealKeyButWellFormedBase64AAAAAAAAAA w@par\n"
        )
        code, out = masterline(
            url, admin, "boot", "site-settings", "PAR", "--worker-key", str(key), "--scan-in"
        )
        assert code == 0, out
        assert "registration_is_scan_in: True" in out and "w@par" in out
        code, out = masterline(
            url,
            admin,
            "boot",
            "policy",
            "PAR",
            "--min-battery-health",
            "90",
            "--require-tpm2",
            "windows",
        )
        assert code == 0 and "min_battery_health_pct: 90" in out and "require_tpm2: windows" in out
        code, out = masterline(
            url, admin, "boot", "policy", "PAR", "--clear", "min_battery_health_pct"
        )
        assert code == 0 and "min_battery_health_pct: None" in out and "windows" in out

        # A PE registers (scan-in by registration), with a worn battery: quarantined.
        inv = {"batteries": [{"name": "BAT0", "health_pct": 60.0, "cycles": 900}]}
        masterline(url, admin, "boot", "policy", "PAR", "--min-battery-health", "80")
        r = httpx.post(
            f"{url}/boot/register",
            json=pe_body("ACME0001", address="127.0.0.1", inventory=inv),
            headers=auth(secret),
        )
        assert r.status_code == 409, r.text
        device_id = (
            r.json().get("device_id")
            or httpx.get(
                f"{url}/devices", params={"serial_prefix": "ACME0001"}, headers=auth(tech)
            ).json()["items"][0]["id"]
        )

        code, out = masterline(url, tech, "devices", "hardware", str(device_id))
        assert code == 0 and "FAIL" in out and "battery at 60.0%" in out
        code, out = masterline(url, tech, "boot", "attempts", "--json")
        assert code == 0 and [a["reason"] for a in json.loads(out)["items"]] == ["health_policy"]
        delivery = str(boot.world.acme_delivery.id)
        code, out = masterline(url, tech, "deliveries", "doa", delivery)
        assert code == 0
        assert [r["serial"] for r in csv.DictReader(io.StringIO(out))] == ["ACME0001"]
        target = tmp_path / "hw.csv"
        code, out = masterline(url, tech, "deliveries", "hardware", delivery, "-o", str(target))
        assert code == 0 and "ACME0002" in target.read_text()
        code, out = masterline(
            url, tech, "boot", "pes", "--site", "PAR", "--status", "ended", "--json"
        )
        assert code == 0 and [p["serial"] for p in json.loads(out)["items"]] == ["ACME0001"]

        cred_id = str(listed["wave 5"]["id"])
        code, out = masterline(url, admin, "boot", "credentials", "revoke", cred_id)
        assert code == 0 and "revoked" in out
        code, out = masterline(url, tech, "boot", "credentials", "list")
        assert code == 6  # admin only, one line
