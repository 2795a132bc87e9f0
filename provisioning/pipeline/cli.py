"""``masterline worker``: runs provisioning jobs where the server runs, on SQLite or
PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import typer


def worker(
    worker_id: Annotated[
        str | None, typer.Option("--id", help="Worker id (default: host).")
    ] = None,
) -> None:
    """Run provisioning jobs (where the server runs; SQLite or PostgreSQL)."""
    import logging

    from provisioning.pipeline.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_worker(worker_id=worker_id)
