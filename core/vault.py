"""Encryption at rest for configuration and per-device secrets (Fernet: AES-128-CBC and
HMAC-SHA256, from ``cryptography``).

The key material is ``MASTERLINE_SECRET_KEY`` (any string) or, when unset,
``<data_dir>/secret.key``, generated on first use with mode 0600; the Fernet key is its
SHA-256. Images (configuration secrets) and logistics (webhook secrets) both use it,
so one key protects every secret of an installation. Losing the key loses the secrets
(they can be set again); every process that reads them (API, worker) needs the same
key. ``masterline configs keygen`` prints a fresh random key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import MasterlineError
from core.files import private_dir
from core.settings import get_settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class SecretKeyError(MasterlineError):
    """The key that encrypts secrets at rest cannot be read, or is not the one the
    secrets were written with. Never includes the key."""

    status_code = 500
    exit_code = 3
    title = "Secret key error"


KEY_FILE = "secret.key"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _load_or_create(path: Path) -> bytes:
    if not path.exists():
        private_dir(path.parent)
        # O_EXCL: two processes starting at once must not each write their own key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(new_key())
                f.flush()
                os.fsync(f.fileno())
    return path.read_text().strip().encode()


@lru_cache(maxsize=4)
def _fernet(material: bytes) -> Fernet:
    # Imported here, not at the top: the API server loads this module for every
    # configuration route, and cryptography's bindings weigh ~10 MB of its memory.
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))


def fernet() -> Fernet:
    """:raises SecretKeyError: the key file cannot be read or created."""
    return _fernet(_material())


def derived_key(purpose: str) -> bytes:
    """A key for ``purpose`` (e.g. signing links), derived from the installation's
    secret key, so it needs no storage of its own and never equals the encryption key.

    :raises SecretKeyError: as ``fernet``.
    """
    return hmac.new(_material(), b"masterline:" + purpose.encode(), hashlib.sha256).digest()


def _material() -> bytes:
    settings = get_settings()
    if settings.secret_key is not None:
        material = settings.secret_key.get_secret_value().encode()
    else:
        try:
            material = _load_or_create(settings.data_dir / KEY_FILE)
        except OSError as e:
            raise SecretKeyError(
                f"cannot read or create the secret key file in {settings.data_dir} "
                f"({type(e).__name__}); set MASTERLINE_SECRET_KEY"
            ) from e
    if not material:
        raise SecretKeyError("the secret key is empty; set MASTERLINE_SECRET_KEY")
    return material


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """:raises SecretKeyError: written with another key, or tampered with."""
    from cryptography.fernet import InvalidToken

    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as e:
        raise SecretKeyError(
            "a stored secret cannot be decrypted with the current secret key "
            "(MASTERLINE_SECRET_KEY changed?)"
        ) from e


def encrypt_map(values: dict[str, str]) -> str:
    return encrypt(json.dumps(values, sort_keys=True))


def decrypt_map(token: str | None) -> dict[str, str]:
    if not token:
        return {}
    data = json.loads(decrypt(token))
    return {str(k): str(v) for k, v in data.items()}
