"""A site's week as absolute times: when it is open, when carriers collect, when a
delivery that comes on a given day is at the bench.

Times are seconds since the forecast's ``t0`` (a UTC instant); days are the site's
local days, counted from ``t0``'s local date (day 0), so daylight-saving changes and
closed dates fall where the site's clock says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

FAR = 1e12
"""Seconds standing for "never" or "always" (about 31,000 years)."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Hours:
    """What a manager configures for a site (``forecast_site``)."""

    timezone: str = "Europe/Paris"
    week: tuple[tuple[time, time] | None, ...] = (
        *((time(8), time(18)),) * 5,
        None,
        None,
    )
    """Opening and closing time per weekday, Monday first; None: closed that day. A
    closing time of 00:00 means midnight at the end of the day."""
    closed: frozenset[date] = frozenset()
    cutoffs: tuple[time, ...] = (time(17),)
    """The carriers' daily collection times (on open days)."""
    arrival: time = time(9)
    """When a delivery that comes on a day is at the bench (carriers' morning round)."""
    always_open: bool = False
    """Never closed, carriers every day (the lab, a 24/7 centre)."""


@dataclass(frozen=True)
class Calendar:
    opens: np.ndarray
    closes: np.ndarray
    cutoffs: np.ndarray
    arrivals: np.ndarray
    """``arrivals[k + back]``: when a delivery due on local day ``k`` is at the bench
    (the first open day from ``k`` on), seconds since t0."""
    back: int
    day0: date
    tz: ZoneInfo = field(repr=False)

    # The simulator asks the two questions below for every laptop it walks: each table
    # with one more entry past its end, so that an index past the horizon reads there
    # instead of being clipped first.
    @cached_property
    def _opens_past(self) -> np.ndarray:
        return np.append(self.opens, self.opens[-1:])

    @cached_property
    def _cutoffs_past(self) -> np.ndarray:
        return np.append(self.cutoffs, np.inf)

    def next_open(self, t: np.ndarray) -> np.ndarray:
        """The first instant at or after ``t`` when the site is open (``inf``: never)."""
        i = np.searchsorted(self.closes, t, side="right")
        return np.where(i < len(self.closes), np.maximum(t, self._opens_past[i]), np.inf)

    def is_open(self, t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.closes, t, side="right")
        inside = i < len(self.closes)
        return inside & (self.opens[np.minimum(i, len(self.opens) - 1)] <= t)

    def next_cutoff(self, t: np.ndarray) -> np.ndarray:
        """The first carrier collection at or after ``t`` (``inf``: none in the horizon)."""
        return self._cutoffs_past[np.searchsorted(self.cutoffs, t, side="left")]

    def arrival_on(self, day: np.ndarray) -> np.ndarray:
        """When a delivery due on local day ``day`` (int array) is at the bench."""
        k = np.clip(day + self.back, 0, len(self.arrivals) - 1)
        return self.arrivals[k]

    def day_of(self, when: datetime) -> int:
        return (when.astimezone(self.tz).date() - self.day0).days

    def at(self, seconds: float, t0: datetime) -> datetime | None:
        if not np.isfinite(seconds):
            return None
        return t0 + timedelta(seconds=float(seconds))

    def open_hours_per_day(self) -> float:
        """Mean open hours per calendar day over the horizon (24 when always open)."""
        span = float(self.closes[-1] - self.opens[0]) if len(self.opens) else 0.0
        if span <= 0 or span > FAR:
            return 24.0
        total = float(np.sum(np.minimum(self.closes, FAR) - np.maximum(self.opens, -FAR)))
        return 24.0 * total / span


def build(hours: Hours, *, t0: datetime, days: int = 120, back: int = 30) -> Calendar:
    """The calendar from ``back`` days before ``t0`` to ``days`` after it."""
    tz = ZoneInfo(hours.timezone)
    day0 = t0.astimezone(tz).date()

    def seconds(d: date, at: time) -> float:
        local = datetime.combine(d, at, tzinfo=tz)
        return (local - t0).total_seconds()

    if hours.always_open:
        opens, closes = np.asarray([-FAR]), np.asarray([FAR])
    else:
        spans: list[list[float]] = []
        for k in range(-back, days):
            d = day0 + timedelta(days=k)
            window = hours.week[d.weekday()]
            if window is None or d in hours.closed:
                continue
            start = seconds(d, window[0])
            end = seconds(d + timedelta(days=1), time(0)) if window[1] == time(0) else 0.0
            if window[1] != time(0):
                end = seconds(d, window[1])
            if end <= start:
                continue
            if spans and spans[-1][1] >= start:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        opens = np.asarray([s for s, _ in spans] or [FAR])
        closes = np.asarray([e for _, e in spans] or [FAR])
    cutoffs: list[float] = []
    for k in range(-back, days):
        d = day0 + timedelta(days=k)
        if not hours.always_open and (hours.week[d.weekday()] is None or d in hours.closed):
            continue
        cutoffs.extend(seconds(d, c) for c in hours.cutoffs)
    cutoff_arr = np.asarray(sorted(cutoffs) or [np.inf])
    calendar = Calendar(
        opens=opens,
        closes=closes,
        cutoffs=cutoff_arr,
        arrivals=np.empty(0),
        back=back,
        day0=day0,
        tz=tz,
    )
    arrivals = np.empty(back + days)
    for i, k in enumerate(range(-back, days)):
        d = day0 + timedelta(days=k)
        planned = np.asarray([seconds(d, hours.arrival)])
        if hours.always_open:
            arrivals[i] = planned[0]
            continue
        # The first open day from ``d`` on, at its opening or the carriers' round,
        # whichever is later.
        day_start = np.asarray([seconds(d, time(0))])
        first = calendar.next_open(day_start)[0]
        if not np.isfinite(first):
            arrivals[i] = np.inf
            continue
        first_day = datetime.fromtimestamp(t0.timestamp() + first, tz).date()
        at = seconds(first_day, hours.arrival)
        arrivals[i] = calendar.next_open(np.asarray([max(first, at)]))[0]
    return Calendar(
        opens=opens,
        closes=closes,
        cutoffs=cutoff_arr,
        arrivals=arrivals,
        back=back,
        day0=day0,
        tz=tz,
    )
