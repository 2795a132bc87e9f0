"""Rate limits on the PE-facing routes: per source address (checked before any database
work, so guessing credentials is slow) and per enrollment credential.

Counters come from the ``limits`` library (fixed windows), imported on first use: building
the API app must stay light (tests/api/test_footprint.py).
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from boot.registration.config import get_boot_settings
from boot.registration.errors import RateLimited

if TYPE_CHECKING:
    from limits.strategies import RateLimiter


class BootRateLimits:
    """The limits of one API process (``app.state.boot_rate_limits``)."""

    def __init__(
        self,
        *,
        per_address: str | None = None,
        per_credential: str | None = None,
        heartbeat_per_address: str | None = None,
    ) -> None:
        """Rates in ``limits`` notation; None takes the setting (``MASTERLINE_BOOT_*``)."""
        self._lock = threading.Lock()
        self._limiter: RateLimiter | None = None
        self._items: dict[str, Any] = {}
        self._rates = (per_address, per_credential, heartbeat_per_address)

    def _ready(self) -> RateLimiter:
        with self._lock:
            if self._limiter is None:
                from limits import parse
                from limits.storage import storage_from_string
                from limits.strategies import FixedWindowRateLimiter

                settings = get_boot_settings()
                address, credential, heartbeat = self._rates
                self._items = {
                    "address": parse(address or settings.rate_per_address),
                    "credential": parse(credential or settings.rate_per_credential),
                    "heartbeat": parse(heartbeat or settings.rate_heartbeat_per_address),
                }
                self._limiter = FixedWindowRateLimiter(
                    storage_from_string(settings.rate_limit_storage)
                )
            return self._limiter

    def hit(self, scope: str, key: str, *, what: str) -> None:
        """Count one request of ``key`` in ``scope`` (address, credential, heartbeat).

        :raises RateLimited: over the limit; ``retry_after`` says when the window resets.
        """
        limiter = self._ready()
        item = self._items[scope]
        if limiter.hit(item, scope, key):
            return
        reset = limiter.get_window_stats(item, scope, key).reset_time
        raise RateLimited(what, max(1, math.ceil(reset - time.time())))


def limits_of(state: Any) -> BootRateLimits:
    """The app's limits, made on first use (one per app, so tests do not share them)."""
    found = getattr(state, "boot_rate_limits", None)
    if found is None:
        found = BootRateLimits()
        state.boot_rate_limits = found
    return found
