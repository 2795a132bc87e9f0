"""Phase 3 of a ship-notice import (see ``inventory.intake``): the writes, without
making scan-in wait.

SQLite has one writer at a time, and a 100,000-line notice written in one transaction
held that lock for 34 s: every scan on the site failed meanwhile. So:

- Parsing and planning take no write lock (a read-only session).
- A small file (at most ``SMALL_IMPORT`` rows) is planned again and written in one
  short write transaction, as before.
- A larger one becomes an *import job*: its planned rows are **staged** (JSON chunks in
  ``intake_job_chunk``, invisible to everything else) in short transactions, then
  **published** ``PUBLISH_BATCH`` rows per transaction through
  ``inventory.lifecycle.create_many``. Between two transactions the write lock goes to
  whoever waits for it (``core.db.FairLock``), so a scan waits for one batch at most.

All or nothing, with crashes: nothing is written before the whole file is checked.
A crash while staging leaves nothing visible; the staged rows are dropped. Once
publishing has begun, the import is finished, never abandoned half-way: the job's
lease expires and the next API start (or the next import) publishes the rest, exactly
once (the published count moves in the same transaction as the rows). At most one
import job is live at a time; another import meanwhile answers 409.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from core.db import Database
from core.errors import Conflict
from core.principal import Principal
from core.timeutil import utcnow
from inventory import lifecycle, repository, service
from inventory.errors import ImportRejected
from inventory.intake import MAX_LISTED_ERRORS, Row, parse
from inventory.intake_plan import MODEL_KEY, Plan, plan
from inventory.models import IntakeJob, IntakeJobChunk
from inventory.schemas import ImportSummary, IntakeFormat
from inventory.states import DeviceState, Event

log = logging.getLogger("masterline.intake")

SMALL_IMPORT = 500
STAGE_CHUNK = 2000
PUBLISH_BATCH = 100
LEASE = timedelta(seconds=60)
STAGING, PUBLISHING = "staging", "publishing"

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total) after each committed step: ``staged`` and
``published`` rows."""

_ATTACHED_FIELDS = (
    "vendor",
    "hardware_model_id",
    "client_id",
    "delivery_id",
    "order_reference",
    "carton_id",
    "asset_tag",
    "windows_product_id",
    "hardware_hash",
    "group_tag",
    "assigned_user",
)


def import_ship_notice(
    db: Database,
    delivery_id: int,
    data: bytes,
    principal: Principal,
    *,
    fmt: IntakeFormat | None = None,
    dry_run: bool = False,
    allow_other_vendor: bool = False,
    on_progress: Progress | None = None,
) -> ImportSummary:
    """Import a ship notice into a delivery as EXPECTED devices, all or nothing.

    Manages its own transactions (see the module's docstring). A dry run answers what
    would happen, errors included, and writes nothing.

    :raises DeliveryNotFound: unknown delivery, or another company's for a client-bound
        caller.
    :raises TooLarge: over ``intake.MAX_BYTES`` or ``intake.MAX_ROWS``.
    :raises ImportRejected: (not on a dry run) any error; nothing is written.
    :raises Conflict: another import is being written, or wrote the same serials at the
        same moment.
    """
    with _short_gil_slices():
        return _import(
            db, delivery_id, data, principal, fmt, dry_run, allow_other_vendor, on_progress
        )


@contextlib.contextmanager
def _short_gil_slices() -> Iterator[None]:
    """While an import's Python work runs in the API process, hand the interpreter
    lock to other threads every 0.5 ms instead of every 5 ms: a scan waiting for it
    after each database call would otherwise wait up to 5 ms each time (process-wide,
    restored after; a slightly higher switching cost only while importing)."""
    with _SLICE_LOCK:
        _IMPORTS[0] += 1
        if _IMPORTS[0] == 1:
            _IMPORTS[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_IMPORTS[1], 0.0005))
    try:
        yield
    finally:
        with _SLICE_LOCK:
            _IMPORTS[0] -= 1
            if _IMPORTS[0] == 0:
                sys.setswitchinterval(_IMPORTS[1])


_SLICE_LOCK = threading.Lock()
_IMPORTS: list[Any] = [0, 0.005]  # imports running, the interval to restore


