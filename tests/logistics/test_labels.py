from __future__ import annotations

import pypdfium2 as pdfium
import pytest
import zxingcpp
from fastapi.testclient import TestClient

from core.principal import Role
from logistics.errors import BadPrinterUri, PrinterUnavailable
from logistics.labels import Label, LabelKind, send_raw, zpl
from tests.conftest import auth
from tests.logistics.conftest import PERSON, Printer
from tests.support.factories import World
from tests.support.postgres import closed_port


def _qr_codes(pdf: bytes) -> list[list[str]]:
    """Render each page at 200 dpi and decode its QR codes (as a phone camera would)."""
    doc = pdfium.PdfDocument(pdf)
    try:
        pages = []
        for page in doc:
            image = page.render(scale=200 / 72).to_pil()
            found = zxingcpp.read_barcodes(
                image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
            pages.append(sorted(r.text for r in found))
        return pages
    finally:
        doc.close()


def test_asset_labels_pdf_one_per_page_decode_to_the_asset_tags(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    r = app_client.get(
        "/labels/asset",
        params={"delivery_id": world.acme_delivery.id, "format": "pdf"},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    # Untagged laptops fall back to their serial.
    assert _qr_codes(r.content) == [
        ["ACME0001"],
        ["ACME0002"],
        ["AT-ACMER001"],
        ["AT-ACMER002"],
        ["AT-ACMER003"],
    ]


def test_a4_sheets_hold_many_labels(app_client: TestClient, world: World, ready: list[int]) -> None:
    r = app_client.get(
        "/labels/asset",
        params={"delivery_id": world.acme_delivery.id, "format": "pdf-a4"},
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    )
    (page,) = _qr_codes(r.content)
    assert page == sorted(["ACME0001", "ACME0002", "AT-ACMER001", "AT-ACMER002", "AT-ACMER003"])


def test_shipping_labels_are_for_logistics_and_carry_the_address(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    r = app_client.get("/labels/shipping", params={"serial": "ACMER001"}, headers=token)
    assert r.status_code == 404  # not dispatched yet
    app_client.post(
        "/dispatch",
        json={"serial": "ACMER001", "carrier": "DHL", "tracking": "JD0001", "teleworker": PERSON},
        headers=token,
    )
    r = app_client.get(
        "/labels/shipping", params={"serial": "ACMER001", "format": "pdf"}, headers=token
    )
    assert _qr_codes(r.content) == [["AT-ACMER001"]]
    text = app_client.get("/labels/shipping", params={"serial": "ACMER001"}, headers=token).text
    assert "JD0001" in text and "Paris" in text
    tech = auth(world.token(Role.TECHNICIAN))
    r = app_client.get("/labels/shipping", params={"serial": "ACMER001"}, headers=tech)
    assert r.status_code == 403
    assert PERSON["address"] not in r.text
    other = auth(world.token(Role.LOGISTICS, "GLOBEX"))
    r = app_client.get("/labels/asset", params={"serial": "ACMER001"}, headers=other)
    assert r.status_code == 404


def test_zpl_goes_byte_for_byte_to_a_raw_tcp_printer(
    app_client: TestClient, world: World, ready: list[int], printer: Printer
) -> None:
    r = app_client.get(
        "/labels/asset", params={"serial": "ACMER001"}, headers=auth(world.token(Role.TECHNICIAN))
    )
    assert r.headers["content-type"].startswith("application/zpl")
    body = r.content
    assert body.startswith(b"^XA") and body.rstrip().endswith(b"^XZ")
    assert b"^BQN,2,6^FDLA,AT-ACMER001^FS" in body
    send_raw(printer.uri, body)
    assert printer.done.wait(10)
    assert printer.jobs == [body]


def test_zpl_field_data_cannot_inject_commands() -> None:
    label = Label(
        code="AT-1",
        serial="S1",
        client="ACME",
        recipient="Eve ^XZ^XA~JR",
        address="1 rue _x_",
        carrier="DHL",
        tracking="T",
    )
    out = zpl([label], LabelKind.SHIPPING)
    assert out.count("^XA") == 1 and out.count("^XZ") == 1
    assert "~JR" not in out
    assert "Eve _5EXZ_5EXA_7EJR" in out


def test_printer_errors_are_one_line() -> None:
    with pytest.raises(BadPrinterUri):
        send_raw("lpr://printer", b"x")
    with pytest.raises(PrinterUnavailable) as e, closed_port() as port:
        send_raw(f"tcp://127.0.0.1:{port}", b"x", timeout=2)
    assert "ConnectionRefusedError" in e.value.message


def test_asset_labels_carry_the_help_code(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    from core import helpcode

    token = auth(world.token(Role.TECHNICIAN))
    code = helpcode.pretty(helpcode.encode(ready[0]))
    zpl_text = app_client.get("/labels/asset", params={"serial": "ACMER001"}, headers=token).text
    assert f"^FDAide/Help {code}^FS" in zpl_text
    pdf = app_client.get(
        "/labels/asset", params={"serial": "ACMER001", "format": "pdf"}, headers=token
    ).content
    doc = pdfium.PdfDocument(pdf)
    try:
        assert f"Aide/Help {code}" in doc[0].get_textpage().get_text_range()
    finally:
        doc.close()
