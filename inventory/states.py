"""The device lifecycle: one table of ``(state, event) -> state``.

This is the only place the graph is written down. ``inventory.lifecycle.apply`` is the
only function that moves a device along it. Failures of working states map through
``FAILURE_OF`` (as MAAS maps ``NODE_FAILURE_STATUS_TRANSITION_MAP``); transient states
record where they are heading in ``TARGET_OF`` (as Ironic's ``target_provision_state``),
so a restarted worker knows what a device was trying to reach.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

STATE_COLUMN_LENGTH = 24


class DeviceState(StrEnum):
    EXPECTED = "expected"
    """Announced by a vendor ship notice; not yet seen at a bench."""
    UNEXPECTED = "unexpected"
    """Scanned at a bench, but no delivery expected this serial. Attach or reject it."""
    RECEIVED = "received"
    """Scanned in at a bench slot; waiting for its client's image and configuration."""
    QUARANTINED = "quarantined"
    """Set aside (damaged, suspicious); a technician releases or retires it."""
    QUEUED = "queued"
    """Waiting for a worker and a free imaging stream at its site."""
    IMAGING = "imaging"
    """Provisioning environment: identity check, image streamed and read back."""
    CONFIGURING = "configuring"
    """Installed OS booted; VPN and collaboration tools being configured."""
    VERIFYING = "verifying"
    """The client's checks are running; READY or FAILED_VERIFYING follows."""
    READY = "ready"
    """Passed every check; can be dispatched to a teleworker."""
    DISPATCHED = "dispatched"
    """Handed to a carrier for a teleworker."""
    DELIVERED = "delivered"
    """The carrier reports it delivered."""
    RETURNED = "returned"
    """Came back from a teleworker; re-stage or retire it."""
    RETIRED = "retired"
    """Out of the pipeline for good (rejected, broken, end of life)."""
    FAILED_IMAGING = "failed_imaging"
    """Imaging failed (identity mismatch, stream or checksum error); retry or retire."""
    FAILED_CONFIGURING = "failed_configuring"
    """Configuration of the installed OS failed; retry from the failed step."""
    FAILED_VERIFYING = "failed_verifying"
    """A READY check failed; each failed check is listed in the event's details."""

    @classmethod
    def working(cls) -> frozenset[DeviceState]:
        """States a worker holds; each has a timeout and a failure state."""
        return frozenset(FAILURE_OF)

    @classmethod
    def failed(cls) -> frozenset[DeviceState]:
        return frozenset(FAILURE_OF.values())


class Event(StrEnum):
    """Verbs that move a device. Creation events start from no state (``None``)."""

    EXPECT = "expect"
    DISCOVER = "discover"
    RECEIVE = "receive"
    ATTACH = "attach"
    REJECT = "reject"
    QUARANTINE = "quarantine"
    RELEASE = "release"
    QUEUE = "queue"
    IMAGE = "image"
    CONFIGURE = "configure"
    VERIFY = "verify"
    DONE = "done"
    FAIL = "fail"
    RETRY = "retry"
    ABORT = "abort"
    DISPATCH = "dispatch"
    DELIVER = "deliver"
    RETURN = "return"
    RESTAGE = "restage"
    RETIRE = "retire"


S = DeviceState
E = Event

FAILURE_OF: dict[DeviceState, DeviceState] = {
    S.IMAGING: S.FAILED_IMAGING,
    S.CONFIGURING: S.FAILED_CONFIGURING,
    S.VERIFYING: S.FAILED_VERIFYING,
}

TARGET_OF: dict[DeviceState, DeviceState] = {
    S.QUEUED: S.READY,
    S.IMAGING: S.READY,
    S.CONFIGURING: S.READY,
    S.VERIFYING: S.READY,
    S.DISPATCHED: S.DELIVERED,
}

# A working state held longer than this becomes its failure (MAAS: deploying 40 min).
TIMEOUT_OF: dict[DeviceState, timedelta] = {
    S.IMAGING: timedelta(minutes=90),
    S.CONFIGURING: timedelta(minutes=40),
    S.VERIFYING: timedelta(minutes=15),
}

