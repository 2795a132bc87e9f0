"""A site's bytes-per-second cap, shared by every stream at that site, whichever worker
process (on whichever host) runs it.

The database is the ledger: each run's context records the rate its stream is granted
(``SHARE_KEY``). A "stream" here is a run in one of the ``SENDING_STEPS``: the image
stream, and the copy of the client's store installers (a step of its own, so that a run
holds a share only while it sends bulk bytes). Every worker with live streams at a capped
site re-rates them about once a second, and at once when a stream starts, in one
transaction: its own run rows locked first, then the site row (the claim's lock order).
Each stream's fair share is the site's rate over the runs in a sending step there, and a
share only grows into what the others' recorded shares leave free, so the recorded
shares never add up to more than the cap (a plain ``rate / n`` would let a new stream
take its half before the old one halved).
Each stream then paces itself with its own token bucket: no chunk costs a database call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from core.db import Database
from core.timeutil import utcnow
from provisioning.imaging.pacing import TokenBucket
from provisioning.pipeline.scheduling import SENDING_STEPS, STREAM_STEP, rerate
from provisioning.runs import lifecycle, repository
from provisioning.runs.models import ProvisioningRun

log = logging.getLogger("masterline.worker")

__all__ = [
    "RELAY_KEY",
    "SENDING_STEPS",
    "SHARE_KEY",
    "SiteShares",
    "counts_as_stream",
    "drop_share",
]

SHARE_KEY = "stream_share_bps"
"""The run context key holding the bytes per second its stream is granted."""
RELAY_KEY = "relay"
"""The run context key holding its place in a relay wave while it streams in one:
``{"wave", "member", "carrier"}`` (``pipeline/relays.py``)."""


def counts_as_stream(run: ProvisioningRun) -> bool:
    """Whether a run in a sending step is a stream of the site's ledger: a relay wave is
    one stream, its carrier's; the members relayed laptop to laptop send nothing from
    the server."""
    relay = (run.context or {}).get(RELAY_KEY)
    return not isinstance(relay, dict) or bool(relay.get("carrier"))


def drop_share(run: ProvisioningRun, step_name: str) -> None:
    """Record that ``run`` holds no share (a new stream attempt, or one backing off
    before a retry) until the bandwidth loop grants one again; a new attempt is in no
    relay wave yet."""
    if step_name in SENDING_STEPS and run.context.get(SHARE_KEY):
        run.context = {**run.context, SHARE_KEY: 0}
    if run.context.get(RELAY_KEY) is not None:
        run.context = {**run.context, RELAY_KEY: None}


class SiteShares:
    """This worker's live streams at capped sites, and the loop that re-rates them."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float,
        stop: threading.Event,
        owns: Callable[[ProvisioningRun | None], bool],
    ) -> None:
        self.db = db
        self.interval = interval
        self._stop = stop
        self._owns = owns
        self._lock = threading.Lock()
        # run id -> (site id, its bucket)
        self._streams: dict[int, tuple[int, TokenBucket]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, run_id: int, site_id: int) -> TokenBucket:
        """A bucket for this stream, at rate 0 until the loop grants a share."""
        bucket = TokenBucket(rate=0.0)
        with self._lock:
            self._streams[run_id] = (site_id, bucket)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="bandwidth", daemon=True)
                self._thread.start()
        self._wake.set()
        return bucket

    def bucket_of(self, run_id: int) -> TokenBucket | None:
        """The bucket pacing ``run_id``'s stream in this worker, if it is sending."""
        with self._lock:
            entry = self._streams.get(run_id)
        return entry[1] if entry is not None else None

    def wake(self) -> None:
        """Re-rate now (a stream joined or left a relay wave)."""
        self._wake.set()

    def unregister(self, run_id: int) -> None:
        with self._lock:
            self._streams.pop(run_id, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.rebalance()
            except Exception:
                log.exception("bandwidth rebalance failed; retrying")

    def rebalance(self) -> None:
        """Re-rate this worker's streams from the site-wide ledger in the database."""
        with self._lock:
            streams = dict(self._streams)
        by_site: dict[int, dict[int, TokenBucket]] = {}
        for run_id, (site_id, bucket) in streams.items():
            by_site.setdefault(site_id, {})[run_id] = bucket
        for site_id, mine in by_site.items():
            self._rebalance_site(site_id, mine)

    def _rebalance_site(self, site_id: int, mine: dict[int, TokenBucket]) -> None:
        """One site. A lowered share takes effect before it is committed, a raised one
        after, so the rates actually in force never sum above the cap either."""
        raised: list[tuple[TokenBucket, int]] = []
        with self.db.session() as s:
            now = utcnow()
            # Lock order as in a claim: runs first, then the site row.
            own = {r.id: r for r in repository.lock_runs(s, sorted(mine))}
            site = repository.lock_site(s, site_id)
            rate = int(site.max_bytes_per_second or 0) if site is not None else 0
            live = [
                r
                for r in repository.runs_in_steps_at_site(
                    s, site_id=site_id, step_names=SENDING_STEPS, now=now
                )
                if counts_as_stream(r)
            ]
            granted = {
                r.id: int((r.context or {}).get(SHARE_KEY) or 0) for r in live if r.id is not None
            }
            eligible: list[int] = []
            for run_id in sorted(mine):
                run = own.get(run_id)
                bucket = mine[run_id]
                if run is None or not self._owns(run):
                    bucket.stop("the run is no longer this worker's")
                    continue
                if run.abort_requested:
                    bucket.stop("aborted by a technician")  # even while held at rate 0
                    continue
                if not counts_as_stream(run):
                    continue  # relayed: its wave's carrier holds the share
                eligible.append(run_id)
            shares = rerate(rate, granted, eligible)
            current = dict(granted)
            for run_id, new in shares.items():
                run, bucket, old = own[run_id], mine[run_id], granted[run_id]
                if new == old:
                    if bucket.rate != new:
                        raised.append((bucket, new))
                    continue
                current[run_id] = new
                if new < bucket.rate:
                    bucket.set_rate(new)
                else:
                    raised.append((bucket, new))
                run.context = {**run.context, SHARE_KEY: new}
                s.add(run)
                lifecycle.add_event(
                    s,
                    run,
                    step=run.step_name or STREAM_STEP,
                    kind="bandwidth",
                    message=f"{run.step_name} share {new} B/s of the site's {rate} B/s "
                    f"({len(live)} sending)",
                    details={
                        "share_bps": new,
                        "site_bps": rate,
                        "streams": len(live),
                        "site_granted_bps": sum(current.values()),
                    },
                )
        for bucket, new in raised:
            bucket.set_rate(new)
