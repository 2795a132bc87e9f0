"""One entry point for the help desk: any identifier a caller can read to an advisor
(serial, asset tag, hostname, their e-mail, the carrier's tracking number, the help
code) → the laptop's card: client, what was installed and verified, where it is, its
recent history, the client's queue, the articles that apply to it, its last contacts.

Every kind is tried at once (a serial can look like a tracking number); a card says
which kinds matched. Laptops of other companies are invisible to a bound caller, as
everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from core import helpcode
from core.principal import Principal
from helpdesk import kb, repository, repository_survey, service
from helpdesk.errors import NothingFound
from helpdesk.schemas import (
    ArticleBrief,
    ClientRef,
    ContactBrief,
    EventBrief,
    LaptopCard,
    PersonRead,
    ShipmentBrief,
    StagedRead,
    ToolRead,
)
from images.models import ClientConfig, Image
from inventory.models import ClientCompany, Device, HardwareModel
from logistics.models import Shipment, Teleworker
from provisioning.runs.models import ProvisioningRun

MAX_CARDS = 20
EVENTS = 10
CONTACTS = 5


# Which laptops.
def resolve(session: Session, query: str, principal: Principal) -> dict[int, list[str]]:
    """Device id -> the identifier kinds ``query`` matched, for visible devices only."""
    text = query.strip()
    found: dict[int, list[str]] = {}

    def add(ids: Sequence[int], kind: str) -> None:
        for device_id in ids:
            kinds = found.setdefault(device_id, [])
            if kind not in kinds:
                kinds.append(kind)

    if "@" in text:
        people = [
            t
            for t in repository.teleworkers_by_email(session, text.lower())
            if principal.sees_client(t.client_id) and t.erased_at is None and t.id is not None
        ]
        add(repository.device_ids_of_teleworkers(session, [t.id for t in people if t.id]), "email")
    else:
        code = text.upper()
        for d in repository.devices_by_codes(session, {code}):
            assert d.id is not None
            if d.serial == code:
                add([d.id], "serial")
            if d.asset_tag == code:
                add([d.id], "asset_tag")
        add(repository.device_ids_by_tracking(session, {text, code}), "tracking")
        device_id = helpcode.decode(text)
        if device_id is not None:
            add([device_id], "help_code")
        add(_by_hostname(session, text, principal), "hostname")
    devices = repository.devices_by_ids(session, found)
    visible = {d.id for d in devices if d.id is not None and principal.sees_client(d.client_id)}
    return {k: v for k, v in found.items() if k in visible}


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_HOST = re.compile(r"^[A-Za-z0-9-]{1,63}$")


def _pattern_regex(pattern: str, client_code: str) -> re.Pattern[str] | None:
    """A regex that a hostname rendered from ``pattern`` matches, with the serial or
    asset tag captured; None if the pattern holds neither."""
    out, groups, pos = [], set(), 0
    for m in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        name = m.group(1)
        if name == "client":
            out.append(re.escape(re.sub(r"[^A-Za-z0-9-]", "-", client_code)))
        elif name in groups:
            out.append(f"(?P={name})")
        elif name in ("serial", "asset_tag"):
            groups.add(name)
            out.append(f"(?P<{name}>[A-Za-z0-9-]+?)")
        else:
            return None
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    if not groups:
        return None
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


def _by_hostname(session: Session, text: str, principal: Principal) -> list[int]:
    """Hostnames are rendered from each client's pattern (``ACME-{serial}``): read the
    pattern backwards to the serial or asset tag, then keep the laptops whose recorded
    hostname is this one (or that have no record yet)."""
    if not _HOST.match(text):
        return []
    candidates: dict[int, Device] = {}
    for client_id, code, pattern in repository.hostname_patterns(
        session, client_id=principal.client_scope
    ):
        regex = _pattern_regex(pattern, code)
        m = regex.match(text) if regex else None
        if m is None:
            continue
        values = {v.upper() for v in m.groupdict().values() if v}
        for d in repository.devices_by_codes(session, values):
            ours = d.client_id == client_id and d.id is not None
            if ours and (d.serial in values or d.asset_tag in values):
                assert d.id is not None
                candidates[d.id] = d
    runs = repository.latest_succeeded_runs(session, candidates)
    out = []
    for device_id in candidates:
        recorded = _recorded_hostname(runs.get(device_id))
        if recorded is None or recorded.lower() == text.lower():
            out.append(device_id)
    return out


def _recorded_hostname(run: ProvisioningRun | None) -> str | None:
    if run is None:
        return None
    staged = run.context.get("staged") or {}
    name = staged.get("hostname") or run.context.get("hostname")
    return str(name) if name else None


# The cards.
def lookup(
    session: Session, query: str, principal: Principal, *, language: str
) -> list[LaptopCard]:
    """:raises NothingFound: no visible laptop matches (404)."""
    found = resolve(session, query, principal)
    if not found:
        raise NothingFound()
    ids = sorted(found)[:MAX_CARDS]
    return cards(session, repository.devices_by_ids(session, ids), principal, found, language)


@dataclass
class _Context:
    clients: dict[int, ClientCompany]
    models: dict[int, HardwareModel]
    runs: dict[int, ProvisioningRun]
    images: dict[int, Image]
    configs: dict[int, ClientConfig]
    shipments: dict[int, Shipment]
    people: dict[int, Teleworker]


def _context(session: Session, devices: Sequence[Device]) -> _Context:
    ids = [d.id for d in devices if d.id is not None]
    client_ids = {d.client_id for d in devices if d.client_id is not None}
    runs = repository.latest_succeeded_runs(session, ids)
    image_ids = {r.image_id for r in runs.values() if r.image_id is not None}
    for run in runs.values():
        image_ids |= {a["image_id"] for a in _staged_apps(run.context) if a.get("image_id")}
    configs = repository.active_configs(session, client_ids)
    for config in configs.values():
        image_ids |= {a["image_id"] for a in _config_apps(config.body) if a.get("image_id")}
    shipments = repository.latest_shipments(session, ids)
    return _Context(
        clients=repository.clients(session, client_ids),
        models=repository.hardware_models(
            session, {d.hardware_model_id for d in devices if d.hardware_model_id}
        ),
        runs=runs,
        images=repository.images(session, image_ids),
        configs=configs,
        shipments=shipments,
        people=repository.teleworkers(session, {s.teleworker_id for s in shipments.values()}),
    )


def cards(
    session: Session,
    devices: Sequence[Device],
    principal: Principal,
    matched: dict[int, list[str]],
    language: str,
) -> list[LaptopCard]:
    ctx = _context(session, devices)
    out = []
    for d in devices:
        assert d.id is not None
        client = ctx.clients.get(d.client_id) if d.client_id is not None else None
        model = ctx.models.get(d.hardware_model_id) if d.hardware_model_id else None
        staged, profile = staged_record(ctx, d, model)
        shipment = ctx.shipments.get(d.id)
        person = ctx.people.get(shipment.teleworker_id) if shipment else None
        articles: list[ArticleBrief] = []
        if client is not None:
            articles = [
                kb.brief(a) for a in kb.applicable(session, client, profile, language=language)
            ]
        out.append(
            LaptopCard(
                device_id=d.id,
                matched_by=matched.get(d.id, []),
                serial=d.serial,
                vendor=d.vendor,
                model=model.model if model else d.observed_model,
                asset_tag=d.asset_tag,
                help_code=helpcode.encode(d.id),
                client=ClientRef(id=client.id, code=client.code, name=client.name)
                if client and client.id
                else None,
                state=str(d.state),
                state_changed_at=d.state_changed_at,
                staged=staged,
                shipment=ShipmentBrief.model_validate(shipment) if shipment else None,
                teleworker=_person(session, person),
                events=[
                    EventBrief(
                        at=e.at,
                        event=e.event,
                        from_state=e.from_state,
                        to_state=e.to_state,
                        reason=e.reason,
                    )
                    for e in repository.latest_events(session, d.id, EVENTS)
                ],
                queue=service.queue_read(session, client),
                articles=articles,
                contacts=[
                    ContactBrief(
                        id=c.id or 0,
                        at=c.at,
                        channel=str(c.channel),
                        reason=str(c.reason),
                        item=c.item,
                        resolved_first_contact=c.resolved_first_contact,
                    )
                    for c in repository.contacts_of_device(session, d.id, CONTACTS)
                ],
            )
        )
    return out


def _person(session: Session, person: Teleworker | None) -> PersonRead | None:
    """Name, e-mail and language: enough to greet the caller and check who it is; and
    whether they asked not to be surveyed (an advisor records that on the call)."""
    if person is None or person.id is None:
        return None
    return PersonRead(
        id=person.id,
        name=person.name,
        email=person.email,
        language=str(person.language),
        erased=person.erased_at is not None,
        survey_opted_out=repository_survey.is_opted_out(session, person.id),
    )


# What the laptop was given.
def _staged_apps(context: dict[str, Any]) -> list[dict[str, Any]]:
    staged = context.get("staged") or {}
    apps = list(staged.get("apps") or [])
    if staged.get("vpn_client"):
        apps.insert(0, staged["vpn_client"])
    return [a for a in apps if isinstance(a, dict)]


def _config_apps(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A configuration document's apps in the run record's shape."""
    out = []
    vpn = body.get("vpn") or {}
    apps = ([vpn["client_app"]] if vpn.get("client_app") else []) + list(body.get("apps") or [])
    for app in apps:
        source = app.get("source") or {}
        store = source.get("kind") == "store"
        out.append(
            {
                "name": app.get("name"),
                "package": None if store else source.get("id"),
                "source": "installer" if store else "package",
                "image_id": source.get("image_id") if store else None,
            }
        )
    return out


