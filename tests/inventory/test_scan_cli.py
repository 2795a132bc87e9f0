"""``masterline scan`` and ``masterline devices`` as a bench PC runs them: a real
subprocess talking HTTP to a real server, fed the way a keyboard-wedge scanner types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlmodel import col, select

from core.db import Database
from core.principal import Role
from inventory.models import Device, DeviceEvent
from tests.support.factories import World
from tests.support.postgres import closed_port
from tests.support.server import running_server

pytestmark = pytest.mark.slow  # runs the masterline command as a subprocess

REPO = Path(__file__).resolve().parents[2]
BEL = "\a"
# Tests with no server need no database either: they run once, not once per backend.
NO_SERVER_TOKEN = "mlt_no-server-to-check-it"


def masterline(
    *args: str, stdin: str = "", api_url: str, token: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MASTERLINE_API_URL": api_url,
        "MASTERLINE_TOKEN": token,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def test_scan_loop_reports_each_scan_and_rings_on_attention(db: Database, world: World) -> None:
    garbage = "Z" * 200
    scans = ["ACME0001", "acme0001", "NOBODY-99", "", garbage, "ACME0002"]
    with running_server(db) as url:
        done = masterline(
            "scan",
            "--bench",
            str(world.bench.id),
            stdin="\n".join(scans) + "\n",
            api_url=url,
            token=world.token(Role.TECHNICIAN),
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # One line per scan; the empty line is not a scan.
    assert len(lines) == 5, lines
    received, again, unknown, unreadable, second = lines
    assert "ACME0001 received at slot 1" in received and BEL not in received
    assert "already scanned" in again and again.startswith(BEL)
    # An unexpected laptop is on the bench: it holds the next slot.
    assert "NOBODY-99 UNEXPECTED at slot 2" in unknown and unknown.startswith(BEL)
    assert "unreadable scan (200 chars)" in unreadable and unreadable.startswith(BEL)
    assert garbage not in done.stdout
    assert "ACME0002 received at slot 3" in second and BEL not in second
    assert "Traceback" not in done.stderr
    with db.session(write=False) as s:
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        events = s.exec(select(DeviceEvent).where(DeviceEvent.device_id == device.id)).all()
        assert [e.event for e in events] == ["expect", "receive"]
        # The garbage line reached nobody: no device was made of it.
        assert s.exec(select(Device).where(Device.serial == garbage.upper())).first() is None


def test_scan_loop_survives_server_errors_and_markup_in_codes(db: Database, world: World) -> None:
    with running_server(db) as url:
        bad_bench = masterline(
            "scan",
            "--bench",
            "424242",
            stdin="ACME0001\nACME0002\n",
            api_url=url,
            token=world.token(Role.TECHNICIAN),
        )
        # A dsi token may not scan: each line says so, the loop goes on.
        refused = masterline(
            "scan",
            "--bench",
            str(world.bench.id),
            stdin="ACME0001\n[bold]X[/bold]\n",
            api_url=url,
            token=world.token(Role.DSI, "ACME"),
        )
        odd = masterline(
            "scan",
            "--bench",
            str(world.bench.id),
            stdin="[red]TAG[/x]\n",
            api_url=url,
            token=world.token(Role.TECHNICIAN),
        )
    assert bad_bench.returncode == 0, bad_bench.stderr
    lines = bad_bench.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(BEL) and "bench 424242 not found" in line for line in lines)
    assert refused.returncode == 0
    assert [("may not" in line) for line in refused.stdout.splitlines()] == [True, True]
    assert odd.returncode == 0, odd.stderr
    assert "[RED]TAG[/X]" in odd.stdout  # echoed as scanned (upper-cased), not as markup


def test_scan_loop_with_the_server_down_prints_an_error_per_line() -> None:
    with closed_port() as port:
        done = masterline(
            "scan",
            "--bench",
            "1",
            stdin="ACME0001\nACME0002\n\nACME0003\n",
            api_url=f"http://127.0.0.1:{port}",
            token=NO_SERVER_TOKEN,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(BEL) and "cannot reach" in line for line in lines)
    assert "Traceback" not in done.stderr


def test_scan_without_a_token_is_one_line_and_exit_6() -> None:
    env_free = masterline("scan", "--bench", "1", stdin="ACME0001\n", api_url="http://x", token="")
    assert env_free.returncode == 6
    assert env_free.stderr.strip().count("\n") == 0
    assert "no API token" in env_free.stderr


def test_devices_list_and_show(db: Database, world: World) -> None:
    with running_server(db) as url:
        as_dsi = masterline(
            "devices", "list", "--json", api_url=url, token=world.token(Role.DSI, "ACME")
        )
        table = masterline(
            "devices",
            "list",
            "--state",
            "expected",
            "--serial-prefix",
            "glbx",
            api_url=url,
            token=world.token(Role.TECHNICIAN),
        )
        first_id = json.loads(as_dsi.stdout)["items"][0]["id"]
        shown = masterline(
            "devices", "show", str(first_id), api_url=url, token=world.token(Role.TECHNICIAN)
        )
        shown_json = masterline(
            "devices",
            "show",
            str(first_id),
            "--json",
            api_url=url,
            token=world.token(Role.LOGISTICS, "ACME"),
        )
        hidden = masterline(
            "devices", "show", str(first_id), api_url=url, token=world.token(Role.DSI, "GLOBEX")
        )
        bad_state = masterline(
            "devices", "list", "--state", "flying", api_url=url, token=world.token(Role.TECHNICIAN)
        )
    assert as_dsi.returncode == 0, as_dsi.stderr
    assert sorted(d["serial"] for d in json.loads(as_dsi.stdout)["items"]) == [
        "ACME0001",
        "ACME0002",
    ]
    assert table.returncode == 0, table.stderr
    assert "GLBX0001" in table.stdout and "ACME0001" not in table.stdout
    assert shown.returncode == 0, shown.stderr
    assert "expected" in shown.stdout and "expect" in shown.stdout and "receive" in shown.stdout
    detail = json.loads(shown_json.stdout)
    assert [e["event"] for e in detail["history"]] == ["expect"]
    assert hidden.returncode == 4
    assert hidden.stderr.strip() == f"error: device {first_id} not found"
    assert bad_state.returncode == 2
    assert "state" in bad_state.stderr and "Traceback" not in bad_state.stderr


def test_scan_loop_survives_bytes_that_are_not_utf8() -> None:
    with closed_port() as port:
        done = subprocess.run(
            [sys.executable, "-c", "import cli; cli.main()", "scan", "--bench", "1"],
            input=b"\xff\xfeAB\x81\nACME0001\n",
            capture_output=True,
            cwd=REPO,
            timeout=60,
            env={
                **os.environ,
                "MASTERLINE_API_URL": f"http://127.0.0.1:{port}",
                "MASTERLINE_TOKEN": NO_SERVER_TOKEN,
            },
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2
    assert "unreadable scan" in lines[0]
    assert "cannot reach" in lines[1]


# SQLite's write lock, held by the test: the server's scans cannot begin their write
# transaction, and after its busy timeout (short here, so that the server says so
# quickly) the server answers 503 with Retry-After (core.db.FairLock, DatabaseBusy).
_BUSY_TIMEOUT_MS = 200


def _scan_process(
    url: str, token: str, bench: int, codes: Path, retries: int
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MASTERLINE_API_URL": url,
        "MASTERLINE_TOKEN": token,
        "MASTERLINE_API_RETRIES": str(retries),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    with codes.open() as stdin:
        return subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "scan", "--bench", str(bench)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scan_waits_while_the_database_is_busy_then_records_the_scan(
    database_url: str, world: World, tmp_path: Path
) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("ACME0001\n")
    busy = Database(database_url, busy_timeout_ms=_BUSY_TIMEOUT_MS)
    held = False
    try:
        with running_server(busy) as url:
            held = busy.write_lock.acquire(timeout=10)
            assert held
            proc = _scan_process(
                url, world.token(Role.TECHNICIAN), world.bench.id or 0, codes, retries=100
            )
            # A hang would block readline: the process is killed past a generous bound.
            watchdog = threading.Timer(300, proc.kill)
            watchdog.start()
            try:
                assert proc.stderr is not None
                first = proc.stderr.readline()  # the CLI's first "waiting" line
                assert "server busy" in first and "waiting 1 s, then retry 1 of 100" in first, (
                    first + proc.stderr.read()[-2000:]
                )
                busy.write_lock.release()
                held = False
                out, err = proc.communicate(timeout=300)
            finally:
                watchdog.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        if held:
            busy.write_lock.release()
    try:
        assert proc.returncode == 0, err
        assert "ACME0001 received at slot 1" in out, out
        # One line per wait, each about the busy server; nothing else, no traceback.
        assert all(line.startswith("server busy") for line in err.splitlines()), err
        with busy.session(write=False) as s:
            device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
            assert device.state == "received"
    finally:
        busy.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scan_gives_up_on_a_database_that_stays_busy(
    database_url: str, world: World, tmp_path: Path
) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("ACME0001\nACME0002\n")
    busy = Database(database_url, busy_timeout_ms=_BUSY_TIMEOUT_MS)
    held = False
    try:
        with running_server(busy) as url:
            held = busy.write_lock.acquire(timeout=10)
            assert held
            proc = _scan_process(
                url,
                world.token(Role.TECHNICIAN),
                world.bench.id or 0,
                codes,
                retries=1,
            )
            try:
                out, err = proc.communicate(timeout=300)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        if held:
            busy.write_lock.release()
    try:
        assert proc.returncode == 7, (out, err)
        waits = err.splitlines()
        assert len(waits) == 1 and "retry 1 of 1" in waits[0], err
        # One line for the scan that was not recorded; the loop stopped there.
        (line,) = out.splitlines()
        assert line.startswith(BEL) and "ACME0001: not recorded" in line, line
        assert "still busy after 1 retries" in line
        with busy.session(write=False) as s:
            states = dict(
                s.exec(
                    select(Device.serial, Device.state).where(
                        col(Device.serial).in_(["ACME0001", "ACME0002"])
                    )
                ).all()
            )
        assert states == {"ACME0001": "expected", "ACME0002": "expected"}
    finally:
        busy.dispose()
