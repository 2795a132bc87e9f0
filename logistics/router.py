"""HTTP routes of this domain (filled in by its issue)."""

from __future__ import annotations

from api.deps import new_router

router = new_router()
