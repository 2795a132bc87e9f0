"""How the access walk (test_access.py) fills what a route needs: for each path parameter,
an object of the caller's own company and one of the other company (``PARAM_FACTORIES``
from each domain's factories, ``SYNTHETIC_FACTORIES`` from the model alone), and the
few request bodies the OpenAPI schema cannot make meaningful (``BODY_OVERRIDES``)."""

from __future__ import annotations

import enum
import importlib
import itertools
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from api import service as tokens
from core.principal import Role
from inventory.models import HardwareModel, Site
from tests.support.factories import World, create_devices
from tests.support.openapi_bodies import (
    Pair,
)

OWN, OTHER = "ACME", "GLOBEX"

ParamFactory = Callable[[Session, World], Pair]


_fresh = itertools.count(1)


def _device_pair(session: Session, world: World) -> Pair:
    # Fresh laptops for every route, so one route's lifecycle move (retire, dispatch…)
    # does not change what the next route sees.
    n = next(_fresh)
    own = create_devices(session, delivery=world.acme_delivery, serials=[f"WALKA{n:05d}"])
    other = create_devices(session, delivery=world.globex_delivery, serials=[f"WALKG{n:05d}"])
    return own[0].id, other[0].id


def _token_pair(session: Session, world: World) -> Pair:
    # A throwaway token: revoking it must not lock the walk itself out.
    row, _ = tokens.create_token(session, name="walk-victim", role=Role.TECHNICIAN)
    return row.id, None


def _first_id(model: Any) -> ParamFactory:
    def factory(session: Session, world: World) -> Pair:
        return session.exec(select(model.id).order_by(model.id)).first(), None

    return factory


def _article_pair(session: Session, world: World) -> Pair:
    from helpdesk.models import Article, ArticleVersion

    n = next(_fresh)
    ids = []
    for client in (world.acme, world.globex):
        assert client.id is not None
        article = Article(client_id=client.id, slug=f"walk-{n}", language="fr", title="Walk")
        session.add(article)
        session.flush()
        assert article.id is not None
        session.add(
            ArticleVersion(article_id=article.id, version=1, title="Walk", body="b", author="t")
        )
        ids.append(article.id)
    return ids[0], ids[1]


WALK_MONTH = "2031-01"


def _survey_id(session: Session) -> int:
    from helpdesk.models import Survey

    found = session.exec(select(Survey).where(Survey.month == WALK_MONTH)).first()
    if found is None:
        found = Survey(
            month=WALK_MONTH,
            seed="walk",
            margin=0.1,
            confidence=0.95,
            response_rate=1.0,
            population=0,
            sample=0,
            created_by="test",
        )
        session.add(found)
        session.flush()
    assert found.id is not None
    return found.id


def _call_pair(session: Session, world: World) -> Pair:
    from helpdesk.models import SurveyCall

    survey_id = _survey_id(session)
    calls = [
        SurveyCall(survey_id=survey_id, client_id=c.id or 0, position=next(_fresh))
        for c in (world.acme, world.globex)
    ]
    session.add_all(calls)
    session.flush()
    return calls[0].id, calls[1].id


def _month(session: Session, world: World) -> Pair:
    _survey_id(session)
    return WALK_MONTH, None


PARAM_FACTORIES: dict[str, ParamFactory] = {
    "device_id": _device_pair,
    "delivery_id": lambda s, w: (w.acme_delivery.id, w.globex_delivery.id),
    "client_id": lambda s, w: (w.acme.id, w.globex.id),
    "client_code": lambda s, w: (OWN, OTHER),
    "bench_id": lambda s, w: (w.bench.id, None),
    "site_id": _first_id(Site),
    "hardware_model_id": _first_id(HardwareModel),
    "model_id": _first_id(HardwareModel),
    "token_id": _token_pair,
    "article_id": _article_pair,
    "call_id": _call_pair,
    "month": _month,
}
"""How to fill a path parameter (or a body field of the same name). Extend it when a
domain adds a route whose parameter this walk cannot fill yet."""


