from __future__ import annotations

import re
from pathlib import Path

from inventory.states import (
    FAILURE_OF,
    STATE_COLUMN_LENGTH,
    TARGET_OF,
    TRANSITIONS,
    DeviceState,
    Event,
    allowed_events,
    next_state,
    to_dot,
    to_mermaid,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_state_value_fits_its_column() -> None:
    assert max(len(s.value) for s in DeviceState) <= STATE_COLUMN_LENGTH
    assert max(len(e.value) for e in Event) <= 24


def test_every_state_is_reachable_from_creation() -> None:
    seen: set[DeviceState] = set()
    frontier: list[DeviceState | None] = [None]
    while frontier:
        src = frontier.pop()
        for (s, _), dst in TRANSITIONS.items():
            if s == src and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(DeviceState)


def test_each_working_state_has_a_failure_and_retry_goes_back_to_queued() -> None:
    for working, failed in FAILURE_OF.items():
        assert next_state(working, Event.FAIL) is failed
        assert next_state(failed, Event.RETRY) is DeviceState.QUEUED
        assert failed.name == f"FAILED_{working.name}"
        assert TARGET_OF[working] is DeviceState.READY


def test_terminal_states_have_no_way_out_but_the_table_says_so() -> None:
    assert allowed_events(DeviceState.RETIRED) == []
    assert next_state(DeviceState.READY, Event.IMAGE) is None
    assert next_state(DeviceState.EXPECTED, Event.DISPATCH) is None


def test_diagrams_name_every_state_and_docs_are_current() -> None:
    mermaid, dot = to_mermaid(), to_dot()
    for state in DeviceState:
        assert state.name in mermaid
        assert state.name in dot
    doc = (ROOT / "docs" / "lifecycle.md").read_text()
    assert to_mermaid() in doc, "docs/lifecycle.md is stale: run scripts/lifecycle_doc.py"


def test_nothing_but_the_lifecycle_assigns_device_state() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if ".venv" in path.parts or path == Path(__file__).resolve():
            continue
        if path.name == "lifecycle.py" and path.parent.name == "inventory":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            # Any `<something device-like>.state = …` or `….state = DeviceState…`;
            # other objects' `state` attributes (the lab's Windows state) are not ours.
            m = re.match(r"^([A-Za-z_][\w.]*)\.state\s*=(?!=)(.*)$", stripped)
            if m and (
                "device" in m.group(1).lower()
                or m.group(1) in ("d", "row", "dev")
                or "DeviceState" in m.group(2)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], "device state assigned outside inventory/lifecycle.py"
