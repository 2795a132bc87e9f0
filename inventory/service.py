"""Inventory rules: tenancy, deliveries, devices, manual lifecycle actions, bench scan-in.

Services never commit; the request, CLI command or job step that calls them does.
Every read is scoped by the caller: a dsi or logistics principal gets ``NotFound`` for
another company's objects, never ``Forbidden``, so ids do not leak existence.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.errors import Conflict, Forbidden, InvalidInput
from core.principal import Principal
from core.values import check_name
from inventory import lifecycle, repository
from inventory.codes import normalize_code as normalize_code
from inventory.errors import (
    ClientNotFound,
    DeliveryNotFound,
    DeviceNotFound,
)
from inventory.models import (
    Bench,
    ClientCompany,
    Delivery,
    Device,
    DeviceEvent,
    HardwareModel,
    Site,
)
from inventory.scan import UNKNOWN_VENDOR
from inventory.scan import ScanDone as ScanDone  # re-exported: scan-in has many callers
from inventory.scan import scan as scan
from inventory.schemas import (
    BenchCreate,
    ClientCreate,
    DeliveryCreate,
    HardwareModelCreate,
    SiteCreate,
)
from inventory.slots import free_slot
from inventory.states import SLOT_HOLDING, DeviceState, Event, next_state

# Events a technician may apply by hand; the rest belong to the pipeline and dispatch.
MANUAL_EVENTS = frozenset(
    {Event.QUARANTINE, Event.RELEASE, Event.RETIRE, Event.REJECT, Event.RESTAGE, Event.RETURN}
)


# Clients, sites, benches, hardware models (admin).
def create_client(session: Session, body: ClientCreate) -> ClientCompany:
    if repository.get_client_by_code(session, body.code):
        raise Conflict(f"client company {body.code} already exists")
    row = ClientCompany(code=body.code, name=body.name)
    session.add(row)
    session.flush()
    return row


def list_clients(session: Session, principal: Principal) -> Sequence[ClientCompany]:
    return repository.list_clients(session, only_id=principal.client_scope)


def client_by_code(session: Session, code: str, principal: Principal) -> ClientCompany:
    """:raises ClientNotFound: unknown, or another company's for a client-bound caller."""
    client = repository.get_client_by_code(session, code)
    if client is None or not principal.sees_client(client.id):
        raise ClientNotFound(code)
    return client


def create_site(session: Session, body: SiteCreate) -> Site:
    if repository.get_site_by_code(session, body.code):
        raise Conflict(f"site {body.code} already exists")
    row = Site(**body.model_dump())
    session.add(row)
    session.flush()
    return row


def list_sites(session: Session) -> Sequence[Site]:
    return repository.list_sites(session)


def list_benches(session: Session) -> Sequence[Bench]:
    return repository.list_benches(session)


def list_hardware_models(session: Session) -> Sequence[HardwareModel]:
    return repository.list_hardware_models(session)


def create_bench(session: Session, body: BenchCreate) -> Bench:
    site = repository.get_site_by_code(session, body.site_code)
    if site is None or site.id is None:
        raise InvalidInput(f"site {body.site_code} not found")
    row = Bench(site_id=site.id, code=body.code, slots=body.slots)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as e:
        raise Conflict(f"bench {body.code} already exists at site {body.site_code}") from e
    return row


def create_hardware_model(session: Session, body: HardwareModelCreate) -> HardwareModel:
    if repository.get_hardware_model(session, body.vendor, body.model):
        raise Conflict(f"hardware model {body.vendor} {body.model} already exists")
    row = HardwareModel(**body.model_dump())
    session.add(row)
    session.flush()
    return row


def get_or_create_hardware_model(session: Session, vendor: str, model: str) -> HardwareModel:
    """The catalogue row of ``vendor``/``model``, added if new.

    :raises InvalidInput: a blank or invisible-character name (``core.values``): the
        catalogue is shared by every client, whatever path a name comes in by.
    """
    try:
        vendor, model = check_name(vendor), check_name(model)
    except ValueError as e:
        raise InvalidInput(f"hardware model {vendor!r} {model!r}: {e}") from e
    row = repository.get_hardware_model(session, vendor, model)
    if row is None:
        row = HardwareModel(vendor=vendor, model=model)
        session.add(row)
        session.flush()
    return row


# Deliveries.
def create_delivery(session: Session, body: DeliveryCreate, principal: Principal) -> Delivery:
    """:raises InvalidInput: no client given by a staff caller.
    :raises Conflict: the client already has a delivery with that order reference."""
    client_id = _client_for_write(session, body.client_code, principal)
    if repository.get_delivery_by_reference(session, client_id, body.order_reference):
        raise Conflict(f"delivery {body.order_reference} already exists for this client")
    row = Delivery(
        client_id=client_id,
        vendor=body.vendor,
        order_reference=body.order_reference,
        carrier=body.carrier,
        tracking=body.tracking,
        expected_date=body.expected_date,
    )
    session.add(row)
    session.flush()
    return row


def _client_for_write(session: Session, client_code: str | None, principal: Principal) -> int:
    if principal.role.client_bound:
        assert principal.client_id is not None
        if client_code is not None:
            client = client_by_code(session, client_code, principal)
            assert client.id is not None
        return principal.client_id
    if not client_code:
        raise InvalidInput("client_code is required")
    client = client_by_code(session, client_code, principal)
    assert client.id is not None
    return client.id


