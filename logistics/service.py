"""Dispatch rules: who may ship which laptop to whom, and what is visible to whom.

Services never commit. Every state change goes through ``inventory.lifecycle.apply``
after the device row is locked. Device events carry only pseudonymous references
(shipment and teleworker ids, carrier, tracking): a teleworker's name, e-mail, phone and
address live in the ``teleworker`` table alone, so the retention purge can erase them
while the history stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from core.errors import InvalidInput
from core.principal import Principal, Role
from core.timeutil import utcnow
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.errors import DeliveryNotFound, DeviceNotFound, InvalidTransition
from inventory.models import Device
from inventory.states import DeviceState, Event, next_state
from logistics import hooks, repository
from logistics.errors import ShipmentNotFound, TeleworkerNotFound, WrongClient
from logistics.models import (
    DeliveryStatus,
    Shipment,
    ShipmentStatus,
    Teleworker,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from logistics.schemas import (
    DeviceStatus,
    DispatchRequest,
    ShipmentRead,
    StateCounts,
    TeleworkerIn,
    TeleworkerRead,
)

ERASED = "erased"


def sees_personal_data(principal: Principal) -> bool:
    """Teleworkers' personal data: logistics (own client) and admins only."""
    return principal.role in (Role.ADMIN, Role.LOGISTICS)


# Finding and locking devices.
def find_device(
    session: Session, code: str, principal: Principal, *, vendor: str | None = None
) -> Device:
    """The device whose serial or asset tag is ``code``, visible to the caller.

    :raises DeviceNotFound: none (or another company's, for a client-bound caller).
    :raises InvalidInput: the serial exists for several vendors and none was named.
    """
    wanted = inventory.normalize_code(code)
    found = [
        d
        for d in inventory_repo.find_devices_by_code(session, wanted)
        if principal.sees_client(d.client_id) and (vendor is None or d.vendor == vendor)
    ]
    if not found:
        raise DeviceNotFound(wanted)
    if len(found) > 1:
        raise InvalidInput(f"serial {wanted} exists for several vendors; name the vendor")
    return found[0]


def lock_device(session: Session, device_id: int, principal: Principal) -> Device:
    """:raises DeviceNotFound: unknown or not visible."""
    return principal.visible(
        inventory_repo.get_device_for_update(session, device_id), DeviceNotFound(str(device_id))
    )


def _require_move(device: Device, event: Event) -> None:
    """Fail before anything is written when the lifecycle would refuse ``event``.

    :raises InvalidTransition: 409 with the current state and the allowed events.
    """
    state = DeviceState(device.state)
    if next_state(state, event) is None:
        raise InvalidTransition(serial=device.serial, state=state, event=event)


# Dispatch.
def dispatch(session: Session, body: DispatchRequest, principal: Principal) -> Shipment:
    """READY → DISPATCHED to a teleworker of the device's own client.

    :raises DeviceNotFound: unknown or invisible device.
    :raises InvalidTransition: the device is not READY (409).
    :raises TeleworkerNotFound: ``teleworker_id`` unknown or invisible.
    :raises WrongClient: staff named another company's teleworker (422).
    :raises InvalidInput: neither or both of ``teleworker`` and ``teleworker_id``.
    """
    if (body.teleworker is None) == (body.teleworker_id is None):
        raise InvalidInput("give exactly one of teleworker and teleworker_id")
    found = find_device(session, body.serial, principal, vendor=body.vendor)
    assert found.id is not None
    device = lock_device(session, found.id, principal)
    _require_move(device, Event.DISPATCH)
    assert device.client_id is not None, "a READY device belongs to a client"
    if body.teleworker_id is not None:
        person = _teleworker_for(session, body.teleworker_id, device, principal)
    else:
        assert body.teleworker is not None
        person = upsert_teleworker(session, device.client_id, body.teleworker)
    return ship(
        session, device, person, carrier=body.carrier, tracking=body.tracking, principal=principal
    )


def _teleworker_for(
    session: Session, teleworker_id: int, device: Device, principal: Principal
) -> Teleworker:
    person = repository.get_teleworker(session, teleworker_id)
    if person is None or not principal.sees_client(person.client_id) or person.erased_at:
        raise TeleworkerNotFound(str(teleworker_id))
    if person.client_id != device.client_id:
        raise WrongClient(device.serial)
    return person


def upsert_teleworker(session: Session, client_id: int, data: TeleworkerIn) -> Teleworker:
    """The client's teleworker with this e-mail, created or brought up to date."""
    person = repository.teleworker_by_email(session, client_id, data.email)
    now = utcnow()
    if person is None:
        person = Teleworker(client_id=client_id, **data.model_dump())
    else:
        person.name, person.phone, person.address = data.name, data.phone, data.address
        person.language = data.language
        person.updated_at = now
    session.add(person)
    session.flush()
    return person


