"""Per-wave TLS credentials: an authority made for one wave, and a certificate for each
member (and for the source), so that every hop is TLS 1.3 with both ends pinned to the
wave. A laptop outside the wave (another client's, another wave's) holds no certificate
of this authority: it completes no handshake with a member, so it neither receives a
chunk nor feeds one.

The authority's key lives in the worker's memory for the wave's life (a late joiner
needs a certificate) and is never written anywhere; members receive only their own key,
through the control channel that starts them.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

MEMBER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LIFETIME = datetime.timedelta(hours=12)
"""Longer than any wave (imaging times out at 90 min), short enough to be worthless
after it."""


def server_name(member: str) -> str:
    """The DNS name in a member's certificate, which a downstream checks when it
    connects (the same rule as ``boot/agent/relay.py``)."""
    return f"{member}.wave.invalid"


@dataclass(frozen=True)
class MemberCredentials:
    ca: str
    cert: str
    key: str = field(repr=False)

    def as_config(self) -> dict[str, str]:
        return {"ca": self.ca, "cert": self.cert, "key": self.key}


class WaveAuthority:
    """Issues the certificates of one wave."""

    def __init__(self, wave: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.wave = wave
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"masterline wave {wave}")])
        self._name = name
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = self._pem(self._cert)

    @staticmethod
    def _pem(cert: Any) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        return str(cert.public_bytes(Encoding.PEM).decode())

    def issue(self, member: str) -> MemberCredentials:
        """A certificate and key for ``member``, valid as client and server.

        :raises ValueError: not a valid member name.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if not MEMBER_NAME.match(member):
            raise ValueError("a member name is 1-63 lower-case letters, digits or '-'")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, member)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(server_name(member))]), critical=False
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return MemberCredentials(ca=self.ca_pem, cert=self._pem(cert), key=key_pem)