def _import(
    db: Database,
    delivery_id: int,
    data: bytes,
    principal: Principal,
    fmt: IntakeFormat | None,
    dry_run: bool,
    allow_other_vendor: bool,
    on_progress: Progress | None,
) -> ImportSummary:
    parsed = parse(data, fmt)
    small = len(parsed.rows) <= SMALL_IMPORT and not dry_run
    if not small:
        # Planned from a read-only session: the write lock is not held while 100,000
        # rows are checked.
        with db.session(write=False) as session:
            delivery = service.get_delivery(session, delivery_id, principal)
            result = plan(
                session,
                delivery,
                parsed,
                principal=principal,
                allow_other_vendor=allow_other_vendor,
            )
        summary = _summary(delivery_id, result, dry_run=dry_run)
        if dry_run:
            return summary
        _publish_staged(db, result, principal, on_progress)
        return summary
    resume_interrupted(db)
    with db.session() as session:
        delivery = service.get_delivery(session, delivery_id, principal)
        result = plan(
            session, delivery, parsed, principal=principal, allow_other_vendor=allow_other_vendor
        )
        summary = _summary(delivery_id, result, dry_run=False)
        if _live_job(session) is not None:
            raise Conflict("another ship-notice import is being written; retry when it ends")
        try:
            with session.begin_nested():
                _execute(session, result, principal)
        except IntegrityError as e:
            raise Conflict(
                "another import wrote some of these serials at the same time; retry"
            ) from e
    return summary


def _summary(delivery_id: int, result: Plan, *, dry_run: bool) -> ImportSummary:
    """:raises ImportRejected: errors, unless ``dry_run``."""
    parsed = result.parsed
    errors = sorted(parsed.errors, key=lambda e: e.line or 0)[:MAX_LISTED_ERRORS]
    if errors and not dry_run:
        raise ImportRejected([e.model_dump() for e in errors])
    # A file with errors would be refused whole: a dry run says so and counts nothing
    # (saying "2 created" beside "would be rejected" told two things at once).
    ok = not errors
    return ImportSummary(
        delivery_id=delivery_id,
        format=parsed.format,
        dry_run=dry_run,
        rows=parsed.data_rows,
        rejected=not ok,
        created=len(result.creates) if ok else 0,
        updated=len(result.updates) if ok else 0,
        unchanged=result.unchanged if ok else 0,
        attached=len(result.attaches) if ok else 0,
        new_hardware_models=result.new_models() if ok else [],
        errors=errors,
    )


# Small files: one transaction.
def _execute(session: Session, result: Plan, principal: Principal) -> None:
    for key, known in list(result.models.items()):
        if known is None:
            result.models[key] = service.get_or_create_hardware_model(session, *key)
    rows = _payloads(result)
    models = {k: m.id for k, m in result.models.items() if m is not None}
    _apply(session, rows, result.delivery.id or 0, models, _details(result), principal.actor)


# Large files: a staged job.
def _publish_staged(
    db: Database, result: Plan, principal: Principal, on_progress: Progress | None
) -> None:
    resume_interrupted(db)
    rows = _payloads(result)
    delivery = result.delivery
    with db.session() as session:
        if _live_job(session) is not None:
            raise Conflict("another ship-notice import is being written; retry when it ends")
        job = IntakeJob(
            delivery_id=delivery.id or 0,
            actor=principal.actor,
            format=result.parsed.format.value,
            status=STAGING,
            rows=len(rows),
            lease_until=utcnow() + LEASE,
        )
        session.add(job)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as e:  # another job became live at the same moment
            raise Conflict("another ship-notice import is being written; retry") from e
        assert job.id is not None
        job_id = job.id
    try:
        for n, start in enumerate(range(0, len(rows), STAGE_CHUNK)):
            with db.session() as session:
                session.add(
                    IntakeJobChunk(
                        job_id=job_id,
                        n=n,
                        first_row=start,
                        payload=rows[start : start + STAGE_CHUNK],
                    )
                )
                _renew(session, job_id)
            _report(on_progress, "staged", min(start + STAGE_CHUNK, len(rows)), len(rows))
        with db.session() as session:
            # The catalogue entries first, in the transaction that commits to publish.
            for key, known in result.models.items():
                if known is None:
                    service.get_or_create_hardware_model(session, *key)
            live = _lock_job(session, job_id)
            assert live is not None
            live.status = PUBLISHING
            live.lease_until = utcnow() + LEASE
            session.add(live)
    except BaseException:
        _drop_staged(db, job_id)  # nothing was published: nothing stays
        raise
    _publish(db, job_id, on_progress)


