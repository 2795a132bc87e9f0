"""The logistics commands against a real API server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli import app
from core.client import ApiError
from core.db import Database
from core.principal import Role
from tests.logistics.conftest import PERSON, Printer
from tests.support.factories import World
from tests.support.server import running_server

pytestmark = pytest.mark.slow  # runs the command line against a real server

runner = CliRunner()


def _run(base: str, token: str, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, [*args, "--api-url", base, "--token", token], input=stdin)


def test_scan_print_sends_a_label_for_each_laptop_received(
    db: Database, world: World, printer: Printer
) -> None:
    with running_server(db) as base:
        result = _run(
            base,
            world.token(Role.TECHNICIAN),
            "scan",
            "--bench",
            str(world.bench.id),
            "--print",
            "--printer",
            printer.uri,
            stdin="ACME0001\nACME0001\nquit\n",
        )
    assert result.exit_code == 0, result.output
    assert printer.done.wait(10)
    # One label: the second scan was a repeat ("already"), which prints nothing.
    assert len(printer.jobs) == 1
    assert b"^FDLA,ACME0001^FS" in printer.jobs[0]


def test_dispatch_one_and_bulk_dry_run_then_status_and_json_listings(
    db: Database, world: World, ready: list[int], tmp_path: Path
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    bulk = tmp_path / "dispatch.csv"
    bulk.write_text(
        "serial,name,email,address,carrier,tracking\n"
        "ACMER002,Ann,ann@acme.example,1 Main St,DHL,T2\n"
        "ACMER003,Ben,ben@acme.example,2 Main St,,T3\n"
    )
    with running_server(db) as base:
        one = _run(
            base,
            token,
            "dispatch",
            "--serial",
            "ACMER001",
            "--name",
            PERSON["name"],
            "--email",
            PERSON["email"],
            "--address",
            PERSON["address"],
            "--carrier",
            "DHL",
            "--tracking",
            "T1",
        )
        assert one.exit_code == 0, one.output
        assert "ACMER001 is dispatched" in one.output
        dry = _run(base, token, "dispatch", "--csv", str(bulk), "--dry-run")
        assert dry.exit_code == 2
        assert "line 3, column carrier: required value is empty" in dry.output
        real = _run(base, token, "dispatch", "--csv", str(bulk))
        assert isinstance(real.exception, ApiError)
        assert real.exception.exit_code == 2
        status = _run(base, token, "deliveries", "status", str(world.acme_delivery.id), "--json")
        counts = json.loads(status.output)
        assert counts["counts"] == {"expected": 2, "ready": 2, "dispatched": 1}
        listing = _run(base, token, "logistics", "status", "--serial", "ACMER001", "--json")
        item = json.loads(listing.output)["items"][0]
        assert item["teleworker"]["email"] == PERSON["email"]
        tech = _run(base, world.token(Role.TECHNICIAN), "logistics", "status", "--json")
        assert PERSON["email"] not in tech.output
        changes = _run(base, token, "logistics", "changes", "--json")
        assert json.loads(changes.output)["next_cursor"] > 0


def test_labels_and_webhooks_commands(
    db: Database, world: World, ready: list[int], printer: Printer, tmp_path: Path
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    pdf = tmp_path / "labels.pdf"
    with running_server(db) as base:
        r = _run(
            base,
            token,
            "labels",
            "asset",
            "--delivery",
            str(world.acme_delivery.id),
            "--printer",
            printer.uri,
        )
        assert "5 label(s) sent" in r.output, r.output
        r = _run(base, token, "labels", "asset", "--serial", "ACMER001", "--pdf", str(pdf))
        assert pdf.read_bytes().startswith(b"%PDF")
        r = _run(
            base,
            token,
            "webhooks",
            "add",
            "http://127.0.0.1:9/hook",
            "--event",
            "device.dispatched",
        )
        assert "secret (shown once): whsec_" in r.output
        r = _run(base, token, "webhooks", "list", "--json")
        (sub,) = json.loads(r.output)
        assert sub["event_types"] == ["device.dispatched"] and "secret" not in sub
        r = _run(base, token, "webhooks", "log", str(sub["id"]), "--json")
        assert json.loads(r.output)["items"] == []
    assert printer.done.wait(10)
    assert printer.jobs[0].count(b"^XA") == 5


@pytest.mark.parametrize(
    "args", [["labels", "asset", "--serial", "X"], ["dispatch", "--serial", "X"]]
)
def test_missing_options_are_one_clear_error(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--token", "mlt_x"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
