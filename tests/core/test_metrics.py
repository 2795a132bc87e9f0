"""A worker's own /metrics: its counters, for an accepted bearer token only."""

from __future__ import annotations

import httpx

from core import metrics
from tests.support.postgres import free_port


def test_a_worker_serves_its_counters_to_an_accepted_token_only() -> None:
    port = free_port()
    server = metrics.serve(host="127.0.0.1", port=port, authorized=lambda t: t == "mlt_ok")
    try:
        metrics.streamed(1234)
        base = f"http://127.0.0.1:{port}"
        good = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer mlt_ok"})
        assert good.status_code == 200
        assert "masterline_image_bytes_streamed_total" in good.text
        assert (
            "masterline_step_duration_seconds_bucket" in good.text or "step_duration" in good.text
        )
        bad = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer mlt_no"})
        assert bad.status_code == 401 and "masterline_" not in bad.text
        assert httpx.get(f"{base}/metrics").status_code == 401
    finally:
        server.shutdown()
        server.server_close()
