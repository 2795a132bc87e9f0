"""The lab certificate authority and the WinRM server certificate it signs.

Clients validate the lab's HTTPS endpoints against ``<lab>/ca/ca.pem`` exactly as they
validate a real laptop's WinRM listener against the company CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def ensure_lab_ca(ca_dir: Path) -> tuple[Path, Path, Path]:
    """Create (once) the lab CA and a server certificate for 127.0.0.1 and localhost.

    Returns (ca.pem, server.pem, server.key).
    """
    ca_pem, server_pem, server_key = ca_dir / "ca.pem", ca_dir / "server.pem", ca_dir / "server.key"
    if ca_pem.exists() and server_pem.exists() and server_key.exists():
        return ca_pem, server_pem, server_key
    ca_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Masterline Lab CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(
        server_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(server_pem, cert.public_bytes(serialization.Encoding.PEM))
    # The CA key is not kept: nothing else is ever signed with it.
    _write(ca_pem, ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem, server_pem, server_key


def certificate_hash(server_pem: Path) -> bytes:
    """The tls-server-end-point hash of the server certificate (RFC 5929), for NTLM CBT."""
    cert = x509.load_pem_x509_certificate(server_pem.read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    return cert.fingerprint(algorithm)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # Unique per writer (process and thread): two writers never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
