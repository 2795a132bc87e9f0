"""Logistics errors. Messages never carry a teleworker's personal data: they name the
field (and the line and column of a file), never the value."""

from __future__ import annotations

from typing import Any

from core import errors as core_errors
from core.errors import InvalidInput, NotFound, Unavailable


class TeleworkerNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"teleworker {ref} not found")


class ShipmentNotFound(NotFound):
    def __init__(self, serial: str) -> None:
        super().__init__(f"no open shipment for device {serial}")


class SubscriptionNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"webhook subscription {ref} not found")


class WrongClient(InvalidInput):
    """Staff tried to ship a laptop to another company's teleworker."""

    def __init__(self, serial: str) -> None:
        super().__init__(f"teleworker does not belong to the client of device {serial}")


# A CSV with errors (line, column, message each), nothing written: the shared error.
FileRejected = core_errors.FileRejected


class AutopilotInvalid(InvalidInput):
    """Devices that cannot go into an Autopilot hardware-hash file, each with why."""

    title = "Autopilot export rejected"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0] if problems else {}
        super().__init__(
            f"{len(problems)} device(s) cannot be exported; first: "
            f"{first.get('serial', '?')}: {first.get('message', '')}",
            errors=problems,
        )


class PrinterUnavailable(Unavailable):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"printer {where} unreachable: {why}")


class BadPrinterUri(InvalidInput):
    def __init__(self, uri: str) -> None:
        super().__init__(f"printer must be tcp://host[:port], got {uri[:100]!r}")


class TooManyPings(core_errors.MasterlineError):
    """Webhook test pings are sent a few at a time per server process."""

    status_code = 429
    exit_code = 5
    title = "Too many requests"

    def __init__(self) -> None:
        super().__init__("too many webhook test pings in progress; retry shortly")
