"""Prometheus metrics counted as things happen, in this process.

Three instruments, called from as few places as possible (the engine's step loop, its
progress reporter, the scan route); everything that can be read from the database (runs
by status and step, laptops by state, the webhook queue, the connection pool) is
collected at scrape time instead (``api/metrics.py``), so the pipeline's code does not
carry it. ``/metrics`` serves both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

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

__all__ = [
    "IMAGE_BYTES",
    "REGISTRY",
    "SCANS",
    "STEP_SECONDS",
    "scanned",
    "serve",
    "step_timer",
    "streamed",
]

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


def serve(*, host: str, port: int, authorized: Callable[[str], bool]) -> Any:
    """This process's counters and histograms at ``http://host:port/metrics``, on a
    small server of their own (a worker: no API there), for a bearer token that
    ``authorized`` accepts. Returns the server (``shutdown()`` stops it)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if environ.get("PATH_INFO") != "/metrics" or not token or not authorized(token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"a monitoring or admin bearer token is required\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(REGISTRY)]

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    server = make_server(host, port, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
