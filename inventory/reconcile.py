"""Reconciliation of a delivery: what the ship notice announced against what the benches
scanned.

Line statuses: ``missing`` (still EXPECTED), ``received`` (seen at a bench, whatever
happened since), ``wrong_model`` (seen, but the model observed at the bench is not the
one announced) and ``unexpected`` (scanned, no delivery lists it, not yet resolved).
``received`` counts wrong-model devices too: they did arrive.
"""

from __future__ import annotations

from typing import Literal

from sqlmodel import Session

from core import csvfile
from core.principal import Principal
from inventory import repository, service
from inventory.models import Device
from inventory.schemas import Reconciliation, ReconciliationLine
from inventory.states import DeviceState

Status = Literal["received", "missing", "unexpected", "wrong_model"]

CSV_COLUMNS = ("serial", "vendor", "expected_model", "observed_model", "state", "status")


def _same_model(expected: str, observed: str) -> bool:
    return " ".join(expected.split()).casefold() == " ".join(observed.split()).casefold()


def reconcile(session: Session, delivery_id: int, principal: Principal) -> Reconciliation:
    """Expected, received, missing, wrong-model and unexpected devices of a delivery.

    Unexpected devices belong to no delivery and no company yet, so only staff see
    them; a client-bound caller gets 0 and no lines.

    :raises DeliveryNotFound: unknown, or another company's for a client-bound caller.
    """
    delivery = service.get_delivery(session, delivery_id, principal)
    assert delivery.id is not None
    devices = repository.devices_of_delivery(session, delivery.id)
    models: dict[int, str] = {}
    for model_id in {d.hardware_model_id for d in devices if d.hardware_model_id is not None}:
        row = repository.get_hardware_model_by_id(session, model_id)
        if row is not None:
            models[model_id] = row.model
    lines: list[ReconciliationLine] = []
    missing = received = wrong = 0
    status: Status
    for d in devices:
        expected = models.get(d.hardware_model_id) if d.hardware_model_id is not None else None
        if d.state == DeviceState.EXPECTED:
            status = "missing"
            missing += 1
        else:
            received += 1
            status = "received"
            if expected and d.observed_model and not _same_model(expected, d.observed_model):
                status = "wrong_model"
                wrong += 1
        lines.append(_line(d, expected, status))
    unexpected: list[Device] = []
    if not principal.role.client_bound:
        unexpected = [
            d
            for d in repository.unexpected_devices(session)
            if d.state == DeviceState.UNEXPECTED and d.delivery_id is None
        ]
    lines.extend(_line(d, None, "unexpected") for d in unexpected)
    return Reconciliation(
        delivery_id=delivery.id,
        expected=len(devices),
        received=received,
        missing=missing,
        unexpected=len(unexpected),
        wrong_model=wrong,
        lines=lines,
    )


def _line(device: Device, expected: str | None, status: Status) -> ReconciliationLine:
    return ReconciliationLine(
        serial=device.serial,
        vendor=device.vendor,
        expected_model=expected,
        observed_model=device.observed_model,
        state=DeviceState(device.state),
        status=status,
    )


def to_csv(rec: Reconciliation) -> str:
    """One line per device, header first, through the product's escaping writer
    (observed models are free text typed at the bench: no formula may run)."""
    return csvfile.write_csv(
        CSV_COLUMNS,
        (
            (
                line.serial,
                line.vendor,
                line.expected_model,
                line.observed_model,
                line.state.value,
                line.status,
            )
            for line in rec.lines
        ),
    )
