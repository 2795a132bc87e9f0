"""WinRM authentication of the lab: Basic, NTLM (pyspnego as the acceptor) and the
NTLM message encryption framing pywinrm's ``winrm/encryption.py`` speaks."""

from __future__ import annotations

import base64
import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import spnego
import spnego.channel_bindings

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
# pyspnego reads NTLM_USER_FILE from the environment when it checks a response; one lock
# keeps each laptop's credentials with its own handshake.
_NTLM_ENV_LOCK = threading.Lock()


class Credentials:
    """The local admin account of one lab Windows laptop, as its listeners check it."""

    def __init__(self, laptop_dir: Path, username: str, password: str, cert_hash: bytes) -> None:
        self.username = username
        self.password = password
        self.cert_hash = cert_hash
        self.user_file = laptop_dir / "ntlm_users"
        fd = os.open(self.user_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            # Local account: no domain, or "." as the domain (".\\Administrator").
            fh.write(f":{username}:{password}\n")
            fh.write(f".:{username}:{password}\n")

    def new_ntlm(self, tls: bool) -> spnego.ContextProxy:
        bindings = None
        if tls:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + self.cert_hash
            )
        with self._user_file():
            return spnego.server(protocol="ntlm", channel_bindings=bindings)

    def ntlm_step(self, ctx: spnego.ContextProxy, token: bytes) -> bytes | None:
        """Raises spnego.exceptions.SpnegoError for a bad response (wrong password…)."""
        with self._user_file():
            return ctx.step(token)

    @contextlib.contextmanager
    def _user_file(self) -> Iterator[None]:
        with _NTLM_ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = str(self.user_file)
            try:
                yield
            finally:
                if previous is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = previous

    def basic_ok(self, header: str) -> bool:
        try:
            user, _, password = base64.b64decode(header.split(" ", 1)[1]).decode().partition(":")
        except (ValueError, IndexError):
            return False
        user = user.split("\\")[-1]
        return user.lower() == self.username.lower() and password == self.password


def ntlm_type(auth: str) -> int:
    """NTLM message type (1 negotiate, 3 authenticate) of an Authorization header, or 0."""
    try:
        token = base64.b64decode(auth.partition(" ")[2].strip())
    except ValueError:
        return 0
    return int(struct.unpack("<I", token[8:12])[0]) if len(token) >= 12 else 0


def decrypt(ctx: spnego.ContextProxy, body: bytes) -> bytes:
    """Unwrap a multipart/encrypted request body. Raises ValueError if malformed."""
    parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
    if len(parts) != 2:
        raise ValueError("expected one encrypted part")
    header, payload = parts
    expected = int(header.split(b"Length=")[1].split(b"\r\n")[0])
    if payload.endswith(BOUNDARY + b"--\r\n"):
        payload = payload[: -len(BOUNDARY + b"--\r\n")]
    prefix = b"\tContent-Type: application/octet-stream\r\n"
    if not payload.startswith(prefix):
        raise ValueError("no octet-stream part")
    data = payload[len(prefix) :]
    sig_len = struct.unpack("<i", data[:4])[0]
    message: bytes = ctx.unwrap(data[4 : 4 + sig_len] + data[4 + sig_len :]).data
    if len(message) != expected:
        raise ValueError("length mismatch")
    return message


def encrypt(ctx: spnego.ContextProxy, message: bytes) -> bytes:
    wrapped = ctx.wrap(message, encrypt=True).data
    signature, sealed = wrapped[:16], wrapped[16:]
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<i", len(signature))
        + signature
        + sealed
        + BOUNDARY
        + b"--\r\n"
    )
