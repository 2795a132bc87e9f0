"""Outbound HTTP that a client company can aim (webhooks): only to public addresses,
within a total deadline, reading a capped reply.

Why each rule (docs/operations.md, "Outbound calls"):

- **Public destinations only** (SSRF). A logistics token could otherwise point a
  webhook at ``169.254.169.254`` (cloud metadata), ``10.x``, ``localhost`` or
  ``0x7f000001`` and read the answer in the delivery log. The host is resolved once;
  *every* address it resolves to must be public (not loopback, private, link-local,
  shared, multicast, reserved, unspecified; IPv6 forms checked through the IPv4 they
  embed: v4-mapped, 6to4, NAT64); then the connection goes to that very address (no
  second lookup an attacker's DNS could answer differently), with the name in the
  ``Host`` header and in TLS SNI, and the certificate checked against the name. Any
  spelling of an address (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``[::1]``) is
  covered because the check is on what the resolver returns. An allow-list
  (``MASTERLINE_WEBHOOK_ALLOW_NETWORKS``) admits on-premise receivers.
- **Redirects are not followed** (a public receiver could redirect inward).
- **A total deadline**, not a per-read timeout: before every read the socket's timeout
  is set to what remains, so a receiver that trickles one byte every few seconds is cut
  at the deadline.
- **A capped read**: at most ``max_reply_bytes`` of the body are read, then the
  connection is closed; only a short excerpt with control characters removed is kept.

Callers hold no database transaction while calling ``post`` (it may take the whole
deadline).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import socket
import ssl
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

EXCERPT_CHARS = 200
DEFAULT_DEADLINE = 10.0
DEFAULT_MAX_REPLY = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(InvalidInput):
    """The URL is not one Masterline will call (422 at subscription)."""

    title = "Destination refused"


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.1.2.0/24, 127.0.0.1/32, fd00::/8`` (commas or blanks) to networks.

    :raises ValueError: a part that is not a network.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    return tuple(ipaddress.ip_network(p, strict=False) for p in parts)


def why_not_public(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = why_not_public(embedded)
            return f"{inner} (inside {ip})" if inner else None
    for name, bad in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if bad:
            return f"{ip} is {name}"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric spellings included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Destination:
    """A checked URL: the name for Host/SNI, and the one address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query
    address: str


def check(
    url: str,
    *,
    allow: Sequence[IPNetwork] = (),
    resolver: Resolver = system_resolver,
) -> Destination:
    """Parse and resolve ``url``; the address to connect to.

    :raises DestinationRefused: not http(s), credentials in it, unresolvable, or an
        address that is not public and not in ``allow``.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise DestinationRefused(f"webhook url is malformed: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("webhook url must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise DestinationRefused("webhook url must not carry credentials; the secret signs")
    host = parts.hostname
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"webhook host {host[:100]} does not resolve") from None
    if not addresses:
        raise DestinationRefused(f"webhook host {host[:100]} does not resolve")
    for raw in addresses:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # drop an IPv6 zone id
        if any(ip in net for net in allow):
            continue
        why = why_not_public(ip)
        if why is not None:
            raise DestinationRefused(
                f"webhook host {host[:100]} resolves to {why}; only public addresses are "
                "called (an on-premise receiver needs MASTERLINE_WEBHOOK_ALLOW_NETWORKS)"
            )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(text, parts.scheme, host, port, target, addresses[0])


@dataclass(frozen=True)
class Reply:
    """What came back: ``status`` None when no HTTP answer arrived (``error`` says
    why); ``reply_bytes`` counts the body bytes read (never more than the cap)."""

    status: int | None
    error: str | None
    excerpt: str | None
    reply_bytes: int
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each allowed only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        self._sock.settimeout(left)
        return self._sock.recv_into(b)


class _DeadlineSocket:
    """What ``http.client`` needs of a socket, with reads bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        self._sock.settimeout(left)
        self._sock.sendall(data)

    def makefile(self, mode: str, *_: Any, **__: Any) -> io.BufferedReader:
        assert "r" in mode
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        self._sock.close()


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to ``dest.address`` only; ``Host`` and SNI say ``dest.host``."""

    def __init__(self, dest: Destination, deadline: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(dest.host, dest.port)
        self._dest = dest
        self._deadline = deadline
        self._tls = tls

    def connect(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        sock = socket.create_connection((self._dest.address, self._dest.port), timeout=left)
        if self._dest.scheme == "https":
            context = self._tls or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self._dest.host)
        self.sock = _DeadlineSocket(sock, self._deadline)


def post(
    dest: Destination,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline_seconds: float = DEFAULT_DEADLINE,
    max_reply_bytes: int = DEFAULT_MAX_REPLY,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """POST ``body`` to ``dest``: the whole exchange within ``deadline_seconds``, at
    most ``max_reply_bytes`` of the reply read. Never raises for network trouble: it
    is a ``Reply`` with ``error`` set. Redirects are answers, not followed."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    conn = _PinnedConnection(dest, deadline, tls)
    status: int | None = None
    data = b""
    error: str | None = None
    try:
        conn.request("POST", dest.target, body=body, headers=headers)
        response = conn.getresponse()
        status = response.status
        # The status is the answer; a body cut short only shortens the excerpt.
        with contextlib.suppress(TimeoutError, OSError, http.client.HTTPException):
            data = response.read(max_reply_bytes)
    except TimeoutError:
        error = f"no answer within {deadline_seconds:g} s"
    except ssl.SSLCertVerificationError:
        error = "TLS certificate not valid for this host"
    except (OSError, http.client.HTTPException) as e:
        error = type(e).__name__
    finally:
        conn.close()
    took = int((time.monotonic() - started) * 1000)
    if status is not None and not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Reply(status, error, excerpt(data), len(data), took)


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str | None:
    """The start of a reply as one line of printable text (control and format
    characters become spaces), at most ``limit`` characters; None when empty."""
    text = data[: limit * 4].decode("utf-8", errors="replace")
    clean = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    clean = " ".join(clean.split())[:limit]
    return clean or None