def ship(
    session: Session,
    device: Device,
    person: Teleworker,
    *,
    carrier: str,
    tracking: str,
    principal: Principal,
) -> Shipment:
    """Record the shipment and move the (locked, READY) device to DISPATCHED."""
    assert device.id is not None and device.client_id is not None and person.id is not None
    shipment = Shipment(
        device_id=device.id,
        client_id=device.client_id,
        teleworker_id=person.id,
        carrier=carrier,
        tracking=tracking,
    )
    session.add(shipment)
    session.flush()
    lifecycle.apply(
        session,
        device,
        Event.DISPATCH,
        actor=principal.actor,
        details={
            "shipment_id": shipment.id,
            "teleworker_id": person.id,
            "carrier": carrier,
            "tracking": tracking,
        },
    )
    return shipment


def deliver(
    session: Session, device_id: int, principal: Principal, *, at: datetime | None = None
) -> Device:
    """DISPATCHED → DELIVERED.

    :raises DeviceNotFound, InvalidTransition:
    """
    device = lock_device(session, device_id, principal)
    _require_move(device, Event.DELIVER)
    shipment = _open_shipment(session, device)
    shipment.status = ShipmentStatus.DELIVERED
    shipment.delivered_at = at or utcnow()
    session.add(shipment)
    lifecycle.apply(
        session,
        device,
        Event.DELIVER,
        actor=principal.actor,
        details={"shipment_id": shipment.id},
    )
    return device


def return_device(
    session: Session,
    device_id: int,
    principal: Principal,
    *,
    reason: str,
    at: datetime | None = None,
) -> Device:
    """DISPATCHED or DELIVERED → RETURNED, with a reason.

    :raises DeviceNotFound, InvalidTransition:
    :raises InvalidInput: no reason.
    """
    if not reason.strip():
        raise InvalidInput("a return needs a reason")
    device = lock_device(session, device_id, principal)
    _require_move(device, Event.RETURN)
    shipment = _open_shipment(session, device)
    shipment.status = ShipmentStatus.RETURNED
    shipment.returned_at = at or utcnow()
    shipment.return_reason = reason
    session.add(shipment)
    lifecycle.apply(
        session,
        device,
        Event.RETURN,
        actor=principal.actor,
        reason=reason,
        details={"shipment_id": shipment.id},
    )
    return device


def _open_shipment(session: Session, device: Device) -> Shipment:
    assert device.id is not None
    shipment = repository.open_shipment(session, device.id)
    if shipment is None:
        raise ShipmentNotFound(device.serial)
    return shipment


def after_return(
    session: Session, device_id: int, event: Event, principal: Principal, *, reason: str | None
) -> Device:
    """RETURNED → RECEIVED (``restage``) or RETIRED (``retire``).

    :raises DeviceNotFound, InvalidTransition:
    :raises InvalidInput: another event, or a retirement without a reason.
    """
    if event not in (Event.RESTAGE, Event.RETIRE):
        raise InvalidInput("after a return, a laptop is restaged or retired")
    if event is Event.RETIRE and not (reason and reason.strip()):
        raise InvalidInput("retiring a laptop needs a reason")
    device = lock_device(session, device_id, principal)
    if device.state != DeviceState.RETURNED:
        raise InvalidTransition(serial=device.serial, state=DeviceState(device.state), event=event)
    lifecycle.apply(session, device, event, actor=principal.actor, reason=reason)
    return device


# Status.
@dataclass(frozen=True)
class StatusQuery:
    serial: str | None = None
    asset_tag: str | None = None
    order_reference: str | None = None
    delivery_id: int | None = None
    teleworker_id: int | None = None


def status(
    session: Session,
    query: StatusQuery,
    principal: Principal,
    *,
    cursor: int | None,
    limit: int,
) -> list[DeviceStatus]:
    """A page of device statuses, keyset-paginated by device id.

    :raises TeleworkerNotFound: filtering by teleworker without the right to see them.
    :raises DeliveryNotFound: a delivery the caller cannot see.
    """
    if query.teleworker_id is not None:
        person = repository.get_teleworker(session, query.teleworker_id)
        if (
            person is None
            or not sees_personal_data(principal)
            or not principal.sees_client(person.client_id)
        ):
            raise TeleworkerNotFound(str(query.teleworker_id))
    if query.delivery_id is not None:
        delivery = inventory_repo.get_delivery(session, query.delivery_id)
        if delivery is None or not principal.sees_client(delivery.client_id):
            raise DeliveryNotFound(str(query.delivery_id))
    devices = repository.status_devices(
        session,
        client_id=principal.client_scope,
        serial=inventory.normalize_code(query.serial) if query.serial else None,
        asset_tag=inventory.normalize_code(query.asset_tag) if query.asset_tag else None,
        order_reference=query.order_reference,
        delivery_id=query.delivery_id,
        teleworker_id=query.teleworker_id,
        cursor=cursor,
        limit=limit,
    )
    return render_status(session, devices, principal)


