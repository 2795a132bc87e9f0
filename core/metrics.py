"""Prometheus metrics counted as things happen, in this process.

Three instruments, called from as few places as possible (the engine's step loop, its
progress reporter, the scan route); everything that can be read from the database (runs
by status and step, laptops by state, the webhook queue, the connection pool) is
collected at scrape time instead (``api/metrics.py``), so the pipeline's code does not
carry it. ``/metrics`` serves both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Histogram

SCANS = Counter(
    "masterline_scans",
    "Bench scans, by outcome (received, unexpected, already, quarantined).",
    ["outcome"],
)
IMAGE_BYTES = Counter(
    "masterline_image_bytes_streamed", "Image bytes streamed to laptops' disks by this process."
)
STEP_SECONDS = Histogram(
    "masterline_step_duration_seconds",
    "How long provisioning steps took in this process, by step and outcome "
    "(done, failed, aborted).",
    ["step", "outcome"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)

__all__ = ["IMAGE_BYTES", "REGISTRY", "SCANS", "STEP_SECONDS", "scanned", "step_timer", "streamed"]

_ABORTED = frozenset({"Aborted", "StepLost", "ConfigureCancelled"})


def scanned(outcome: str) -> None:
    SCANS.labels(outcome).inc()


def streamed(n: int) -> None:
    if n > 0:
        IMAGE_BYTES.inc(n)


@contextmanager
def step_timer(step: str) -> Iterator[None]:
    """Time the block as a run of ``step``; its outcome is the exception it raises."""
    started = time.monotonic()
    outcome = "done"
    try:
        yield
    except BaseException as e:
        outcome = "aborted" if type(e).__name__ in _ABORTED else "failed"
        raise
    finally:
        STEP_SECONDS.labels(step, outcome).observe(time.monotonic() - started)
