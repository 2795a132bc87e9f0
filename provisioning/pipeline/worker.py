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
import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from core import metrics
from core.db import Database, get_database
from core.errors import InvalidInput
from core.settings import get_settings
from inventory.states import TIMEOUT_OF, DeviceState
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.engine import JobEngine

log = logging.getLogger("masterline.worker")
_held_locks: list[IO[Any]] = []

Companion = Callable[[Database, threading.Event], None]
COMPANIONS: list[Companion] = []
"""Loops of the domains above that run beside the engine wherever it runs (the
forecast's refresher), registered at start (``wiring.wire``): each gets a daemon thread
and the process's stop event."""


def start_companions(db: Database, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for loop in COMPANIONS:
        name = getattr(loop, "__qualname__", "companion")
        thread = threading.Thread(target=loop, args=(db, stop), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    return threads


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


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(env: Any, name: str, *, default: bool) -> bool:
    """An on/off setting. A value that is neither is refused rather than guessed: a
    typo must not silently turn relay imaging on, or off.

    :raises InvalidInput: the value is not one of 1/0, true/false, yes/no, on/off."""
    raw = str(env.get(name, "")).strip().lower()
    if not raw:
        return default
    if raw in _ON or raw in _OFF:
        return raw in _ON
    raise InvalidInput(f"{name}={raw[:20]!r}: use 1 (on) or 0 (off)")


def _relay_host(raw: str) -> str:
    """The relay source's address override; empty: learned per laptop.

    :raises InvalidInput: not an IP address, or a wildcard (a listener there would
        serve the wave on every interface of the worker)."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        name = "MASTERLINE_WORKER_RELAY_HOST"
        raise InvalidInput(f"{name}={raw[:40]!r}: not an IP address") from None
    if ip.is_unspecified:
        raise InvalidInput(
            f"MASTERLINE_WORKER_RELAY_HOST={raw}: a wildcard; give the worker's bench address"
        )
    return raw


def _positive(env: Any, name: str, default: float) -> float:
    """:raises InvalidInput: not a number above 0."""
    raw = str(env.get(name, "")).strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidInput(f"{name}={raw[:20]!r}: give a number of seconds above 0")
    return value


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
        pe_wait_seconds=float(env.get("MASTERLINE_WORKER_PE_WAIT_SECONDS", "30")),
        share_seconds=float(env.get("MASTERLINE_WORKER_SHARE_SECONDS", "1")),
        configure_wave_seconds=float(env.get("MASTERLINE_WORKER_CONFIGURE_WAVE_SECONDS", "1")),
        step_timeouts=_pairs(env.get("MASTERLINE_WORKER_STEP_TIMEOUTS", "")),
        relay=_switch(env, "MASTERLINE_WORKER_RELAY", default=True),
        relay_window_seconds=float(env.get("MASTERLINE_WORKER_RELAY_WINDOW_SECONDS", "60")),
        relay_max_members=int(env.get("MASTERLINE_WORKER_RELAY_MAX_MEMBERS", "32")),
        relay_chunk_bytes=int(env.get("MASTERLINE_WORKER_RELAY_CHUNK_BYTES", str(4 * 1024 * 1024))),
        relay_host=_relay_host(env.get("MASTERLINE_WORKER_RELAY_HOST", "")),
        relay_first_chunk_seconds=_positive(env, "MASTERLINE_WORKER_RELAY_FIRST_CHUNK_SECONDS", 60),
        relay_slow_ratio=float(env.get("MASTERLINE_WORKER_RELAY_SLOW_RATIO", "0.5")),
        state_timeouts=state_timeouts,
    )


def _monitoring(db: Database) -> Callable[[str], bool]:
    """Whether a bearer token may read this worker's /metrics (monitoring or admin, as
    the API's /metrics)."""
    from api.auth import authenticate
    from api.errors import BadToken
    from core.principal import Role

    def authorized(token: str) -> bool:
        try:
            with db.session(write=False) as session:
                role = authenticate(session, token).role
        except BadToken:
            return False
        return role in (Role.ADMIN, Role.MONITORING)

    return authorized


def run_worker(db: Database | None = None, *, worker_id: str | None = None) -> None:
    """Run jobs until SIGTERM/SIGINT; finishes the steps in flight first."""
    stop = threading.Event()
    db = db or get_database()
    engine = JobEngine(db, config_from_env(worker_id=worker_id))
    start_companions(db, stop)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping after the steps in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    port = os.environ.get("MASTERLINE_WORKER_METRICS_PORT")
    if port:
        host = os.environ.get("MASTERLINE_WORKER_METRICS_HOST", "127.0.0.1")
        metrics.serve(host=host, port=int(port), authorized=_monitoring(engine.db))
        log.info("metrics at http://%s:%s/metrics", host, port)
    engine.run_forever(stop)