def _synthetic_row(session: Session, model: Any, client_id: int, world: World) -> int | None:
    """A row of another domain's ``model`` owned by ``client_id``, its required fields
    filled by type. None when the model needs something this cannot make up."""
    n = next(_fresh)
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if not info.is_required():
            continue
        kind = info.annotation
        if name == "client_id":
            values[name] = client_id
        elif name == "device_id":
            delivery = world.acme_delivery if client_id == world.acme.id else world.globex_delivery
            values[name] = create_devices(session, delivery=delivery, serials=[f"WALKS{n:05d}"])[
                0
            ].id
        elif name.endswith("_id"):
            return None
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            values[name] = next(iter(kind)).value
        elif kind is str and name == "url":
            values[name] = "http://127.0.0.1:9/walk"  # the discard port: refused at once
        elif kind is str:
            values[name] = f"walk-{n}@example.com" if "email" in name else f"walk-{n}"
        elif kind is int:
            values[name] = 1
        elif kind is bool:
            values[name] = False
        elif kind in (dict, dict[str, Any]):
            values[name] = {}
        elif kind in (list, list[str]):
            values[name] = []
        else:
            return None
    try:
        with session.begin_nested():
            row = model(**values)
            session.add(row)
            session.flush()
    except Exception:
        return None
    return int(row.id) if row.id is not None else None


def _other_domain(module: str, cls: str) -> ParamFactory:
    """A factory for another domain's client-owned object, tolerant of that domain still
    changing: when the row cannot be made, the parameter counts as unknown."""

    def factory(session: Session, world: World) -> Pair:
        try:
            model = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            return None, None
        assert world.acme.id is not None and world.globex.id is not None
        own = _synthetic_row(session, model, world.acme.id, world)
        other = _synthetic_row(session, model, world.globex.id, world)
        return (own, other) if own is not None and other is not None else (None, None)

    return factory


SYNTHETIC_FACTORIES: dict[str, ParamFactory] = {
    "image_id": _other_domain("images.models", "Image"),
    "run_id": _other_domain("provisioning.runs.models", "ProvisioningRun"),
    "teleworker_id": _other_domain("logistics.models", "Teleworker"),
    "sub_id": _other_domain("logistics.models", "WebhookSubscription"),
}
"""Rows made up from the model alone. They prove the other-company 404; whether the own
company's row is usable is not asserted (it may lack what its domain would have set)."""


BodyFactory = Callable[[dict[str, Pair], World], Pair]
BODY_OVERRIDES: dict[tuple[str, str], BodyFactory] = {
    ("POST", "/devices/{device_id}/events"): lambda v, w: (
        {"event": "quarantine", "reason": "access walk"},
        None,
    ),
    ("POST", "/scan"): lambda v, w: ({"code": "ACME0002", "bench_id": w.bench.id}, None),
    ("POST", "/tokens"): lambda v, w: ({"name": "walk", "role": "technician"}, None),
    ("POST", "/benches"): lambda v, w: ({"site_code": "PAR", "code": "WALK", "slots": 4}, None),
    ("POST", "/helpdesk/lookup"): lambda v, w: ({"q": "ACME0001"}, {"q": "GLBX0001"}),
    ("POST", "/helpdesk/articles"): lambda v, w: (
        {"client_code": OWN, "slug": f"walk-new-{next(_fresh)}", "language": "fr"}
        | {"title": "Walk", "body": "Walk"},
        {"client_code": OTHER, "slug": f"walk-new-{next(_fresh)}", "language": "fr"}
        | {"title": "Walk", "body": "Walk"},
    ),
    ("POST", "/helpdesk/calls/{call_id}/status"): lambda v, w: ({"status": "unreachable"}, None),
    # Where a delivery is staged is the centre's to say (site_id): a client's dsi and
    # logistics set only the date.
    ("PUT", "/forecast/deliveries/{delivery_id}/commitment"): lambda v, w: (
        {"committed_date": "2027-01-15"},
        None,
    ),
}
"""Bodies that the schema alone cannot make meaningful (e.g. an event a technician may
apply by hand). Values: (own-company body, other-company body or None)."""
