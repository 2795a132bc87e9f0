"""The welcome sheet in the box: one printable A4 page (or two) per laptop, in the
teleworker's language: their name, the laptop's hostname, first sign-in steps, how to
connect the client's VPN, first steps in its collaboration tools (from the articles
marked for the sheet that apply to this laptop), the help-desk number, the laptop's help
code, and a QR code to the help page of this laptop's articles.

The QR code's link (``/help/<code>-<lang>-<signature>``) opens without a token: the
person holding the sheet reads the articles that apply to their laptop, on their phone,
even while the VPN does not work. The signature (HMAC with a key derived from the
installation's secret key) makes a link unforgeable, so the page cannot be walked to
other laptops or clients; it shows articles only, never personal data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from core import helpcode, vault
from core.errors import InvalidInput
from core.principal import Principal
from core.settings import get_settings
from helpdesk import kb, kb_text, lookup, repository, service
from helpdesk.models import Article, WelcomeSection
from inventory import service as inventory
from inventory.models import Device
from logistics.models import ShipmentStatus

if TYPE_CHECKING:
    from reportlab.platypus import Flowable

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MAX_SHEETS = 2000

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "welcome": "Bienvenue, {name}",
        "intro": "Voici votre ordinateur {client}. Cette feuille vous guide pour la première "
        "mise en route.",
        "laptop": "Votre ordinateur",
        "hostname": "Nom de l'ordinateur",
        "serial": "Numéro de série",
        "model": "Modèle",
        "help": "Besoin d'aide ?",
        "call": "Appelez le {phone}",
        "code": "Code d'aide : {code}",
        "code_hint": "Tapez ce code sur le clavier du téléphone quand le standard vous le "
        "demande : vous serez mis en relation avec l'équipe de {client}.",
        "qr": "Scannez ce code pour lire les guides de votre ordinateur.",
        "sign_in": "Première connexion",
        "vpn": "Se connecter au VPN",
        "tools": "Vos outils de travail",
        "sign_in_default": "1. Branchez l'ordinateur sur le secteur et allumez-le.\n"
        "2. Connectez-vous à votre réseau Wi-Fi.\n"
        "3. Ouvrez votre session avec l'identifiant et le mot de passe fournis par votre "
        "service informatique.",
        "vpn_default": "Ouvrez la connexion VPN « {name} » ({kind}) avant d'accéder aux "
        "applications de l'entreprise.",
        "tools_default": "Installés et vérifiés sur votre ordinateur : {tools}.",
        "no_phone": "le numéro indiqué par votre service informatique",
    },
    "en": {
        "welcome": "Welcome, {name}",
        "intro": "This is your {client} laptop. This sheet walks you through its first start.",
        "laptop": "Your laptop",
        "hostname": "Computer name",
        "serial": "Serial number",
        "model": "Model",
        "help": "Need help?",
        "call": "Call {phone}",
        "code": "Help code: {code}",
        "code_hint": "Type this code on your phone's keypad when asked: you will reach the "
        "{client} team directly.",
        "qr": "Scan this code to read the guides for your laptop.",
        "sign_in": "First sign-in",
        "vpn": "Connecting to the VPN",
        "tools": "Your work tools",
        "sign_in_default": "1. Plug the laptop in and switch it on.\n"
        "2. Connect to your Wi-Fi network.\n"
        "3. Sign in with the user name and password your IT department gave you.",
        "vpn_default": "Open the VPN connection “{name}” ({kind}) before using company "
        "applications.",
        "tools_default": "Installed and checked on your laptop: {tools}.",
        "no_phone": "the number your IT department gave you",
    },
}


# The help link.
def _signature(code: str, language: str) -> str:
    key = vault.derived_key("helpdesk-help-link")
    mac = hmac.new(key, f"{code}:{language}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def help_link_token(device_id: int, language: str) -> str:
    code = helpcode.encode(device_id)
    return f"{code}-{language}-{_signature(code, language)}"


def help_url(device_id: int, language: str) -> str:
    settings = get_settings()
    base = (settings.help_public_url or settings.api_url).rstrip("/")
    return f"{base}/help/{help_link_token(device_id, language)}"


def parse_help_link(token: str) -> tuple[int, str] | None:
    """(device id, language) of a genuine link; None for anything else."""
    parts = token.split("-", 2)  # the signature itself may hold "-" (base64url)
    if len(parts) != 3 or parts[1] not in TEXT:
        return None
    code, language, signature = parts
    device_id = helpcode.decode(code)
    if device_id is None:
        return None
    if not hmac.compare_digest(signature.encode(), _signature(code, language).encode()):
        return None
    return device_id, language


# What goes on a sheet.
@dataclass
class Sheet:
    language: str
    name: str
    client: str
    hostname: str | None
    serial: str
    model: str | None
    phone: str | None
    hours: str | None
    code: str
    url: str
    vpn: tuple[str, str] | None
    tools: list[str]
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Section -> (title, Markdown body) of the articles printed there."""


