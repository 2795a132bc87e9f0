"""Where laptops stand, as logistics and the client companies read it: the status pages
(keyset-paginated, a teleworker shown only to callers who may see personal data) and
counts per state for a delivery or per client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from core.principal import Principal, Role
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.errors import DeliveryNotFound
from inventory.models import Device
from inventory.states import DeviceState
from logistics import repository
from logistics.errors import TeleworkerNotFound
from logistics.models import Teleworker
from logistics.schemas import DeviceStatus, ShipmentRead, StateCounts, TeleworkerRead


def sees_personal_data(principal: Principal) -> bool:
    """Teleworkers' personal data: logistics (own client) and admins only."""
    return principal.role in (Role.ADMIN, Role.LOGISTICS)


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
        missing = TeleworkerNotFound(str(query.teleworker_id))
        if not sees_personal_data(principal):
            raise missing
        principal.visible(repository.get_teleworker(session, query.teleworker_id), missing)
    if query.delivery_id is not None:
        principal.visible(
            inventory_repo.get_delivery(session, query.delivery_id),
            DeliveryNotFound(str(query.delivery_id)),
        )
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
