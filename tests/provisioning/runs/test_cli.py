"""The runs CLI and the bench view against a real API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from core.db import Database
from core.principal import Role
from core.settings import get_settings
from lab.lab import Lab
from tests.support.factories import World
from tests.support.harness import (
    LINUX_CONFIG,
    Bench,
    activate_config,
    publish_image,
)
from tests.support.images import make_image
from tests.support.lab import lab
from tests.support.server import running_server
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # runs the masterline command and a server

__all__ = ["lab"]


class Out(NamedTuple):
    exit_code: int
    output: str


def test_runs_cli_and_watch(
    db: Database,
    world: World,
    lab: Lab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    try:
        assert world.acme.id is not None
        publish_image(
            db, client_id=world.acme.id, image=make_image(tmp_path, mib=1), os_family="linux"
        )
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
        bench = Bench(db=db, world=world, lab=lab, tmp=tmp_path)
        run = bench.scan("ACME0001", slot=3)
        assert run is not None
        with running_server(db) as url:
            env = {
                **os.environ,
                "MASTERLINE_API_URL": url,
                "MASTERLINE_TOKEN": world.token(Role.TECHNICIAN),
                "COLUMNS": "160",
            }

            def invoke(args: list[str], env: dict[str, str]) -> Out:
                proc = subprocess.run(
                    [sys.executable, "-c", "import cli; cli.main()", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                return Out(proc.returncode, proc.stdout + proc.stderr)

            out = invoke(["watch", "--once"], env=env)
            assert out.exit_code == 0, out.output
            assert "ACME0001" in out.output and "queued" in out.output
            out = invoke(["runs", "show", str(run.id)], env=env)
            assert out.exit_code == 0 and "queued by" in out.output
            out = invoke(["runs", "retry", str(run.id)], env=env)
            assert out.exit_code == 5
            assert "only failed or aborted runs retry" in out.output
            assert "Traceback" not in out.output
            out = invoke(["runs", "abort", str(run.id)], env=env)
            assert out.exit_code == 0 and "aborted" in out.output
            out = invoke(["runs", "list", "--json"], env=env)
            assert out.exit_code == 0 and '"status": "aborted"' in out.output
            # Nothing in flight any more: watch says so and shows how the runs ended.
            out = invoke(["watch", "--once"], env=env)
            assert out.exit_code == 0, out.output
            assert "Nothing in flight" in out.output
            assert "ACME0001" in out.output and "aborted" in out.output
            out = invoke(["runs", "show", "999"], env=env)
            assert out.exit_code == 4
    finally:
        get_settings.cache_clear()


def test_up_runs_the_api_and_a_worker_in_one_process(
    db: Database, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    import httpx

    from tests.support.postgres import free_port

    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    try:
        assert world.acme.id is not None
        publish_image(
            db, client_id=world.acme.id, image=make_image(tmp_path, mib=1), os_family="linux"
        )
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
    finally:
        get_settings.cache_clear()
    port = free_port()
    env = {
        **os.environ,
        "MASTERLINE_DATABASE_URL": db.url,
        "MASTERLINE_DATA_DIR": str(tmp_path / "data"),
        "MASTERLINE_IMAGE_STORE_DIR": str(tmp_path / "store"),
        "MASTERLINE_WORKER_POLL_SECONDS": "0.1",
        # Unwired slots under static wiring: the run fails with the slot's reason (the
        # default, registered, would wait for the laptop's PE to register).
        "MASTERLINE_BOOT_DEFAULT_CONTROL": "static",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {world.token(Role.TECHNICIAN)}"}

        def scanned() -> httpx.Response | None:
            try:
                return httpx.post(
                    f"{base}/scan",
                    headers=headers,
                    timeout=5,
                    json={"code": "ACME0001", "bench_id": world.bench.id},
                )
            except httpx.HTTPError:
                return None  # the server is still starting

        r = eventually(scanned, message="the server never answered")
        assert r.status_code == 200, r.text
        # No PE address is wired for that slot: the in-process worker picks the run up and
        # fails it with a reason.
        run = eventually(
            lambda: (
                (r := httpx.get(f"{base}/runs", headers=headers, timeout=5).json())["items"][0][
                    "status"
                ]
                == "failed"
                and r["items"][0]
            ),
            message="the run never failed",
        )
        assert "no provisioning-environment address" in str(run["last_error"])
        assert run["device_state"] == "failed_imaging"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