def _version(ctx: _Context, image_id: Any) -> str | None:
    image = ctx.images.get(image_id) if isinstance(image_id, int) else None
    return f"{image.name} {image.version}" if image else None


def staged_record(
    ctx: _Context, device: Device, model: HardwareModel | None
) -> tuple[StagedRead, kb.Profile]:
    """The run's own record when it has one, else the client's configuration now."""
    assert device.id is not None
    run = ctx.runs.get(device.id)
    image = ctx.images.get(run.image_id) if run and run.image_id else None
    os_family = str(image.os_family) if image else (run.os_family if run else None)
    staged = (run.context.get("staged") if run else None) or None
    checks: dict[str, bool] = {}
    if run is not None:
        for c in run.context.get("checks") or []:
            if isinstance(c, dict) and "name" in c:
                checks[str(c["name"])] = bool(c.get("ok"))
    if staged:
        vpn = staged.get("vpn") or {}
        apps, recorded = _staged_apps(run.context if run else {}), True
        vpn_kind, vpn_name = vpn.get("kind"), vpn.get("name")
        os_family = staged.get("os_family") or os_family
    else:
        config = ctx.configs.get(device.client_id) if device.client_id else None
        body = config.body if config else {}
        vpn = body.get("vpn") or {}
        apps, recorded = _config_apps(body), False
        vpn_kind, vpn_name = vpn.get("kind"), vpn.get("name")
    tools = [
        ToolRead(
            name=str(a.get("name")),
            package=a.get("package"),
            source=a.get("source"),
            version=_version(ctx, a.get("image_id")),
            verified=checks.get(f"app:{a.get('name')}") if run else None,
        )
        for a in apps
    ]
    record = StagedRead(
        recorded=recorded,
        run_id=run.id if run else None,
        finished_at=run.finished_at if run else None,
        image=f"{image.name} {image.version}" if image else None,
        os_family=os_family,
        hostname=_recorded_hostname(run),
        vpn_kind=vpn_kind,
        vpn_name=vpn_name,
        vpn_verified=checks.get("vpn_profile") if run and vpn_kind else None,
        tools=tools,
    )
    profile = kb.Profile(
        vpn=vpn_kind,
        tools=tuple(t.name for t in tools),
        model=model.model if model else device.observed_model,
        vendor=model.vendor if model else device.vendor,
        os=os_family,
    )
    return record, profile


def laptop_profile(session: Session, device: Device) -> tuple[StagedRead, kb.Profile]:
    """The staged record and article profile of one laptop (the welcome sheet's)."""
    ctx = _context(session, [device])
    model = ctx.models.get(device.hardware_model_id) if device.hardware_model_id else None
    return staged_record(ctx, device, model)
