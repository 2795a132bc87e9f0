"""All help-desk SQL, including its reads of other domains' tables (devices, shipments,
runs, configurations), so that rules stay in the services."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from helpdesk.models import (
    Article,
    ArticleTerm,
    ArticleVersion,
    Contact,
    Queue,
)
from images.models import ClientConfig, Image
from inventory.models import ClientCompany, Delivery, Device, DeviceEvent, HardwareModel
from logistics.models import Shipment, Teleworker
from provisioning.runs.models import ProvisioningRun, RunStatus

_CHUNK = 500


def chunks(ids: Collection[int]) -> list[list[int]]:
    values = sorted(set(ids))
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


# Queues.
def get_queue(session: Session, client_id: int | None) -> Queue | None:
    cond = col(Queue.client_id).is_(None) if client_id is None else Queue.client_id == client_id
    return session.exec(select(Queue).where(cond)).first()


def list_queues(session: Session, *, client_id: int | None) -> Sequence[Queue]:
    q = select(Queue).order_by(col(Queue.id))
    if client_id is not None:
        q = q.where(or_(col(Queue.client_id) == client_id, col(Queue.client_id).is_(None)))
    return session.exec(q).all()


_ROUTE = sa_select(
    sa_select(col(Device.client_id))
    .where(col(Device.id) == bindparam("device_id"))
    .scalar_subquery(),
    sa_select(col(Queue.name))
    .join(Device, col(Device.client_id) == col(Queue.client_id))
    .where(col(Device.id) == bindparam("device_id"))
    .scalar_subquery(),
    sa_select(col(Queue.name)).where(col(Queue.client_id).is_(None)).scalar_subquery(),
)


def route(session: Session, device_id: int) -> tuple[int | None, str | None, str | None]:
    """(the device's client, that client's queue, the default queue), each None when
    there is none, in one round trip. Built once: the phone menu's hot path pays neither
    statement construction nor a second query for the default."""
    row = session.execute(_ROUTE, {"device_id": device_id}).one()
    return row[0], row[1], row[2]


# Devices and what other domains know of them.
def devices_by_ids(session: Session, ids: Collection[int]) -> list[Device]:
    out: list[Device] = []
    for chunk in chunks(ids):
        out += session.exec(select(Device).where(col(Device.id).in_(chunk))).all()
    return sorted(out, key=lambda d: d.id or 0)


def devices_by_codes(session: Session, codes: Collection[str]) -> list[Device]:
    """Devices whose serial or asset tag is one of ``codes``."""
    if not codes:
        return []
    values = list(codes)
    return list(
        session.exec(
            select(Device).where(
                or_(col(Device.serial).in_(values), col(Device.asset_tag).in_(values))
            )
        ).all()
    )


def hardware_models(session: Session, ids: Collection[int]) -> dict[int, HardwareModel]:
    rows = session.exec(select(HardwareModel).where(col(HardwareModel.id).in_(list(ids)))).all()
    return {m.id: m for m in rows if m.id is not None}


def clients(session: Session, ids: Collection[int] | None = None) -> dict[int, ClientCompany]:
    q = select(ClientCompany)
    if ids is not None:
        q = q.where(col(ClientCompany.id).in_(list(ids)))
    return {c.id: c for c in session.exec(q).all() if c.id is not None}


def client_by_code(session: Session, code: str) -> ClientCompany | None:
    return session.exec(select(ClientCompany).where(ClientCompany.code == code)).first()


def latest_events(session: Session, device_id: int, limit: int) -> Sequence[DeviceEvent]:
    return session.exec(
        select(DeviceEvent)
        .where(DeviceEvent.device_id == device_id)
        .order_by(col(DeviceEvent.id).desc())
        .limit(limit)
    ).all()


def latest_succeeded_runs(
    session: Session, device_ids: Collection[int]
) -> dict[int, ProvisioningRun]:
    out: dict[int, ProvisioningRun] = {}
    for chunk in chunks(device_ids):
        rows = session.exec(
            select(ProvisioningRun)
            .where(
                col(ProvisioningRun.device_id).in_(chunk),
                ProvisioningRun.status == RunStatus.SUCCEEDED,
            )
            .order_by(col(ProvisioningRun.id))
        ).all()
        out.update({r.device_id: r for r in rows})  # later runs win
    return out


def images(session: Session, ids: Collection[int]) -> dict[int, Image]:
    if not ids:
        return {}
    rows = session.exec(select(Image).where(col(Image.id).in_(list(ids)))).all()
    return {i.id: i for i in rows if i.id is not None}


def active_configs(session: Session, client_ids: Collection[int]) -> dict[int, ClientConfig]:
    rows = session.exec(
        select(ClientConfig).where(
            col(ClientConfig.client_id).in_(list(client_ids)), col(ClientConfig.active).is_(True)
        )
    ).all()
    return {c.client_id: c for c in rows}


def hostname_patterns(session: Session, *, client_id: int | None) -> list[tuple[int, str, str]]:
    """(client id, client code, pattern) of every configuration version, distinct."""
    q = select(ClientConfig.client_id, ClientCompany.code, ClientConfig.body).join(
        ClientCompany, col(ClientCompany.id) == col(ClientConfig.client_id)
    )
    if client_id is not None:
        q = q.where(ClientConfig.client_id == client_id)
    seen: set[tuple[int, str, str]] = set()
    for cid, code, body in session.exec(q).all():
        pattern = (body or {}).get("hostname_pattern")
        if isinstance(pattern, str) and pattern:
            seen.add((cid, code, pattern))
    return sorted(seen)


def latest_shipments(session: Session, device_ids: Collection[int]) -> dict[int, Shipment]:
    out: dict[int, Shipment] = {}
    for chunk in chunks(device_ids):
        rows = session.exec(
            select(Shipment).where(col(Shipment.device_id).in_(chunk)).order_by(col(Shipment.id))
        ).all()
        out.update({r.device_id: r for r in rows})
    return out


def device_ids_of_teleworkers(session: Session, teleworker_ids: Collection[int]) -> list[int]:
    if not teleworker_ids:
        return []
    return list(
        session.exec(
            select(Shipment.device_id)
            .where(col(Shipment.teleworker_id).in_(list(teleworker_ids)))
            .distinct()
        ).all()
    )


def device_ids_by_tracking(session: Session, trackings: Collection[str]) -> list[int]:
    return list(
        session.exec(
            select(Shipment.device_id).where(col(Shipment.tracking).in_(list(trackings))).distinct()
        ).all()
    )


def teleworkers_by_email(session: Session, email: str) -> Sequence[Teleworker]:
    return session.exec(select(Teleworker).where(Teleworker.email == email)).all()


def teleworkers(session: Session, ids: Collection[int]) -> dict[int, Teleworker]:
    out: dict[int, Teleworker] = {}
    for chunk in chunks(ids):
        rows = session.exec(select(Teleworker).where(col(Teleworker.id).in_(chunk))).all()
        out.update({t.id: t for t in rows if t.id is not None})
    return out


def delivered_devices(session: Session, delivery_id: int) -> Sequence[Device]:
    return session.exec(
        select(Device).where(Device.delivery_id == delivery_id).order_by(col(Device.id))
    ).all()


# Knowledge base.
def get_article(session: Session, article_id: int, *, for_update: bool = False) -> Article | None:
    q = select(Article).where(Article.id == article_id)
    if for_update:
        q = q.with_for_update()
    return session.exec(q.execution_options(populate_existing=for_update)).first()


def article_by_slug(session: Session, client_id: int, slug: str, language: str) -> Article | None:
    return session.exec(
        select(Article).where(
            Article.client_id == client_id, Article.slug == slug, Article.language == language
        )
    ).first()


def list_articles(
    session: Session, *, client_id: int | None, language: str | None, archived: bool = False
) -> Sequence[Article]:
    q = select(Article).order_by(col(Article.client_id), col(Article.slug), col(Article.language))
    if client_id is not None:
        q = q.where(Article.client_id == client_id)
    if language is not None:
        q = q.where(Article.language == language)
    if not archived:
        q = q.where(col(Article.archived_at).is_(None))
    return session.exec(q).all()


def get_version(session: Session, article_id: int, version: int) -> ArticleVersion | None:
    return session.exec(
        select(ArticleVersion).where(
            ArticleVersion.article_id == article_id, ArticleVersion.version == version
        )
    ).first()


def list_versions(session: Session, article_id: int) -> Sequence[ArticleVersion]:
    return session.exec(
        select(ArticleVersion)
        .where(ArticleVersion.article_id == article_id)
        .order_by(col(ArticleVersion.version).desc())
    ).all()


def replace_terms(session: Session, article: Article, weights: dict[str, int]) -> None:
    session.exec(delete(ArticleTerm).where(col(ArticleTerm.article_id) == article.id))
    assert article.id is not None
    session.add_all(
        ArticleTerm(article_id=article.id, term=t, client_id=article.client_id, weight=w)
        for t, w in weights.items()
    )


def term_matches(session: Session, prefix: str, *, client_id: int | None) -> list[tuple[int, int]]:
    """(article id, weight) of every indexed word starting with ``prefix`` (``[0-9a-z]``
    only). A range on the term uses the index on both databases, where ``LIKE 'x%'``
    would not on PostgreSQL's usual collations."""
    q = select(ArticleTerm.article_id, ArticleTerm.weight).where(col(ArticleTerm.term) >= prefix)
    upper = _prefix_upper(prefix)
    if upper is not None:
        q = q.where(col(ArticleTerm.term) < upper)
    if client_id is not None:
        q = q.where(ArticleTerm.client_id == client_id)
    return [(a, w) for a, w in session.exec(q).all()]


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _prefix_upper(prefix: str) -> str | None:
    """The smallest word over ``_ALPHABET`` above every word starting with ``prefix``
    ("vpn" -> "vpo", "a9" -> "aa", "az" -> "b"; None for "zz"). It stays inside the
    alphabet, whose order (digits, then letters) is the same in the C collation and in
    the language collations: a bump to ``{`` or ``:`` would not be (glibc ignores
    punctuation at the first level)."""
    chars = list(prefix)
    while chars:
        i = _ALPHABET.find(chars[-1])
        if 0 <= i < len(_ALPHABET) - 1:
            chars[-1] = _ALPHABET[i + 1]
            return "".join(chars)
        chars.pop()
    return None


