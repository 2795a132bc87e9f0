"""The agent's HTTP client: JSON over http.client, TLS pinned to the server
certificate's SHA-256 when ``masterline.ca=`` gives one (the PE has no CA store to
trust, and the bench network is treated as hostile)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 20.0
MAX_ANSWER = 1024 * 1024


class Unreachable(Exception):
    """No answer (refused, timed out, TLS pin mismatch): retry later."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: int | None

    @property
    def detail(self) -> str:
        return str(self.body.get("detail") or self.body.get("title") or f"HTTP {self.status}")


class Api:
    def __init__(
        self, base: str, *, ca_sha256: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        parts = urlsplit(base)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.pin = ca_sha256
        self.timeout = timeout

    def local_address(self) -> str | None:
        """The address this machine uses to reach the API (a UDP "connect" sends
        nothing; it only picks the route)."""
        try:
            family = socket.getaddrinfo(self.host, self.port, proto=socket.IPPROTO_UDP)[0]
            with socket.socket(family[0], socket.SOCK_DGRAM) as s:
                s.connect(family[4])
                return str(s.getsockname()[0])
        except OSError:
            return None

    def _connection(self) -> http.client.HTTPConnection:
        if not self.https:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        ctx = ssl.create_default_context()
        if self.pin:
            # The pin replaces the CA store: check_hostname and chain validation off, the
            # exact certificate checked below before a byte of the request is sent.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)

    def post(self, path: str, body: dict[str, Any] | None, *, bearer: str) -> Answer:
        """:raises Unreachable: no answer, or the certificate is not the pinned one."""
        conn = self._connection()
        try:
            conn.connect()
            if self.pin:
                sock = conn.sock
                der = (
                    sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
                )
                if der is None or hashlib.sha256(der).hexdigest() != self.pin:
                    raise Unreachable("the API's certificate is not the pinned one (masterline.ca)")
            data = json.dumps(body).encode() if body is not None else b""
            conn.request(
                "POST",
                self.prefix + path,
                body=data,
                headers={
                    "Authorization": f"Bearer {bearer}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
            retry = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"{type(e).__name__} talking to {self.host}:{self.port}") from None
        finally:
            conn.close()
        try:
            parsed = json.loads(raw[:MAX_ANSWER]) if raw else {}
        except ValueError:
            parsed = {}
        return Answer(
            status=response.status,
            body=parsed if isinstance(parsed, dict) else {},
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )
