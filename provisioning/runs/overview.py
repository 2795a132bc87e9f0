"""Read models for people watching the pipeline: a bench's slots (the console's bench
board) and a wave's overview (counts, throughput, failures, the oldest stuck laptops).

Reads only; every query is in ``provisioning.repository`` and scoped by the caller.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from core.principal import Principal
from core.timeutil import utcnow
from inventory import repository as inventory_repo
from inventory.errors import BenchNotFound
from inventory.models import Bench, Device
from inventory.states import DeviceState
from provisioning.runs import repository
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.states import STEP_NAMES

# A laptop holds its slot from scan-in until it leaves the bench (as scan-in counts).
SLOT_HOLDING: tuple[DeviceState, ...] = (
    DeviceState.RECEIVED,
    DeviceState.QUEUED,
    DeviceState.IMAGING,
    DeviceState.CONFIGURING,
    DeviceState.VERIFYING,
    DeviceState.FAILED_IMAGING,
    DeviceState.FAILED_CONFIGURING,
    DeviceState.FAILED_VERIFYING,
    DeviceState.READY,
)
IN_FLIGHT: tuple[DeviceState, ...] = (
    DeviceState.QUEUED,
    DeviceState.IMAGING,
    DeviceState.CONFIGURING,
    DeviceState.VERIFYING,
)


@dataclass(frozen=True)
class RunView:
    id: int
    status: RunStatus
    step_name: str | None
    step_number: int
    """1-based position of the current (or failed) step."""
    step_count: int
    run_attempt: int
    progress_bytes: int
    progress_total: int
    rate_bps: float
    eta_seconds: float | None
    last_error: str | None
    failed_step: str | None
    abort_requested: bool
    error_kind: str | None
    """The error's type (``IdentityMismatch``, ``GateFailed``…) when the run failed."""
    failed_checks: tuple[str, ...]
    updated_at: datetime

    @property
    def percent(self) -> float | None:
        if not self.progress_total:
            return None
        return min(100.0, 100.0 * self.progress_bytes / self.progress_total)

    @property
    def active(self) -> bool:
        return self.status in RunStatus.active()


@dataclass(frozen=True)
class LaptopView:
    device_id: int
    serial: str
    vendor: str
    model: str | None
    client_id: int | None
    client_code: str | None
    state: DeviceState
    state_changed_at: datetime
    slot: int | None
    run: RunView | None

    @property
    def failed(self) -> bool:
        return self.state in DeviceState.failed()


@dataclass(frozen=True)
class SlotView:
    number: int
    laptop: LaptopView | None


@dataclass(frozen=True, eq=False)  # compared by identity: one snapshot, many viewers
class BoardView:
    bench: Bench
    site_id: int
    slots: tuple[SlotView, ...]
    read_at: datetime

    def counts(self) -> Counter[str]:
        return Counter(str(s.laptop.state) for s in self.slots if s.laptop is not None)


def _run_view(run: ProvisioningRun, failure: dict[str, object] | None) -> RunView:
    assert run.id is not None
    failure = failure or {}
    step = run.failed_step or run.step_name
    number = (
        STEP_NAMES.index(step) + 1
        if step in STEP_NAMES
        else min(run.step_index + 1, len(STEP_NAMES))
    )
    checks = failure.get("failed_checks") or ()
    return RunView(
        id=run.id,
        status=RunStatus(run.status),
        step_name=run.step_name,
        step_number=number,
        step_count=len(STEP_NAMES),
        run_attempt=run.run_attempt,
        progress_bytes=run.progress_bytes,
        progress_total=run.progress_total,
        rate_bps=run.rate_bps,
        eta_seconds=run.eta_seconds,
        last_error=run.last_error,
        failed_step=run.failed_step,
        abort_requested=run.abort_requested,
        error_kind=str(failure["error"]) if failure.get("error") else None,
        failed_checks=tuple(str(c) for c in checks) if isinstance(checks, list | tuple) else (),
        updated_at=run.updated_at,
    )


def _laptop_view(
    device: Device,
    model: str | None,
    client_code: str | None,
    run: ProvisioningRun | None,
    failures: dict[int, dict[str, object]],
) -> LaptopView:
    assert device.id is not None
    return LaptopView(
        device_id=device.id,
        serial=device.serial,
        vendor=device.vendor,
        model=model,
        client_id=device.client_id,
        client_code=client_code,
        state=DeviceState(device.state),
        state_changed_at=device.state_changed_at,
        slot=device.slot,
        run=_run_view(run, failures.get(run.id or 0)) if run is not None else None,
    )


def _failures(session: Session, runs: list[ProvisioningRun | None]) -> dict[int, dict[str, object]]:
    failed = [r.id for r in runs if r is not None and r.id and r.status == RunStatus.FAILED]
    return repository.failure_kinds(session, failed) if failed else {}


