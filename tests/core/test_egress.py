"""Outbound calls: public destinations only (on the resolved address, connecting to that
very address), a total deadline, a capped read; against real sockets on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest

from core import egress
from tests.support.hostile import hostile_receiver

LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104  (a destination to refuse, not a bind)
    "224.0.0.1",  # multicast (which Python calls global)
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "::ffff:127.0.0.1",  # v4-mapped
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 around 127.0.0.1 (Python calls it global)
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1 (Python calls it global)
    "ff02::1",
]


@pytest.mark.parametrize("raw", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(raw: str) -> None:
    assert egress.why_not_public(ipaddress.ip_address(raw)) is not None


@pytest.mark.parametrize("raw", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(raw: str) -> None:
    assert egress.why_not_public(ipaddress.ip_address(raw)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/hook",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://017700000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:22/",
        "https://10.0.0.1/",
    ],
)
def test_every_spelling_of_an_internal_address_is_refused(url: str) -> None:
    """The system resolver turns each spelling into the address it means; the check is
    on that address."""
    with pytest.raises(egress.DestinationRefused, match="only public addresses"):
        egress.check(url)


def test_urls_that_are_not_http_with_a_host_are_refused() -> None:
    for url in ("ftp://8.8.8.8/", "file:///etc/passwd", "http://user:pw@8.8.8.8/", "x", "http://"):
        with pytest.raises(egress.DestinationRefused):
            egress.check(url, resolver=lambda h, p: ["8.8.8.8"])
    with pytest.raises(egress.DestinationRefused, match="does not resolve"):
        egress.check("http://no-such-host.invalid/")


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    def resolver(host: str, port: int) -> Sequence[str]:
        return ["8.8.8.8", "10.0.0.5"]

    with pytest.raises(egress.DestinationRefused, match=r"10\.0\.0\.5 is private"):
        egress.check("https://hooks.example.com/x", resolver=resolver)
    dest = egress.check("https://hooks.example.com/x?a=1", resolver=lambda h, p: ["8.8.8.8"])
    assert (dest.host, dest.port, dest.target, dest.address) == (
        "hooks.example.com",
        443,
        "/x?a=1",
        "8.8.8.8",
    )


def test_the_allow_list_admits_on_premise_receivers_only() -> None:
    assert egress.check("http://127.0.0.1:9/", allow=LOCAL).address == "127.0.0.1"
    with pytest.raises(egress.DestinationRefused):
        egress.check("http://10.0.0.1:9/", allow=LOCAL)
    assert egress.parse_networks("10.0.0.0/8, 127.0.0.1 fd00::/8") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_the_connection_goes_to_the_address_checked_with_the_name_in_host() -> None:
    """DNS rebinding: the name is resolved once; the call connects to that address and
    says the name in Host. This name resolves nowhere else, so a second lookup would
    have failed."""
    calls: list[str] = []

    def resolver(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return ["127.0.0.1"]

    with hostile_receiver("ok") as rx:
        dest = egress.check(
            f"http://rebind.example.invalid:{rx.port}/in", allow=LOCAL, resolver=resolver
        )
        reply = egress.post(dest, b"{}", {"content-type": "application/json"})
    assert reply.ok and reply.status == 204, reply
    assert calls == ["rebind.example.invalid"]
    (request,) = rx.requests
    assert request.startswith(b"POST /in HTTP/1.1\r\n")
    assert f"Host: rebind.example.invalid:{rx.port}\r\n".encode() in request


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_sends_the_name_in_sni_and_checks_the_certificate_against_it(
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path, "hooks.example.test")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    with hostile_receiver("ok", tls=server) as rx:
        good = egress.check(
            f"https://hooks.example.test:{rx.port}/",
            allow=LOCAL,
            resolver=lambda h, p: ["127.0.0.1"],
        )
        assert egress.post(good, b"{}", {}, tls=client).status == 204
        wrong = egress.check(
            f"https://other.example.test:{rx.port}/",
            allow=LOCAL,
            resolver=lambda h, p: ["127.0.0.1"],
        )
        reply = egress.post(wrong, b"{}", {}, tls=client)
    assert reply.status is None and reply.error == "TLS certificate not valid for this host"
    assert rx.server_names[:2] == ["hooks.example.test", "other.example.test"]


def test_a_trickling_receiver_is_cut_at_the_deadline_not_per_read() -> None:
    """One byte every 0.3 s would keep a per-read timeout happy for 36 s; the deadline
    (1 s) ends the call, and the receiver sees the hang-up long before its last byte."""
    with hostile_receiver("trickle", trickle_every=0.3, trickle_bytes=120) as rx:
        dest = egress.check(rx.url, allow=LOCAL)
        reply = egress.post(dest, b"{}", {}, deadline_seconds=1.0)
        assert reply.status is None and reply.error == "no answer within 1 s"
    assert len(rx.sent) == 1 and rx.sent[0] < 120, rx.sent


def test_a_huge_reply_is_read_up_to_the_cap_only_and_logged_clean() -> None:
    cap = 64 * 1024
    with hostile_receiver("huge") as rx:
        dest = egress.check(rx.url, allow=LOCAL)
        reply = egress.post(dest, b"{}", {}, max_reply_bytes=cap)
    assert reply.ok and reply.reply_bytes == cap
    # The receiver could push no more than the cap plus the sockets' buffers.
    assert len(rx.sent) == 1 and rx.sent[0] < 64 * 1024 * 1024, rx.sent
    assert reply.excerpt is not None and len(reply.excerpt) <= egress.EXCERPT_CHARS
    assert reply.excerpt.startswith("[31mINTERNAL SECRET z")
    assert all(c.isprintable() for c in reply.excerpt)
