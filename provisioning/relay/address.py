"""Where a wave's source listens: the worker's address as the laptop sees it.

No setting can know it in advance: a worker on a bench network reaches its PEs at an
address of that network, a lab reaches them at 127.0.0.1, a worker on two benches has
one address on each. The worker's own SSH connection to the PE already answers it: its
socket's local address is the one the PE's packets came from and go back to. Without
such a connection, the kernel's route toward the PE names the source address it would
use (a connected UDP socket: no packet is sent). ``MASTERLINE_WORKER_RELAY_HOST``
overrides both (a worker behind NAT, or a dedicated relay interface).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

__all__ = ["Learned", "NoRelayAddress", "relay_address", "route_source"]


class NoRelayAddress(Exception):
    """No address a PE can reach this worker at (the laptop streams plainly)."""


@dataclass(frozen=True)
class Learned:
    host: str
    how: str
    """``its SSH session``, ``the route toward it`` or ``the RELAY_HOST setting``:
    written to the run's log, so a technician sees where the wave was served from."""


def _usable(host: str) -> str:
    """:raises NoRelayAddress: a wildcard, which a listener must never bind (every
    interface of the worker would serve the wave)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as e:
        raise NoRelayAddress(f"{host[:60]!r} is not an address") from e
    if ip.is_unspecified:
        raise NoRelayAddress(f"{host} is a wildcard, not an address a PE reaches")
    return host


def route_source(pe_host: str) -> str:
    """The source address of the kernel's route toward ``pe_host``.

    :raises NoRelayAddress: no route (or ``pe_host`` is no address)."""
    try:
        infos = socket.getaddrinfo(pe_host, 9, type=socket.SOCK_DGRAM)
    except OSError as e:
        raise NoRelayAddress(f"cannot resolve {pe_host[:60]}: {e.strerror or e}") from e
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(addr)  # UDP: picks the route and its source, sends nothing
        except OSError as e:
            raise NoRelayAddress(f"no route toward {pe_host}: {e.strerror or e}") from e
        return _usable(str(probe.getsockname()[0]))


def relay_address(*, override: str, pe_host: str, session: socket.socket | None) -> Learned:
    """The address a wave's source serves ``pe_host`` from: ``override`` when set, else
    ``session``'s local address (the worker's connected SSH socket to that PE), else
    the route's source toward it.

    :raises NoRelayAddress: none of them gives an address a PE can reach.
    """
    if override.strip():
        return Learned(_usable(override.strip()), "the RELAY_HOST setting")
    if session is not None:
        try:
            local = session.getsockname()[0]
        except OSError:
            local = None
        # An unconnected socket names the wildcard: then the route decides.
        if (
            isinstance(local, str)
            and local
            and not ipaddress.ip_address(local.split("%", 1)[0]).is_unspecified
        ):
            return Learned(local, "its SSH session")
    return Learned(route_source(pe_host), "the route toward it")