def bench_board(session: Session, bench_id: int, principal: Principal) -> BoardView:
    """Every slot of a bench with the laptop holding it and its latest run. A
    client-bound caller sees only its own company's laptops (other slots look free).

    :raises BenchNotFound: no such bench.
    """
    bench = inventory_repo.get_bench(session, bench_id)
    if bench is None or bench.id is None:
        raise BenchNotFound(str(bench_id))
    rows = repository.bench_board_rows(
        session, bench_id=bench.id, states=[s.value for s in SLOT_HOLDING]
    )
    failures = _failures(session, [r for _, _, _, r in rows])
    by_slot: dict[int, LaptopView] = {}
    for device, model, client_code, run in rows:
        if device.slot is None or not principal.sees_client(device.client_id):
            continue
        by_slot.setdefault(device.slot, _laptop_view(device, model, client_code, run, failures))
    slots = tuple(SlotView(n, by_slot.get(n)) for n in range(1, bench.slots + 1))
    return BoardView(bench=bench, site_id=bench.site_id, slots=slots, read_at=utcnow())


@dataclass(frozen=True)
class WaveFilter:
    client_id: int | None = None
    delivery_id: int | None = None
    site_id: int | None = None


@dataclass(frozen=True)
class FailureGroup:
    error_kind: str | None
    step: str | None
    model: str | None
    count: int
    example_error: str | None


@dataclass
class WaveOverview:
    counts: dict[str, int]
    total: int
    in_flight: int
    hours: list[datetime]
    """The start of each hour of the chart, oldest first."""
    received_per_hour: list[int]
    ready_per_hour: list[int]
    failures: list[FailureGroup]
    failed_total: int
    oldest: list[LaptopView]
    read_at: datetime = field(default_factory=utcnow)


def wave_overview(
    session: Session,
    principal: Principal,
    wanted: WaveFilter,
    *,
    hours: int = 24,
    oldest: int = 10,
    max_failures: int = 5000,
) -> WaveOverview:
    """Counts per state, scans and READY laptops per hour, failures grouped by cause,
    model and step, and the laptops stuck the longest. A client-bound caller's filter is
    narrowed to its own company (the router checks the delivery is visible).
    """
    scope = principal.client_scope
    client_id = scope if scope is not None else wanted.client_id
    filters = {"client_id": client_id, "delivery_id": wanted.delivery_id, "site_id": wanted.site_id}
    counts = repository.count_by_state(session, **filters)
    now = utcnow()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    received = [0] * hours
    ready = [0] * hours
    for state, index, count in repository.arrivals_per_hour(
        session,
        to_states=[DeviceState.RECEIVED.value, DeviceState.READY.value],
        since=start,
        **filters,
    ):
        if 0 <= index < hours:
            (ready if state == DeviceState.READY else received)[index] += count
    failed_rows = repository.failed_runs(
        session, states=[s.value for s in DeviceState.failed()], limit=max_failures, **filters
    )
    run_ids = [run_id for _, run_id, _, _ in failed_rows if run_id is not None]
    failures_of = repository.failure_kinds(session, run_ids) if run_ids else {}
    groups: Counter[tuple[str | None, str | None, str | None]] = Counter()
    examples: dict[tuple[str | None, str | None, str | None], str | None] = {}
    for model, run_id, failed_step, last_error in failed_rows:
        kind = str(failures_of.get(run_id or 0, {}).get("error") or "") or None
        key = (kind, failed_step, model)
        groups[key] += 1
        examples.setdefault(key, last_error)
    stuck_rows = repository.oldest_in_states(
        session,
        states=[s.value for s in (*IN_FLIGHT, *DeviceState.failed())],
        limit=oldest,
        **filters,
    )
    stuck_failures = _failures(session, [r for _, _, r in stuck_rows])
    return WaveOverview(
        counts=counts,
        total=sum(counts.values()),
        in_flight=sum(counts.get(s.value, 0) for s in IN_FLIGHT),
        hours=slots,
        received_per_hour=received,
        ready_per_hour=ready,
        failures=[
            FailureGroup(kind, step, model, n, examples.get((kind, step, model)))
            for (kind, step, model), n in groups.most_common()
        ],
        failed_total=sum(groups.values()),
        oldest=[_laptop_view(d, m, None, r, stuck_failures) for d, m, r in stuck_rows],
        read_at=now,
    )


def device_runs(session: Session, device: Device) -> list[RunView]:
    """Every run of a laptop, newest first (its page)."""
    assert device.id is not None
    runs = list(repository.runs_of_device(session, device.id))
    failures = _failures(session, list(runs))
    return [_run_view(r, failures.get(r.id or 0)) for r in runs]


@dataclass(frozen=True)
class PipelineGauges:
    runs: list[tuple[str, str | None, int]]
    """(status, step, count) of every run."""
    devices: dict[str, int]
    """Laptops per state."""


def pipeline_gauges(session: Session) -> PipelineGauges:
    """What ``/metrics`` reads from the database at scrape time (two grouped counts)."""
    return PipelineGauges(
        runs=list(repository.runs_by_status_and_step(session)),
        devices=repository.count_by_state(session, client_id=None, delivery_id=None, site_id=None),
    )


def change_marks(session: Session) -> tuple[int, int, datetime | None]:
    """What the console's live loop watches: three index lookups that move whenever
    anything a bench board shows changes (see console/live.py)."""
    return repository.change_marks(session)


def benches_changed_since(session: Session, marks: tuple[int, int, datetime | None]) -> set[int]:
    """Benches holding a laptop whose history or run changed after ``marks``."""
    return repository.benches_changed_since(
        session, device_event_id=marks[0], run_event_id=marks[1], run_update=marks[2]
    )
