"""SSH keys of the lab: one bench (client) key shared by the lab, one host key per laptop.

Generated with ``cryptography`` (no ``ssh-keygen`` round trip per laptop) in the OpenSSH
formats sshd, ssh, paramiko and Ansible read.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_ed25519(private_path: Path, comment: str) -> str:
    """Write an unencrypted OpenSSH ed25519 private key (mode 0600) and its ``.pub``.

    Returns the public key line (``ssh-ed25519 AAAA… comment``).
    """
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} {comment}"
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    Path(f"{private_path}.pub").write_text(line + "\n")
    return line


def public_line(private_path: Path) -> str:
    """The public key line of a key written by :func:`generate_ed25519`."""
    return Path(f"{private_path}.pub").read_text().strip()


def fingerprint(public_line_: str) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint (what ``ssh-keygen -lf`` prints)."""
    blob = base64.b64decode(public_line_.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def known_hosts_line(host: str, port: int, public_line_: str) -> str:
    """A known_hosts entry for ``[host]:port`` (the form ssh uses for non-22 ports)."""
    key_type, key_b64 = public_line_.split()[:2]
    return f"[{host}]:{port} {key_type} {key_b64}\n"