def sheets_for(
    session: Session,
    principal: Principal,
    *,
    device_id: int | None = None,
    delivery_id: int | None = None,
    serials: Sequence[str] | None = None,
) -> list[Sheet]:
    """The sheets of one laptop, of a delivery's laptops on their way, or of the laptops
    of a dispatch file (in its order). Laptops not shipped to anyone are skipped in a
    batch and refused alone.

    :raises DeviceNotFound, DeliveryNotFound: unknown or invisible.
    :raises InvalidInput: not exactly one selector; a lone laptop that has no recipient.
    """
    if sum(x is not None for x in (device_id, delivery_id, serials)) != 1:
        raise InvalidInput("give exactly one of device_id, delivery_id, a dispatch file")
    if device_id is not None:
        devices = [inventory.get_device(session, device_id, principal)]
    elif delivery_id is not None:
        delivery = inventory.get_delivery(session, delivery_id, principal)
        assert delivery.id is not None
        devices = list(repository.delivered_devices(session, delivery.id))
    else:
        assert serials is not None
        from logistics import service as logistics

        devices = [logistics.find_device(session, s, principal) for s in serials]
    if len(devices) > MAX_SHEETS:
        raise InvalidInput(f"at most {MAX_SHEETS} sheets at once; print by delivery")
    ids = [d.id for d in devices if d.id is not None]
    shipments = repository.latest_shipments(session, ids)
    people = repository.teleworkers(session, {s.teleworker_id for s in shipments.values()})
    out = []
    for d in devices:
        assert d.id is not None
        shipment = shipments.get(d.id)
        person = people.get(shipment.teleworker_id) if shipment else None
        on_its_way = shipment is not None and shipment.status != ShipmentStatus.RETURNED
        if person is None or person.erased_at is not None or not on_its_way:
            if device_id is not None:
                raise InvalidInput(f"laptop {d.serial} is not shipped to anyone yet")
            continue
        out.append(_sheet(session, d, person.name, str(person.language)))
    return out


def _sheet(session: Session, device: Device, name: str, language: str) -> Sheet:
    assert device.id is not None
    client = repository.clients(session, [device.client_id or 0]).get(device.client_id or 0)
    staged, profile = lookup.laptop_profile(session, device)
    queue = service.queue_read(session, client)
    sections: dict[str, list[tuple[str, str]]] = {}
    if client is not None:
        picked = [
            a
            for a in kb.applicable(session, client, profile, language=language)
            if a.welcome_section is not None
        ]
        bodies = kb.current_bodies(session, picked)
        for article in picked:
            assert article.id is not None and article.welcome_section is not None
            sections.setdefault(str(article.welcome_section), []).append(
                (article.title, bodies[article.id])
            )
    code = helpcode.encode(device.id)
    return Sheet(
        language=language,
        name=name,
        client=client.name if client else "",
        hostname=staged.hostname,
        serial=device.serial,
        model=f"{profile.vendor} {profile.model}" if profile.model else None,
        phone=queue.phone_number,
        hours=queue.hours,
        code=helpcode.pretty(code),
        url=help_url(device.id, language),
        vpn=(staged.vpn_name or "", staged.vpn_kind) if staged.vpn_kind else None,
        tools=[t.name for t in staged.tools],
        sections=sections,
    )


