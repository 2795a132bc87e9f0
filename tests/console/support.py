"""Helpers for console tests: sign in through the real form, rows of every domain that
the pages point at, for the caller's company and for the other one."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlmodel import Session

from console.deps import SESSION_COOKIE
from core.db import Database
from core.timeutil import utcnow
from core.vault import encrypt
from images.models import Image, ImageFormat, ImageStatus, OsFamily
from inventory.models import Device
from inventory.states import DeviceState, Event
from logistics.models import WebhookSubscription
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.support.factories import World, create_devices

_fresh = itertools.count(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in with ``token`` through the sign-in form; returns the session's CSRF token."""
    form = client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text[:500]
    answer = client.post(
        "/console/sign-in",
        data={"token": token, "nonce": nonce.group(1), "next": "/console/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]
    assert SESSION_COOKIE in client.cookies
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    page = client.get("/console/account")
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def failed_device(session: Session, world: World, *, client: str) -> tuple[Device, ProvisioningRun]:
    """A laptop of ``client`` that failed imaging in slot N of the world's bench, with
    its failed run (as the engine leaves them)."""
    from inventory import lifecycle

    n = next(_fresh)
    delivery = world.acme_delivery if client == "ACME" else world.globex_delivery
    (device,) = create_devices(session, delivery=delivery, serials=[f"F{client[:2]}{n:05d}"])
    device.bench_id, device.slot = world.bench.id, 10 + n
    for event in (Event.RECEIVE, Event.QUEUE, Event.IMAGE):
        lifecycle.apply(session, device, event, actor="test")
    run = ProvisioningRun(
        device_id=device.id or 0,
        client_id=device.client_id,
        status=RunStatus.FAILED,
        step_index=2,
        step_name="stream",
        failed_step="stream",
        last_error="stream: checksum differs",
    )
    session.add(run)
    session.flush()
    lifecycle.apply(
        session,
        device,
        Event.FAIL,
        actor="test",
        reason="stream: checksum differs",
        details={"run_id": run.id, "error": "ChecksumMismatch"},
    )
    from provisioning.runs import lifecycle as run_log

    run_log.add_event(
        session,
        run,
        step="stream",
        kind="failed",
        message="stream: checksum differs",
        details={"error": "ChecksumMismatch"},
    )
    assert device.state == DeviceState.FAILED_IMAGING
    return device, run


def image(session: Session, *, client_id: int, name: str = "walk") -> Image:
    n = next(_fresh)
    row = Image(
        client_id=client_id,
        name=name,
        version=f"v{n}",
        os_family=OsFamily.LINUX,
        format=ImageFormat.RAW,
        raw_size=1,
        raw_sha256="0" * 64,
        stored_size=1,
        stored_sha256=f"{n:064x}",
        status=ImageStatus.AVAILABLE,
        uploaded_by="test",
        published_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def subscription(session: Session, *, client_id: int) -> WebhookSubscription:
    row = WebhookSubscription(
        client_id=client_id,
        url="http://127.0.0.1:9/hook",
        secret_encrypted=encrypt("whsec_walk"),
    )
    session.add(row)
    session.flush()
    return row


@dataclass
class Objects:
    """Own (ACME) and other (GLOBEX) rows for each path parameter a page takes."""

    values: dict[str, tuple[object, object | None]]
    form: dict[str, object]
    """Form fields that name an object: the own company's."""


WALK_MONTH = "2031-01"


def desk_rows(session: Session, world: World) -> dict[str, tuple[object, object | None]]:
    """Help-desk rows of both companies: an article each, a survey call each."""
    from core.principal import SYSTEM
    from helpdesk import kb
    from helpdesk.models import Survey, SurveyCall
    from helpdesk.schemas import ArticleCreate
    from logistics.models import Language

    n = next(_fresh)
    articles = [
        kb.create_article(
            session,
            ArticleCreate(
                client_code=code,
                slug=f"walk-{n}",
                language=Language.FR,
                title="Walk",
                body="Walk.",
            ),
            SYSTEM,
        ).id
        for code in ("ACME", "GLOBEX")
    ]
    survey = Survey(
        month=WALK_MONTH,
        seed="walk",
        margin=0.1,
        confidence=0.95,
        response_rate=1.0,
        population=0,
        sample=0,
        created_by="test",
    )
    session.add(survey)
    session.flush()
    calls = [
        SurveyCall(survey_id=survey.id or 0, client_id=c.id or 0, position=i)
        for i, c in enumerate((world.acme, world.globex))
    ]
    session.add_all(calls)
    session.flush()
    return {
        "article_id": (articles[0], articles[1]),
        "call_id": (calls[0].id, calls[1].id),
        "month": (WALK_MONTH, None),
    }


def objects(db: Database, world: World) -> Objects:
    from images import configs
    from images.schemas import ClientConfigBody

    with db.session() as s:
        own_dev, own_run = failed_device(s, world, client="ACME")
        other_dev, other_run = failed_device(s, world, client="GLOBEX")
        own_img = image(s, client_id=world.acme.id or 0)
        other_img = image(s, client_id=world.globex.id or 0)
        own_sub = subscription(s, client_id=world.acme.id or 0)
        other_sub = subscription(s, client_id=world.globex.id or 0)
        from api import service as tokens
        from core.principal import SYSTEM, Role

        # A throwaway token: revoking it must not lock the walk itself out.
        victim, _ = tokens.create_token(s, name="walk-victim", role=Role.TECHNICIAN)

        desk = desk_rows(s, world)
        site_id = world.bench.site_id
        for code in ("ACME", "GLOBEX"):
            configs.set_config(
                s, code, ClientConfigBody(hostname_pattern=f"{code}-{{serial}}"), SYSTEM
            )
            configs.set_config(
                s, code, ClientConfigBody(hostname_pattern=f"{code}2-{{serial}}"), SYSTEM
            )
        return Objects(
            {
                "device_id": (own_dev.id, other_dev.id),
                "run_id": (own_run.id, other_run.id),
                "image_id": (own_img.id, other_img.id),
                "sub_id": (own_sub.id, other_sub.id),
                "delivery_id": (world.acme_delivery.id, world.globex_delivery.id),
                "client_code": ("ACME", "GLOBEX"),
                "bench_id": (world.bench.id, None),
                "version": (1, None),
                "token_id": (victim.id, None),
                **desk,
            },
            {
                "client_code": "ACME",
                "site_code": "PAR",
                "serial": own_dev.serial,
                "role": "technician",
                "item": "os:linux",
                "article_id": desk["article_id"][0],
                "status": "unreachable",
                "site_id": site_id,
            },
        )