def get_delivery(session: Session, delivery_id: int, principal: Principal) -> Delivery:
    """:raises DeliveryNotFound: unknown or not visible to the caller."""
    return principal.visible(
        repository.get_delivery(session, delivery_id), DeliveryNotFound(str(delivery_id))
    )


def list_deliveries(
    session: Session, principal: Principal, *, cursor: int | None, limit: int
) -> Sequence[Delivery]:
    return repository.list_deliveries(
        session, client_id=principal.client_scope, cursor=cursor, limit=limit
    )


# Devices.
def get_device(session: Session, device_id: int, principal: Principal) -> Device:
    """:raises DeviceNotFound: unknown or not visible to the caller."""
    return principal.visible(
        repository.get_device(session, device_id), DeviceNotFound(str(device_id))
    )


def history(session: Session, device: Device) -> Sequence[DeviceEvent]:
    assert device.id is not None
    return repository.device_events(session, device.id)


def list_devices(
    session: Session,
    principal: Principal,
    *,
    client_code: str | None = None,
    state: DeviceState | None = None,
    delivery_id: int | None = None,
    serial_prefix: str | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[Device]:
    client_id = principal.client_scope
    if client_code is not None:
        client = client_by_code(session, client_code, principal)
        client_id = client.id
    return repository.list_devices(
        session,
        client_id=client_id,
        state=state,
        delivery_id=delivery_id,
        serial_prefix=normalize_code(serial_prefix) if serial_prefix else None,
        cursor=cursor,
        limit=limit,
    )


def transition(
    session: Session, device_id: int, event: Event, principal: Principal, *, reason: str | None
) -> Device:
    """A manual lifecycle action by a technician.

    :raises Forbidden: the event belongs to the pipeline or dispatch, not to a human.
    :raises InvalidTransition: not allowed from the device's state (409).
    """
    if event not in MANUAL_EVENTS:
        raise Forbidden(
            f"'{event.value}' is not a manual action "
            f"(manual: {', '.join(sorted(e.value for e in MANUAL_EVENTS))})"
        )
    bench = _lock_bench_of(session, device_id) if event in _BACK_TO_BENCH else None
    device = _lock_visible(session, device_id, principal)
    if event is Event.QUARANTINE:
        device.quarantine_reason = reason
    dst = next_state(DeviceState(device.state), event)
    if bench is not None and dst in SLOT_HOLDING and device.state not in SLOT_HOLDING:
        # Back on its bench: its old slot if nobody took it meanwhile, else a free one.
        busy = repository.occupied_slots(session, bench.id or 0)
        keep = device.slot if device.slot is not None and device.slot <= bench.slots else None
        device.slot = keep if keep is not None and keep not in busy else free_slot(bench, busy)
    lifecycle.apply(session, device, event, actor=principal.actor, reason=reason)
    return device


# Manual events that can put a laptop back in a bench slot (QUARANTINED and RETURNED
# laptops hold none).
_BACK_TO_BENCH = frozenset({Event.RELEASE, Event.RESTAGE})


def _lock_bench_of(session: Session, device_id: int) -> Bench | None:
    """The device's bench, locked *before* the device: the lock order of scan-in
    (bench, then device), so the two never deadlock on PostgreSQL."""
    peek = repository.get_device(session, device_id)
    if peek is None or peek.bench_id is None:
        return None
    return repository.lock_bench(session, peek.bench_id)


def attach(session: Session, device_id: int, delivery_id: int, principal: Principal) -> Device:
    """Resolve an UNEXPECTED device by attaching it to a delivery (it becomes RECEIVED).

    An UNEXPECTED laptop already holds the slot it was scanned into; it keeps it. One
    without a slot (recorded before slots were held) gets a free one.

    :raises InvalidTransition: the device is not UNEXPECTED.
    :raises BenchFull: it needs a slot and its bench has none free.
    """
    bench = _lock_bench_of(session, device_id)
    device = _lock_visible(session, device_id, principal)
    if bench is not None and device.slot is None and device.state == DeviceState.UNEXPECTED:
        device.slot = free_slot(bench, repository.occupied_slots(session, bench.id or 0))
    delivery = get_delivery(session, delivery_id, principal)
    if device.state == DeviceState.UNEXPECTED:
        device.delivery_id = delivery.id
        device.client_id = delivery.client_id
        device.order_reference = delivery.order_reference
        if device.vendor == UNKNOWN_VENDOR:
            device.vendor = delivery.vendor
    lifecycle.apply(
        session,
        device,
        Event.ATTACH,
        actor=principal.actor,
        details={"delivery_id": delivery.id},
    )
    return device


def _lock_visible(session: Session, device_id: int, principal: Principal) -> Device:
    return principal.visible(
        repository.get_device_for_update(session, device_id), DeviceNotFound(str(device_id))
    )


def hardware_model_of(session: Session, device: Device) -> HardwareModel | None:
    """The catalogue entry of a device's model, if known."""
    if device.hardware_model_id is None:
        return None
    return repository.get_hardware_model_by_id(session, device.hardware_model_id)


def client_of(session: Session, device: Device) -> ClientCompany | None:
    """The device's client company (the caller already sees the device)."""
    return repository.get_client(session, device.client_id) if device.client_id else None