def _publish(db: Database, job_id: int, on_progress: Progress | None = None) -> None:
    """Publish the job's remaining rows, one short transaction per batch."""
    current: IntakeJobChunk | None = None
    while True:
        with db.session() as session:
            job = _lock_job(session, job_id)
            if job is None:
                return
            if job.published >= job.rows:
                session.delete(job)  # its chunks go with it (ON DELETE CASCADE)
                session.exec(delete(IntakeJobChunk).where(col(IntakeJobChunk.job_id) == job_id))
                return
            if current is None or job.published >= current.first_row + len(current.payload):
                current = session.exec(
                    select(IntakeJobChunk)
                    .where(
                        IntakeJobChunk.job_id == job_id,
                        col(IntakeJobChunk.first_row) <= job.published,
                    )
                    .order_by(col(IntakeJobChunk.n).desc())
                ).first()
                assert current is not None, "a publishing job keeps its unpublished rows"
                session.expunge(current)
            offset = job.published - current.first_row
            batch = current.payload[offset : offset + PUBLISH_BATCH]
            models = {k: m.id for k, m in repository.hardware_models_by_key(session).items()}
            details = {"delivery_id": job.delivery_id, "format": job.format, "job": job.id}
            _apply(session, batch, job.delivery_id, models, details, job.actor)
            job.published += len(batch)
            job.lease_until = utcnow() + LEASE
            session.add(job)
            if offset + len(batch) >= len(current.payload):
                session.exec(
                    delete(IntakeJobChunk).where(
                        col(IntakeJobChunk.job_id) == job_id, col(IntakeJobChunk.n) == current.n
                    )
                )
            done, total = job.published, job.rows
        _report(on_progress, "published", done, total)


def resume_interrupted(db: Database, *, wait: bool = False) -> int:
    """Jobs whose importer died (lease expired): drop the ones still staging, finish
    the ones publishing. With ``wait``, first waits out the lease of a live job (what
    an API start does, in a thread of its own). Returns how many it handled."""
    with db.session(write=False) as session:
        job = _live_job(session)
        until = job.lease_until if job is not None else None
    if until is None:
        return 0
    if wait:  # (a lease is renewed every batch: never longer than LEASE ahead)
        left = min((until - utcnow()).total_seconds(), LEASE.total_seconds())
        time.sleep(max(0.0, left) + 1)
    with db.session() as session:
        job = _live_job(session)
        if job is None or job.lease_until > utcnow():
            return 0  # none, or its importer is alive
        assert job.id is not None
        job_id, staging = job.id, job.status == STAGING
        job.lease_until = utcnow() + LEASE  # ours now
        session.add(job)
    if staging:
        log.warning("import job %d died while staging: its staged rows are dropped", job_id)
        _drop_staged(db, job_id)
    else:
        log.warning("import job %d died while publishing: publishing the rest", job_id)
        _publish(db, job_id)
    return 1


def resume_in_background(db: Database) -> None:
    """At an API start: finish (or drop) an import a crash interrupted."""

    def run() -> None:
        try:
            resume_interrupted(db, wait=True)
        except Exception:  # a start must not fail for this; the next import retries
            log.exception("resuming an interrupted import failed")

    threading.Thread(target=run, name="intake-resume", daemon=True).start()


# Rows as plain data (staged as JSON, then applied).
def _payloads(result: Plan) -> list[dict[str, Any]]:
    delivery = result.delivery
    out: list[dict[str, Any]] = []
    for row, vendor in result.creates:
        out.append({"kind": "create", **_fields(row, vendor, delivery.order_reference)})
    for row, device, changes in result.updates:
        change = dict(changes)
        if MODEL_KEY in change:
            change[MODEL_KEY] = list(change[MODEL_KEY])
        out.append({"kind": "update", "id": device.id, "serial": row.serial, "changes": change})
    for row, device, vendor in result.attaches:
        fields = _fields(row, vendor, delivery.order_reference)
        out.append({"kind": "attach", "id": device.id, **fields})
    return out


