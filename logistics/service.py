"""Dispatch rules: who may ship which laptop to whom, and what is visible to whom.

Services never commit. Every state change goes through ``inventory.lifecycle.apply``
after the device row is locked. Device events carry only pseudonymous references
(shipment and teleworker ids, carrier, tracking): a teleworker's name, e-mail, phone and
address live in the ``teleworker`` table alone, so the retention purge can erase them
while the history stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.errors import DeviceNotFound, InvalidTransition
from inventory.models import Device
from inventory.states import DeviceState, Event, next_state
from logistics import repository
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
    TeleworkerIn,
)
from logistics.status import render_status


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
    missing = TeleworkerNotFound(str(teleworker_id))
    person = principal.visible(repository.get_teleworker(session, teleworker_id), missing)
    if person.erased_at:
        raise missing
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


# Webhooks, as the web console shows them.
def webhook_log(
    session: Session, sub_id: int, principal: Principal, *, limit: int = 200
) -> tuple[WebhookSubscription, list[tuple[WebhookDelivery, list[WebhookAttempt]]]]:
    """A subscription and its newest deliveries with their attempts.

    :raises SubscriptionNotFound: unknown or another company's.
    """
    from logistics import webhooks

    sub = webhooks.get_subscription(session, sub_id, principal)
    assert sub.id is not None
    rows = repository.recent_deliveries_of(session, sub.id, limit=limit)
    attempts = repository.attempts_of(session, [r.id for r in rows if r.id is not None])
    return sub, [(r, attempts.get(r.id or 0, [])) for r in rows]


def devices_in_state(
    session: Session, state: DeviceState, principal: Principal, *, limit: int = 100
) -> list[DeviceStatus]:
    """Where the laptops in ``state`` are (the console's shipments and returns)."""
    devices = inventory.list_devices(session, principal, state=state, limit=limit)
    return render_status(session, list(devices), principal)


def webhook_queue(session: Session) -> dict[str, int]:
    """Webhook deliveries per status: ``pending`` is the queue's depth."""
    return repository.count_deliveries_by_status(session)
