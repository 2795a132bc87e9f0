"""ASGI entry for ``uvicorn api.main:app`` (several worker processes)."""

from __future__ import annotations

from api.app import create_app

app = create_app()
