"""The relay's rules, as pure code (no database, no clock, no socket inside), like
``pipeline/scheduling.py``: which queued laptops form a wave, and, for each member,
where it takes the stream from (nearest healthy member first, the source last).

Why a chain: each member forwards what it receives to exactly one other, so every link
carries the image once and every laptop receives at its link's rate at the same time;
the wave takes about one image's time plus one chunk per hop. A tree of fan-out k
sends k copies out of each inner laptop's port, so each level runs at 1/k of the rate
(measured in ``bench.relay``). The chain's weakness, one slow or dead member holding
up those after it, is what the reroutes below answer.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

SOURCE = "source"


class Topology(StrEnum):
    CHAIN = "chain"
    """Each member takes from the one before it (the default)."""
    TREE = "tree"
    """Member i takes from member (i-1)//fanout: a k-ary tree (measured, not used)."""
    STAR = "star"
    """Everyone takes from the source: one stream per laptop, today's path."""


@dataclass(frozen=True)
class Candidate:
    """A laptop whose run is ready to stream (its PE answered, its disk chosen)."""

    run_id: int
    image_id: int
    site_id: int
    ready_at: float


@dataclass(frozen=True)
class WaveRule:
    """When laptops of one image and one site become a wave."""

    window_seconds: float = 60.0
    """How long the first laptop waits for others (a short wait against an image's
    minutes-long stream)."""
    max_members: int = 32


def form_waves(
    candidates: Iterable[Candidate], *, rule: WaveRule, now: float
) -> list[list[Candidate]]:
    """The waves to start now. Laptops are grouped by (site, image) in the order they
    became ready; a group starts when it is full or its first laptop has waited
    ``window_seconds``; a group of one is a plain stream. Laptops not returned wait."""
    groups: dict[tuple[int, int], list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: (c.ready_at, c.run_id)):
        groups.setdefault((c.site_id, c.image_id), []).append(c)
    waves: list[list[Candidate]] = []
    for group in groups.values():
        for i in range(0, len(group), rule.max_members):
            part = group[i : i + rule.max_members]
            if len(part) == rule.max_members or now - part[0].ready_at >= rule.window_seconds:
                waves.append(part)
    return waves


def joins(wave_image: int, wave_site: int, members: int, c: Candidate, rule: WaveRule) -> bool:
    """Whether a laptop ready after its wave started joins it at the tail (same image,
    same site, room left); the tail serves it everything it missed."""
    return c.image_id == wave_image and c.site_id == wave_site and members < rule.max_members


@dataclass
class Route:
    """The order of a wave's members and which ones are out of it."""

    topology: Topology = Topology.CHAIN
    fanout: int = 2
    order: list[str] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)

    def join(self, member: str) -> None:
        """A member joins at the tail."""
        if member == SOURCE or member in self.order:
            raise ValueError(f"member {member} is already in the wave")
        self.order.append(member)

    def move_to_tail(self, member: str) -> bool:
        """Move ``member`` to the end of the chain (a slow disk: it no longer paces
        anyone); False when it already is the last healthy member, or the first: the
        one behind the first would then take from the source, a second stream out of
        the server that the site's ledger does not count."""
        i = self.order.index(member)
        if not any(self.healthy(m) for m in self.order[i + 1 :]):
            return False
        if not any(self.healthy(m) for m in self.order[:i]):
            return False
        self.order.remove(member)
        self.order.append(member)
        return True

    def healthy(self, member: str) -> bool:
        return member not in self.dead and member not in self.corrupt

    def _ahead(self, member: str) -> list[str]:
        """Members this one may take from, nearest first (before the healthy filter)."""
        i = self.order.index(member)
        if self.topology is Topology.STAR:
            return []
        if self.topology is Topology.TREE:
            ancestors: list[str] = []
            while i > 0:
                i = (i - 1) // self.fanout
                ancestors.append(self.order[i])
            return ancestors
        return list(reversed(self.order[:i]))

    def upstreams(self, member: str) -> list[str]:
        """Where ``member`` takes the stream from, in order of preference: the healthy
        members ahead of it, nearest first, then the source. A member switches down
        this list by itself when its upstream fails; the worker sends a new list when
        it learns of a dead or corrupt member."""
        return [m for m in self._ahead(member) if self.healthy(m)] + [SOURCE]

    def affected_by(self, lost: str) -> list[str]:
        """The members whose list named ``lost`` (to be sent a new one)."""
        return [m for m in self.order if m != lost and lost in self._ahead(m)]


@dataclass(frozen=True)
class SlowRule:
    """When a member's disk is slow enough to be moved to the tail of the chain.

    A chain runs at its slowest member's pace: every member behind a slow disk waits
    for it. The measure is the member's own **disk** rate (bytes written per second
    spent in writes, reported by its relay), not its receive rate, which its upstream
    sets: a member paced by a slow upstream still writes fast. A member is slow when
    its rate is below ``ratio`` times the median of the wave's reported rates, once at
    least ``min_members`` members have each written ``min_chunks`` chunks (a median of
    fewer is noise). It is moved once; the tail is never moved.
    """

    ratio: float = 0.5
    min_chunks: int = 4
    min_members: int = 3


def slow_members(rates: Mapping[str, float], rule: SlowRule) -> list[str]:
    """The members of ``rates`` (disk bytes per second, each from at least
    ``rule.min_chunks`` chunks) whose disks are slow (see ``SlowRule``), slowest first."""
    if len(rates) < rule.min_members:
        return []
    median = statistics.median(rates.values())
    slow = [m for m, r in rates.items() if r < rule.ratio * median]
    return sorted(slow, key=lambda m: rates[m])
