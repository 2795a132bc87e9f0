"""``GET /metrics``: Prometheus text format, for a token of role ``monitoring`` (or an
admin). Counters and histograms counted as things happen (``core.metrics``) plus gauges
read from the database at scrape time, so the pipeline carries no bookkeeping for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

from api.deps import Allow, get_db, new_router
from core import metrics
from core.db import Database
from core.principal import Principal, Role

router = new_router(tags=["operations"])
Monitoring = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.MONITORING))]


class DatabaseCollector(Collector):
    """Gauges read at scrape time: runs by status and step, laptops by state, the webhook
    queue, the connection pool."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from logistics import service as logistics
        from provisioning.runs import overview

        with self.db.session(write=False) as session:
            gauges = overview.pipeline_gauges(session)
            queue = logistics.webhook_queue(session)
        runs = GaugeMetricFamily(
            "masterline_runs",
            "Provisioning runs by status and current step.",
            labels=["status", "step"],
        )
        for status, step, count in gauges.runs:
            runs.add_metric([status, step or ""], count)
        yield runs
        devices = GaugeMetricFamily(
            "masterline_laptops", "Laptops by lifecycle state.", labels=["state"]
        )
        for state, count in sorted(gauges.devices.items()):
            devices.add_metric([state], count)
        yield devices
        hooks = GaugeMetricFamily(
            "masterline_webhook_deliveries",
            "Webhook deliveries by status (pending: the queue's depth).",
            labels=["status"],
        )
        for status in ("pending", "delivered", "failed"):
            hooks.add_metric([status], queue.get(status, 0))
        yield hooks
        pool = self.db.engine.pool
        if isinstance(pool, QueuePool):
            yield GaugeMetricFamily(
                "masterline_db_pool_size", "Connections the pool keeps.", value=pool.size()
            )
            yield GaugeMetricFamily(
                "masterline_db_pool_checked_out",
                "Connections in use by this process.",
                value=pool.checkedout(),
            )
            yield GaugeMetricFamily(
                "masterline_db_pool_overflow",
                "Connections over the pool size.",
                value=max(0, pool.overflow()),
            )


def exposition(db: Database) -> bytes:
    """This process's counters and histograms, then the database's gauges."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(db))
    return generate_latest(metrics.REGISTRY) + generate_latest(scrape)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def prometheus(request: Request, _: Monitoring) -> Response:
    """Metrics for Prometheus (`Authorization: Bearer <monitoring token>`; see
    docs/console.md)."""
    return Response(exposition(get_db(request)), media_type=CONTENT_TYPE_LATEST)
