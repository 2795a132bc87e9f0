"""Phase 3 of a ship-notice import (see ``inventory.intake``): the writes, without
making scan-in wait.

SQLite has one writer at a time, and a 100,000-line notice written in one transaction
held that lock for 34 s: every scan on the site failed meanwhile. So:

- Parsing and planning take no write lock (a read-only session).
- A small file (at most ``SMALL_IMPORT`` rows) is planned again and written in one
  short write transaction, as before.
- A larger one becomes an *import job*: its planned rows are **staged** (JSON chunks in
  ``intake_job_chunk``, invisible to everything else) in short transactions, then
  **published** 100 rows per transaction (``inventory.intake_jobs``) through
  ``inventory.lifecycle.create_many``. Between two transactions the write lock goes to
  whoever waits for it (``core.db.FairLock``), so a scan waits for one batch at most.

A large file is imported in a child process (``core.child``): its seconds of Python
would otherwise share the API's interpreter lock with every scan. Its SQLite writers
still queue on the API's fair write lock.

All or nothing, with crashes: nothing is written before the whole file is checked.
A crash while staging leaves nothing visible; the staged rows are dropped. Once
publishing has begun, the import is finished, never abandoned half-way: the job's
lease expires and the next API start (or the next import) publishes the rest, exactly
once (the published count moves in the same transaction as the rows). At most one
import job is live at a time; another import meanwhile answers 409.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.child import keep_to_the_end, run_with_database
from core.db import Database
from core.errors import Conflict
from core.files import sqlite_path
from core.principal import Principal
from inventory import intake_jobs, service
from inventory.errors import ImportRejected
from inventory.intake import MAX_LISTED_ERRORS, parse
from inventory.intake_jobs import Progress
from inventory.intake_plan import Plan, plan
from inventory.schemas import ImportSummary, IntakeFormat

SMALL_IMPORT = 500
CHILD_BYTES = 256 * 1024
"""Files above this (about 2,500 lines) are imported in a child process: starting one
costs about a second, planning 100,000 lines about ten."""


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
    in_child: bool | None = None,
) -> ImportSummary:
    """Import a ship notice into a delivery as EXPECTED devices, all or nothing.

    Manages its own transactions (see the module's docstring). A dry run answers what
    would happen, errors included, and writes nothing. ``in_child``: in a child process
    (default: a file over ``CHILD_BYTES`` without ``on_progress``, which is called in
    this process, on a database a child can open).

    :raises DeliveryNotFound: unknown delivery, or another company's for a client-bound
        caller.
    :raises TooLarge: over ``intake.MAX_BYTES`` or ``intake.MAX_ROWS``.
    :raises ImportRejected: (not on a dry run) any error; nothing is written.
    :raises Conflict: another import is being written, or wrote the same serials at the
        same moment.
    """
    if in_child is None:
        in_memory = db.is_sqlite and sqlite_path(db.url) is None
        in_child = on_progress is None and len(data) > CHILD_BYTES and not in_memory
    if in_child:
        return run_with_database(
            db, _import, delivery_id, data, principal, fmt, dry_run, allow_other_vendor, None
        )
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
        # The plan lives until publishing ends: out of the collector's full passes, which
        # would otherwise walk it while this child holds the write lock.
        keep_to_the_end()
        intake_jobs.publish_staged(db, result, principal, on_progress)
        return summary
    intake_jobs.resume_interrupted(db)
    with db.session() as session:
        delivery = service.get_delivery(session, delivery_id, principal)
        result = plan(
            session, delivery, parsed, principal=principal, allow_other_vendor=allow_other_vendor
        )
        summary = _summary(delivery_id, result, dry_run=False)
        if intake_jobs.live_job(session) is not None:
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
    rows = intake_jobs.payloads(result)
    models = {k: m.id for k, m in result.models.items() if m is not None}
    delivery_id = result.delivery.id or 0
    intake_jobs.apply_rows(
        session, rows, delivery_id, models, intake_jobs.details_of(result), principal.actor
    )
