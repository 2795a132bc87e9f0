"""The PE agent for real: Debian's /usr/bin/python3 (not the project's venv, no
environment, no user site) runs the agent package copied as the PE build copies it,
against the API served by uvicorn on 127.0.0.1, reading a fake root of a real laptop's
values with recorded tool outputs on PATH."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from boot.hardware.models import HardwareReport
from boot.registration.models import BootStatus, PeBoot
from core.db import Database
from tests.boot.conftest import WORKER_KEY, Boot
from tests.boot.fakeroot import Laptop, build, shims
from tests.support.agent import REPO, SYSTEM_PYTHON, AgentRun, install_agent
from tests.support.server import running_server

pytestmark = pytest.mark.slow

DEADLINE = 60.0  # bounds a hang only; every wait below ends on a condition


@contextmanager
def agent(tmp_path: Path, laptop: Laptop, *args: str) -> Iterator[AgentRun]:
    root = build(tmp_path / "root", laptop)
    bin_dir = shims(tmp_path / "bin", laptop)
    cwd = install_agent(tmp_path / "opt" / "masterline")
    run = AgentRun(cwd, root, bin_dir, *args)
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture
def server(boot: Boot, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The PE retries every second while it waits: more than the default per-address rate.
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with running_server(boot.db) as url:
        yield url


def cmdline(url: str, credential: str) -> str:
    return (
        "BOOT_IMAGE=/vmlinuz console=ttyS0 ip=dhcp "
        f"masterline.api={url} masterline.enroll={credential} masterline.bench=B1 "
        "masterline.site=PAR"
    )


def eventually(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


def boots(db: Database) -> list[PeBoot]:
    with db.session(write=False) as s:
        return list(s.exec(select(PeBoot).order_by(col(PeBoot.id))).all())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_agent_registers_heartbeats_and_obeys(boot: Boot, server: str, tmp_path: Path) -> None:
    headers = boot.technician
    assert (
        httpx.post(
            f"{server}/scan", json={"code": "ACME0001", "bench_id": boot.bench.id}, headers=headers
        ).status_code
        == 200
    )
    laptop = Laptop(serial="ACME0001", cmdline=cmdline(server, boot.credential))
    with agent(tmp_path, laptop) as run:
        line = run.wait_for("MASTERLINE-AGENT registered")
        (pe,) = boots(boot.db)
        assert line == f"MASTERLINE-AGENT registered device={pe.device_id} boot={pe.id}"
        assert pe.status == BootStatus.REGISTERED and pe.peer_address == "127.0.0.1"
        keys = tmp_path / "root" / "root" / ".ssh" / "authorized_keys"
        assert keys.read_text() == WORKER_KEY + "\n"
        assert keys.stat().st_mode & 0o777 == 0o600
        with boot.db.session(write=False) as s:
            (report,) = s.exec(select(HardwareReport)).all()
        assert report.cpu_threads == 8 and report.disk_health == "ok"
        assert report.collect_seconds is not None
        # Heartbeats arrive (the site asks for one every 2 s).
        first_seen = pe.last_seen_at
        eventually(lambda: boots(boot.db)[0].last_seen_at > first_seen, "a heartbeat")
        r = httpx.post(
            f"{server}/boot/pes/{pe.id}/action", json={"action": "poweroff"}, headers=headers
        )
        assert r.status_code == 200
        run.wait_for("action=poweroff (not run: reading a test root)")
        assert run.exit_code() == 0
    text = "\n".join(run.lines)
    assert boot.credential not in text
    assert "mla_" not in text  # no agent token, ever


@pytest.mark.parametrize("backend", ["sqlite"])
def test_booted_before_scan_in_waits_then_goes(boot: Boot, server: str, tmp_path: Path) -> None:
    laptop = Laptop(serial="ACME0002", cmdline=cmdline(server, boot.credential))
    with agent(tmp_path, laptop) as run:
        run.wait_for("MASTERLINE-AGENT waiting reason=booted,-not-scanned")
        listed = httpx.get(
            f"{server}/boot/pes", params={"status": "waiting"}, headers=boot.technician
        ).json()["items"]
        assert [(p["serial"], p["wait_reason"]) for p in listed] == [
            ("ACME0002", "booted, not scanned")
        ]
        assert (
            httpx.post(
                f"{server}/scan",
                json={"code": "ACME0002", "bench_id": boot.bench.id},
                headers=boot.technician,
            ).status_code
            == 200
        )
        run.wait_for("MASTERLINE-AGENT registered")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_refusals_end_a_single_attempt_with_their_reason(
    boot: Boot, server: str, tmp_path: Path
) -> None:
    unknown = Laptop(serial="NOSUCH01", cmdline=cmdline(server, boot.credential))
    with agent(tmp_path / "a", unknown, "--once") as run:
        run.wait_for("MASTERLINE-AGENT refused reason=unknown_serial")
        assert run.exit_code() == 20
    revoked = Laptop(serial="ACME0001", cmdline=cmdline(server, boot.credential))
    r = httpx.delete(f"{server}/boot/credentials/{boot.credential_id}", headers=boot.admin)
    assert r.status_code == 200
    with agent(tmp_path / "b", revoked, "--once") as run:
        run.wait_for("MASTERLINE-AGENT refused reason=credential")
        assert run.exit_code() == 20
    assert boot.credential not in "\n".join(run.lines)
    no_api = Laptop(serial="ACME0001", cmdline="console=ttyS0")
    with agent(tmp_path / "c", no_api, "--once") as run:
        run.wait_for("MASTERLINE-AGENT error reason=config masterline.api=")
        assert run.exit_code() == 2


def test_the_agent_imports_only_the_standard_library() -> None:
    """Every module the agent imports when it runs is Debian python3's own."""
    probe = (
        "import sys, runpy; sys.argv=['agent', '--help']\n"
        "try:\n    runpy.run_module('agent', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import agent.main, agent.inventory, agent.client, agent.disks\n"
        "mods = {m.split('.')[0] for m in sys.modules}\n"
        "own = ('agent', '__main__')\n"
        "print(sorted(m for m in mods if m not in sys.stdlib_module_names and m not in own))"
    )
    # -S: without the site module, whatever is not the standard library came from the agent.
    out = subprocess.run(
        [SYSTEM_PYTHON, "-E", "-s", "-S", "-c", probe],
        cwd=REPO / "boot",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert os.path.exists(SYSTEM_PYTHON)
