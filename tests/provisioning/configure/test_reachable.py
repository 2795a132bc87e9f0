"""Configure waits, bounded, for the rebooted laptop's installed OS to listen."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from provisioning.configure.plan import OsTarget
from provisioning.configure.reachable import wait_until_listening
from provisioning.errors import Aborted, ConnectFailed
from tests.support.postgres import closed_port


def _linux(port: int) -> OsTarget:
    return OsTarget.linux(
        host="127.0.0.1",
        ssh_port=port,
        user="root",
        key_path=Path("/nonexistent"),
        known_hosts_path=Path("/nonexistent"),
        target_root="",
    )


def test_a_listening_os_is_configured_at_once() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        wait_until_listening(_linux(server.getsockname()[1]), timeout=60, cancelled=lambda: False)


def test_an_os_that_never_listens_fails_retryably_with_where_and_why() -> None:
    with closed_port() as port, pytest.raises(ConnectFailed) as e:
        wait_until_listening(_linux(port), timeout=0.3, cancelled=lambda: False, poll=0.05)
    assert e.value.retryable
    assert f"127.0.0.1:{port}" in str(e.value) and "refused" in str(e.value).lower()


def test_an_abort_while_waiting_stops_the_wait() -> None:
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) >= 2

    with closed_port() as port, pytest.raises(Aborted):
        wait_until_listening(_linux(port), timeout=600, cancelled=cancelled, poll=0.01)
    assert len(asked) == 2
