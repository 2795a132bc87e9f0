"""``make run`` stops everything it started on SIGTERM, SIGHUP, Ctrl-C, and when only
``make`` itself gets the signal: a real ``make`` running a real ``masterline demo run``
(one Linux lab laptop), checked by walking /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import free_port
from tests.support.processes import live_processes
from tests.support.waiting import eventually

BIN = Path(sys.executable).parent


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _ours(leader: int, tmp: Path) -> list[tuple[int, list[bytes]]]:
    """Processes of the demo's session, or naming its data directory (the lab daemon
    and the sshds start sessions of their own)."""
    mark = str(tmp).encode()
    return [
        (pid, argv)
        for pid, argv in live_processes()
        if pid != os.getpid() and (_session(pid) == leader or any(mark in a for a in argv))
    ]


@contextlib.contextmanager
def _demo(tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    data = tmp / "data"
    env = {
        **os.environ,
        "MASTERLINE_DATA_DIR": str(data),
        "MASTERLINE_DEMO_LINUX": "1",
        "MASTERLINE_DEMO_WINDOWS": "0",
        "COLUMNS": "100",
    }
    env.pop("MASTERLINE_DATABASE_URL", None)
    subprocess.run([str(BIN / "masterline"), "db", "upgrade"], env=env, check=True, timeout=120)
    port = free_port()
    makefile = tmp / "Makefile"
    makefile.write_text(f"run:\n\t{BIN / 'masterline'} demo run --port {port} --stop-with-parent\n")
    log = tmp / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "-s", "-f", str(makefile), "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:

        def up() -> bool:  # the lab's daemon and sshd are up, and the API answers
            assert proc.poll() is None, log.read_text()
            if not (data / "demo-lab" / "daemon.json").exists():
                return False
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).is_success
            return False

        eventually(up, timeout=180, every=0.1, message=lambda: log.read_text())
        yield proc, port, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for pid, _ in _ours(proc.pid, tmp):  # whatever a failed test left: ours, by path
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _all_gone(proc: subprocess.Popen[bytes], tmp: Path, log: Path) -> None:
    proc.wait(timeout=180)
    eventually(
        lambda: _ours(proc.pid, tmp) == [],
        every=0.1,
        message=lambda: f"still running: {_ours(proc.pid, tmp)}\n{log.read_text()[-2000:]}",
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_make_runs_process_group_stops_everything(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with _demo(tmp_path) as (proc, _port, log):
        assert len(_ours(proc.pid, tmp_path)) >= 4  # make, the demo, the daemon, an sshd
        if sig == signal.SIGTERM:  # once laptops are being provisioned, too

            def serving() -> bool:
                assert proc.poll() is None, log.read_text()
                return b"Masterline is up" in log.read_bytes()

            eventually(serving, timeout=180, every=0.2, message=lambda: log.read_text())
        os.killpg(proc.pid, sig)
        _all_gone(proc, tmp_path, log)


@pytest.mark.slow
def test_a_signal_to_make_alone_stops_everything(tmp_path: Path) -> None:
    with _demo(tmp_path) as (proc, _port, log):
        os.kill(proc.pid, signal.SIGTERM)  # only make: the demo follows its parent
        _all_gone(proc, tmp_path, log)
