"""Webhook secrets: Standard Webhooks ``whsec_`` secrets, their signatures, and their
encryption at rest.

Encryption is ``core.vault`` (Fernet, key from ``MASTERLINE_SECRET_KEY`` or
``<data_dir>/secret.key``): one key protects every secret of an installation. A database
dump alone therefore never yields a subscriber's signing secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from core import vault

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)


def encrypt(clear: str) -> str:
    return vault.encrypt(clear)


def decrypt(token: str) -> str:
    """:raises SecretKeyError: encrypted with another key (MASTERLINE_SECRET_KEY changed)."""
    return vault.decrypt(token)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def webhook_secret_problem(secret: str) -> str | None:
    """Why ``secret`` is not a Standard Webhooks secret (``whsec_`` + base64 of 24 to 64
    bytes), or None. Never quotes the secret."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return "must start with whsec_ (Standard Webhooks)"
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except ValueError:
        return "must be whsec_ followed by base64 (A-Z a-z 0-9 + / and = padding)"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return (
            f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes "
            f"(this one has {len(key)})"
        )
    return None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 part, decoded)."""
    raw = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    return base64.b64decode(raw)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256>`` of
    ``{id}.{timestamp}.{body}``, as Standard Webhooks specifies."""
    to_sign = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
