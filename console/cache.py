"""A wave dashboard's figures kept for a second or two per scope and filter.

Why: a wall of supervisors' screens and a client's IT team all reload the same filter
after each "stale" signal; the figures (counts over 100,000 laptops, a day of arrivals
per hour, failures, the oldest, the forecast panel) are the same for everyone who may
see the same laptops, and a few seconds old anyway ("figures at HH:MM:SS" on the page).
So the first viewer computes and the others within ``ttl`` seconds read that.

The key is the caller's whole visible scope (role, the one client a client-bound caller
may see, language) plus the filter: two callers share figures only when they may see
exactly the same laptops. The page adds the data's version to it (the live hub's marks,
the stored forecast's: ``console/pages/waves.py``), so kept figures are never older
than the data; the live hub clears everything when it signals dashboards "stale"
(``Hub.on_stale``). One process, one cache: each uvicorn worker keeps its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.principal import Principal
from provisioning.runs.overview import WaveFilter

T = TypeVar("T")

FIGURES_SECONDS = 2.0
"""How long a filter's figures are kept (the live hub signals dashboards at most every
3 s; a board full of viewers reloading on one signal costs one computation)."""


@dataclass(frozen=True)
class ScopeKey:
    """Everything that decides what a dashboard's figures contain."""

    role: str
    client_bound: bool
    client_scope: int | None
    language: str
    wanted: WaveFilter

    @classmethod
    def of(cls, principal: Principal, language: str, wanted: WaveFilter) -> ScopeKey:
        return cls(
            role=str(principal.role),
            client_bound=principal.role.client_bound,
            client_scope=principal.client_scope,
            language=language,
            wanted=wanted,
        )


class TtlCache(Generic[T]):
    """Values kept ``ttl`` seconds per key, at most ``max_entries`` keys (the oldest
    go first: keys that hold a data version pile up as the data moves, and a
    dashboard's figures are tens of kilobytes). One computation per key at a time:
    callers that come while it runs wait for its value instead of computing it again
    (threads: sync routes run in a pool)."""

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, int, T]] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._generation = 0
        self.computed = 0
        """Values computed so far (the benchmark and tests read it)."""

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        if self.ttl <= 0:
            self.computed += 1
            return compute()
        while True:
            with self._lock:
                found = self._fresh(key)
                if found is not None:
                    return found[0]
                running = self._computing.get(key)
                if running is None:
                    mine = threading.Lock()
                    mine.acquire()
                    self._computing[key] = mine
                    generation = self._generation
                    break
            # Someone computes it: wait for them (bounded: the lock is released in a
            # finally), then look again.
            with running:
                pass
        try:
            value = compute()
            with self._lock:
                self.computed += 1
                if generation == self._generation:  # not cleared meanwhile
                    self._entries[key] = (self._clock(), generation, value)
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._computing.pop(key, None)
            mine.release()

    def _fresh(self, key: Hashable) -> tuple[T] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        at, _, value = entry
        if self._clock() - at >= self.ttl:
            del self._entries[key]
            return None
        return (value,)

    def clear(self) -> None:
        """Forget every value (what is being computed now is not kept either)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
