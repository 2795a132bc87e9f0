"""Keeps the stored forecast true: recomputes it after changes, debounced.

Hooks append change marks (``forecast_change``) inside the transactions that change the
wave. The refresher, a loop beside every engine (``masterline worker``, ``up``, the
demo), recomputes once the marks have been quiet for ``quiet`` seconds, or ``max_wait``
after the first of a steady stream of them, and at least every ``max_age`` seconds
(time passing moves dates too: a delivery not in yet is later than it was). Several
refreshers (one per worker host) may compute the same forecast; the last one stored
wins, and each is a complete forecast of its moment.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import OperationalError

from core.db import Database
from core.timeutil import utcnow
from forecast import repository, service

log = logging.getLogger("masterline.forecast")


@dataclass
class Refresher:
    db: Database
    quiet: float = 10.0
    max_wait: float = 60.0
    max_age: float = 900.0
    interval: float = 2.0

    @classmethod
    def from_env(cls, db: Database) -> Refresher:
        env = os.environ
        return cls(
            db,
            quiet=float(env.get("MASTERLINE_FORECAST_QUIET_SECONDS", "10")),
            max_wait=float(env.get("MASTERLINE_FORECAST_MAX_WAIT_SECONDS", "60")),
            max_age=float(env.get("MASTERLINE_FORECAST_MAX_AGE_SECONDS", "900")),
            interval=float(env.get("MASTERLINE_FORECAST_INTERVAL_SECONDS", "2")),
        )

    def due(self, now: datetime) -> tuple[bool, int | None]:
        """(whether to recompute now, the last change mark it covers)."""
        with self.db.session(write=False) as s:
            pending = repository.pending_changes(s)
            wave = repository.snapshot(s, "wave", 0)
        last_made = wave.made_at if wave is not None else None
        if pending is not None:
            up_to, first, last = pending
            if (now - last).total_seconds() >= self.quiet:
                return True, up_to
            if (now - first).total_seconds() >= self.max_wait:
                return True, up_to
        stale = last_made is None or (now - last_made).total_seconds() >= self.max_age
        return stale, pending[0] if pending else None

    def tick(self, now: datetime | None = None) -> bool:
        """One look: recompute if due. Returns whether it did."""
        now = now or utcnow()
        go, up_to = self.due(now)
        if not go:
            return False
        service.refresh(self.db, now=now, up_to=up_to)
        return True

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except OperationalError as e:
                log.warning(
                    "forecast refresh: database busy (%s); next round", type(e.orig).__name__
                )
            except Exception:
                log.exception("forecast refresh failed; next round")
            stop.wait(self.interval)


def run(db: Database, stop: threading.Event) -> None:
    """The companion loop the worker starts (``provisioning.pipeline.worker``)."""
    Refresher.from_env(db).run_forever(stop)
