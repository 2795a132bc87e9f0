"""A WS-Management (WinRS cmd shell) server for one lab Windows laptop.

It answers the six actions pywinrm 0.5.0 sends (Create, Command, Send, Receive, Signal,
Delete on ``…/windows/shell/cmd``) with the envelopes Windows returns, on two listeners:

- HTTPS (``winrm_port``): certificate signed by the lab CA; Basic, or NTLM (connection
  based, with channel binding), optionally with message encryption;
- HTTP (``winrm_http_port``): NTLM with message encryption only
  (``multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"``), as a
  Windows listener with ``AllowUnencrypted=false``.

The NTLM acceptor is pyspnego's, fed a per-laptop ``NTLM_USER_FILE``. The shells and
their commands are ``shells.py``'s (the lab PowerShell vocabulary, ``powershell.py``,
against the laptop's state file).
Faults (``winrm_500``, ``winrm_timeout``, ``winrm_401``, ``app_install_fails``) are read
from the laptop's fault file at each request.
"""

from __future__ import annotations

import base64
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import spnego
import spnego.channel_bindings
import spnego.exceptions

from lab.faults import Fault
from lab.winrm.auth import PROTOCOL, decrypt, encrypt, ntlm_type
from lab.winrm.shells import MAX_BODY, WinrmLaptop
from lab.winrm.soap import (
    WsmanFault,
    fault_envelope,
)


def _handler_class(laptop: WinrmLaptop, tls: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-HTTPAPI/2.0"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            # NTLM authenticates the connection: its context lives as long as the socket.
            self.ntlm: spnego.ContextProxy | None = None
            self.authenticated = False

        def log_message(self, format: str, *args: Any) -> None:
            # Requests carry credentials and scripts: the lab logs none of them.
            return

        def do_GET(self) -> None:
            self._reply(405, b"")

        def do_POST(self) -> None:
            if self.path.split("?")[0].rstrip("/").lower() != "/wsman":
                self._reply(404, b"")
                return
            length = int(self.headers.get("Content-Length", "0") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                self._reply(413, b"")
                return
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            scheme = auth.split(" ", 1)[0].lower()
            if Fault.WINRM_401 in laptop.faults.read():
                # The credentials are rejected: NTLM still gets its challenge, then fails.
                self.authenticated = False
                if scheme in ("ntlm", "negotiate") and ntlm_type(auth) == 1:
                    self._ntlm(auth, body)
                else:
                    self.ntlm = None
                    self._challenge()
                return
            if scheme == "basic":
                # Basic only inside TLS, as a listener with AllowUnencrypted=false.
                if not tls or not laptop.auth.basic_ok(auth):
                    self._challenge()
                    return
                self._soap(body, encrypted=False)
                return
            if scheme in ("ntlm", "negotiate"):
                self._ntlm(auth, body)
                return
            if not self.authenticated:
                self._challenge()
                return
            self._soap(body, encrypted=self._is_encrypted())

        def _is_encrypted(self) -> bool:
            return "multipart/encrypted" in self.headers.get("Content-Type", "").lower()

        def _ntlm(self, auth: str, body: bytes) -> None:
            scheme, _, b64 = auth.partition(" ")
            try:
                token = base64.b64decode(b64.strip())
            except ValueError:
                self._challenge()
                return
            message_type = ntlm_type(auth)
            if message_type == 1:
                self.ntlm = laptop.auth.new_ntlm(tls)
                self.authenticated = False
                try:
                    answer = laptop.auth.ntlm_step(self.ntlm, token)
                except spnego.exceptions.SpnegoError:
                    self._challenge()
                    return
                challenge = base64.b64encode(answer or b"").decode()
                self._reply(401, b"", {"WWW-Authenticate": f"{scheme} {challenge}"})
                return
            if message_type != 3 or self.ntlm is None:
                self._challenge()
                return
            try:
                laptop.auth.ntlm_step(self.ntlm, token)
            except spnego.exceptions.SpnegoError:
                self.ntlm = None
                self._challenge()
                return
            if not self.ntlm.complete:
                self._challenge()
                return
            self.authenticated = True
            if body:
                self._soap(body, encrypted=self._is_encrypted())
            else:
                # pywinrm's empty POST that sets up message encryption.
                self._reply(200, b"")

        def _soap(self, body: bytes, *, encrypted: bool) -> None:
            if not tls and not encrypted:
                # Plain HTTP carries only encrypted messages.
                self._reply(400, b"")
                return
            if encrypted:
                if self.ntlm is None:
                    self._challenge()
                    return
                try:
                    body = decrypt(self.ntlm, body)
                except (ValueError, IndexError, struct.error, spnego.exceptions.SpnegoError):
                    self._reply(400, b"")
                    return
            try:
                status, answer = 200, laptop.handle(body)
            except WsmanFault as fault:
                status, answer = fault.status, fault_envelope(fault, laptop.name)
            if encrypted and self.ntlm is not None:
                self._reply(
                    status,
                    encrypt(self.ntlm, answer),
                    {
                        "Content-Type": f'multipart/encrypted;protocol="{PROTOCOL}";'
                        'boundary="Encrypted Boundary"'
                    },
                )
            else:
                self._reply(status, answer, {"Content-Type": "application/soap+xml;charset=UTF-8"})

        def _challenge(self) -> None:
            headers = [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
            if tls:
                headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
            self._reply(401, b"", headers)

        def _reply(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str] | list[tuple[str, str]] | None = None,
        ) -> None:
            self.send_response(status)
            items = headers.items() if isinstance(headers, dict) else (headers or [])
            for key, value in items:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WinrmEndpoint:
    """The HTTPS and HTTP listeners of one Windows laptop, served from threads."""

    def __init__(self, servers: list[_Server], ports: tuple[Any, Any]) -> None:
        self.servers = servers
        self.ports = ports

    @classmethod
    def start(cls, root: Path, laptop: dict[str, Any]) -> WinrmEndpoint:
        """Bind both ports on 127.0.0.1 and serve. Raises OSError if a port is taken."""
        wl = WinrmLaptop(root, laptop)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(wl.server_pem, wl.server_key)
        https = _Server(("127.0.0.1", int(laptop["winrm_port"])), _handler_class(wl, tls=True))
        # The handshake happens in the connection's thread, not in the accept loop.
        https.socket = context.wrap_socket(
            https.socket, server_side=True, do_handshake_on_connect=False
        )
        try:
            http = _Server(
                ("127.0.0.1", int(laptop["winrm_http_port"])), _handler_class(wl, tls=False)
            )
        except OSError:
            https.server_close()
            raise
        servers = [https, http]
        for server in servers:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return cls(servers, (laptop["winrm_port"], laptop["winrm_http_port"]))

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
