"""Help-desk fixtures: laptops walked through the real lifecycle to DELIVERED, staged by
a recorded run (what the gate step writes), configurations, queues and articles.

``desk`` holds ACME laptops ACMEH001 (staged with a record, delivered to Amélie, fr),
ACMEH002 (staged with a record, dispatched to John, en), ACMEH003 (READY, no run: the
look-up falls back to the client's configuration), and GLOBEX's GLBXH001 (delivered).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlmodel import Session

from core.db import Database
from core.principal import SYSTEM
from core.settings import get_settings
from helpdesk import kb, service
from helpdesk.models import WelcomeSection
from helpdesk.schemas import ArticleCreate, ArticleTags, QueueIn
from images import configs
from images.models import Image, ImageFormat, ImageStatus, OsFamily
from images.schemas import ClientConfigBody
from logistics import service as logistics
from logistics.models import Teleworker
from logistics.schemas import TeleworkerIn
from provisioning.configure.plan import ConfigPlan
from provisioning.pipeline.steps import staged_summary
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.conftest import seeded_desk
from tests.logistics.conftest import make_ready
from tests.support.factories import World

KEY = "x" * 43 + "="


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fixed secret key: help links are signed with a key derived from it."""
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "helpdesk-test-key")
    monkeypatch.setenv("MASTERLINE_HELP_PUBLIC_URL", "https://help.example.test")
    get_settings.cache_clear()
    yield "helpdesk-test-key"
    get_settings.cache_clear()


AMELIE = TeleworkerIn(
    name="Amélie Poulain",
    email="amelie.poulain@acme.example",
    phone="+33 6 12 34 56 78",
    address="15 rue des Trois Frères, 75018 Paris",
    language="fr",
)
JOHN = TeleworkerIn(
    name="John Smith",
    email="john.smith@acme.example",
    phone="+44 20 7946 0000",
    address="1 Baker Street, London",
    language="en",
)
GINA = TeleworkerIn(
    name="Gina Globex",
    email="gina@globex.example",
    phone="+33 1 00 00 00 00",
    address="1 avenue de Globex, Lyon",
)


@dataclass
class Desk:
    ids: dict[str, int]
    people: dict[str, int]
    image_id: int
    article_ids: dict[str, int]


ACME_CONFIG = {
    "hostname_pattern": "ACME-{serial}",
    "vpn": {
        "kind": "wireguard",
        "name": "acme",
        "server": "vpn.acme.example",
        "settings": {"server_public_key": KEY},
    },
    "apps": [
        {
            "name": "Microsoft Teams",
            "source": {"kind": "package", "manager": "winget", "id": "Microsoft.Teams"},
            "verify": {"kind": "package", "name": "Microsoft.Teams"},
        },
        {
            "name": "Zoom",
            "source": {"kind": "package", "manager": "winget", "id": "Zoom.Zoom"},
            "verify": {"kind": "package", "name": "Zoom.Zoom"},
        },
    ],
}


def staged_context(hostname: str, *, zoom_ok: bool = True) -> dict[str, object]:
    """What the gate step records for an ACME laptop: built by the real
    ``staged_summary`` from a real plan."""
    plan = ConfigPlan.from_dict(
        {
            "hostname": hostname,
            "vpn": {
                "kind": "wireguard",
                "name": "acme",
                "server": "vpn.acme.example",
                "settings": {"peer_public_key": KEY, "address": "10.1.0.2/32"},
                "client_app": {"name": "WireGuard", "package": "WireGuard.WireGuard"},
            },
            "apps": [
                {"name": "Microsoft Teams", "package": "Microsoft.Teams"},
                {"name": "Zoom", "package": "Zoom.Zoom"},
            ],
        },
        os_family="windows",
        secrets={"private_key": KEY},
    )
    checks = [
        {"name": "hostname", "ok": True, "detail": f"hostname is {hostname}"},
        {"name": "vpn_profile", "ok": True, "detail": "wireguard profile 'acme' present"},
        {"name": "app:WireGuard", "ok": True, "detail": "present"},
        {"name": "app:Microsoft Teams", "ok": True, "detail": "present"},
        {"name": "app:Zoom", "ok": zoom_ok, "detail": "present"},
    ]
    return {"hostname": hostname, "checks": checks, "staged": staged_summary(plan)}


def add_article(
    session: Session,
    client: str,
    slug: str,
    title: str,
    body: str,
    *,
    language: str = "fr",
    section: WelcomeSection | None = None,
    **tags: list[str],
) -> int:
    article = kb.create_article(
        session,
        ArticleCreate(
            client_code=client,
            slug=slug,
            language=language,
            title=title,
            body=body,
            tags=ArticleTags(**tags),
            welcome_section=section,
        ),
        SYSTEM,
    )
    assert article.id is not None
    return article.id