def articles_by_ids(session: Session, ids: Collection[int]) -> dict[int, Article]:
    if not ids:
        return {}
    rows = session.exec(select(Article).where(col(Article.id).in_(list(ids)))).all()
    return {a.id: a for a in rows if a.id is not None}


# Contacts.
def contacts_of_device(session: Session, device_id: int, limit: int) -> Sequence[Contact]:
    return session.exec(
        select(Contact)
        .where(Contact.device_id == device_id)
        .order_by(col(Contact.at).desc(), col(Contact.id).desc())
        .limit(limit)
    ).all()


def list_contacts(
    session: Session,
    *,
    client_id: int | None,
    since: datetime | None,
    until: datetime | None,
    cursor: int | None,
    limit: int,
) -> Sequence[Contact]:
    q = select(Contact).order_by(col(Contact.id)).limit(limit)
    if client_id is not None:
        q = q.where(Contact.client_id == client_id)
    if since is not None:
        q = q.where(col(Contact.at) >= since)
    if until is not None:
        q = q.where(col(Contact.at) < until)
    if cursor is not None:
        q = q.where(col(Contact.id) > cursor)
    return session.exec(q).all()


def reason_counts(
    session: Session, *, client_id: int | None, since: datetime, until: datetime
) -> list[tuple[Any, ...]]:
    """(week, client id, hardware model id, reason, item, contacts, resolved) groups."""
    resolved = func.sum(case((col(Contact.resolved_first_contact), 1), else_=0))
    keys = (
        col(Contact.week),
        col(Contact.client_id),
        col(Device.hardware_model_id),
        col(Contact.reason),
        col(Contact.item),
    )
    # SQLAlchemy's own select: sqlmodel's is typed for at most four columns.
    q = (
        sa_select(*keys, func.count(), resolved)
        .select_from(Contact)
        .outerjoin(Device, col(Device.id) == col(Contact.device_id))
        .where(col(Contact.at) >= since, col(Contact.at) < until)
        .group_by(*keys)
    )
    if client_id is not None:
        q = q.where(col(Contact.client_id) == client_id)
    return [tuple(r) for r in session.execute(q).all()]