def render_status(
    session: Session, devices: Sequence[Device], principal: Principal
) -> list[DeviceStatus]:
    ids = [d.id for d in devices if d.id is not None]
    shipments = repository.latest_shipments(session, ids)
    people: dict[int, Teleworker] = {}
    if sees_personal_data(principal):
        people = repository.teleworkers_by_id(
            session, [s.teleworker_id for s in shipments.values()]
        )
    out = []
    for d in devices:
        assert d.id is not None
        shipment = shipments.get(d.id)
        person = people.get(shipment.teleworker_id) if shipment else None
        out.append(
            DeviceStatus(
                device_id=d.id,
                serial=d.serial,
                vendor=d.vendor,
                asset_tag=d.asset_tag,
                client_id=d.client_id,
                delivery_id=d.delivery_id,
                order_reference=d.order_reference,
                state=DeviceState(d.state),
                state_changed_at=d.state_changed_at,
                shipment=ShipmentRead.model_validate(shipment) if shipment else None,
                teleworker=TeleworkerRead.model_validate(person) if person else None,
            )
        )
    return out


def counts_for_delivery(session: Session, delivery_id: int, principal: Principal) -> StateCounts:
    """:raises DeliveryNotFound: unknown or invisible."""
    delivery = inventory.get_delivery(session, delivery_id, principal)
    counts = inventory_repo.count_devices_by_state(session, delivery_id=delivery.id)
    return StateCounts(
        client_id=delivery.client_id,
        delivery_id=delivery.id,
        total=sum(counts.values()),
        counts=counts,
    )


def counts_per_client(session: Session, principal: Principal) -> list[StateCounts]:
    out = []
    for client in repository.clients(session, only_id=principal.client_scope):
        counts = inventory_repo.count_devices_by_state(session, client_id=client.id)
        out.append(
            StateCounts(
                client_id=client.id,
                client_code=client.code,
                total=sum(counts.values()),
                counts=counts,
            )
        )
    return out


def teleworkers_by_email(
    session: Session, email: str, principal: Principal
) -> Sequence[Teleworker]:
    """Only for callers who may see personal data (the router enforces the role)."""
    return repository.teleworkers_by_email(session, email, client_id=principal.client_scope)


def get_teleworker(session: Session, teleworker_id: int, principal: Principal) -> Teleworker:
    """:raises TeleworkerNotFound: unknown or another company's."""
    return principal.visible(
        repository.get_teleworker(session, teleworker_id), TeleworkerNotFound(str(teleworker_id))
    )


# Retention.
def purge_personal_data(
    session: Session,
    *,
    retention_days: int,
    now: datetime | None = None,
    report: dict[str, int] | None = None,
) -> int:
    """Erase teleworkers whose every shipment closed more than ``retention_days`` ago.

    Name, e-mail, phone and address are replaced by anonymised values; the teleworker
    row, its shipments and every device event stay, so the history still says that
    laptop X went to teleworker #N by carrier C on day D. Returns how many were erased.

    Then, in the same transaction, every purge step (``logistics.hooks``) applies the
    same retention to what other domains keep about people (the help desk's contacts,
    survey calls and answers); each adds its counts to ``report``.

    :raises InvalidInput: a negative retention.
    """
    if retention_days < 0:
        raise InvalidInput("retention must be zero or more days")
    at = now or utcnow()
    erased = 0
    for person in repository.teleworkers_to_erase(
        session, closed_before=at - timedelta(days=retention_days)
    ):
        person.name = ERASED
        # Still unique per client (the constraint) and obviously not an address.
        person.email = f"erased-{person.id}@erased.invalid"
        person.phone = None
        person.address = ERASED
        person.erased_at = at
        person.updated_at = at
        session.add(person)
        erased += 1
    session.flush()
    cutoff = at - timedelta(days=retention_days)
    for step in hooks.ON_PURGE:
        counts = step(session, cutoff, at)
        if report is not None:
            report.update(counts)
    return erased


# Webhook delivery log.
def delivery_log(
    session: Session,
    subscription: WebhookSubscription,
    *,
    status: DeliveryStatus | None,
    cursor: int | None,
    limit: int,
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """A subscription's deliveries (one page, by id) with every attempt of each."""
    assert subscription.id is not None
    rows = repository.deliveries_of(
        session, subscription.id, status=status, cursor=cursor, limit=limit
    )
    attempts = repository.attempts_of(session, [r.id for r in rows if r.id is not None])
    return [(r, attempts.get(r.id or 0, [])) for r in rows]
