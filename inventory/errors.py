"""Inventory errors, rendered by the one API handler and the one CLI handler."""

from __future__ import annotations

from core.errors import Conflict, FileRejected, NotFound
from inventory.states import DeviceState, Event, allowed_events


class InvalidTransition(Conflict):
    title = "Invalid transition"

    def __init__(self, *, serial: str, state: DeviceState | None, event: Event) -> None:
        allowed = [e.value for e in allowed_events(state)]
        super().__init__(
            f"device {serial} is {state.value if state else 'new'}; "
            f"'{event.value}' is not allowed (allowed: {', '.join(allowed) or 'none'})",
            current_state=state.value if state else None,
            allowed_events=allowed,
        )


class DeviceNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"device {ref} not found")


class DeliveryNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"delivery {ref} not found")


class ClientNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"client company {ref} not found")


class BenchNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"bench {ref} not found")


class BenchFull(Conflict):
    """Every slot of the bench holds a laptop: free one (dispatch, quarantine, retire) or
    use another bench."""

    title = "Bench full"

    def __init__(self, code: str, slots: int) -> None:
        super().__init__(f"bench {code} is full ({slots} slots); use another bench")


class SlotTaken(Conflict):
    title = "Slot taken"

    def __init__(self, code: str, slot: int) -> None:
        super().__init__(f"slot {slot} of bench {code} is taken")


class DuplicateDevice(Conflict):
    title = "Duplicate device"


class ImportRejected(FileRejected):
    """A ship notice with errors: every error listed, nothing written."""

    title = "Import rejected"
