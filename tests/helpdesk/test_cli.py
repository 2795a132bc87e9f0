"""The help-desk commands against a real API server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from core import helpcode
from core.client import ApiError
from core.db import Database
from core.principal import Role
from tests.helpdesk.conftest import Desk
from tests.support.factories import World
from tests.support.server import running_server

runner = CliRunner()


def _run(base: str, token: str, *args: str) -> Any:
    return runner.invoke(app, [*args, "--api-url", base, "--token", token])


@pytest.mark.slow  # a day of commands against a real server
def test_an_advisors_day_from_the_command_line(
    backend: str, db: Database, world: World, desk: Desk, tmp_path: Path
) -> None:
    if backend != "sqlite":
        # The commands speak HTTP only; the API tests run every route on both databases.
        pytest.skip("the CLI is database-independent; run once")
    advisor = world.token(Role.HELPDESK, "ACME")
    code = helpcode.encode(desk.ids["ACMEH001"])
    article = tmp_path / "wifi.md"
    article.write_text("Redémarrez la **box**.", encoding="utf-8")
    sheet = tmp_path / "sheet.pdf"
    with running_server(db) as base:
        found = _run(base, advisor, "helpdesk", "lookup", helpcode.pretty(code))
        assert found.exit_code == 0, found.output
        assert "ACMEH001" in found.output and "acme-support" in found.output
        assert "Amélie Poulain" in found.output and "Zoom" in found.output
        as_json = _run(base, advisor, "helpdesk", "lookup", "JD0001", "--json")
        assert json.loads(as_json.output)["items"][0]["matched_by"] == ["tracking"]
        route = _run(base, advisor, "helpdesk", "route", code)
        assert route.output.strip() == "acme-support"
        added = _run(
            base,
            advisor,
            "helpdesk",
            "articles",
            "add",
            str(article),
            "--slug",
            "wifi",
            "--title",
            "Wi-Fi",
            "--tool",
            "Teams",
        )
        assert added.exit_code == 0, added.output
        hits = _run(base, advisor, "helpdesk", "search", "redemarrez box")
        assert "Wi-Fi" in hits.output
        contact = _run(
            base,
            advisor,
            "helpdesk",
            "contact",
            "--device",
            str(desk.ids["ACMEH001"]),
            "--channel",
            "phone",
            "--reason",
            "home_network",
            "--resolved",
        )
        assert contact.exit_code == 0 and "recorded" in contact.output
        bad = _run(base, advisor, "helpdesk", "contact", "--channel", "fax", "--reason", "vpn")
        # One line from main(); here, the error it turns into that line and exit code 2.
        assert isinstance(bad.exception, ApiError) and bad.exception.exit_code == 2
        printed = _run(
            base,
            world.token(Role.LOGISTICS, "ACME"),
            "helpdesk",
            "welcome",
            "--delivery",
            str(world.acme_delivery.id),
            "-o",
            str(sheet),
        )
        assert printed.exit_code == 0, printed.output
        assert sheet.read_bytes().startswith(b"%PDF")
        refused = _run(base, advisor, "helpdesk", "welcome", "--device", "1", "-o", str(sheet))
        assert isinstance(refused.exception, ApiError) and refused.exception.exit_code == 6