def wave_deliveries(
    session: Session, *, client_id: int | None, delivery_id: int | None
) -> Sequence[Delivery]:
    q = select(Delivery).order_by(col(Delivery.id))
    if client_id is not None:
        q = q.where(Delivery.client_id == client_id)
    if delivery_id is not None:
        q = q.where(Delivery.id == delivery_id)
    return session.exec(q).all()


def first_deliveries(
    session: Session, delivery_ids: Collection[int]
) -> list[tuple[int, int, datetime]]:
    """(delivery id, device id, first delivered_at to a teleworker) of the waves' laptops."""
    first = func.min(Shipment.delivered_at)
    q = (
        select(Device.delivery_id, Shipment.device_id, first)
        .join(Device, col(Device.id) == col(Shipment.device_id))
        .where(
            col(Device.delivery_id).in_(list(delivery_ids)),
            col(Shipment.delivered_at).is_not(None),
        )
        .group_by(col(Device.delivery_id), col(Shipment.device_id))
    )
    return [
        (d, dev, at) for d, dev, at in session.exec(q).all() if d is not None and at is not None
    ]


def contact_times(session: Session, device_ids: Collection[int]) -> list[tuple[int, datetime]]:
    out: list[tuple[int, datetime]] = []
    for chunk in chunks(device_ids):
        out += [
            (d, at)
            for d, at in session.exec(
                select(Contact.device_id, Contact.at).where(col(Contact.device_id).in_(chunk))
            ).all()
            if d is not None
        ]
    return out
