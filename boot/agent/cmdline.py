"""The agent's parameters, from the kernel command line (``/proc/cmdline``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A parameter is missing or malformed; the message says which (never its value
    when it is a secret)."""


@dataclass(frozen=True)
class Params:
    api: str
    enroll: str
    ca_sha256: str | None = None
    bench: str | None = None
    site: str | None = None
    ssh_port: int = 22
    """Where this PE's sshd answers, registered for the worker (``masterline.ssh_port=``;
    a PE's sshd is on 22, the device lab's on a port of its own)."""

    def __repr__(self) -> str:  # the credential must never reach a log line
        return f"Params(api={self.api!r}, bench={self.bench!r}, site={self.site!r})"


def parse(text: str) -> Params:
    """``masterline.api=`` and ``masterline.enroll=`` are required; ``masterline.ca=``
    (hex SHA-256 of the server certificate) pins an HTTPS API; ``masterline.ssh_port=``
    says where the PE's sshd answers when not on 22.

    :raises ConfigError: a required parameter is missing or malformed.
    """
    values: dict[str, str] = {}
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.startswith("masterline."):
            values[key[len("masterline.") :]] = value
    api = values.get("api", "").rstrip("/")
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("masterline.api= is missing or not an http(s) URL")
    enroll = values.get("enroll", "")
    if not enroll or len(enroll) > 200 or not enroll.isprintable():
        raise ConfigError("masterline.enroll= (the bench enrollment credential) is missing")
    ca = values.get("ca") or None
    if ca is not None:
        ca = ca.lower().replace(":", "")
        if len(ca) != 64 or any(c not in "0123456789abcdef" for c in ca):
            raise ConfigError("masterline.ca= must be the certificate's SHA-256 in hex")
    port = values.get("ssh_port") or "22"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("masterline.ssh_port= must be a TCP port number")
    if parts.scheme == "http" and ca:
        raise ConfigError("masterline.ca= given for a plain http:// API")
    return Params(
        api=api,
        enroll=enroll,
        ca_sha256=ca,
        bench=values.get("bench") or None,
        site=values.get("site") or None,
        ssh_port=int(port),
    )
