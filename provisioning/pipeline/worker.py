"""The worker process: ``masterline worker`` (jobs only; ``masterline up``, the API and a
worker in one process, is the command line's, above both).

Worker id: like DBOS's executor id, a restarted worker with the same id takes its own
interrupted runs back at once; other workers wait for the lease to expire. The default
id is ``<hostname>`` when this process can hold the per-id lock file in the data
directory, else ``<hostname>-<pid>`` — so two workers on one host never share an id
(which would let each take the other's live runs).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from core.db import Database, get_database
from core.settings import get_settings
from inventory.states import TIMEOUT_OF, DeviceState
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.engine import JobEngine

log = logging.getLogger("masterline.worker")
_held_locks: list[IO[Any]] = []


def _pairs(raw: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in raw.split(","):
        key, _, value = part.partition("=")
        if key.strip() and value.strip():
            out[key.strip()] = float(value)
    return out


def _worker_id(data_dir: Path, wanted: str | None) -> str:
    if wanted:
        return wanted
    host = socket.gethostname()
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / f".worker-{host}.lock", "a")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return f"{host}-{os.getpid()}"
    _held_locks.append(fh)
    return host


def config_from_env(*, worker_id: str | None = None) -> EngineConfig:
    """Engine settings from ``MASTERLINE_WORKER_*`` variables (see docs/pipeline.md)."""
    env = os.environ
    settings = get_settings()
    state_timeouts = dict(TIMEOUT_OF)
    for key, secs in _pairs(env.get("MASTERLINE_WORKER_STATE_TIMEOUTS", "")).items():
        state_timeouts[DeviceState(key)] = timedelta(seconds=secs)
    return EngineConfig(
        worker_id=_worker_id(settings.data_dir, worker_id or env.get("MASTERLINE_WORKER_ID")),
        cache_dir=Path(env.get("MASTERLINE_SITE_CACHE_DIR", settings.data_dir / "site-cache")),
        lease_seconds=float(env.get("MASTERLINE_WORKER_LEASE_SECONDS", "30")),
        poll_seconds=float(env.get("MASTERLINE_WORKER_POLL_SECONDS", "0.5")),
        max_parallel=int(env.get("MASTERLINE_WORKER_MAX_PARALLEL", "16")),
        backoff_base=float(env.get("MASTERLINE_WORKER_BACKOFF_BASE", "2")),
        backoff_cap=float(env.get("MASTERLINE_WORKER_BACKOFF_CAP", "30")),
        sweep_seconds=float(env.get("MASTERLINE_WORKER_SWEEP_SECONDS", "5")),
        share_seconds=float(env.get("MASTERLINE_WORKER_SHARE_SECONDS", "1")),
        configure_wave_seconds=float(env.get("MASTERLINE_WORKER_CONFIGURE_WAVE_SECONDS", "1")),
        step_timeouts=_pairs(env.get("MASTERLINE_WORKER_STEP_TIMEOUTS", "")),
        state_timeouts=state_timeouts,
    )


def run_worker(db: Database | None = None, *, worker_id: str | None = None) -> None:
    """Run jobs until SIGTERM/SIGINT; finishes the steps in flight first."""
    stop = threading.Event()
    engine = JobEngine(db or get_database(), config_from_env(worker_id=worker_id))

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping after the steps in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    engine.run_forever(stop)
