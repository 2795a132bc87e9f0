"""Pacing one stream to its bandwidth share: a token bucket per stream.

The site's cap is split between its live streams by the engine
(``pipeline/bandwidth.py``, from the pure rule ``pipeline/scheduling.rerate``); each
stream only consults its own bucket, so no chunk costs a database round trip. Time comes
from ``clock`` and ``sleep`` (a simulator or a test passes its own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provisioning.errors import Aborted

CHUNK = 1024 * 1024
"""The unit a stream sends (and a bucket is asked for) at a time."""


@dataclass
class TokenBucket:
    """One stream's pace: ``rate`` bytes per second, re-rated while it runs.

    A rate of 0 holds the stream until a share is granted.
    """

    rate: float
    burst: float = 4 * CHUNK
    _tokens: float = 0.0
    _last: float | None = None
    _stopped: str | None = None
    _held: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @property
    def held(self) -> bool:
        """A stream is waiting in ``take`` with no share granted (rate 0)."""
        return self._held

    def stop(self, reason: str) -> None:
        """Make the stream's next (or current, held) ``take`` raise ``Aborted``: how an
        abort reaches a stream that waits for a share and so reports no progress."""
        self._stopped = reason

    def set_rate(self, rate: float) -> None:
        """Re-rate the bucket. Tokens saved up under the old rate are capped to one
        second of the new one, so a lowered share is not overrun by an old burst."""
        with self._lock:
            self._refill(self.clock())
            self.rate = max(0.0, float(rate))
            self._tokens = min(self._tokens, max(self.rate, 0.0))

    def _refill(self, now: float) -> None:
        elapsed = 0.0 if self._last is None else max(0.0, now - self._last)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def take(self, n: int) -> None:
        while True:
            if self._stopped is not None:
                raise Aborted(self._stopped)
            with self._lock:
                self._refill(self.clock())
                if self.rate > 0 and (self._tokens >= n or self._tokens >= self.burst):
                    self._tokens -= n
                    self._held = False
                    return
                wait = (n - self._tokens) / self.rate if self.rate > 0 else 0.25
                self._held = self.rate <= 0
            self.sleep(min(max(wait, 0.001), 0.25))