def ship(
    session: Session, device_id: int, person: TeleworkerIn, tracking: str, client_id: int
) -> Teleworker:
    from inventory import repository as inventory_repo

    device = inventory_repo.get_device_for_update(session, device_id)
    assert device is not None
    teleworker = logistics.upsert_teleworker(session, client_id, person)
    logistics.ship(session, device, teleworker, carrier="DHL", tracking=tracking, principal=SYSTEM)
    return teleworker


def build_desk(db: Database, world: World, *, delivered_at: datetime | None = None) -> Desk:
    ids = dict(
        zip(
            ["ACMEH001", "ACMEH002", "ACMEH003"],
            make_ready(db, world.acme_delivery, ["ACMEH001", "ACMEH002", "ACMEH003"]),
            strict=True,
        )
    )
    ids["GLBXH001"] = make_ready(db, world.globex_delivery, ["GLBXH001"])[0]
    assert world.acme.id is not None and world.globex.id is not None
    with db.session() as s:
        configs.set_config(s, "ACME", ClientConfigBody.model_validate(ACME_CONFIG), SYSTEM)
        image = Image(
            client_id=world.acme.id,
            name="win11-corporate",
            version="2026.11.1",
            os_family=OsFamily.WINDOWS,
            format=ImageFormat.RAW,
            raw_size=1,
            raw_sha256="a" * 64,
            stored_size=1,
            stored_sha256="a" * 64,
            status=ImageStatus.AVAILABLE,
            uploaded_by="test",
        )
        s.add(image)
        s.flush()
        assert image.id is not None
        for serial in ("ACMEH001", "ACMEH002"):
            s.add(
                ProvisioningRun(
                    device_id=ids[serial],
                    client_id=world.acme.id,
                    image_id=image.id,
                    os_family="windows",
                    status=RunStatus.SUCCEEDED,
                    context=staged_context(f"ACME-{serial}", zoom_ok=serial == "ACMEH001"),
                )
            )
        people = {
            "amelie": ship(s, ids["ACMEH001"], AMELIE, "JD0001", world.acme.id).id or 0,
            "john": ship(s, ids["ACMEH002"], JOHN, "JD0002", world.acme.id).id or 0,
            "gina": ship(s, ids["GLBXH001"], GINA, "GX0001", world.globex.id).id or 0,
        }
        for serial in ("ACMEH001", "GLBXH001"):
            logistics.deliver(s, ids[serial], SYSTEM, at=delivered_at)
        service.set_queue(
            s,
            "ACME",
            QueueIn(name="acme-support", phone_number="01 23 45 67 89", hours="lun.-ven. 8h-19h"),
            SYSTEM,
        )
        service.set_queue(s, None, QueueIn(name="centre", phone_number="01 00 00 00 00"), SYSTEM)
        articles = {
            "vpn-fr": add_article(
                s,
                "ACME",
                "vpn-wireguard",
                "Connexion au VPN WireGuard",
                "Ouvrez **WireGuard**, puis activez le tunnel `acme`.\n\n"
                "1. Cliquez sur *Activer*.\n2. Vérifiez l'icône verte.",
                section=WelcomeSection.VPN,
                vpn=["wireguard"],
            ),
            "vpn-en": add_article(
                s,
                "ACME",
                "vpn-wireguard",
                "Connecting the WireGuard VPN",
                "Open **WireGuard**, then activate the `acme` tunnel.",
                language="en",
                section=WelcomeSection.VPN,
                vpn=["wireguard"],
            ),
            "teams": add_article(
                s,
                "ACME",
                "teams-first",
                "Premiers pas dans Teams",
                "Lancez Teams et connectez-vous avec votre adresse professionnelle.",
                section=WelcomeSection.TOOLS,
                tools=["Teams"],
            ),
            "openvpn": add_article(
                s, "ACME", "openvpn", "OpenVPN : mot de passe", "Pour OpenVPN.", vpn=["openvpn"]
            ),
            "latitude": add_article(
                s,
                "ACME",
                "latitude-dock",
                "Station d'accueil Latitude",
                "Branchez la station.",
                models=["Dell Latitude 5440"],
                os=["windows"],
            ),
            "globex": add_article(
                s, "GLOBEX", "globex-vpn", "VPN Globex", "Globex seulement.", vpn=["wireguard"]
            ),
        }
    return Desk(ids=ids, people=people, image_id=image.id, article_ids=articles)


@pytest.fixture
def desk(db: Database, world: World, request: pytest.FixtureRequest) -> Desk:
    return seeded_desk(db, world, request)  # on SQLite, copied from a template made once
