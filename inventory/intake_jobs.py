"""Large ship-notice imports as jobs: planned rows staged (invisible), then published
in short transactions; rows applied through ``inventory.lifecycle``.

Why (``inventory.intake_publish`` has the long form): SQLite has one writer at a
time, and a 100,000-line notice in one transaction held it for 34 s. Staging and
publishing hold it for one chunk or one batch at a time, and the write lock goes to
whoever waits in between (``core.db.FairLock``).

Crash safety: a job dying while staging is dropped (nothing was visible); one dying
while publishing is finished exactly once when its lease expires (the published count
moves in the same transaction as the rows). At most one job is live at a time (a
partial unique index), and the small-import path checks for it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col, delete, select

from core.db import Database, is_disk_full
from core.errors import Conflict, DatabaseFull
from core.principal import Principal
from core.timeutil import utcnow
from inventory import lifecycle, repository, service
from inventory.intake import Row
from inventory.intake_plan import MODEL_KEY, Plan
from inventory.models import IntakeJob, IntakeJobChunk
from inventory.states import DeviceState, Event

log = logging.getLogger("masterline.intake")

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


# Large files: a staged job.
def publish_staged(
    db: Database, result: Plan, principal: Principal, on_progress: Progress | None
) -> None:
    resume_interrupted(db)
    rows = payloads(result)
    delivery = result.delivery
    with db.session() as session:
        if live_job(session) is not None:
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
        try:
            _drop_staged(db, job_id)  # nothing was published: nothing stays
        except Exception:  # (a full disk, say): the expired lease drops it later
            log.warning("import job %d: staged rows not dropped yet", job_id)
        raise
    try:
        _publish(db, job_id, on_progress)
    except OperationalError as e:
        if not is_disk_full(e):
            raise
        # Half-way: the rest is published once there is space (resume_interrupted).
        raise DatabaseFull(
            "the disk under the database is full while publishing this import; what is "
            "published stays, and the rest is published by the next import or restart "
            "once space is freed"
        ) from e


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
            apply_rows(session, batch, job.delivery_id, models, details, job.actor)
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
        job = live_job(session)
        until = job.lease_until if job is not None else None
    if until is None:
        return 0
    if wait:  # (a lease is renewed every batch: never longer than LEASE ahead)
        left = min((until - utcnow()).total_seconds(), LEASE.total_seconds())
        time.sleep(max(0.0, left) + 1)
    with db.session() as session:
        job = live_job(session)
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
        except SQLAlchemyError as e:  # a database not migrated yet, or down: say so
            log.warning("could not check for an interrupted import: %s", type(e).__name__)
        except Exception:  # a start must not fail for this; the next import retries
            log.exception("resuming an interrupted import failed")

    threading.Thread(target=run, name="intake-resume", daemon=True).start()


# Rows as plain data (staged as JSON, then applied).
def payloads(result: Plan) -> list[dict[str, Any]]:
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


def details_of(result: Plan) -> dict[str, Any]:
    return {"delivery_id": result.delivery.id, "format": result.parsed.format.value}


def apply_rows(
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
def live_job(session: Session) -> IntakeJob | None:
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
