"""Where a wave's source listens: learned from the worker's real connected socket to
the PE, else from the kernel's route toward it; the setting overrides both; a
wildcard is never the answer. Real sockets on loopback addresses (127.0.0.0/8 is all
local on Linux, so a socket can be bound to one address and connect to another)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from provisioning.relay.address import NoRelayAddress, relay_address, route_source


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.2", 0)) as server:
        yield server


def _connected_from(local: str, server: socket.socket) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((local, 0))
    sock.connect(server.getsockname())
    return sock


def test_the_ssh_sessions_local_address_is_the_one_chosen(listener: socket.socket) -> None:
    # A worker with several addresses: the PE sees the one its session came from.
    with _connected_from("127.0.0.3", listener) as session:
        learned = relay_address(override="", pe_host="127.0.0.2", session=session)
    assert (learned.host, learned.how) == ("127.0.0.3", "its SSH session")
    assert route_source("127.0.0.2") != "127.0.0.3"  # the route alone would not say it


def test_without_a_session_the_routes_source_is_the_connections_own(
    listener: socket.socket,
) -> None:
    learned = relay_address(override="", pe_host="127.0.0.2", session=None)
    assert learned.how == "the route toward it"
    # What the kernel would give a real connection toward the PE.
    with socket.create_connection(listener.getsockname()[:2]) as real:
        assert learned.host == real.getsockname()[0]
    # A socket not connected yet names the wildcard: the route decides then too.
    with socket.socket() as idle:
        assert relay_address(override="", pe_host="127.0.0.2", session=idle) == learned


def test_the_setting_overrides_and_a_wildcard_or_a_name_is_refused(
    listener: socket.socket,
) -> None:
    with _connected_from("127.0.0.3", listener) as session:
        learned = relay_address(override=" 10.0.0.2 ", pe_host="127.0.0.2", session=session)
    assert (learned.host, learned.how) == ("10.0.0.2", "the RELAY_HOST setting")
    for bad in ("0.0.0.0", "::", "worker.example"):  # noqa: S104 - each refused
        with pytest.raises(NoRelayAddress):
            relay_address(override=bad, pe_host="127.0.0.2", session=None)
    with pytest.raises(NoRelayAddress, match="cannot resolve"):
        route_source("no-such-host.invalid")