def _fields(row: Row, vendor: str, order_reference: str) -> dict[str, Any]:
    return {
        "serial": row.serial,
        "vendor": vendor,
        "model": row.model,
        "mac_addresses": row.macs or [],
        "asset_tag": row.asset_tag,
        "order_reference": row.order_reference or order_reference,
        "carton_id": row.carton_id,
        "windows_product_id": row.windows_product_id,
        "hardware_hash": row.hardware_hash,
        "group_tag": row.group_tag,
        "assigned_user": row.assigned_user,
    }


def _details(result: Plan) -> dict[str, Any]:
    return {"delivery_id": result.delivery.id, "format": result.parsed.format.value}


def _apply(
    session: Session,
    rows: Sequence[dict[str, Any]],
    delivery_id: int,
    models: dict[tuple[str, str], int | None],
    details: dict[str, Any],
    actor: str,
) -> None:
    delivery = repository.get_delivery(session, delivery_id)
    assert delivery is not None
    creates = []
    for r in rows:
        if r["kind"] != "create":
            continue
        fields = {k: v for k, v in r.items() if k not in ("kind", "model")}
        model = models.get((r["vendor"], r["model"])) if r["model"] else None
        creates.append(
            {
                **fields,
                "hardware_model_id": model,
                "client_id": delivery.client_id,
                "delivery_id": delivery_id,
            }
        )
    lifecycle.create_many(
        session, creates, Event.EXPECT, actor=actor, reason="ship notice import", details=details
    )
    now = utcnow()
    for r in rows:
        if r["kind"] == "update":
            device = repository.get_device_for_update(session, r["id"])
            if device is None:
                continue
            for name, value in r["changes"].items():
                if name == MODEL_KEY:
                    device.hardware_model_id = models.get((value[0], value[1]))
                else:
                    setattr(device, name, value)
            device.updated_at = now
            session.add(device)
        elif r["kind"] == "attach":
            _attach(session, r, delivery_id, delivery.client_id, models, details, actor)
    session.flush()


def _attach(
    session: Session,
    r: dict[str, Any],
    delivery_id: int,
    client_id: int,
    models: dict[tuple[str, str], int | None],
    details: dict[str, Any],
    actor: str,
) -> None:
    device = repository.get_device_for_update(session, r["id"])
    if device is None or device.state != DeviceState.UNEXPECTED:
        # Resolved at the bench since the file was checked: the technician's word wins.
        log.info("import: %s is no longer unexpected; not attached", r["serial"])
        return
    values = {
        **r,
        "hardware_model_id": models.get((r["vendor"], r["model"])) if r["model"] else None,
        "client_id": client_id,
        "delivery_id": delivery_id,
    }
    for name in _ATTACHED_FIELDS:
        setattr(device, name, values[name])
    if r["mac_addresses"]:
        device.mac_addresses = r["mac_addresses"]
    lifecycle.apply(
        session,
        device,
        Event.ATTACH,
        actor=actor,
        reason="listed by a ship notice",
        details=details,
    )


# Jobs.
def _live_job(session: Session) -> IntakeJob | None:
    return session.exec(
        select(IntakeJob).where(col(IntakeJob.status).in_((STAGING, PUBLISHING)))
    ).first()


def _lock_job(session: Session, job_id: int) -> IntakeJob | None:
    return session.exec(
        select(IntakeJob)
        .where(IntakeJob.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _renew(session: Session, job_id: int) -> None:
    job = _lock_job(session, job_id)
    if job is None:
        raise Conflict("the import job was taken over; retry")
    job.lease_until = utcnow() + LEASE
    session.add(job)


def _drop_staged(db: Database, job_id: int) -> None:
    with db.session() as session:
        job = _lock_job(session, job_id)
        if job is not None and job.status == STAGING:
            session.exec(delete(IntakeJobChunk).where(col(IntakeJobChunk.job_id) == job_id))
            session.delete(job)


def _report(on_progress: Progress | None, phase: str, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(phase, done, total)