# States in which a laptop sits in a bench slot and holds it: at most one laptop per
# (bench, slot) among these, enforced by a partial unique index (``Device``). An
# UNEXPECTED laptop holds one too: it is physically on the bench, and a technician must
# find it there to attach or reject it. QUARANTINED ones are set aside (off the bench);
# released, they need a slot again.
SLOT_HOLDING: frozenset[DeviceState] = frozenset(
    {
        S.UNEXPECTED,
        S.RECEIVED,
        S.QUEUED,
        S.IMAGING,
        S.CONFIGURING,
        S.VERIFYING,
        S.FAILED_IMAGING,
        S.FAILED_CONFIGURING,
        S.FAILED_VERIFYING,
        S.READY,
    }
)

_QUARANTINABLE = (
    S.EXPECTED,
    S.UNEXPECTED,
    S.RECEIVED,
    S.QUEUED,
    S.READY,
    S.RETURNED,
    S.FAILED_IMAGING,
    S.FAILED_CONFIGURING,
    S.FAILED_VERIFYING,
)
_RETIRABLE = (
    S.RECEIVED,
    S.QUARANTINED,
    S.RETURNED,
    S.FAILED_IMAGING,
    S.FAILED_CONFIGURING,
    S.FAILED_VERIFYING,
)

TRANSITIONS: dict[tuple[DeviceState | None, Event], DeviceState] = {
    # Intake.
    (None, E.EXPECT): S.EXPECTED,
    (None, E.DISCOVER): S.UNEXPECTED,
    (S.EXPECTED, E.RECEIVE): S.RECEIVED,
    (S.UNEXPECTED, E.ATTACH): S.RECEIVED,
    (S.UNEXPECTED, E.REJECT): S.RETIRED,
    **{(s, E.QUARANTINE): S.QUARANTINED for s in _QUARANTINABLE},
    (S.QUARANTINED, E.RELEASE): S.RECEIVED,
    # Staging.
    (S.RECEIVED, E.QUEUE): S.QUEUED,
    (S.QUEUED, E.IMAGE): S.IMAGING,
    (S.QUEUED, E.ABORT): S.RECEIVED,
    (S.IMAGING, E.CONFIGURE): S.CONFIGURING,
    (S.CONFIGURING, E.VERIFY): S.VERIFYING,
    (S.VERIFYING, E.DONE): S.READY,
    **{(s, E.FAIL): f for s, f in FAILURE_OF.items()},
    **{(s, E.ABORT): f for s, f in FAILURE_OF.items()},
    **{(f, E.RETRY): S.QUEUED for f in FAILURE_OF.values()},
    (S.READY, E.RESTAGE): S.RECEIVED,
    # Logistics.
    (S.READY, E.DISPATCH): S.DISPATCHED,
    (S.DISPATCHED, E.DELIVER): S.DELIVERED,
    (S.DISPATCHED, E.RETURN): S.RETURNED,
    (S.DELIVERED, E.RETURN): S.RETURNED,
    (S.RETURNED, E.RESTAGE): S.RECEIVED,
    **{(s, E.RETIRE): S.RETIRED for s in _RETIRABLE},
}


def allowed_events(state: DeviceState | None) -> list[Event]:
    """Events that can move a device out of ``state``, in table order."""
    return [event for (src, event) in TRANSITIONS if src == state]


def next_state(state: DeviceState | None, event: Event) -> DeviceState | None:
    """The state ``event`` leads to from ``state``, or ``None`` if the move is illegal."""
    return TRANSITIONS.get((state, event))


def to_mermaid() -> str:
    """The table as a Mermaid state diagram (docs/lifecycle.md is generated from it)."""
    lines = ["stateDiagram-v2"]
    for (src, event), dst in TRANSITIONS.items():
        left = "[*]" if src is None else src.name
        lines.append(f"    {left} --> {dst.name}: {event.value}")
    return "\n".join(lines) + "\n"


def to_dot() -> str:
    """The table as a Graphviz digraph."""
    lines = ["digraph lifecycle {", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    for (src, event), dst in TRANSITIONS.items():
        left = "start" if src is None else src.name
        lines.append(f'    {left} -> {dst.name} [label="{event.value}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
