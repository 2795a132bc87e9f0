"""``masterline images gc``: reclaim the storage of retired versions no run needs,
discard abandoned uploads, and remove files no catalogue row refers to.

This is a unit of work of its own (like a CLI command): it must commit its catalogue
changes before deleting files, and hold the store's exclusive lock throughout so that no
upload publishes a file that gc is about to delete (see ``images.store``).
"""

from __future__ import annotations

from datetime import datetime

from core.db import Database
from core.timeutil import utcnow
from images import manifest, repository, service
from images.publish import recover_interrupted
from images.schemas import GcReport
from images.store import Store, get_store
from images.upload import discard_partial


def run_gc(db: Database, *, store: Store | None = None, now: datetime | None = None) -> GcReport:
    store = store or get_store()
    now = now or utcnow()
    reclaimed: list[int] = []
    kept: list[int] = []
    discarded: list[int] = []
    stale_upload_ids: list[str | None] = []
    # Before the exclusive lock: settling takes the shared one (see images.publish).
    repaired = recover_interrupted(db, store)
    with store.exclusive_lock():
        with db.session() as session:
            retired = list(repository.retired_unpurged(session))
            needed = service.still_needed(session, [r.id for r in retired if r.id is not None])
            for row in retired:
                assert row.id is not None
                if row.id in needed:
                    kept.append(row.id)
                    continue
                row.purged_at = now
                session.add(row)
                reclaimed.append(row.id)
            for row in repository.stale_uploads(session, now - service.upload_expiry()):
                assert row.id is not None
                discarded.append(row.id)
                stale_upload_ids.append(row.upload_id)
                repository.delete_image(session, row.id)
            session.flush()
            in_use = repository.shas_in_use(session)
        # Committed: from here on no row needs the files below.
        freed = 0
        removed = 0
        for sha in list(store.stored_hashes()):
            if sha not in in_use:
                freed += store.remove(sha)
                manifest.remove(store, sha)
                removed += 1
        for upload_id in stale_upload_ids:
            discard_partial(store, upload_id)
        temps = _remove_dead_temps(db, store, now)
    return GcReport(
        reclaimed_images=reclaimed,
        kept_images=kept,
        discarded_uploads=discarded,
        files_removed=removed,
        reclaimed_bytes=freed,
        temp_files_removed=temps,
        repaired_images=repaired,
    )


def _remove_dead_temps(db: Database, store: Store, now: datetime) -> int:
    """Partial files older than the upload expiry that no upload row names (left by a
    killed server or a cancelled image)."""
    if not store.tmp_dir.is_dir():
        return 0
    with db.session(write=False) as session:
        live = repository.live_upload_ids(session)
    cutoff = (now - service.upload_expiry()).timestamp()
    removed = 0
    for path in store.tmp_dir.iterdir():
        upload_id = path.name.removeprefix("tus-").removesuffix(".part")
        if path.name.startswith("tus-") and upload_id in live:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
