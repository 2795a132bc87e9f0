"""Labels: asset-tag labels and shipping labels, as ZPL (Zebra) and PDF (any printer).

Both carry a QR code of the asset tag (the serial when the laptop has no tag yet), so a
scanner at the bench or at the teleworker's door reads the same code ``masterline scan``
accepts, and the laptop's help code (``core.helpcode``: the number its user types on
the help desk's phone menu). ZPL goes raw to ``tcp://printer:9100`` (the JetDirect convention Zebra
printers follow); PDF is one label per page (100 x 60 mm) or A4 sheets of 3 x 8.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlmodel import Session

from core import helpcode
from core.errors import Forbidden, InvalidInput
from core.principal import Principal
from inventory import repository as inventory_repo
from inventory import service as inventory
from logistics import repository, service, status
from logistics.errors import BadPrinterUri, PrinterUnavailable, ShipmentNotFound
from logistics.models import ShipmentStatus

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

PRINTER_PORT = 9100
# reportlab's unit and page size, spelt out so that the API server imports reportlab
# (and Pillow, ~15 MB) only when it renders a PDF.
mm = 72 / 25.4
A4 = (210 * mm, 297 * mm)
LABEL_W, LABEL_H = 100 * mm, 60 * mm
SHEET_COLS, SHEET_ROWS = 3, 8


class LabelKind(StrEnum):
    ASSET = "asset"
    SHIPPING = "shipping"


class LabelFormat(StrEnum):
    ZPL = "zpl"
    PDF = "pdf"
    PDF_A4 = "pdf-a4"


@dataclass(frozen=True)
class Label:
    """What goes on one label. ``code`` is what the QR code encodes."""

    code: str
    serial: str
    client: str
    order_reference: str | None = None
    # The number a teleworker types on the help desk's phone menu (``core.helpcode``).
    help_code: str | None = None
    # Shipping labels only (personal data: rendered, never logged).
    recipient: str | None = None
    address: str | None = None
    phone: str | None = None
    carrier: str | None = None
    tracking: str | None = None


# ZPL.
def _zpl_text(value: str) -> str:
    """Field data safe for ``^FH``: the control characters ``^``, ``~`` and the escape
    ``_`` itself become hex escapes, so data can never end a field or start a command."""
    out: list[str] = []
    for ch in value:
        if ch in "^~_\\" or not ch.isprintable():
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def _zpl_field(x: int, y: int, size: int, value: str) -> str:
    return f"^FO{x},{y}^A0N,{size},{size}^FH^FD{_zpl_text(value)}^FS"


def zpl(labels: Sequence[Label], kind: LabelKind) -> str:
    """One ``^XA … ^XZ`` block per label (203 dpi, 4 x 2.4 in). ``^CI28``: UTF-8."""
    blocks = []
    for lb in labels:
        # The QR payload cannot go through ^FH (it is the scanned code itself); codes are
        # [A-Z0-9._/-] by the intake's rules, so nothing needs escaping. Strip anyway.
        qr = "".join(ch for ch in lb.code if ch.isalnum() or ch in "._/-")
        lines = ["^XA", "^CI28", "^PW812", "^LL480", f"^FO20,20^BQN,2,6^FDLA,{qr}^FS"]
        lines.append(_zpl_field(260, 30, 48, lb.code))
        lines.append(_zpl_field(260, 90, 28, f"S/N {lb.serial}"))
        order = f" {lb.order_reference}" if lb.order_reference else ""
        lines.append(_zpl_field(260, 130, 28, lb.client + order))
        if lb.help_code:
            lines.append(_zpl_field(260, 165, 28, _help_text(lb.help_code)))
        if kind is LabelKind.SHIPPING:
            y = 200
            for text in _shipping_lines(lb):
                lines.append(_zpl_field(20, y, 30, text))
                y += 40
        lines.append("^XZ")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n"


def _help_text(code: str) -> str:
    return f"Aide/Help {helpcode.pretty(code)}"


def _shipping_lines(lb: Label) -> list[str]:
    lines = [lb.recipient or ""]
    lines += [p.strip() for p in (lb.address or "").replace(";", "\n").splitlines() if p.strip()]
    if lb.phone:
        lines.append(f"Tel {lb.phone}")
    lines.append(f"{lb.carrier or ''} {lb.tracking or ''}".strip())
    return lines[:6]


# PDF.
def pdf(labels: Sequence[Label], kind: LabelKind, *, a4: bool = False) -> bytes:
    """One label per page, or A4 sheets of ``SHEET_COLS x SHEET_ROWS`` labels."""
    from reportlab.pdfgen.canvas import Canvas

    buf = io.BytesIO()
    if a4:
        canvas = Canvas(buf, pagesize=A4)
        cell_w, cell_h = A4[0] / SHEET_COLS, A4[1] / SHEET_ROWS
        per_page = SHEET_COLS * SHEET_ROWS
        for i, lb in enumerate(labels):
            if i and i % per_page == 0:
                canvas.showPage()
            slot = i % per_page
            col, row = slot % SHEET_COLS, slot // SHEET_COLS
            x, y = col * cell_w, A4[1] - (row + 1) * cell_h
            _draw(canvas, lb, kind, x, y, cell_w, cell_h)
    else:
        canvas = Canvas(buf, pagesize=(LABEL_W, LABEL_H))
        for i, lb in enumerate(labels):
            if i:
                canvas.showPage()
            _draw(canvas, lb, kind, 0, 0, LABEL_W, LABEL_H)
    canvas.setTitle("Masterline labels")
    canvas.save()
    return buf.getvalue()


def _draw(
    canvas: Canvas, lb: Label, kind: LabelKind, x: float, y: float, w: float, h: float
) -> None:
    from reportlab.graphics import renderPDF
    from reportlab.graphics.barcode.qr import QrCodeWidget
    from reportlab.graphics.shapes import Drawing

    margin = 2 * mm
    qr_size = min(h - 2 * margin, w * 0.42)
    widget = QrCodeWidget(lb.code, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(
        qr_size, qr_size, transform=[qr_size / (x1 - x0), 0, 0, qr_size / (y1 - y0), 0, 0]
    )
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, x + margin, y + h - margin - qr_size)
    tx = x + margin * 2 + qr_size
    size = max(6.0, min(12.0, h / 7))
    ty = y + h - margin - size
    canvas.setFont("Helvetica-Bold", size * 1.2)
    canvas.drawString(tx, ty, lb.code)
    canvas.setFont("Helvetica", size * 0.8)
    texts = [
        f"S/N {lb.serial}",
        lb.client + (f" {lb.order_reference}" if lb.order_reference else ""),
    ]
    if lb.help_code:
        texts.append(_help_text(lb.help_code))
    if kind is LabelKind.SHIPPING:
        texts += _shipping_lines(lb)
    for text in texts:
        ty -= size
        if ty < y + margin:
            break
        canvas.drawString(tx, ty, text[:60])


# Printing.
def parse_printer(uri: str) -> tuple[str, int]:
    """``tcp://host[:port]`` (port 9100 by default).

    :raises BadPrinterUri: anything else.
    """
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or not parts.hostname:
        raise BadPrinterUri(uri)
    try:
        port = parts.port or PRINTER_PORT
    except ValueError as e:
        raise BadPrinterUri(uri) from e
    return parts.hostname, port


def send_raw(uri: str, data: bytes, *, timeout: float = 10.0) -> None:
    """Send ``data`` to a raw TCP (port 9100) printer and close.

    :raises BadPrinterUri: not ``tcp://host[:port]``.
    :raises PrinterUnavailable: refused, unreachable or timed out.
    """
    host, port = parse_printer(uri)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise PrinterUnavailable(f"{host}:{port}", type(e).__name__) from e


# Which labels (database side).
def collect(
    session: Session,
    kind: LabelKind,
    principal: Principal,
    *,
    serial: str | None = None,
    device_id: int | None = None,
    delivery_id: int | None = None,
) -> list[Label]:
    """The labels for one device (by serial or id) or a whole delivery.

    :raises InvalidInput: not exactly one of serial, device_id, delivery_id.
    :raises DeviceNotFound, DeliveryNotFound: unknown or invisible.
    :raises ShipmentNotFound: a shipping label for a laptop that is not on its way.
    :raises Forbidden: shipping labels (personal data) for technicians and DSI.
    """
    if sum(x is not None for x in (serial, device_id, delivery_id)) != 1:
        raise InvalidInput("give exactly one of serial, device_id, delivery_id")
    if kind is LabelKind.SHIPPING and not status.sees_personal_data(principal):
        raise Forbidden("shipping labels carry the teleworker's address: logistics or admin")
    if delivery_id is not None:
        delivery = inventory.get_delivery(session, delivery_id, principal)
        assert delivery.id is not None
        devices = list(inventory_repo.devices_of_delivery(session, delivery.id))
    elif device_id is not None:
        devices = [inventory.get_device(session, device_id, principal)]
    else:
        assert serial is not None
        devices = [service.find_device(session, serial, principal)]
    clients: dict[int | None, str] = {}
    shipments = repository.latest_shipments(session, [d.id for d in devices if d.id])
    people = repository.teleworkers_by_id(session, [s.teleworker_id for s in shipments.values()])
    out: list[Label] = []
    for d in devices:
        if d.client_id not in clients:
            client = inventory_repo.get_client(session, d.client_id) if d.client_id else None
            clients[d.client_id] = client.code if client else "-"
        base = Label(
            code=d.asset_tag or d.serial,
            serial=d.serial,
            client=clients[d.client_id],
            order_reference=d.order_reference,
            help_code=helpcode.encode(d.id) if d.id else None,
        )
        if kind is LabelKind.ASSET:
            out.append(base)
            continue
        shipment = shipments.get(d.id) if d.id else None
        if shipment is None or shipment.status != ShipmentStatus.DISPATCHED:
            if delivery_id is None:
                raise ShipmentNotFound(d.serial)
            continue  # in bulk, only laptops on their way get a shipping label
        person = people.get(shipment.teleworker_id)
        out.append(
            replace(
                base,
                recipient=person.name if person else None,
                address=person.address if person else None,
                phone=person.phone if person else None,
                carrier=shipment.carrier,
                tracking=shipment.tracking,
            )
        )
    if not out:
        raise ShipmentNotFound(f"of delivery {delivery_id}")
    return out
