"""Welcome sheets: the PDF's text read back, its QR code decoded and followed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pypdfium2 as pdfium
import zxingcpp
from fastapi.testclient import TestClient

from core import helpcode
from core.principal import Role
from tests.conftest import auth
from tests.helpdesk.conftest import Desk
from tests.support.factories import World


def _pages(pdf: bytes) -> list[tuple[str, list[str]]]:
    """Each page's text and the QR codes a phone camera would read on it (200 dpi)."""
    doc = pdfium.PdfDocument(pdf)
    try:
        out = []
        for page in doc:
            text = page.get_textpage().get_text_range()
            image = page.render(scale=200 / 72).to_pil()
            codes = zxingcpp.read_barcodes(
                image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
            out.append((" ".join(text.split()), [c.text for c in codes]))
        return out
    finally:
        doc.close()


def test_a_sheet_in_french_says_everything_the_box_needs(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    r = app_client.get(
        "/helpdesk/welcome", params={"device_id": desk.ids["ACMEH001"]}, headers=token
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    pages = _pages(r.content)
    text = " ".join(t for t, _ in pages)
    code = helpcode.pretty(helpcode.encode(desk.ids["ACMEH001"]))
    for expected in (
        "Bienvenue, Amélie Poulain",
        "ACME-ACMEH001",  # the hostname
        "ACMEH001",
        "Dell Latitude 5440",
        "Appelez le 01 23 45 67 89",
        "lun.-ven. 8h-19h",
        f"Code d'aide : {code}",
        "Première connexion",
        "Ouvrez votre session",  # no sign-in article: the built-in steps
        "Se connecter au VPN",
        "Ouvrez WireGuard, puis activez le tunnel acme",  # the article, Markdown rendered
        "1. Cliquez sur Activer.",
        "Vos outils de travail",
        "Premiers pas dans Teams",
        "Lancez Teams",
    ):
        assert expected in text, expected
    for absent in ("Trois Frères", "12 34 56 78", "OpenVPN", "Globex", "**", "`"):
        assert absent not in text, absent
    (qr,) = [c for _, codes in pages for c in codes]
    assert qr.startswith("https://help.example.test/help/")
    # The QR code's page: this laptop's articles, no token needed, no personal data.
    page = app_client.get(urlsplit(qr).path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Connexion au VPN WireGuard" in page.text and "Premiers pas dans Teams" in page.text
    assert "OpenVPN" not in page.text and "Amélie" not in page.text
    forged = urlsplit(qr).path[:-2] + ("AA" if not qr.endswith("AA") else "BB")
    assert app_client.get(forged).status_code == 404
    other = helpcode.encode(desk.ids["ACMEH002"])
    assert (
        app_client.get(
            urlsplit(qr).path.replace(helpcode.encode(desk.ids["ACMEH001"]), other)
        ).status_code
        == 404
    )


def test_sheets_are_in_each_teleworkers_language_and_print_by_delivery_or_file(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    r = app_client.get(
        "/helpdesk/welcome", params={"delivery_id": world.acme_delivery.id}, headers=token
    )
    assert r.status_code == 200, r.text
    text = " ".join(t for t, _ in _pages(r.content))
    # ACMEH001 and ACMEH002 are shipped; ACMEH003 (not shipped) and the EXPECTED ones are not.
    assert text.index("Bienvenue, Amélie Poulain") < text.index("Welcome, John Smith")
    assert "Connecting the WireGuard VPN" not in text  # an article title is not repeated…
    assert "Open WireGuard, then activate the acme tunnel" in text  # …its English text is there
    assert "Call 01 23 45 67 89" in text and "ACMEH003" not in text
    csv = (
        b"Serial;Name;Email;Address;Carrier;Tracking\r\n"
        b"ACMEH002;x;x@acme.example;a;DHL;1\r\n"
        b"acmeh001;y;y@acme.example;b;DHL;2\r\n"
    )
    r = app_client.post(
        "/helpdesk/welcome/dispatch-file", content=csv, headers=token | {"content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    text = " ".join(t for t, _ in _pages(r.content))
    assert text.index("Welcome, John Smith") < text.index("Bienvenue, Amélie Poulain")
    bad = app_client.post(
        "/helpdesk/welcome/dispatch-file",
        content=b"name\r\nx\r\n",
        headers=token | {"content-type": "text/csv"},
    )
    assert bad.status_code == 422


def test_who_may_print_sheets(app_client: TestClient, world: World, desk: Desk) -> None:
    params = {"device_id": desk.ids["ACMEH001"]}
    for role, client, status in (
        (Role.HELPDESK, None, 403),  # a sheet carries a name and is printed by logistics
        (Role.TECHNICIAN, None, 403),
        (Role.LOGISTICS, "GLOBEX", 404),
        (Role.ADMIN, None, 200),
    ):
        r = app_client.get(
            "/helpdesk/welcome", params=params, headers=auth(world.token(role, client))
        )
        assert r.status_code == status, role
    not_shipped = {"device_id": desk.ids["ACMEH003"]}
    r = app_client.get(
        "/helpdesk/welcome", params=not_shipped, headers=auth(world.token(Role.ADMIN))
    )
    assert r.status_code == 422