# The help page behind the QR code.
def help_page(session: Session, token: str) -> str | None:
    """The HTML page of a genuine help link (None: not found). Articles only."""
    parsed = parse_help_link(token)
    if parsed is None:
        return None
    device_id, language = parsed
    devices = repository.devices_by_ids(session, [device_id])
    if not devices or devices[0].client_id is None:
        return None
    device = devices[0]
    client = repository.clients(session, [device.client_id or 0]).get(device.client_id or 0)
    if client is None:
        return None
    _, profile = lookup.laptop_profile(session, device)
    articles = kb.applicable(session, client, profile, language=language)
    return _page(client.name, language, articles, kb.current_bodies(session, articles))


def _page(client: str, language: str, articles: Sequence[Article], bodies: dict[int, str]) -> str:
    from html import escape

    title = escape(f"{client} — {'Aide' if language == 'fr' else 'Help'}")
    parts = [
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;"
        "margin:1em auto;padding:0 1em;line-height:1.5}h2{border-top:1px solid #ccc;"
        "padding-top:.5em}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    if not articles:
        parts.append("<p>—</p>")
    for a in articles:
        assert a.id is not None
        parts.append(f'<section id="{escape(a.slug)}"><h2>{escape(a.title)}</h2>')
        parts.append(kb_text.render_html(bodies.get(a.id, "")) + "</section>")
    parts.append("</body></html>")
    return "".join(parts)


# The PDF.
def _fonts() -> tuple[str, str]:
    """DejaVu Sans (every Latin accent, and names in other scripts) when installed,
    else the PDF's built-in Helvetica."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    regular, bold = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
    if not (regular.exists() and bold.exists()):
        return "Helvetica", "Helvetica-Bold"
    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(regular)))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(bold)))
    return "DejaVuSans", "DejaVuSans-Bold"


def pdf(sheets: Sequence[Sheet]) -> bytes:
    """One sheet per laptop, each starting on a new page.

    :raises InvalidInput: no sheet to print.
    """
    if not sheets:
        raise InvalidInput("no laptop to print a welcome sheet for (none shipped yet)")
    from reportlab.platypus import PageBreak, SimpleDocTemplate

    from helpdesk.sheetpdf import Styles, sheet_flowables

    regular, bold = _fonts()
    styles = Styles.make(regular, bold)
    buf = io.BytesIO()
    mm = 72 / 25.4
    doc = SimpleDocTemplate(
        buf,
        pagesize=(210 * mm, 297 * mm),
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title="Welcome",
    )
    story: list[Flowable] = []
    for i, sheet in enumerate(sheets):
        if i:
            story.append(PageBreak())
        story += sheet_flowables(sheet, TEXT[sheet.language], styles)
    doc.build(story)
    return buf.getvalue()


def serials_of_dispatch_file(data: bytes) -> list[str]:
    """The serials of a dispatch file (the CSV given to ``masterline dispatch --csv``).

    :raises FileRejected: unreadable, or no ``serial`` column.
    """
    from core.errors import FileRejected
    from logistics.imports import DISPATCH_COLUMNS, read_sheet

    # Every dispatch column is known (so none is "unknown"); only the serial is needed.
    spec: dict[str, Any] = {
        name: (limit, name == "serial", aliases)
        for name, (limit, _, aliases) in DISPATCH_COLUMNS.items()
    }
    sheet = read_sheet(data, spec)
    if sheet.errors:
        raise FileRejected([e.model_dump() for e in sheet.errors])
    return [values["serial"] for _, values in sheet.rows if "serial" in values]


WELCOME_SECTIONS = tuple(s.value for s in WelcomeSection)
